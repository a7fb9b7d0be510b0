"""Clients that do not read their response (issue 13, item 5): a Python
thread never waits on a client. 200 raw SCGI and FastCGI clients over a
Unix socket ask for 8 MiB each (one bytes object, a list of blocks, a
generator, wsgi.file_wrapper) and never read; with --threads 4 normal
requests are still answered. A parked response whose client goes away is
closed; past --response-memory new requests wait, and are answered once
clients read or go. One bytes object that every response shares counts
once against --response-memory, one made per request counts for each."""

import socket
import threading
import time

import pytest

from fcgi_client import FcgiConnection, abort_request, request_records, responder_params
from harness import parse_cgi_response, scgi_head, scgi_params, scgi_request, wait_until
from raw_client import connect, read_until_eof

APP = "tests/apps/slow_readers.py"
NON_READERS = 200
SHAPES = ["bytes", "list", "generator", "file"]
BLOCK = 64 * 1024
WHOLE = b"".join(bytes([i % 251]) * BLOCK for i in range(128))
# Generous, to fail rather than hang: a thread stuck on a non-reader would
# hold on for --write-timeout (60 s).
ANSWER_TIMEOUT = 20


# The default --response-memory (256 MiB): the one-bytes shape is one
# module-level object that the 200 responses share, counted once.
ARGS = ["--app", APP, "--threads", "4"]


@pytest.fixture(scope="module")
def scgi_gateway(gateways):
    return gateways.start("slow-readers", ARGS)


@pytest.fixture(scope="module", params=["default", "io"])
def fastcgi_gateway(request, gateways):
    """The default lanes, and the I/O lane alone (RUSTGI_LANE=io): the
    channel's parking, whatever the Python lane does. The I/O lane copies
    a block into its channel (a Python object must not be dropped on the
    I/O thread): there one bytes object of 8 MiB costs 8 MiB per client,
    200 × 8 MiB is within --response-memory 2048."""
    if request.param == "io":
        env, args = {"RUSTGI_LANE": "io"}, [*ARGS, "--response-memory", "2048"]
    else:
        env, args = None, ARGS
    return gateways.start(f"slow-readers-fcgi-{request.param}", args, proto="fastcgi", env=env)


def scgi_bytes(path: str, query: str = "") -> bytes:
    return scgi_head(scgi_params("GET", path, query=query))


def fastcgi_bytes(path: str, query: str = "", keep_conn: bool = True) -> bytes:
    return request_records(1, responder_params("GET", path, query=query), keep_conn=keep_conn)


def non_readers(address: str, request: bytes, count: int) -> list[socket.socket]:
    """`count` connections that send `request` and never read."""
    socks = []
    for _ in range(count):
        sock = connect(address, timeout=ANSWER_TIMEOUT)
        sock.sendall(request)
        socks.append(sock)
    return socks


def wait_for_the_response(sock: socket.socket):
    """Until the response has begun on `sock` (a byte is there to read),
    reading nothing: the application has started, and its response waits
    for this client."""
    sock.settimeout(ANSWER_TIMEOUT)
    assert sock.recv(1, socket.MSG_PEEK), "the connection closed"


def close_all(socks):
    for sock in socks:
        sock.close()


def fastcgi_get(address: str, path: str, timeout: float = ANSWER_TIMEOUT):
    with FcgiConnection(address, timeout=timeout) as conn:
        conn.request(1, responder_params("GET", path), keep_conn=False)
        conn.read_until(lambda: conn.reply(1).ended, what=f"the response to {path}")
        return conn.reply(1).response()


def assert_clean_log(gw, mark):
    text = gw.log.text(since=mark)
    assert "panicked" not in text and "close() failed" not in text, gw.describe(mark)


@pytest.mark.parametrize("shape", SHAPES)
def test_scgi_non_readers_do_not_stop_normal_requests(scgi_gateway, shape):
    gw = scgi_gateway
    mark = gw.log.mark()
    stuck = non_readers(gw.socket, scgi_bytes(f"/{shape}"), NON_READERS)
    try:
        for _ in range(20):
            r = scgi_request(gw.socket, "GET", "/hello", timeout=ANSWER_TIMEOUT)
            assert (r.status, r.body) == (200, b"hello"), gw.describe(mark)
        # A client that reads late gets every byte, in order.
        with connect(gw.socket, timeout=ANSWER_TIMEOUT) as late:
            late.sendall(scgi_bytes(f"/{shape}"))
            time.sleep(0.5)
            r = parse_cgi_response(read_until_eof(late, timeout=ANSWER_TIMEOUT))
        assert r.status == 200 and len(r.body) == len(WHOLE), gw.describe(mark)
        assert r.body == WHOLE, "the response's bytes out of order"
    finally:
        close_all(stuck)
    assert gw.alive()
    assert_clean_log(gw, mark)


@pytest.mark.parametrize("shape", SHAPES)
def test_fastcgi_non_readers_do_not_stop_normal_requests(fastcgi_gateway, shape):
    gw = fastcgi_gateway
    mark = gw.log.mark()
    stuck = non_readers(gw.socket, fastcgi_bytes(f"/{shape}"), NON_READERS)
    try:
        for _ in range(20):
            r = fastcgi_get(gw.socket, "/hello")
            assert (r.status, r.body) == (200, b"hello"), gw.describe(mark)
        # Read late on a kept connection: every byte, then the connection
        # serves its next request.
        with FcgiConnection(gw.socket, timeout=ANSWER_TIMEOUT) as conn:
            conn.send(fastcgi_bytes(f"/{shape}"))
            time.sleep(0.5)
            conn.read_until(lambda: conn.reply(1).ended, what="the late-read response")
            r = conn.reply(1).response()
            assert r.status == 200 and r.body == WHOLE, gw.describe(mark)
            conn.replies.clear()
            conn.request(1, responder_params("GET", "/hello"), keep_conn=True)
            conn.read_until(lambda: conn.reply(1).ended, what="the kept connection's next response")
            assert conn.reply(1).response().body == b"hello"
    finally:
        close_all(stuck)
    assert gw.alive()
    assert_clean_log(gw, mark)


@pytest.mark.parametrize("shape", ["generator", "list"])
def test_a_parked_response_whose_client_goes_away_is_closed(gateways, scratch, shape):
    gw = gateways.start(f"slow-readers-one-{shape}", ["--app", APP, "--threads", "1"])
    mark = gw.log.mark()
    closed = scratch / f"closed-{shape}"
    [stuck] = non_readers(gw.socket, scgi_bytes(f"/{shape}", f"closed={closed}"), 1)
    wait_for_the_response(stuck)
    # The only thread is free while that response waits for its client.
    r = scgi_request(gw.socket, "GET", "/hello", timeout=ANSWER_TIMEOUT)
    assert (r.status, r.body) == (200, b"hello"), gw.describe(mark)
    assert not closed.exists(), "closed before the response was over"
    stuck.close()
    assert wait_until(closed.exists, timeout=ANSWER_TIMEOUT), gw.describe(mark)
    assert closed.read_text() == "closed\n"
    # The thread was not lost.
    r = scgi_request(gw.socket, "GET", "/hello", timeout=ANSWER_TIMEOUT)
    assert (r.status, r.body) == (200, b"hello"), gw.describe(mark)
    gw.log.wait_for("client went away", since=mark, timeout=ANSWER_TIMEOUT)
    assert_clean_log(gw, mark)


def test_past_the_response_memory_new_requests_wait_and_are_not_refused(gateways):
    gw = gateways.start("slow-readers-budget", ["--app", APP, "--threads", "1", "--response-memory", "16"])
    mark = gw.log.mark()
    # About 8 MiB held for this one (an object made for it): within the
    # budget, the thread is free.
    first = non_readers(gw.socket, scgi_bytes("/fresh"), 1)
    wait_for_the_response(first[0])
    r = scgi_request(gw.socket, "GET", "/hello", timeout=ANSWER_TIMEOUT)
    assert (r.status, r.body) == (200, b"hello"), gw.describe(mark)
    # Two more, each its own 8 MiB: past the budget.
    more = non_readers(gw.socket, scgi_bytes("/fresh"), 2)
    for sock in more:
        wait_for_the_response(sock)
    answer = {}

    def ask():
        try:
            answer["response"] = scgi_request(gw.socket, "GET", "/hello", timeout=ANSWER_TIMEOUT)
        except Exception as e:  # reported below
            answer["error"] = e

    asking = threading.Thread(target=ask)
    asking.start()
    asking.join(2)
    assert asking.is_alive(), f"answered past the budget: {answer}"
    close_all(first + more)
    asking.join(ANSWER_TIMEOUT + 5)
    assert "error" not in answer, f"{answer['error']!r}\n{gw.describe(mark)}"
    r = answer["response"]
    assert (r.status, r.body) == (200, b"hello"), gw.describe(mark)
    assert_clean_log(gw, mark)


@pytest.mark.parametrize("proto", ["scgi", "fastcgi"])
def test_one_bytes_object_that_parked_responses_share_counts_once(gateways, proto):
    # 20 non-readers of the same 8 MiB object under a 16 MiB budget: they
    # hold 8 MiB between them, not 160, so each is taken in turn by the
    # only thread and a normal request is answered. The Python lane is
    # forced: what counts a block once is the charge of a parked response.
    # A connection accepted before its bytes came goes to the I/O lane,
    # whose channel counts a queued block in full until its writer takes it
    # (CI saw a passing over-budget warning from that under load).
    gw = gateways.start(
        f"slow-readers-shared-{proto}",
        ["--app", APP, "--threads", "1", "--response-memory", "16"],
        proto=proto,
        env={"RUSTGI_LANE": "python"},
    )
    mark = gw.log.mark()
    request = scgi_bytes("/bytes") if proto == "scgi" else fastcgi_bytes("/bytes")
    stuck = []
    try:
        for _ in range(20):
            stuck += non_readers(gw.socket, request, 1)
            wait_for_the_response(stuck[-1])
        if proto == "scgi":
            r = scgi_request(gw.socket, "GET", "/hello", timeout=ANSWER_TIMEOUT)
        else:
            r = fastcgi_get(gw.socket, "/hello")
        assert (r.status, r.body) == (200, b"hello"), gw.describe(mark)
    finally:
        close_all(stuck)
    assert "new requests wait" not in gw.log.text(since=mark), gw.describe(mark)
    assert_clean_log(gw, mark)


def test_an_abort_request_for_a_parked_response_ends_it_and_closes_the_iterable(gateways, scratch):
    # The Python lane's hand-off, whichever way the bytes arrive (the I/O
    # lane reads no input while it writes to a front server that does not
    # read: there the ABORT_REQUEST waits for --write-timeout).
    gw = gateways.start(
        "slow-readers-abort", ["--app", APP, "--threads", "1"], proto="fastcgi", env={"RUSTGI_LANE": "python"}
    )
    mark = gw.log.mark()
    closed = scratch / "closed-abort"
    with FcgiConnection(gw.socket, timeout=ANSWER_TIMEOUT) as conn:
        conn.send(fastcgi_bytes("/generator", f"closed={closed}"))
        wait_for_the_response(conn.sock)
        # The only thread is free while that response waits for its client.
        r = fastcgi_get(gw.socket, "/hello")
        assert (r.status, r.body) == (200, b"hello"), gw.describe(mark)
        conn.send(abort_request(1))
        assert wait_until(closed.exists, timeout=ANSWER_TIMEOUT), gw.describe(mark)
        conn.read_until(lambda: conn.reply(1).ended, what="END_REQUEST after the abort")
        assert len(conn.reply(1).stdout) < len(WHOLE), "the response went on after the abort"
        # The kept connection serves its next request.
        conn.replies.clear()
        conn.request(1, responder_params("GET", "/hello"), keep_conn=True)
        conn.read_until(lambda: conn.reply(1).ended, what="the next response")
        assert conn.reply(1).response().body == b"hello", gw.describe(mark)
    gw.log.wait_for("ABORT_REQUEST", since=mark, timeout=ANSWER_TIMEOUT)
    assert_clean_log(gw, mark)


def test_a_stop_closes_the_responses_parked_for_clients_that_do_not_read(gateways, scratch):
    gw = gateways.start("slow-readers-stop", ["--app", APP, "--threads", "1", "--graceful-timeout", "1"])
    mark = gw.log.mark()
    closed = scratch / "closed-stop"
    [stuck] = non_readers(gw.socket, scgi_bytes("/generator", f"closed={closed}"), 1)
    wait_for_the_response(stuck)
    try:
        r = scgi_request(gw.socket, "GET", "/hello", timeout=ANSWER_TIMEOUT)
        assert (r.status, r.body) == (200, b"hello"), gw.describe(mark)
        assert gw.terminate(timeout=30) == 0, gw.describe(mark)
        assert closed.exists(), f"close() was not called\n{gw.describe(mark)}"
        assert closed.read_text() == "closed\n"
    finally:
        stuck.close()
    assert_clean_log(gw, mark)
