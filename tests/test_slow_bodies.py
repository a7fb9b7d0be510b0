"""Slow request bodies and requests whose client has already gone (issue
13, items 4 and 6), with raw SCGI and FastCGI clients on Unix sockets.

- A body up to --buffer-body is read whole before a Python thread is taken:
  uploads trickling at a byte a second hold connections, not threads.
- A larger body streams while the application runs, under
  --body-min-rate: a slower client is cut, the application's read raises
  OSError, and the log says why.
- A request whose client closed its connection before the application
  started is not run (SCGI), nor one the front server aborted
  (FastCGI ABORT_REQUEST): END_REQUEST still comes back.

Each test runs against a gateway of its own in each lane (RUSTGI_LANE:
auto, io, python). The app (tests/apps/slow_bodies.py) writes a line for
each call to a file, so that a test can tell which requests ran.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from fcgi_client import (
    PARAMS,
    REQUEST_COMPLETE,
    STDIN,
    FcgiConnection,
    abort_request,
    begin_request,
    encode_pairs,
    encode_record,
    responder_params,
)
from harness import (
    parse_cgi_response,
    scgi_exchange,
    scgi_head,
    scgi_params,
    scgi_request,
    wait_until,
)
from raw_client import connect, read_until_eof

APP = "tests/apps/slow_bodies.py"
LANES = ("auto", "io", "python")


def start(gateways, name, lane, args, proto="scgi"):
    env = None if lane == "auto" else {"RUSTGI_LANE": lane}
    return gateways.start(f"{name}-{lane}", ["--app", APP, *args], env=env, proto=proto)


def calls_of(path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


class Trickle:
    """An SCGI upload that sends its head, then one body byte every
    `every` seconds until stopped."""

    def __init__(self, address, query, body_len=1000, every=1.0):
        self.sock = connect(address, timeout=30)
        self.sock.sendall(scgi_head(scgi_params("POST", "/upload", body_len=body_len, query=query)))
        self.every = every
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.wait(self.every):
            try:
                self.sock.sendall(b"x")
            except OSError:
                return

    def close(self):
        self.stop.set()
        self.thread.join()
        self.sock.close()


@pytest.mark.parametrize("lane", LANES)
def test_trickling_uploads_leave_the_threads_to_other_requests(gateways, tmp_path, lane):
    # Four uploads at a byte a second, with four threads: each body (1000
    # bytes, under --buffer-body) is read before a thread is taken, so ten
    # normal requests meanwhile are all answered.
    gw = start(gateways, "trickle", lane, ["--threads", "4"])
    calls = tmp_path / "calls"
    uploads = [Trickle(gw.socket, f"calls={calls}") for _ in range(4)]
    try:
        time.sleep(1.5)  # every upload accepted, each a few bytes in
        answered = []
        for i in range(10):
            try:
                r = scgi_request(gw.socket, "GET", "/hello", timeout=5)
                answered.append((r.status, r.body) == (200, b"hello"))
            except AssertionError:  # not answered within 5 s
                answered.append(False)
        assert answered.count(True) == 10, f"{answered.count(True)} of 10 answered\n" + gw.describe()
        assert "/upload" not in calls_of(calls), "an upload's app ran before its body was in"
    finally:
        for upload in uploads:
            upload.close()
    assert gw.alive()


@pytest.mark.parametrize("lane", LANES)
def test_a_large_body_below_the_min_rate_is_cut(gateways, tmp_path, lane):
    # 2000 bytes at once (over --buffer-body 1024: the app starts), then 10
    # bytes every 0.2 s: 50 bytes/s, under --body-min-rate 1000,1. After a
    # second of grace and a window of a second the body is cut; the app's
    # read raises OSError, and the log names the peer, the bytes received,
    # the rate and the limit.
    gw = start(gateways, "min-rate", lane,
               ["--threads", "2", "--buffer-body", "1024", "--body-min-rate", "1000,1"])
    record = tmp_path / "record"
    mark = gw.log.mark()
    head = scgi_head(scgi_params("POST", "/upload", body_len=100_000, query=f"record={record}"))
    with connect(gw.socket, timeout=30) as sock:
        sock.sendall(head + b"a" * 2000)
        sent = 2000
        deadline = time.monotonic() + 15
        while not record.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
            try:
                sock.sendall(b"b" * 10)
                sent += 10
            except OSError:
                break
        assert wait_until(record.exists, timeout=2), (
            f"the app's read did not fail after {sent} of 100000 bytes\n" + gw.describe(mark)
        )
        response = parse_cgi_response(read_until_eof(sock, timeout=10))
    seen = record.read_text()
    assert seen.startswith("OSError: request body too slow"), seen
    assert response.body.decode().startswith("OSError: request body too slow"), response
    lines = gw.log.wait_for(r"\bWARN\b", r"peer=", r"too slow", r"\d+ bytes/s",
                            r"--body-min-rate 1000 bytes/s", r"after \d+ of 100000 bytes", since=mark)
    assert lines, gw.describe(mark)
    assert scgi_request(gw.socket, "GET", "/hello").body == b"hello"


@pytest.mark.parametrize("lane", LANES)
def test_a_body_within_the_min_rate_is_read_whole(gateways, tmp_path, lane):
    # 2000 bytes, then 500 bytes every 0.2 s (2500 bytes/s, over 1000,1):
    # never cut.
    gw = start(gateways, "min-rate-ok", lane,
               ["--threads", "2", "--buffer-body", "1024", "--body-min-rate", "1000,1"])
    total = 2000 + 500 * 15
    head = scgi_head(scgi_params("POST", "/upload", body_len=total))
    pieces = [head + b"a" * 2000] + [b"b" * 500] * 15
    response = parse_cgi_response(scgi_exchange(gw.socket, pieces, pause=0.2, timeout=20))
    assert (response.status, response.body) == (200, f"read {total}".encode()), gw.describe()


@pytest.mark.parametrize("lane", LANES)
def test_abandoned_scgi_requests_are_not_run(gateways, tmp_path, lane):
    # With the only thread busy, 20 clients send a whole request and close
    # their connection; 5 more send part of the body first (so that their
    # connection is accepted while the thread is free, and waits in the I/O
    # lane), then the rest once it is busy, and close once their request
    # is queued for the thread. None of the 25 runs
    # the app. (5: with --threads 1, the I/O lane takes 10 connections
    # before the intake stops accepting.)
    gw = start(gateways, "abandoned", lane, ["--threads", "1"])
    calls = tmp_path / "calls"
    mark = gw.log.mark()
    partial = []
    for i in range(5):
        sock = connect(gw.socket)
        head = scgi_head(scgi_params("POST", "/abandoned-partly", body_len=10, query=f"calls={calls}"))
        sock.sendall(head + b"12345")
        partial.append(sock)
    time.sleep(0.5)
    sleeper = threading.Thread(
        target=scgi_request, args=(gw.socket, "GET", "/sleep"), kwargs={"query": f"secs=3&calls={calls}", "timeout": 20}
    )
    sleeper.start()
    assert wait_until(lambda: "/sleep" in calls_of(calls), timeout=5), gw.describe(mark)
    for i in range(20):
        with connect(gw.socket) as sock:
            head = scgi_head(scgi_params("GET", "/abandoned", query=f"calls={calls}"))
            sock.sendall(head)
    for sock in partial:
        sock.sendall(b"67890")
    time.sleep(0.5)  # whole now: queued for the busy thread
    for sock in partial:
        sock.close()
    sleeper.join()
    assert scgi_request(gw.socket, "GET", "/after", query=f"calls={calls}").body == b"hello", gw.describe(mark)
    ran = calls_of(calls)
    assert ran.count("/abandoned") == 0 and ran.count("/abandoned-partly") == 0, (
        f"{ran.count('/abandoned')} of 20 abandoned and {ran.count('/abandoned-partly')} of 5 "
        "partly sent requests ran\n" + gw.describe(mark)
    )
    assert ran == ["/sleep", "/after"], ran
    assert len(gw.log.lines_matching(r"not run", since=mark)) == 25, gw.describe(mark)


@pytest.mark.parametrize("lane", LANES)
def test_a_fastcgi_request_aborted_before_the_app_starts_is_not_run(gateways, tmp_path, lane):
    # The only thread is busy; a request whose PARAMS began before that
    # (its connection is in the I/O lane) is completed and aborted at once:
    # END_REQUEST comes back without waiting for the busy thread, and the
    # app never runs it.
    gw = start(gateways, "fcgi-abort", lane, ["--threads", "1"], proto="fastcgi")
    calls = tmp_path / "calls"
    mark = gw.log.mark()
    params = encode_pairs(responder_params("GET", "/aborted", query=f"calls={calls}"))
    with FcgiConnection(gw.socket) as aborted, FcgiConnection(gw.socket) as busy:
        aborted.send(begin_request(1) + encode_record(PARAMS, 1, params))
        time.sleep(0.5)
        busy.request(1, responder_params("GET", "/sleep", query=f"secs=3&calls={calls}"))
        assert wait_until(lambda: "/sleep" in calls_of(calls), timeout=5), gw.describe(mark)
        aborted.send(encode_record(PARAMS, 1) + encode_record(STDIN, 1) + abort_request(1))
        end = aborted.read_end(1, timeout=10)
        assert end.protocol_status == REQUEST_COMPLETE, end
        # The busy request (3 s) has not answered yet: END_REQUEST did
        # not wait for its thread.
        busy.sock.setblocking(False)
        try:
            assert busy.sock.recv(1, socket.MSG_PEEK) == b"", "END_REQUEST waited for the busy thread"
        except BlockingIOError:
            pass
        busy.sock.setblocking(True)
        busy.sock.settimeout(10)
        assert busy.read_end(1, timeout=10).response().body == b"slept"
        # The connection goes on: the next request on it runs.
        del aborted.replies[1]
        aborted.request(1, responder_params("GET", "/after", query=f"calls={calls}"))
        assert aborted.read_end(1, timeout=10).response().body == b"hello"
    assert calls_of(calls) == ["/sleep", "/after"], gw.describe(mark)
    assert gw.log.lines_matching(r"not run", since=mark), gw.describe(mark)


class FcgiTrickle:
    """A FastCGI upload that sends BEGIN_REQUEST and PARAMS, then one STDIN
    record of `size` bytes every `every` seconds until stopped."""

    def __init__(self, address, query, body_len=1000, first=b"", size=1, every=1.0):
        self.conn = FcgiConnection(address, timeout=30)
        params = encode_pairs(responder_params("POST", "/upload", query=query, body_len=body_len))
        self.conn.send(begin_request(1) + encode_record(PARAMS, 1, params) + encode_record(PARAMS, 1)
                       + (encode_record(STDIN, 1, first) if first else b""))
        self.size, self.every = size, every
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.wait(self.every):
            if not self.conn.send_tolerant(encode_record(STDIN, 1, b"x" * self.size)):
                return

    def close(self):
        self.stop.set()
        self.thread.join()
        self.conn.close()


@pytest.mark.parametrize("lane", LANES)
def test_trickling_fastcgi_uploads_leave_the_threads_to_other_requests(gateways, tmp_path, lane):
    # As over SCGI: two FastCGI uploads at a byte a second with two
    # threads, and ten normal requests meanwhile are all answered.
    gw = start(gateways, "fcgi-trickle", lane, ["--threads", "2"], proto="fastcgi")
    calls = tmp_path / "calls"
    uploads = [FcgiTrickle(gw.socket, f"calls={calls}") for _ in range(2)]
    try:
        time.sleep(1.5)
        answered = 0
        for i in range(10):
            with FcgiConnection(gw.socket, timeout=5) as conn:
                conn.request(1, responder_params("GET", "/hello"))
                try:
                    answered += conn.read_end(1, timeout=5).response().body == b"hello"
                except (AssertionError, OSError):
                    pass
        assert answered == 10, f"{answered} of 10 answered\n" + gw.describe()
        assert "/upload" not in calls_of(calls), "an upload's app ran before its body was in"
    finally:
        for upload in uploads:
            upload.close()


@pytest.mark.parametrize("lane", LANES)
def test_a_large_fastcgi_body_below_the_min_rate_is_cut(gateways, tmp_path, lane):
    # 2000 bytes (over --buffer-body 1024: the app starts), then 10 bytes
    # every 0.2 s, under --body-min-rate 1000,1: the app's read raises
    # OSError, the connection is closed, and the log says why.
    gw = start(gateways, "fcgi-min-rate", lane,
               ["--threads", "2", "--buffer-body", "1024", "--body-min-rate", "1000,1"], proto="fastcgi")
    record = tmp_path / "record"
    mark = gw.log.mark()
    upload = FcgiTrickle(gw.socket, f"record={record}", body_len=100_000, first=b"a" * 2000,
                         size=10, every=0.2)
    try:
        assert wait_until(record.exists, timeout=15), "the app's read did not fail\n" + gw.describe(mark)
        assert upload.conn.closed_by_peer(timeout=10), "the connection stayed open"
    finally:
        upload.close()
    assert record.read_text().startswith("OSError: request body too slow"), record.read_text()
    lines = gw.log.wait_for(r"\bWARN\b", r"peer=", r"too slow", r"\d+ bytes/s",
                            r"--body-min-rate 1000 bytes/s", since=mark)
    assert lines, gw.describe(mark)



@pytest.mark.parametrize("lane", ["auto", "io"])
@pytest.mark.parametrize("cut_by", ["body-timeout", "min-rate"])
def test_a_request_whose_small_body_was_cut_before_a_thread_took_it_is_not_run(gateways, lane, cut_by, tmp_path):
    # A body within --buffer-body that stops arriving (--body-timeout) or
    # trickles (5 bytes/s, under --body-min-rate 1000,1): the client is cut
    # and the request dropped before it goes to a Python thread, as over
    # FastCGI; a request after it runs. (A client that half-closes after
    # part of its body still gets the application's answer: test_scgi_raw's
    # short body.)
    args = ["--body-timeout", "1"] if cut_by == "body-timeout" else ["--body-min-rate", "1000,1"]
    gw = start(gateways, f"cut-body-{cut_by}", lane, args)
    calls = tmp_path / "calls"
    mark = gw.log.mark()
    with connect(gw.socket, timeout=20) as sock:
        head = scgi_head(scgi_params("POST", "/cut-body", body_len=100, query=f"calls={calls}"))
        sock.sendall(head + b"abc")
        if cut_by == "min-rate":
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                time.sleep(0.2)
                try:
                    sock.sendall(b"b")
                except OSError:
                    break
        assert read_until_eof(sock) == b"", gw.describe(mark)
    assert gw.log.wait_for(r"not run: its request body was cut", since=mark), gw.describe(mark)
    assert scgi_request(gw.socket, "GET", "/after", query=f"calls={calls}").body == b"hello", gw.describe(mark)
    assert calls_of(calls) == ["/after"], gw.describe(mark)
