#!/usr/bin/env python3
"""Clients that do not read their response (docs/reliability.md): starts a
gateway with --threads 4, opens N raw SCGI connections over a Unix socket
that each ask for 8 MiB (tests/apps/slow_readers.py) and never read, then
sends normal requests one at a time and reports how many were answered
within --answer-timeout, their median latency, and the worker's RSS.

    bench/slow_readers.py --binary target/release/rustgi-gateway [--shape generator]
"""

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from harness import child_pids, rss_kib, scgi_head, scgi_params  # noqa: E402
from raw_client import connect, read_until_eof  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", required=True)
    parser.add_argument("--shape", default="generator", choices=["bytes", "fresh", "list", "generator", "file"])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--answer-timeout", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--extra", default="", help="more gateway flags, space-separated")
    args = parser.parse_args()

    run = Path(tempfile.mkdtemp(prefix="rustgi-slow-readers-"))
    sock_path = str(run / "gw.sock")
    log = open(run / "gw.log", "w")
    command = [args.binary, "--proto", "scgi", "--socket", sock_path, "--app", str(REPO / "tests/apps/slow_readers.py"),
               "--threads", str(args.threads), *args.extra.split()]
    gateway = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(sock_path):
            if time.monotonic() > deadline or gateway.poll() is not None:
                sys.exit(f"the gateway did not start: see {run / 'gw.log'}")
            time.sleep(0.05)
        time.sleep(0.5)
        worker = child_pids(gateway.pid)[0]
        base_rss = rss_kib(worker)
        stuck = []
        request = scgi_head(scgi_params("GET", f"/{args.shape}"))
        for _ in range(args.clients):
            s = connect(sock_path, timeout=30)
            s.sendall(request)
            stuck.append(s)
        time.sleep(2)
        held_rss = rss_kib(worker)
        latencies, failed = [], 0
        hello = scgi_head(scgi_params("GET", "/hello"))
        for _ in range(args.requests):
            began = time.monotonic()
            try:
                with connect(sock_path, timeout=args.answer_timeout) as s:
                    s.sendall(hello)
                    got = read_until_eof(s, timeout=args.answer_timeout)
                if not got.endswith(b"hello"):
                    raise OSError(f"got {got[:80]!r}")
                latencies.append(time.monotonic() - began)
            except (OSError, AssertionError):
                failed += 1
        for s in stuck:
            s.close()
        median = f"{statistics.median(latencies) * 1000:.2f} ms" if latencies else "-"
        print(f"{Path(args.binary).name} {args.shape}: {args.clients} non-readers; "
              f"{len(latencies)}/{args.requests} normal requests answered within {args.answer_timeout:g} s "
              f"(median {median}); worker RSS {base_rss // 1024} MiB idle, {held_rss // 1024} MiB with them held")
    finally:
        gateway.send_signal(signal.SIGTERM)
        try:
            gateway.wait(timeout=40)
        except subprocess.TimeoutExpired:
            gateway.kill()


if __name__ == "__main__":
    main()
