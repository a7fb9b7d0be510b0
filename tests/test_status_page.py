"""The status page (issue 14, item 6) in a real browser: Debian's headless
`chromium`, driven over the DevTools protocol (tests/cdp.py).

- Against a stub server that serves the page's file and a `status.json`
  the test writes: values from clients (paths, methods, request ids) go
  into the document as text, never as markup; the charts are drawn from the
  history's points; a failing `status.json` shows the stale state, and the
  page comes back by itself; an empty history and no worker draw nothing
  and break nothing.
- Against the real gateway with `--metrics`, under load over SCGI: the page
  served at `/` loads, draws its three charts, shows the busy threads, and
  the totals it shows lie between two `/metrics` scrapes taken before and
  after the `status.json` they came from (and equal them once the load
  stops); when the gateway stops, the page turns stale. It saves a
  screenshot, tests/.run/status-page.png (docs/status-page.png, with ten
  minutes of history, comes from tests/status_page_screenshot.py).
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import re
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from cdp import Browser, CdpError
from harness import APPS, ARTIFACTS, REPO, free_port, scgi_request, wait_until

PAGE = REPO / "crates" / "observe" / "src" / "page" / "status.html"
CLASSES = ["1xx", "2xx", "3xx", "4xx", "5xx"]

# A path no browser may take for markup: if it were, an <img> would appear
# and its onerror would set window.pwned.
HOSTILE = '/<img src=x onerror="window.pwned=1">/&amp;"q"'

# How many coloured pixels each canvas has, and how many points it drew.
# Grid lines, axes and labels are grey: only the series are coloured.
CANVASES = """[...document.querySelectorAll("canvas")].map((c) => {
  const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  let colored = 0;
  for (let i = 0; i < d.length; i += 4) {
    if (d[i + 3] > 0 && Math.max(d[i], d[i + 1], d[i + 2]) - Math.min(d[i], d[i + 1], d[i + 2]) > 100) colored++;
  }
  return {id: c.id, points: Number(c.dataset.points || 0), colored};
})"""

# What the page shows as totals, with the update that drew them (one
# evaluation: the event loop cannot render in between).
SHOWN = """(() => {
  const n = (id) => Number(document.getElementById(id).textContent.replace(/[^0-9]/g, ""));
  return {updates: Number(document.body.dataset.updates || 0), requests: n("total-requests"),
          classes: Object.fromEntries(%s.map((c) => [c, n("class-" + c)]))};
})()""" % json.dumps(CLASSES)


@pytest.fixture(scope="module")
def browser(log_dir):
    b = Browser(log_dir / "chromium.log")
    yield b
    b.close()


# ---------------------------------------------------------------------------
# a stub status.json


def stub_status(now_ms: int, points: int = 40, workers: int = 2) -> dict:
    history = []
    for i in range(points):
        start = now_ms - (points - i) * 5000
        history.append({
            "from_unix_ms": start, "to_unix_ms": start + 5000, "requests": 50 + i, "rps": (50 + i) / 5,
            "by_class": {"1xx": 0, "2xx": 40 + i, "3xx": 2, "4xx": 5, "5xx": 3},
            "p50_ms": 2.0 + i / 10, "p90_ms": 9.5, "p99_ms": 80.0 + i, "mean_ms": 3.1,
            "request_bytes_ps": 10.0, "response_bytes_ps": 2000.0, "reset": False,
        })
    return {
        "version": "0.0.0-test", "python": "3.11.2", "uptime_s": 4000, "now_unix_ms": now_ms,
        "totals": {"requests": 1234567, "by_class": {"1xx": 1, "2xx": 1200000, "3xx": 20000, "4xx": 14000, "5xx": 566},
                   "by_ended": {"complete": 1234000, "client-gone": 567}, "request_bytes": 10, "response_bytes": 20},
        "backlog": {"depth": 2, "limit": 128},
        "workers": [
            {"index": w + 1, "pid": 4000 + w, "age_s": 300, "requests": 600000, "rss_bytes": 50 << 20,
             "threads": [
                 {"busy": True, "method": "GET<b>", "path": HOSTILE, "running_ms": 1234.5,
                  "request_id": "<script>window.pwned=2</script>"},
                 {"busy": False},
                 {"busy": True, "method": "POST", "path": "/upload", "running_ms": 15000, "request_id": "r2"},
                 {"busy": False},
             ]}
            for w in range(workers)
        ],
        "history": {"interval_ms": 5000, "intervals": 120, "points": history},
    }


class Stub:
    """Serves the page's file at `/` and `self.status` (or `self.fail`'s
    HTTP status) at `/status.json`."""

    def __init__(self):
        stub = self
        self.status: dict = {}
        self.fail: int | None = None

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path == "/":
                    body, kind, code = PAGE.read_bytes(), "text/html; charset=utf-8", 200
                elif self.path == "/status.json" and stub.fail is None:
                    body, kind, code = json.dumps(stub.status).encode(), "application/json", 200
                else:
                    body, kind, code = b"no", "text/plain", stub.fail or 404
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub():
    s = Stub()
    yield s
    s.close()


def test_the_pages_policy_lets_its_own_script_run_and_nothing_else():
    """The page's Content-Security-Policy names its one script by hash, so
    that markup which slipped in (an inline handler, a script element) or a
    request elsewhere could not run; the hash must follow every edit of
    the script."""
    html = PAGE.read_text()
    script = html[html.index("<script>") + len("<script>"):html.index("</script>")]
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', html).group(1)
    assert f"script-src 'sha256-{digest}'" in policy, f"the page's script changed: its hash is now sha256-{digest}"
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    assert html.count("<script") == 1


def updates(tab) -> int:
    return tab.evaluate("Number(document.body.dataset.updates || 0)")


def test_the_page_draws_a_stub_status_and_takes_client_values_as_text(browser, stub):
    stub.status = stub_status(int(time.time() * 1000))
    tab = browser.open(stub.url)
    tab.wait_for("Number(document.body.dataset.updates || 0) >= 1")

    assert tab.evaluate("document.querySelectorAll('main img, main script, main b b').length") == 0
    assert tab.evaluate("window.pwned === undefined")
    cells = tab.evaluate("[...document.querySelectorAll('table.busy td')].map((td) => td.textContent)")
    assert HOSTILE in cells and "GET<b>" in cells and "<script>window.pwned=2</script>" in cells, cells
    titles = tab.evaluate("[...document.querySelectorAll('.threads li')].map((li) => li.title)")
    assert f"thread 1: GET<b> {HOSTILE} for 1.23\u00a0s" in titles, titles
    assert tab.evaluate("document.querySelectorAll('.threads li.busy').length") == 4
    assert tab.evaluate("document.querySelectorAll('.threads li.slow').length") == 2  # 15 s ≥ SLOW_MS

    shown = tab.evaluate(SHOWN)
    assert shown["requests"] == 1234567
    assert shown["classes"] == stub.status["totals"]["by_class"]
    assert tab.evaluate("document.getElementById('state').textContent") == "live"
    for canvas in tab.evaluate(CANVASES):
        assert canvas["points"] > 0 and canvas["colored"] > 200, canvas


def test_a_failing_status_shows_stale_and_the_page_comes_back(browser, stub):
    stub.status = stub_status(int(time.time() * 1000))
    tab = browser.open(stub.url)
    tab.wait_for("Number(document.body.dataset.updates || 0) >= 1")
    assert not tab.evaluate("document.body.classList.contains('stale')")
    assert tab.evaluate("document.getElementById('stale-banner').hidden")

    stub.fail = 503
    tab.wait_for("document.body.classList.contains('stale')", timeout=10)
    assert tab.evaluate("document.getElementById('state').textContent") == "stale"
    text = tab.evaluate("document.getElementById('stale-banner').textContent")
    assert "503" in text and "last update was" in text, text
    assert not tab.evaluate("document.getElementById('stale-banner').hidden")

    stub.fail = None
    tab.wait_for("!document.body.classList.contains('stale')", timeout=10)
    assert tab.evaluate("document.getElementById('state').textContent") == "live"
    assert tab.evaluate("document.getElementById('stale-banner').hidden")


def test_an_empty_history_and_no_worker_draw_nothing_and_break_nothing(browser, stub):
    status = stub_status(int(time.time() * 1000), points=0, workers=0)
    status["backlog"] = {"depth": None, "limit": None}
    stub.status = status
    tab = browser.open(stub.url)
    tab.wait_for("Number(document.body.dataset.updates || 0) >= 1")
    assert tab.evaluate("document.getElementById('state').textContent") == "live"
    assert tab.evaluate("document.getElementById('workers').textContent") == "No worker is running."
    assert tab.evaluate("document.getElementById('backlog').textContent") == "—"
    for canvas in tab.evaluate(CANVASES):
        assert canvas == {"id": canvas["id"], "points": 0, "colored": 0}


# ---------------------------------------------------------------------------
# the real gateway


def scrape(port: int) -> dict:
    """Total requests and requests per class, from /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    by_class = dict.fromkeys(CLASSES, 0)
    for line in text.splitlines():
        m = re.match(r'rustgi_requests_total\{(.*)\} (\S+)$', line)
        if m:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
            by_class[labels["class"]] += int(float(m.group(2)))
    return {"requests": sum(by_class.values()), "classes": by_class}


class Load:
    """Threads sending SCGI requests with a mix of statuses until stopped,
    and two slow requests at a hostile path (busy threads to show)."""

    def __init__(self, socket: str):
        self.socket = socket
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.sent = 0
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True) for i in range(3)]
        self.threads += [threading.Thread(target=self.slow, daemon=True) for _ in range(2)]

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(30)

    def run(self, index: int):
        statuses = [200, 200, 200, 200, 200, 204, 302, 404, 404, 503]
        i = index
        while not self.stop.is_set():
            status = statuses[i % len(statuses)]
            i += 1
            try:
                r = scgi_request(self.socket, path="/load", query=f"status={status}&bytes={100 + i % 900}")
                if r.status != status:
                    self.errors.append(f"asked {status}, got {r.status}")
                self.sent += 1
            except OSError as e:
                self.errors.append(repr(e))
            time.sleep(0.002)

    def slow(self):
        while not self.stop.is_set():
            try:
                scgi_request(self.socket, path=HOSTILE, query="sleep=1.5", timeout=30)
            except OSError as e:
                self.errors.append(repr(e))


def test_the_page_under_load_draws_its_charts_and_matches_the_metrics(browser, gateways):
    port = free_port()
    gw = gateways.start("status-page", [
        "--app", str(APPS / "status_page_app.py"), "--processes", "2", "--threads", "4",
        "--metrics", f"127.0.0.1:{port}",
    ])
    assert wait_until(lambda: len(gw.workers()) == 2, 15), gw.describe()
    with Load(gw.socket) as load:
        tab = browser.open(f"http://127.0.0.1:{port}/", width=1280, height=1000)
        try:
            # The master pushes its totals every 5 s: two pushes make a point.
            tab.wait_for("Number(document.getElementById('chart-rate').dataset.points || 0) >= 2", timeout=40)
            tab.wait_for("document.querySelectorAll('table.busy td code').length > 0", timeout=20)
        except CdpError:
            raise AssertionError(gw.describe())

        # Two 5 s points are a few pixels wide in a 10 minute chart: a few
        # dozen coloured pixels (none at all without data: see the test of
        # an empty history).
        for canvas in tab.evaluate(CANVASES):
            assert canvas["points"] > 0 and canvas["colored"] > 20, canvas
        assert tab.evaluate("document.getElementById('state').textContent") == "live"
        assert tab.evaluate("document.querySelectorAll('.worker').length") == 2
        assert tab.evaluate("document.querySelectorAll('main img').length") == 0
        paths = tab.evaluate("[...document.querySelectorAll('table.busy td:nth-child(3)')].map((td) => td.textContent)")
        assert any(p.startswith("/<img") for p in paths), paths

        # The totals shown come from a status.json fetched after `before`
        # (two updates later: the one running when `before` was read may
        # have started earlier) and before `after`.
        before = scrape(port)
        seen = updates(tab)
        shown = tab.wait_for(f"(() => {{ const s = {SHOWN}; return s.updates >= {seen + 2} && s; }})()", timeout=20)
        after = scrape(port)
        assert before["requests"] < after["requests"], "no load between the scrapes"
        assert before["requests"] <= shown["requests"] <= after["requests"], (before, shown, after)
        for c in CLASSES:
            assert before["classes"][c] <= shown["classes"][c] <= after["classes"][c], (c, before, shown, after)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        tab.screenshot(ARTIFACTS / "status-page.png")

    assert not load.errors, load.errors[:5]
    assert load.sent > 100
    # Once the load has stopped the totals settle, and the page shows them exactly.
    def settled():
        first = scrape(port)
        time.sleep(0.5)
        return first == scrape(port) and first

    quiet = wait_until(settled, 20)
    assert quiet, "the totals kept moving after the load stopped"
    seen = updates(tab)
    shown = tab.wait_for(f"(() => {{ const s = {SHOWN}; return s.updates >= {seen + 2} && s; }})()", timeout=20)
    assert {"requests": shown["requests"], "classes": shown["classes"]} == quiet
    assert quiet["classes"]["3xx"] > 0 and quiet["classes"]["4xx"] > 0 and quiet["classes"]["5xx"] > 0

    # A master that went away leaves the page stale, not silently frozen.
    gw.terminate()
    tab.wait_for("document.body.classList.contains('stale')", timeout=15)
    assert tab.evaluate("document.getElementById('state').textContent") == "stale"
