"""Makes docs/status-page.png, the README's picture of the status page:
the gateway with --metrics (two workers of four threads) under minutes of
changing load over SCGI, then a screenshot in headless Chromium. Not a
test (pytest does not collect it): run it by hand when the page changes.

    .venv-test/bin/python tests/status_page_screenshot.py [--minutes 6] [--out docs/status-page.png]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cdp import Browser  # noqa: E402
from harness import APPS, ARTIFACTS, REPO, Gateway, free_port, scgi_request, wait_until  # noqa: E402

# (seconds, load threads, statuses cycled, app sleep in seconds): a morning
# of traffic squeezed into minutes, with an error burst and a slow spell.
PHASES = [
    (40, 1, [200, 200, 200, 304, 404], 0),
    (40, 2, [200, 200, 200, 200, 302, 404], 0),
    (30, 3, [200, 200, 200, 200, 302, 404, 500], 0.002),
    (20, 3, [200, 503, 503, 500], 0),
    (40, 2, [200, 200, 200, 200, 302, 404], 0.02),
    (40, 3, [200, 200, 200, 201, 302, 404, 404], 0.001),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=6)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "status-page.png")
    args = parser.parse_args()

    run = Path(tempfile.mkdtemp(prefix="rustgi-shot-"))
    port = free_port()
    gw = Gateway("screenshot", str(run / "app.sock"), [
        "--app", str(APPS / "status_page_app.py"), "--processes", "2", "--threads", "4",
        "--metrics", f"127.0.0.1:{port}",
    ], ARTIFACTS / "screenshot.log").start()
    stop = threading.Event()
    phase = {"threads": 1, "statuses": [200], "sleep": 0.0}

    def load(index: int):
        for i in itertools.count(index):
            if stop.is_set():
                return
            if index >= phase["threads"]:
                time.sleep(0.2)
                continue
            status = phase["statuses"][i % len(phase["statuses"])]
            try:
                scgi_request(gw.socket, path=f"/shop/items/{i % 40}",
                             query=f"status={status}&sleep={phase['sleep']}&bytes={200 + i % 3000}")
            except OSError:
                pass

    def slow(index: int):
        paths = ["/reports/yearly", "/export/orders.csv", "/admin/reindex"]
        for i in itertools.count(index):
            if stop.is_set():
                return
            try:
                scgi_request(gw.socket, path=paths[i % len(paths)], query="sleep=4", timeout=30)
            except OSError:
                pass

    workers = [threading.Thread(target=load, args=(i,), daemon=True) for i in range(3)]
    workers += [threading.Thread(target=slow, args=(i,), daemon=True) for i in range(3)]
    for t in workers:
        t.start()
    end = time.monotonic() + args.minutes * 60
    for seconds, threads, statuses, sleep in itertools.cycle(PHASES):
        if time.monotonic() >= end:
            break
        phase.update(threads=threads, statuses=statuses, sleep=sleep)
        time.sleep(min(seconds, max(0, end - time.monotonic())))

    browser = Browser(ARTIFACTS / "screenshot-chromium.log")
    try:
        tab = browser.open(f"http://127.0.0.1:{port}/", width=1200, height=900)
        tab.wait_for("Number(document.body.dataset.updates || 0) >= 1")
        # Wait for an update that shows the slow requests at work.
        wait_until(lambda: tab.evaluate("document.querySelectorAll('table.busy tr').length >= 3"), 10)
        tab.screenshot(args.out)
    finally:
        browser.close()
        stop.set()
        gw.terminate()
    print(f"{args.out}: {args.out.stat().st_size} bytes")


if __name__ == "__main__":
    main()
