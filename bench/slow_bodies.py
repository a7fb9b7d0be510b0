"""Slow request bodies and abandoned requests, measured (issue 13, items 4
and 6; the figures are in docs/reliability.md).

    python3 bench/slow_bodies.py [--binary PATH] [--threads 4] [--uploads 4]
                                 [--requests 10] [--abandoned 20]

Starts `rustgi-gateway --proto scgi --threads N` on a Unix socket in a
temp dir with tests/apps/slow_bodies.py, then:

1. opens --uploads SCGI uploads (CONTENT_LENGTH 1000) that send one body
   byte a second, waits 1.5 s, and sends --requests normal requests one
   after the other, each given 5 s: prints how many were answered, and the
   median time of those answered;
2. on a second gateway with --threads 1, starts a 3 s request, then sends
   --abandoned whole requests whose clients close at once: prints how many
   of them ran the app.

Standard library only; the gateway's log is left in the temp dir.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
APP = REPO / "tests" / "apps" / "slow_bodies.py"


def netstring(payload: bytes) -> bytes:
    return str(len(payload)).encode() + b":" + payload + b","


def scgi_head(method: str, path: str, query: str = "", body_len: int = 0) -> bytes:
    pairs = [
        ("CONTENT_LENGTH", str(body_len)), ("SCGI", "1"), ("REQUEST_METHOD", method),
        ("REQUEST_URI", path + ("?" + query if query else "")), ("QUERY_STRING", query),
        ("SERVER_PROTOCOL", "HTTP/1.1"), ("SERVER_NAME", "localhost"), ("SERVER_PORT", "80"),
        ("REMOTE_ADDR", "127.0.0.1"),
    ]
    return netstring(b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in pairs))


def connect(path: str, timeout: float) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(path)
    return sock


def request(path: str, uri: str, query: str = "", timeout: float = 5.0) -> bytes | None:
    """The response, or None if it did not come whole within `timeout`."""
    try:
        with connect(path, timeout) as sock:
            sock.sendall(scgi_head("GET", uri, query))
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
            return data
    except OSError:
        return None


class Gateway:
    def __init__(self, binary: str, workdir: Path, name: str, threads: int):
        self.socket = str(workdir / f"{name}.sock")
        self.log = workdir / f"{name}.log"
        self.proc = subprocess.Popen(
            [binary, "--proto", "scgi", "--socket", self.socket, "--threads", str(threads),
             "--app", str(APP)],
            stdout=subprocess.DEVNULL, stderr=self.log.open("w"), cwd=REPO,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                connect(self.socket, 1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit(f"the gateway did not listen; see {self.log}")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=40)


def trickle(path: str, stop: threading.Event):
    with connect(path, 60) as sock:
        sock.sendall(scgi_head("POST", "/upload", body_len=1000))
        while not stop.wait(1.0):
            try:
                sock.sendall(b"x")
            except OSError:
                return


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", default=str(REPO / "target" / "debug" / "rustgi-gateway"))
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--uploads", type=int, default=4)
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--abandoned", type=int, default=20)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="rustgi-slow-bodies-"))

    gw = Gateway(args.binary, workdir, "trickle", args.threads)
    stop = threading.Event()
    uploads = [threading.Thread(target=trickle, args=(gw.socket, stop)) for _ in range(args.uploads)]
    for t in uploads:
        t.start()
    time.sleep(1.5)
    times = []
    for _ in range(args.requests):
        began = time.monotonic()
        response = request(gw.socket, "/hello")
        if response and response.endswith(b"hello"):
            times.append(time.monotonic() - began)
    stop.set()
    for t in uploads:
        t.join()
    gw.stop()
    median = f", median {statistics.median(times) * 1000:.1f} ms" if times else ""
    print(f"{args.uploads} uploads at 1 byte/s, --threads {args.threads}: "
          f"{len(times)} of {args.requests} normal requests answered within 5 s{median}")

    gw = Gateway(args.binary, workdir, "abandoned", 1)
    calls = workdir / "calls"
    sleeper = threading.Thread(target=request, args=(gw.socket, "/sleep"),
                               kwargs={"query": f"secs=3&calls={calls}", "timeout": 30})
    sleeper.start()
    deadline = time.monotonic() + 10
    while not (calls.exists() and "/sleep" in calls.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    for _ in range(args.abandoned):
        with connect(gw.socket, 5) as sock:
            sock.sendall(scgi_head("GET", "/abandoned", f"calls={calls}"))
    sleeper.join()
    request(gw.socket, "/after", f"calls={calls}", timeout=30)
    gw.stop()
    ran = calls.read_text().splitlines().count("/abandoned")
    print(f"{args.abandoned} abandoned requests behind a busy --threads 1: {ran} ran the app")
    print(f"(logs in {workdir})")


if __name__ == "__main__":
    os.environ.pop("RUSTGI_LANE", None)
    main()
