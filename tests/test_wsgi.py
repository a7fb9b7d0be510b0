"""PEP 3333 semantics seen through nginx: write(), exc_info, headers the
gateway must refuse, Content-Length, wsgi.file_wrapper, threading.local.

The routes are in tests/apps/conformance.py, validator-wrapped unless they
are under /raw/ (where wsgiref.validate would refuse the app's mistake
before the gateway could)."""

import hashlib
import json
import os
import socket
import uuid

import pytest

from harness import (
    KiB,
    http_request,
    parse_cgi_response,
    scgi_exchange,
    scgi_head,
    scgi_params,
    wait_until,
)

GATEWAY_500_BODY = b"Internal Server Error\n"


def assert_still_serving(nginx, gw):
    r = http_request(nginx.port, "GET", "/hello", timeout=10)
    assert (r.status, r.body) == (200, b"hello"), gw.describe()
    assert gw.alive()


def assert_refused_with_500(nginx, gw, path, *log_patterns):
    """The request gets the gateway's own 500, and one log line (after the
    request) matches all of `log_patterns`. Returns the response."""
    mark = gw.log.mark()
    r = http_request(nginx.port, "GET", path, timeout=10)
    assert r.status == 500, (r.status, r.body[:300], gw.describe(mark))
    assert r.body == GATEWAY_500_BODY, r.body[:300]
    assert gw.log.wait_for(*log_patterns, since=mark), (
        f"no log line matching {log_patterns}\n" + gw.describe(mark)
    )
    assert_still_serving(nginx, gw)
    return r


def read_until_closed(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything the peer sends until it closes (or resets) the connection."""
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


# ---------------------------------------------------------------------------
# write() and exc_info


def test_write_callable_then_returned_iterable(nginx, main_gateway):
    r = http_request(nginx.port, "GET", "/write-then-iterate")
    assert r.status == 200, main_gateway.describe()
    assert r.body == b"written 1, written 2, iterated 3, iterated 4"


def test_exc_info_before_any_body_replaces_the_response(nginx, main_gateway):
    r = http_request(nginx.port, "GET", "/exc-info-before-body")
    assert r.status == 500, main_gateway.describe()
    assert r.body == b"custom error page"
    assert r.header("Content-Type") == "text/plain"


def test_exc_info_after_the_head_went_out_reraises_and_cuts_the_response(nginx, main_gateway):
    # The app declared 100 bytes and sent 11, then (0.3 s later, so they
    # are on the wire) fails: the 200 is already out, so the response must
    # end short (nginx then closes the client connection), never with the
    # app's fallback text.
    message = f"after-head-{uuid.uuid4().hex}"
    mark = main_gateway.log.mark()
    nginx_mark = nginx.error_log.mark()
    with socket.create_connection(("127.0.0.1", nginx.port), timeout=10) as sock:
        sock.sendall(
            f"GET /exc-info-after-body?message={message}&pause=0.3 HTTP/1.1\r\n"
            f"Host: localhost\r\nConnection: close\r\n\r\n".encode()
        )
        raw = read_until_closed(sock)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), raw[:300]
    assert b"\r\nContent-Length: 100\r\n" in head + b"\r\n", head
    assert body == b"first block", body
    assert main_gateway.log.wait_for(r"Traceback", since=mark), main_gateway.describe(mark)
    assert main_gateway.log.wait_for(rf"ValueError: {message}", since=mark), main_gateway.describe(mark)
    assert nginx.error_log.wait_for(r"upstream prematurely closed", since=nginx_mark), (
        nginx.error_log.tail(10, since=nginx_mark)
    )
    assert_still_serving(nginx, main_gateway)


def test_exc_info_after_the_head_while_the_body_is_still_arriving(main_gateway):
    # Raw SCGI, a 100,000-byte body announced and only its first 64 KiB
    # sent (--buffer-body: enough for the app to start): the gateway holds
    # the response back while the body arrives. The app yields its
    # block and fails at once. The app was told the head went out (its
    # start_response re-raised instead of allowing a 500), so the head and
    # the block must still reach the front server before the connection is
    # cut (README: "with a Content-Length, the front server then reports the
    # response as truncated"). If they vanish, nginx answers 502 instead,
    # which also happens without a body when the block and the error reach
    # the connection together.
    message = f"held-{uuid.uuid4().hex}"
    mark = main_gateway.log.mark()
    head = scgi_head(scgi_params("POST", "/exc-info-after-body", body_len=100_000, query=f"message={message}"))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(main_gateway.socket)
        sock.sendall(head + b"x" * 65536)
        assert main_gateway.log.wait_for(rf"ValueError: {message}", since=mark), main_gateway.describe(mark)
        raw = read_until_closed(sock)
    assert raw != b"", "the connection was closed without the 200 head and block the app had sent"
    response = parse_cgi_response(raw)
    assert (response.status, response.header("Content-Length")) == (200, "100")
    assert response.body == b"first block"


def test_start_response_twice_without_exc_info_is_a_500(nginx, main_gateway):
    assert_refused_with_500(nginx, main_gateway, "/start-response-twice",
                            r"start_response called a second time")


def test_empty_block_then_exception_is_still_a_clean_500(nginx, main_gateway):
    # An empty block does not send the head, so the error can still be a 500.
    message = f"after-empty-{uuid.uuid4().hex}"
    assert_refused_with_500(nginx, main_gateway, f"/empty-then-raise?message={message}",
                            rf"RuntimeError: {message}")


# ---------------------------------------------------------------------------
# headers the gateway must refuse


@pytest.mark.parametrize(
    "name, value",
    [("Connection", "close"), ("Transfer-Encoding", "chunked"), ("keep-alive", "timeout=5"),
     ("Upgrade", "websocket")],
)
def test_hop_by_hop_response_header_is_a_500(nginx, main_gateway, name, value):
    assert_refused_with_500(nginx, main_gateway, f"/hop-by-hop?name={name}&value={value}",
                            r"hop-by-hop", rf'"{name}"')


def test_crlf_in_a_header_value_is_refused_by_the_gateway(nginx, main_gateway):
    # /raw/: no validator, so this is the gateway's own check.
    r = assert_refused_with_500(nginx, main_gateway, "/raw/crlf-header", r"control character", r'"X-Crlf"')
    assert r.header("X-Evil") is None
    assert r.header("X-Crlf") is None


def test_crlf_in_a_header_value_behind_the_validator(nginx, main_gateway):
    # Wrapped, wsgiref.validate refuses it first (an AssertionError in the
    # app): still a 500 without the injected header.
    r = assert_refused_with_500(nginx, main_gateway, "/crlf-header", r"AssertionError", r"Bad header value")
    assert r.header("X-Evil") is None


def test_yielding_str_is_a_500(nginx, main_gateway):
    assert_refused_with_500(nginx, main_gateway, "/raw/yield-str", r"\bstr\b", r"not bytes")


# ---------------------------------------------------------------------------
# Content-Length, file_wrapper


@pytest.mark.parametrize(
    "path",
    ["/content-length-short", "/content-length-short?pieces=3", "/raw/content-length-short"],
    ids=["one-block", "three-blocks", "one-block-list-unwrapped"],
)
def test_body_past_the_apps_content_length_is_not_sent(nginx, main_gateway, path):
    r = http_request(nginx.port, "GET", path)
    assert (r.status, r.body) == (200, b"01234"), main_gateway.describe()
    # Straight from the gateway, without nginx's own Content-Length handling.
    route, _, query = path.partition("?")
    head = scgi_head(scgi_params("GET", route, query=query))
    response = parse_cgi_response(scgi_exchange(main_gateway.socket, head, timeout=10))
    assert response.header("Content-Length") == "5"
    assert response.body == b"01234"


@pytest.fixture
def file_300k(scratch):
    path = scratch / "300k.bin"
    data = os.urandom(300 * KiB)
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def test_file_wrapper_body_and_close(nginx, main_gateway, scratch, file_300k):
    path, digest = file_300k
    marker = scratch / "closed.txt"
    r = http_request(nginx.port, "GET", f"/file-wrapper?file={path}&marker={marker}")
    assert r.status == 200, main_gateway.describe()
    assert len(r.body) == 300 * KiB
    assert hashlib.sha256(r.body).hexdigest() == digest
    assert wait_until(marker.exists, timeout=5), "close() was not called\n" + main_gateway.describe()
    assert marker.read_text() == "closed=True\n"


def test_file_wrapper_returned_as_is_closes_the_file(nginx, main_gateway, scratch, file_300k):
    # Unwrapped: the gateway gets its own wsgi.file_wrapper object back.
    path, digest = file_300k
    marker = scratch / "file-closed.txt"
    r = http_request(nginx.port, "GET", f"/raw/file-wrapper?file={path}&marker={marker}")
    assert r.status == 200, main_gateway.describe()
    assert hashlib.sha256(r.body).hexdigest() == digest
    assert wait_until(marker.exists, timeout=5), "the file was not closed\n" + main_gateway.describe()
    assert marker.read_text() == "file closed\n"


# ---------------------------------------------------------------------------
# threading.local


def test_threading_local_survives_between_requests(gateways, private_nginx):
    gw = gateways.start("one-thread", ["--app", "tests/apps/conformance.py", "--threads", "1"])
    front = private_nginx("one-thread", gw)
    answers = []
    for _ in range(5):
        r = http_request(front.port, "GET", "/thread-local")
        assert r.status == 200, gw.describe()
        answers.append(json.loads(r.body))
    assert len({a["thread"] for a in answers}) == 1, answers
    assert [a["count"] for a in answers] == [1, 2, 3, 4, 5], answers
    assert gw.terminate() == 0
