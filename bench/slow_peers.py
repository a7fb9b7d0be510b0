#!/usr/bin/env python3
"""The latency of a normal request while peers hold connections open without
sending a request (issue 13, items 1 and 2; docs/reliability.md).

Starts a rustgi-gateway on a Unix socket, opens the idle connections, then
sends requests one at a time on new connections and prints the median and
the maximum of their latency (connect to the end of the response).

    bench/slow_peers.py                            # 1,000 one-byte SCGI connections
    bench/slow_peers.py --proto uwsgi
    bench/slow_peers.py --proto auto --idle 1100
    bench/slow_peers.py --proto fastcgi --idle 1030   # idle kept FastCGI connections
    bench/slow_peers.py --binary target/debug/rustgi-gateway --requests 200

With --proto fastcgi the idle connections are kept ones (FCGI_KEEP_CONN,
one request each, then left idle); otherwise each sends the first byte of
a request head and nothing more. Raw sockets, no dependency.
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
APP = REPO / "bench" / "hello_app.py"


def scgi_request() -> bytes:
    fields = [(b"CONTENT_LENGTH", b"0"), (b"SCGI", b"1"), (b"REQUEST_METHOD", b"GET"),
              (b"REQUEST_URI", b"/"), (b"PATH_INFO", b"/"), (b"QUERY_STRING", b""),
              (b"SERVER_NAME", b"localhost"), (b"SERVER_PORT", b"80"),
              (b"SERVER_PROTOCOL", b"HTTP/1.1")]
    head = b"".join(k + b"\0" + v + b"\0" for k, v in fields)
    return str(len(head)).encode() + b":" + head + b","


def uwsgi_request() -> bytes:
    fields = [(b"REQUEST_METHOD", b"GET"), (b"REQUEST_URI", b"/"), (b"PATH_INFO", b"/"),
              (b"QUERY_STRING", b""), (b"SERVER_NAME", b"localhost"), (b"SERVER_PORT", b"80"),
              (b"SERVER_PROTOCOL", b"HTTP/1.1"), (b"CONTENT_LENGTH", b"0")]
    block = b"".join(struct.pack("<H", len(k)) + k + struct.pack("<H", len(v)) + v for k, v in fields)
    return struct.pack("<BHB", 0, len(block), 0) + block


def fcgi_record(rtype: int, request_id: int, content: bytes) -> bytes:
    return struct.pack(">BBHHBx", 1, rtype, request_id, len(content), 0) + content


def fcgi_request(keep: bool) -> bytes:
    def pair(k: bytes, v: bytes) -> bytes:
        return bytes([len(k), len(v)]) + k + v
    params = b"".join(pair(k, v) for k, v in [
        (b"REQUEST_METHOD", b"GET"), (b"REQUEST_URI", b"/"), (b"SCRIPT_NAME", b"/"),
        (b"QUERY_STRING", b""), (b"SERVER_NAME", b"localhost"), (b"SERVER_PORT", b"80"),
        (b"SERVER_PROTOCOL", b"HTTP/1.1"), (b"CONTENT_LENGTH", b"")])
    begin = struct.pack(">HB5x", 1, 1 if keep else 0)
    return (fcgi_record(1, 1, begin) + fcgi_record(4, 1, params) + fcgi_record(4, 1, b"")
            + fcgi_record(5, 1, b""))


END_REQUEST = 3


def read_fcgi_end(sock: socket.socket) -> None:
    """Reads records until END_REQUEST."""
    buf = b""
    while True:
        while len(buf) >= 8:
            _, rtype, _, length, padding = struct.unpack(">BBHHBx", buf[:8])
            if len(buf) < 8 + length + padding:
                break
            buf = buf[8 + length + padding:]
            if rtype == END_REQUEST:
                return
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("the gateway closed the connection before END_REQUEST")
        buf += chunk


def read_to_eof(sock: socket.socket) -> bytes:
    got = b""
    while chunk := sock.recv(65536):
        got += chunk
    return got


def connect(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(30)
    sock.connect(path)
    return sock


def listening(path: str) -> bool:
    try:
        connect(path).close()
        return True
    except OSError:
        return False


def still_open(sock: socket.socket) -> bool:
    """Whether the gateway has not closed `sock` (nothing to read, no EOF)."""
    sock.setblocking(False)
    try:
        return sock.recv(1) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", default=str(REPO / "target/release/rustgi-gateway"))
    parser.add_argument("--proto", choices=["scgi", "uwsgi", "auto", "fastcgi"], default="scgi")
    parser.add_argument("--idle", type=int, default=1000, help="connections held open (default 1000)")
    parser.add_argument("--requests", type=int, default=50, help="requests measured (default 50)")
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < args.idle + 64:
        sys.exit(f"RLIMIT_NOFILE hard limit {hard} is too low for {args.idle} connections")

    run = Path(tempfile.mkdtemp(prefix="rustgi-slow-peers-"))
    sock_path = str(run / "gw.sock")
    log = open(run / "gateway.log", "wb")
    gateway = subprocess.Popen(
        [args.binary, "--proto", args.proto, "--socket", sock_path, "--app", str(APP),
         "--threads", str(args.threads)],
        stdout=log, stderr=log, env={**os.environ, "RUST_LOG": "error"})
    try:
        deadline = time.monotonic() + 30
        while not listening(sock_path):
            if gateway.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"the gateway did not start; see {run / 'gateway.log'}")
            time.sleep(0.05)

        request = {"scgi": scgi_request, "auto": scgi_request, "uwsgi": uwsgi_request,
                   "fastcgi": lambda: fcgi_request(keep=False)}[args.proto]()
        held = []
        for _ in range(args.idle):
            sock = connect(sock_path)
            if args.proto == "fastcgi":
                sock.sendall(fcgi_request(keep=True))
                read_fcgi_end(sock)
            else:
                sock.sendall(request[:1])
            held.append(sock)
        time.sleep(0.5)

        latencies, failed = [], 0
        for _ in range(args.requests):
            began = time.perf_counter()
            try:
                with connect(sock_path) as sock:
                    sock.sendall(request)
                    if args.proto == "fastcgi":
                        read_fcgi_end(sock)
                    else:
                        response = read_to_eof(sock)
                        if b"200" not in response.split(b"\r\n", 1)[0]:
                            sys.exit(f"unexpected response: {response[:200]!r}")
            except OSError as e:
                print(f"  request failed after {time.perf_counter() - began:.1f} s: {e!r}")
                failed += 1
                if failed == 3:
                    break
                continue
            latencies.append(time.perf_counter() - began)
        what = "idle kept FastCGI" if args.proto == "fastcgi" else f"one-byte {args.proto}"
        print(f"{args.idle} {what} connections held ({sum(map(still_open, held))} still open after); "
              f"{len(latencies)} of {len(latencies) + failed} requests answered, "
              f"one at a time on new connections:")
        if latencies:
            print(f"  median {statistics.median(latencies) * 1000:.2f} ms, "
                  f"max {max(latencies) * 1000:.2f} ms")
        for sock in held:
            sock.close()
    finally:
        gateway.terminate()
        gateway.wait(15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
