#!/usr/bin/env python3
"""Rolling restarts of two rustgi hosts behind nginx, under load, with
nginx's `max_fails` as the example has it (0) or as nginx has it by
default (1, with `fail_timeout` 10 s): the figures of README, "More than
one host" (issue 15, item 6).

The hosts are network namespaces on a bridge (tests/hosts.py), nginx runs
examples/nginx-two-hosts.conf (only its addresses, port and, with
--max-fails, its max_fails changed), and client threads send GETs and
POSTs through it the whole time, every outcome counted. Each round
restarts host a (SIGTERM, which drains; then a new start), waits --gap
seconds, restarts host b, waits --gap seconds. Needs root; run it from the
checkout with the test venv's Python, after `cargo build`:

    .venv-test/bin/python bench/two_hosts.py                     # max_fails=0, as the example
    .venv-test/bin/python bench/two_hosts.py --max-fails default # nginx's 1 and 10 s
    .venv-test/bin/python bench/two_hosts.py --rounds 5 --gap 3 --binary target/release/rustgi-gateway

Prints one JSON line: requests, failures by method and kind, latency.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from harness import gateway_binary  # noqa: E402
from hosts import FrontNginx, HostGateways, Lan, Load  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-fails", default="0",
                        help="nginx's max_fails on each server: a number, or `default` (no max_fails: 1)")
    parser.add_argument("--gap", type=float, default=9.0, help="seconds between the two hosts' restarts")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--ms", type=int, default=5, help="each request's time in the app")
    parser.add_argument("--binary", type=Path, default=gateway_binary())
    args = parser.parse_args()
    max_fails = None if args.max_fails == "default" else args.max_fails
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"

    work = Path(tempfile.mkdtemp(prefix="rustgi-two-hosts-"))
    work.chmod(0o755)
    lan = Lan(2)
    front = None
    hosts = HostGateways(lan, args.binary.resolve(), work / "logs", work)
    try:
        for host in lan.hosts:
            hosts.start(host.name)
        (work / "nginx").mkdir()
        front = FrontNginx(nginx, work / "nginx", work / "logs" / "nginx", lan, max_fails).start()
        with Load(front.port, clients=args.clients, ms=args.ms) as load:
            time.sleep(2)
            began = time.monotonic()
            for _ in range(args.rounds):
                for name, gw in hosts.gateways.items():
                    gw.send_signal(signal.SIGTERM)
                    code = gw.wait_exit(timeout=60)
                    if code != 0:
                        raise SystemExit(f"host {name} exited {code} on SIGTERM:\n{gw.log.tail()}")
                    hosts.start(name)
                    time.sleep(args.gap)
            took = time.monotonic() - began
        tally = load.tally
        kinds: dict[str, int] = {}
        for o in tally.failed():
            key = f"{o.method} {o.status if o.status is not None else o.error}"
            kinds[key] = kinds.get(key, 0) + 1
        latencies = sorted(o.end - o.start for o in tally.outcomes)
        print(json.dumps({
            "max_fails": args.max_fails,
            "gap_s": args.gap,
            "rounds": args.rounds,
            "restarts_s": round(took, 1),
            "requests": len(tally.outcomes),
            "failed": len(tally.failed()),
            "get": tally.count("GET"),
            "get_failed": len(tally.failed("GET")),
            "post": tally.count("POST"),
            "post_failed": len(tally.failed("POST")),
            "failures": kinds,
            "latency_ms": {
                "p50": round(latencies[len(latencies) // 2] * 1000, 1),
                "p99": round(latencies[int(len(latencies) * 0.99)] * 1000, 1),
                "max": round(latencies[-1] * 1000, 1),
            },
            "logs": str(work / "logs"),
        }))
        return 0 if not tally.failed() else 1
    finally:
        if front is not None:
            front.stop()
        hosts.stop_all()
        lan.close()


if __name__ == "__main__":
    sys.exit(main())
