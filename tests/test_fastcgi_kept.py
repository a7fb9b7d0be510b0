"""FastCGI connections the front server keeps (FCGI_KEEP_CONN) in the fast
lane: between requests a kept connection goes back to the Python threads,
which read, run and answer its next request themselves, as they do for a
new connection (docs/architecture.md, "Kept FastCGI connections").

Raw clients (tests/fcgi_client.py) on Unix sockets, and nginx with an
upstream keepalive. `RUSTGI_LANE=python` makes the gateway log each request
the Python lane answers, which is how these tests see the lane.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest
import requests

from fcgi_client import (
    REQUEST_COMPLETE,
    FcgiConnection,
    abort_request,
    begin_request,
    encode_pairs,
    encode_record,
    request_records,
    responder_params,
    stream_records,
    END_REQUEST,
    GET_VALUES_RESULT,
    PARAMS,
    STDIN,
)
from harness import APPS, REPO, unix_connections, wait_until
from plugins.fronts import module_gateway

APP = str((APPS / "fastcgi_app.py").relative_to(REPO))
PYTHON_LANE_LOG = "RUSTGI_LANE=python: answered in the Python lane: "

auto = module_gateway("fcgi-kept", ["--app", APP, "--threads", "4"], proto="fastcgi",
                      check_exit=False)


@pytest.fixture(scope="module")
def python_lane(gateways):
    """The same gateway with RUSTGI_LANE=python: each request the Python
    lane answers is logged with its URI."""
    gw = gateways.start(f"fcgi-kept-python-{os.getpid()}", ["--app", APP, "--threads", "4"],
                        proto="fastcgi", env={"RUSTGI_LANE": "python"})
    yield gw
    gw.terminate()


@pytest.fixture
def marker(run_dir, request) -> Path:
    d = run_dir / "fcgi-kept-markers"
    d.mkdir(mode=0o777, exist_ok=True)
    return d / f"{request.node.name.replace('/', '_')}-{time.monotonic_ns()}.txt"


def answered_in_python_lane(gw, uri, since) -> int:
    """How many times the log says the Python lane answered `uri`."""
    pattern = re.escape(PYTHON_LANE_LOG + uri) + r"(\s|$)"
    return len(gw.log.lines_matching(pattern, since=since))


def ask(conn, request_id, path, query="", body=b""):
    """A whole request in one write, as nginx sends it; its reply."""
    params = responder_params("POST" if body else "GET", path, query=query, body_len=len(body))
    conn.send(request_records(request_id, params, body, keep_conn=True))
    reply = conn.read_end(request_id)
    del conn.replies[request_id]
    return reply


def body_of(reply) -> bytes:
    return reply.response().body


@pytest.mark.parametrize("gateway", ["auto", "python_lane"])
def test_requests_on_a_kept_connection(gateway, request):
    gw = request.getfixturevalue(gateway)
    mark = gw.log.mark()
    with FcgiConnection(gw.socket) as conn:
        for i in range(20):
            body = os.urandom(i * 997)
            reply = ask(conn, 1 + i % 3, "/echo", query=f"n={i}", body=body)
            assert reply.protocol_status == REQUEST_COMPLETE, reply
            assert body_of(reply) == body, (i, gw.describe(mark))
        assert not conn.eof, "the gateway closed a kept connection"
    if gateway == "python_lane":
        # The Python threads answered every one on the kept connection.
        for i in range(20):
            assert wait_until(lambda: answered_in_python_lane(gw, f"/echo?n={i}", mark) == 1,
                              timeout=5), gw.describe(mark)
    assert gw.alive()


def test_multiplexed_requests_on_a_kept_connection_run_in_parallel(auto):
    with FcgiConnection(auto.socket) as conn:
        # First a request alone: the connection is then a kept one, idle
        # in the fast lane.
        assert body_of(ask(conn, 1, "/hello")) == b"hello"
        # Then two interleaved: the slow one must not hold back the fast.
        slow = request_records(1, responder_params("GET", "/tag", query="tag=slow&secs=1"))
        fast = request_records(2, responder_params("GET", "/tag", query="tag=fast"))
        started = time.monotonic()
        conn.send(slow + fast)
        conn.read_until(lambda: conn.reply(1).ended and conn.reply(2).ended, 10, "both ends")
        r1, r2 = conn.reply(1), conn.reply(2)
        assert (body_of(r1), body_of(r2)) == (b"tag:slow", b"tag:fast")
        assert r2.ended_at < r1.ended_at, "the fast request waited for the slow one"
        assert r1.ended_at - started >= 0.95
        del conn.replies[1], conn.replies[2]
        # And the connection goes on serving, one request at a time again.
        for i in range(3):
            assert body_of(ask(conn, 1, "/tag", query=f"tag=after{i}")) == b"tag:after%d" % i


@pytest.mark.parametrize("gateway", ["auto", "python_lane"])
def test_stdin_straddling_reads_on_a_kept_connection(gateway, request):
    gw = request.getfixturevalue(gateway)
    with FcgiConnection(gw.socket) as conn:
        assert body_of(ask(conn, 1, "/hello")) == b"hello"
        body = os.urandom(200_000)
        params = responder_params("POST", "/echo", body_len=len(body))
        head = begin_request(1) + stream_records(PARAMS, 1, encode_pairs(params))
        # The body comes in three writes, apart: the read that finds the
        # request cannot hold it all.
        conn.send(head + encode_record(STDIN, 1, body[:1000]))
        time.sleep(0.2)
        conn.send(stream_records(STDIN, 1, body[1000:150_000])[:-8])
        time.sleep(0.2)
        conn.send(stream_records(STDIN, 1, body[150_000:]))
        reply = conn.read_end(1)
        del conn.replies[1]
        assert reply.protocol_status == REQUEST_COMPLETE, reply
        assert body_of(reply) == body, gw.describe()
        # The connection is kept and serves whole requests again.
        for i in range(3):
            assert body_of(ask(conn, 1, "/tag", query=f"tag=next{i}")) == b"tag:next%d" % i
        assert not conn.eof


@pytest.mark.parametrize("gateway", ["auto", "python_lane"])
def test_abort_request_on_a_kept_connection_in_the_fast_lane(gateway, request, marker):
    gw = request.getfixturevalue(gateway)
    mark = gw.log.mark()
    query = f"path={marker}&interval=0.1&blocks=200"
    with FcgiConnection(gw.socket) as conn:
        assert body_of(ask(conn, 1, "/hello")) == b"hello"
        # A streaming response, its request whole in one write on the kept
        # connection: the fast lane's.
        conn.send(request_records(1, responder_params("GET", "/stream", query=query)))
        conn.read_until(lambda: b"block 2\n" in conn.reply(1).stdout, 5, "three blocks")
        aborted_at = time.monotonic()
        conn.send(abort_request(1))
        aborted = conn.read_end(1, timeout=5)
        assert aborted.protocol_status == REQUEST_COMPLETE, aborted
        assert aborted.ended_at - aborted_at < 2, "END_REQUEST did not follow ABORT_REQUEST"
        assert b"block 150" not in aborted.stdout
        # The application stopped: its iterable was closed.
        # The app opens the file, then writes its line: wait for the line.
        assert wait_until(lambda: marker.exists() and marker.read_text().endswith("\n"), timeout=5), \
            gw.describe(mark)
        assert marker.read_text().startswith("closed after"), marker.read_text()
        # The connection is still kept, and serves the next request.
        del conn.replies[1]
        assert body_of(ask(conn, 1, "/tag", query="tag=after-abort")) == b"tag:after-abort"
        assert conn.records_within(0.3) == [], "records after the request ended"
        assert not conn.eof
    if gateway == "python_lane":
        uri = f"/stream?{query}"
        assert answered_in_python_lane(gw, uri, mark) == 1, gw.describe(mark)
    assert gw.log.lines_matching("ABORT_REQUEST from the front server", since=mark)


def test_a_kept_connection_idle_past_the_front_servers_keepalive_timeout(gateways,
                                                                         private_nginx):
    gw = gateways.start(f"fcgi-kept-idle-{os.getpid()}", ["--app", APP, "--threads", "2"],
                        proto="fastcgi")
    front = private_nginx(f"fcgi-kept-idle-{os.getpid()}", gw, keepalive=4,
                          keepalive_timeout="1s", proto="fastcgi")
    mark = gw.log.mark()
    with requests.Session() as s:
        r = s.get(f"http://127.0.0.1:{front.port}/hello", timeout=10)
        assert (r.status_code, r.text) == (200, "hello")
        assert unix_connections(gw.socket), "nginx kept no connection"
        # nginx closes its idle connection after 1 s; the gateway closes
        # its end as it sees that.
        assert wait_until(lambda: not unix_connections(gw.socket), timeout=5), (
            "the gateway still holds the connection nginx closed\n" + gw.describe(mark))
        for i in range(5):
            r = s.get(f"http://127.0.0.1:{front.port}/tag?tag=again{i}", timeout=10)
            assert (r.status_code, r.text) == (200, f"tag:again{i}"), gw.describe(mark)
    assert not gw.log.lines_matching(r"\b(WARN|ERROR)\b", since=mark), gw.describe(mark)
    assert not front.error_log.lines_matching(r"\[(error|crit|alert)\]"), front.error_log.tail(20)
    gw.terminate()


impatient = module_gateway("fcgi-kept-impatient",
                           ["--app", APP, "--threads", "2", "--header-timeout", "1"],
                           proto="fastcgi", check_exit=False)


def test_a_kept_connection_that_brings_no_request_stays_kept(impatient):
    # A stray ABORT_REQUEST for a request that has ended is no request: the
    # connection is between requests, and its idle time is the front
    # server's, not --header-timeout's.
    mark = impatient.log.mark()
    with FcgiConnection(impatient.socket) as conn:
        assert body_of(ask(conn, 1, "/hello")) == b"hello"
        conn.send(abort_request(1))
        time.sleep(2.5)  # past --header-timeout 1
        assert body_of(ask(conn, 1, "/tag", query="tag=still-kept")) == b"tag:still-kept"
        assert not conn.eof
    assert not impatient.log.lines_matching("header-timeout", since=mark), impatient.describe(mark)


@pytest.mark.parametrize("lane", ["python", "io"])
def test_a_replaced_worker_ends_a_kept_connection_with_its_last_response(gateways, lane):
    # A worker being replaced (SIGUSR2 on a reload) keeps no connection: the
    # response running as it is told ends with END_REQUEST, an empty
    # GET_VALUES_RESULT and the connection's close, all at once. nginx caches
    # a kept connection only when END_REQUEST is the last byte it read, so
    # it never picks this one for its next request (a POST sent on a
    # connection that closes under it is answered 502: tests/soak).
    gw = gateways.start(f"fcgi-kept-replaced-{lane}-{os.getpid()}",
                        ["--app", APP, "--threads", "2", "--processes", "1"],
                        proto="fastcgi", env={"RUSTGI_LANE": lane})
    try:
        [worker] = gw.workers()
        mark = gw.log.mark()
        with FcgiConnection(gw.socket) as conn:
            assert body_of(ask(conn, 1, "/hello")) == b"hello"
            params = responder_params("GET", "/tag", query="tag=last&secs=1")
            conn.send(request_records(1, params, keep_conn=True))
            # Running (or still waiting to be read, which a stopping worker
            # serves too) when the worker is told.
            time.sleep(0.3)
            os.kill(worker, signal.SIGUSR2)
            assert conn.closed_by_peer(timeout=10), gw.describe(mark)
            reply = conn.reply(1)
            assert body_of(reply) == b"tag:last", gw.describe(mark)
            last_end = max(i for i, r in enumerate(conn.log) if r.type == END_REQUEST)
            after = conn.log[last_end + 1:]
            after_end = [(r.type, r.request_id, r.content) for r in after]
            assert after_end == [(GET_VALUES_RESULT, 0, b"")], (after_end, gw.describe(mark))
    finally:
        gw.terminate()


def test_a_replaced_worker_serves_a_request_sent_on_an_idle_kept_connection(gateways):
    # An idle kept connection is in the front server's cache when the
    # worker is told to go: it stays open for a grace, and a request sent
    # on it meanwhile is served and ends the connection as above. Closed at
    # once, it failed such a request (nginx sends on the connection it
    # cached last, before it has seen the FIN: a POST got a 502).
    gw = gateways.start(f"fcgi-kept-replaced-idle-{os.getpid()}",
                        ["--app", APP, "--threads", "2", "--processes", "1"], proto="fastcgi")
    try:
        [worker] = gw.workers()
        mark = gw.log.mark()
        with FcgiConnection(gw.socket) as conn:
            assert body_of(ask(conn, 1, "/hello")) == b"hello"
            os.kill(worker, signal.SIGUSR2)
            assert gw.log.wait_for(r"replaced \(SIGUSR2\)", since=mark, timeout=10), gw.describe(mark)
            time.sleep(0.2)  # the worker has stopped keeping connections (within its grace of 1 s)
            sent = conn.send_tolerant(request_records(1, responder_params("GET", "/hello"),
                                                      keep_conn=True))
            assert sent, gw.describe(mark)
            assert conn.closed_by_peer(timeout=10), gw.describe(mark)
            assert conn.reply(1).ended, (conn.log, gw.describe(mark))
            assert body_of(conn.reply(1)) == b"hello"
            assert [(r.type, r.request_id) for r in conn.log[-1:]] == [(GET_VALUES_RESULT, 0)]
    finally:
        gw.terminate()
