"""--header-timeout and --body-timeout, with a raw SCGI client that stalls
(without closing its connection) against a gateway of this module's own."""

import socket
import time

import pytest

from harness import parse_cgi_response, scgi_exchange, scgi_head, scgi_params, scgi_request

HEADER_TIMEOUT = 1
BODY_TIMEOUT = 1


@pytest.fixture(scope="module")
def timeout_gateway(gateways):
    return gateways.start(
        "timeouts",
        ["--app", "tests/apps/conformance.py", "--threads", "2",
         "--header-timeout", str(HEADER_TIMEOUT), "--body-timeout", str(BODY_TIMEOUT)],
    )


def assert_still_serving(gw):
    r = scgi_request(gw.socket, "GET", "/hello")
    assert (r.status, r.body) == (200, b"hello"), gw.describe()
    assert gw.alive()


HEAD = scgi_head(scgi_params("GET", "/hello"))


@pytest.mark.parametrize("sent", [b"", HEAD[: len(HEAD) // 2]], ids=["nothing", "half-a-head"])
def test_incomplete_head_is_closed_after_the_header_timeout(timeout_gateway, sent):
    gw = timeout_gateway
    mark = gw.log.mark()
    began = time.monotonic()
    received = scgi_exchange(gw.socket, sent, timeout=HEADER_TIMEOUT + 5)
    elapsed = time.monotonic() - began
    assert received == b"", f"got {received[:200]!r} for an incomplete head"
    assert HEADER_TIMEOUT - 0.2 <= elapsed <= HEADER_TIMEOUT + 3, f"closed after {elapsed:.2f}s"
    warns = gw.log.wait_for(r"\bWARN\b", r"timed out", r"request head", rf"\({len(sent)} bytes", since=mark)
    assert warns, gw.describe(mark)
    assert_still_serving(gw)


def test_stalled_body_makes_the_apps_read_raise_oserror(timeout_gateway):
    # A full head announcing 100,000 body bytes, 70,000 of them (past
    # --buffer-body's 64 KiB: the app starts and reads), then nothing (the
    # connection stays open). The app catches the OSError and says so. (A
    # body within --buffer-body that stalls is not run at all:
    # test_slow_bodies.)
    gw = timeout_gateway
    mark = gw.log.mark()
    head = scgi_head(scgi_params("POST", "/read-or-report", body_len=100_000))
    began = time.monotonic()
    response = parse_cgi_response(scgi_exchange(gw.socket, head + b"b" * 70_000, timeout=BODY_TIMEOUT + 8))
    elapsed = time.monotonic() - began
    assert response.status == 200, gw.describe(mark)
    text = response.body.decode()
    assert text.startswith("read failed: "), text
    assert "timed out" in text and "70000 of 100000" in text, text
    assert BODY_TIMEOUT - 0.2 <= elapsed <= BODY_TIMEOUT + 5, f"answered after {elapsed:.2f}s"
    warns = gw.log.wait_for(r"\bWARN\b", r"timed out", r"\b70000 of 100000\b", r"--body-timeout", since=mark)
    assert warns, gw.describe(mark)
    assert_still_serving(gw)


def test_a_slow_but_steady_body_is_not_timed_out(timeout_gateway):
    # The body timeout is per wait for the next bytes, not for the whole
    # body: 4 pieces 0.6 s apart take 1.8 s in all and must be read whole.
    gw = timeout_gateway
    pieces = [bytes([65 + i]) * 250 for i in range(4)]
    head = scgi_head(scgi_params("POST", "/read-or-report", body_len=1000))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(gw.socket)
        sock.sendall(head)
        for piece in pieces:
            time.sleep(0.6)
            sock.sendall(piece)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    response = parse_cgi_response(data)
    assert (response.status, response.body) == (200, b"read 1000 of 1000 bytes"), gw.describe()
