"""Peers that hold connections without sending requests (issue 13, items 1
and 2): slow heads (slowloris) and idle kept FastCGI connections.

Connections that wait on their peer are held up to --max-connections (not
in the slots that Python work needs); a head has --header-timeout from
accept, an idle kept connection --keepalive-timeout; at the limit the
connection waiting longest for a head is closed first, then the kept one
idle longest. Raw socket clients on Unix sockets (tests/raw_client.py,
tests/uwsgi_client.py, tests/fcgi_client.py); the figures of a normal
request's latency under 1,000 one-byte connections are measured by
bench/slow_peers.py (docs/reliability.md).
"""

from __future__ import annotations

import contextlib
import resource
import socket
import subprocess
import time

import pytest

import uwsgi_client
from fcgi_client import FcgiConnection, begin_request, parse_cgi, responder_params
from harness import APPS, REPO, scgi_request

APP = str((APPS / "conformance.py").relative_to(REPO))

# The first byte of a request in each protocol: an SCGI netstring's first
# digit, a uwsgi modifier1, FastCGI's version.
FIRST_BYTE = {"scgi": b"7", "uwsgi": b"\x00", "auto": b"7", "fastcgi": b"\x01"}


@pytest.fixture(scope="module", autouse=True)
def open_files():
    """Room for a few thousand client sockets in this process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, 8192) if hard != resource.RLIM_INFINITY else 8192
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    if wanted < 4096:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} leaves no room for the client's sockets")
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def connect(path: str, timeout: float = 10.0) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except OSError as e:
        sock.close()
        raise AssertionError(f"connect() to the gateway failed: {e!r} (its backlog is full?)")
    return sock


@contextlib.contextmanager
def held_connections(path: str, count: int, first: bytes):
    """`count` connections that each sent `first` and nothing more."""
    socks = []
    try:
        for i in range(count):
            sock = connect(path)
            socks.append(sock)
            if first:
                sock.sendall(first)
        yield socks
    finally:
        for sock in socks:
            sock.close()


def closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    """Whether the gateway closes `sock` within `timeout` (it sends nothing
    before it does)."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def normal_request(gw, proto: str):
    if proto == "uwsgi":
        r = uwsgi_client.request(gw.socket, "GET", "/hello", timeout=10)
    else:
        r = scgi_request(gw.socket, "GET", "/hello", timeout=10)
    assert (r.status, r.body) == (200, b"hello"), gw.describe()


def fcgi_request(sock_path: str, request_id: int = 1, *, keep: bool = True,
                 conn: FcgiConnection | None = None) -> FcgiConnection:
    """A RESPONDER request for /hello on `conn` (or a new connection),
    answered; the connection is returned open."""
    conn = conn or FcgiConnection(sock_path, timeout=10)
    conn.request(request_id, responder_params("GET", "/hello"), keep_conn=keep)
    reply = conn.read_end(request_id, timeout=10)
    response = parse_cgi(reply.stdout)
    assert (response.status, response.body) == (200, b"hello"), reply
    del conn.replies[request_id]
    return conn


# ---------------------------------------------------------------------------
# item 1: slow heads


@pytest.mark.parametrize("proto", ["scgi", "uwsgi", "auto"])
def test_a_thousand_one_byte_connections_leave_requests_answered(gateways, proto):
    # Before: only 2 × threads + 8 connections were admitted, a connection
    # waiting for its head among them, so 16 of these blocked every new
    # request for --header-timeout.
    gw = gateways.start(f"slowloris-{proto}", ["--app", APP, "--threads", "4"], proto=proto)
    # --proto auto admitted 1,024 (FastCGI's limit): 1,100 blocked it.
    count = 1100 if proto == "auto" else 1000
    with held_connections(gw.socket, count, FIRST_BYTE[proto]) as socks:
        for _ in range(20):
            normal_request(gw, proto)
        assert not closed_by_peer(socks[-1], 0.2), "a one-byte connection was closed before its timeout"
    assert gw.alive()


def test_at_the_limit_the_connection_waiting_longest_for_a_head_is_closed(gateways):
    gw = gateways.start("slowloris-limit", ["--app", APP, "--threads", "2", "--max-connections", "6",
                                            "--header-timeout", "60"])
    mark = gw.log.mark()
    socks = []

    def one_byte():
        sock = connect(gw.socket)
        sock.sendall(b"7")
        socks.append(sock)
        time.sleep(0.1)  # accepted before the next one comes

    try:
        for _ in range(6):
            one_byte()
        # At the limit: a new connection closes the one waiting longest.
        normal_request(gw, "scgi")
        assert closed_by_peer(socks[0], 10), "the oldest waiting for its head was left open"
        assert not any(closed_by_peer(s, 0.1) for s in socks[1:]), "a newer one was closed"
        one_byte()
        normal_request(gw, "scgi")
        assert closed_by_peer(socks[1], 10), "the next oldest was left open"
        assert not any(closed_by_peer(s, 0.1) for s in socks[2:]), "a newer one was closed"
    finally:
        for sock in socks:
            sock.close()
    lines = gw.log.wait_for(r"\bWARN\b", r"--max-connections 6 reached", r"waited longest", since=mark)
    assert len(lines) == 2, gw.describe(mark)


def test_a_head_gets_ten_seconds_by_default_and_the_close_is_logged(gateways):
    # --header-timeout defaults to 10 s (it was 30): the connection is closed
    # after it, with a warning that names the timeout and what arrived.
    gw = gateways.start("slowloris-default-timeout", ["--app", APP, "--threads", "2"])
    mark = gw.log.mark()
    sock = connect(gw.socket)
    try:
        sock.sendall(b"7")
        assert closed_by_peer(sock, 25), "a one-byte head was still open after 25 s"
    finally:
        sock.close()
    lines = gw.log.wait_for(r"\bWARN\b", r"timed out after 10s", r"scgi request head", r"\(1 bytes", since=mark)
    assert lines, gw.describe(mark)


# ---------------------------------------------------------------------------
# item 2: idle kept FastCGI connections


@pytest.mark.parametrize("lane", ["auto", "io"])
def test_a_thousand_and_thirty_idle_kept_connections_leave_requests_answered(gateways, lane):
    # Before: FastCGI admitted 1,024 connections; idle kept ones counted and
    # never timed out, so the 1,025th connection waited in the backlog.
    gw = gateways.start(f"kept-1030-{lane}", ["--app", APP, "--threads", "4"], proto="fastcgi",
                        env={"RUSTGI_LANE": lane})
    kept = []
    try:
        for _ in range(1030):
            kept.append(fcgi_request(gw.socket))
        with fcgi_request(gw.socket, keep=False):
            pass
        # The first kept connection still serves.
        fcgi_request(gw.socket, 2, conn=kept[0])
    finally:
        for conn in kept:
            conn.close()
    assert gw.alive()


@pytest.mark.parametrize("lane", ["auto", "io"])
def test_an_idle_kept_connection_is_closed_after_the_keepalive_timeout(gateways, lane):
    # auto: the idle connection is parked with the Python threads; io: it
    # stays in the I/O lane. Either way it is closed once idle for 1 s.
    gw = gateways.start(f"kept-keepalive-{lane}",
                        ["--app", APP, "--threads", "2", "--keepalive-timeout", "1"],
                        proto="fastcgi", env={"RUSTGI_LANE": lane})
    mark = gw.log.mark()
    with fcgi_request(gw.socket) as conn:
        assert closed_by_peer(conn.sock, 15), "an idle kept connection outlived --keepalive-timeout"
    lines = gw.log.wait_for(r"\bINFO\b", r"idle", r"--keepalive-timeout", since=mark)
    assert lines, gw.describe(mark)
    # A kept connection that keeps serving is not closed for its age.
    with fcgi_request(gw.socket) as conn:
        for request_id in range(2, 6):
            time.sleep(0.5)
            fcgi_request(gw.socket, request_id, conn=conn)


@pytest.mark.parametrize("lane", ["auto", "io"])
def test_a_request_begun_on_a_kept_connection_gets_the_header_timeout(gateways, lane):
    # BEGIN_REQUEST and then no PARAMS, on a connection that served a request.
    gw = gateways.start(f"kept-begun-{lane}",
                        ["--app", APP, "--threads", "2", "--header-timeout", "1"],
                        proto="fastcgi", env={"RUSTGI_LANE": lane})
    mark = gw.log.mark()
    with fcgi_request(gw.socket) as conn:
        conn.send(begin_request(2))
        assert closed_by_peer(conn.sock, 15), "a begun request without PARAMS was kept open"
    lines = gw.log.wait_for(r"\bWARN\b", r"--header-timeout", since=mark)
    assert lines, gw.describe(mark)


def test_at_the_limit_heads_go_before_idle_kept_connections_and_the_longest_idle_first(gateways):
    gw = gateways.start("kept-limit", ["--app", APP, "--threads", "2", "--max-connections", "3"],
                        proto="fastcgi")
    mark = gw.log.mark()
    kept, head = [], None
    try:
        for _ in range(2):
            kept.append(fcgi_request(gw.socket))
            time.sleep(0.1)  # parked before the next one comes
        head = connect(gw.socket)
        head.sendall(b"\x01")
        time.sleep(0.1)
        # At the limit (2 kept, 1 head): a new connection closes the head,
        # newer as it is.
        with fcgi_request(gw.socket, keep=False):
            pass
        assert closed_by_peer(head, 10), gw.describe(mark)
        assert not any(closed_by_peer(c.sock, 0.1) for c in kept), "a kept connection was closed"
        kept.append(fcgi_request(gw.socket))
        time.sleep(0.1)
        # At the limit with 3 idle kept: the one idle longest goes.
        with fcgi_request(gw.socket, keep=False):
            pass
        assert closed_by_peer(kept[0].sock, 10), gw.describe(mark)
        assert not any(closed_by_peer(c.sock, 0.1) for c in kept[1:]), "a newer kept one was closed"
        fcgi_request(gw.socket, 2, conn=kept[1])
    finally:
        if head is not None:
            head.close()
        for conn in kept:
            conn.close()
    lines = gw.log.wait_for(r"--max-connections 3 reached", r"waited longest", since=mark)
    assert lines, gw.describe(mark)
    lines = gw.log.wait_for(r"--max-connections 3 reached", r"kept connection idle longest", since=mark)
    assert lines, gw.describe(mark)


def test_an_open_file_limit_below_max_connections_is_raised_or_warned_about(gateways, tmp_path):
    # A hard RLIMIT_NOFILE of 512 cannot hold --max-connections 10,000: the
    # gateway says so at start, and serves. With room, the soft limit is
    # raised to the hard one.
    def limited(soft, hard):
        return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    for (soft, hard), warned in [((512, 512), True), ((1024, 16384), False)]:
        gw = gateways.make(f"nofile-{hard}", ["--app", APP, "--threads", "2"])
        log = open(gw.log.path, "ab")
        gw.proc = subprocess.Popen(gw.command, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                   env=gw.env, cwd=REPO, preexec_fn=limited(soft, hard))
        try:
            gw.wait_listening()
            normal_request(gw, "scgi")
            lines = gw.log.lines_matching(r"\bWARN\b", r"RLIMIT_NOFILE is 512", r"--max-connections 10000")
            assert bool(lines) == warned, gw.describe()
            with open(f"/proc/{gw.workers()[0]}/limits") as limits:
                row = next(line for line in limits if line.startswith("Max open files"))
            assert row.split()[3] == str(hard), row
        finally:
            gw.terminate()
            log.close()


def test_out_of_descriptors_the_longest_waiting_head_makes_room(gateways):
    # RLIMIT_NOFILE 200 (below --max-connections, warned at start): accept
    # fails with EMFILE once the one-byte connections use the descriptors.
    # Each failure closes the connection waiting longest for its head, so a
    # normal request behind 300 of them is answered long before their
    # --header-timeout (60 s here) would free anything.
    gw = gateways.make("nofile-emfile", ["--app", APP, "--threads", "2", "--header-timeout", "60"])
    log = open(gw.log.path, "ab")
    gw.proc = subprocess.Popen(
        gw.command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=gw.env, cwd=REPO,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (200, 200)))
    try:
        gw.wait_listening()
        mark = gw.log.mark()
        with held_connections(gw.socket, 300, b"7"):
            r = scgi_request(gw.socket, "GET", "/hello", timeout=30)
            assert (r.status, r.body) == (200, b"hello"), gw.describe(mark)
        assert gw.log.lines_matching(r"accept failed", r"closed the connection that waited longest",
                                     since=mark), gw.describe(mark)
    finally:
        gw.terminate()
        log.close()
