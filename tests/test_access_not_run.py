"""Requests that never reach a Python thread (issue 14: "a request that ends
in an abort or in a client that went away still gets its line"): each gets
exactly one access-log line with how it ended and no status, is counted in
`rustgi_requests_total` (class 5xx: no status), and the daemon's own lines
about it ("not run", a body cut) carry the request id operators see, a
trusted header's included.

- an SCGI or uwsgi client that closes after 10 of 100000 body bytes:
  `client-gone`;
- a FastCGI ABORT_REQUEST while the body still arrives: `aborted`;
- a small body (within --buffer-body) that stops coming (--body-timeout):
  cut before a thread takes it, `aborted`.

Each in the I/O lane and under RUSTGI_LANE=python (which hands such
requests to the I/O lane: the head decoded, the body not whole).
"""

from __future__ import annotations

import json
import re
import socket
import time

import pytest

import uwsgi_client
from fcgi_client import PARAMS, STDIN, FcgiConnection, abort_request, begin_request, encode_pairs, encode_record
from fcgi_client import responder_params
from harness import APPS, REPO, free_port, scgi_head, scgi_params, wait_until
from raw_client import connect, read_until_eof
from test_metrics import metrics, requests_of

APP = str((APPS / "conformance.py").relative_to(REPO))
LANES = ["io", "python"]


def start(gateways, run_dir, name, lane, *args, proto="auto", threads=2):
    log = run_dir / f"{name}-{lane}-access.log"
    if log.exists():
        log.unlink()
    port = free_port()
    gw = gateways.start(
        f"{name}-{lane}",
        ["--app", APP, "--threads", str(threads), "--processes", "1", "--metrics", f"127.0.0.1:{port}",
         "--access-log", str(log), "--access-log-format", "json", "--request-id-header", "X-Request-Id", *args],
        proto=proto, env={"RUSTGI_LANE": lane},
    )
    assert gw.log.wait_for(r"\b1 worker\(s\) ready", timeout=20), gw.describe()
    gw.metrics_port = port
    return gw, log


def lines_for(log, rid) -> list[dict]:
    if not log.exists():
        return []
    return [r for r in map(json.loads, log.read_bytes().splitlines()) if r["request_id"] == rid]


def assert_one_line_and_counted(gw, log, rid, front, ended, mark, others=()):
    assert wait_until(lambda: lines_for(log, rid), 10), f"no access line for {rid}\n" + gw.describe(mark)
    # A second line would come with the first: the writer batches them.
    [line] = lines_for(log, rid)
    assert (line["front"], line["ended"], line["status"], line["ttfb_us"]) == (front, ended, None, None), line
    assert wait_until(lambda: requests_of(metrics(gw), front, "5xx", ended) == 1, 10), metrics(gw)
    assert sorted(r["request_id"] for r in map(json.loads, log.read_bytes().splitlines())) == sorted([rid, *others])


def assert_id_on_not_run(gw, rid, method, path, mark):
    """The daemon's line about the dropped request names it by the id the
    access log has, as core's lines do: `request=#ID METHOD URI`."""
    shown = rf"request=#{re.escape(rid)} {method} {re.escape(path)}"
    assert gw.log.wait_for(r"not run", shown, since=mark), gw.describe(mark)


@pytest.mark.parametrize("lane", LANES)
@pytest.mark.parametrize("proto", ["scgi", "uwsgi"])
def test_a_client_gone_before_dispatch_gets_its_line(gateways, run_dir, proto, lane):
    gw, log = start(gateways, run_dir, f"notrun-gone-{proto}", lane)
    rid = f"gone-{proto}-{lane}"
    extra = [("HTTP_X_REQUEST_ID", rid)]
    if proto == "scgi":
        head = scgi_head(scgi_params("POST", "/upload", body_len=100_000, extra=extra))
    else:
        head = uwsgi_client.encode_request(uwsgi_client.uwsgi_params("POST", "/upload", body_len=100_000,
                                                                     extra=extra))
    mark = gw.log.mark()
    with connect(gw.socket) as sock:
        sock.sendall(head + b"0123456789")
    assert_one_line_and_counted(gw, log, rid, proto, "client-gone", mark)
    assert_id_on_not_run(gw, rid, "POST", "/upload", mark)


@pytest.mark.parametrize("lane", LANES)
def test_a_fastcgi_abort_before_the_app_starts_gets_its_line(gateways, run_dir, lane):
    gw, log = start(gateways, run_dir, "notrun-abort", lane)
    rid = f"abort-{lane}"
    params = responder_params("POST", "/upload", body_len=100_000, extra=[("HTTP_X_REQUEST_ID", rid)])
    mark = gw.log.mark()
    with FcgiConnection(gw.socket) as conn:
        conn.send(begin_request(1, keep_conn=False) + encode_record(PARAMS, 1, encode_pairs(params))
                  + encode_record(PARAMS, 1) + encode_record(STDIN, 1, b"0123456789"))
        conn.send(abort_request(1))
        conn.read_end(1, timeout=10)
    assert_one_line_and_counted(gw, log, rid, "fastcgi", "aborted", mark)
    assert_id_on_not_run(gw, rid, "POST", "/upload", mark)


@pytest.mark.parametrize("lane", LANES)
def test_a_small_body_cut_for_being_slow_gets_its_line(gateways, run_dir, lane):
    gw, log = start(gateways, run_dir, "notrun-slow", lane, "--body-timeout", "1", "--buffer-body", "1024",
                    proto="scgi")
    rid = f"slow-{lane}"
    mark = gw.log.mark()
    with connect(gw.socket, timeout=20) as sock:
        sock.sendall(scgi_head(scgi_params("POST", "/upload", body_len=100, extra=[("HTTP_X_REQUEST_ID", rid)]))
                     + b"abc")
        assert read_until_eof(sock, timeout=20) == b"", gw.describe(mark)
    assert_one_line_and_counted(gw, log, rid, "scgi", "aborted", mark)
    assert_id_on_not_run(gw, rid, "POST", "/upload", mark)
    # The line that says why carries it too.
    assert gw.log.wait_for(r"body", rf"request=#{rid} ", r"--body-timeout", since=mark), gw.describe(mark)


@pytest.mark.parametrize("lane", ["auto", "io", "python"])
def test_a_whole_request_whose_client_left_while_the_threads_were_busy_gets_its_line(gateways, run_dir, lane):
    # The only thread is busy; a whole GET comes and its client closes:
    # it is not run (in whichever lane notices), and still gets its line.
    gw, log = start(gateways, run_dir, "notrun-busy", lane, proto="scgi", threads=1)
    rid = f"busy-{lane}"
    mark = gw.log.mark()
    busy = connect(gw.socket, timeout=20)
    busy.sendall(scgi_head(scgi_params("GET", "/slow", query="seconds=2", extra=[("HTTP_X_REQUEST_ID", "busy")])))
    time.sleep(0.5)  # the thread has taken it
    with connect(gw.socket) as sock:
        sock.sendall(scgi_head(scgi_params("GET", "/left", extra=[("HTTP_X_REQUEST_ID", rid)])))
    assert read_until_eof(busy, timeout=20).startswith(b"Status: 200")
    busy.close()
    assert_one_line_and_counted(gw, log, rid, "scgi", "client-gone", mark, others=["busy"])
    assert_id_on_not_run(gw, rid, "GET", "/left", mark)
