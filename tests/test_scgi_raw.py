"""Malformed SCGI, sent by a small raw client (tests/harness.py, written from
the SCGI spec) straight to a gateway's socket, without nginx.

For each kind of bad input the gateway must close the connection, log a
WARN line that names the problem, and go on serving.
"""

import hashlib
import os
import socket
import time

import pytest

from harness import (
    MiB,
    netstring,
    parse_cgi_response,
    scgi_exchange,
    scgi_fields,
    scgi_head,
    scgi_params,
    scgi_request,
    wait_until,
)

MAX_HEADER = 4096


@pytest.fixture(scope="module")
def raw_gateway(gateways):
    return gateways.start(
        "raw",
        ["--app", "tests/apps/conformance.py", "--threads", "2", "--max-header-size", str(MAX_HEADER),
         # Every bad-input case looks for its own warning.
         "--bad-input-warnings", "0"],
    )


GOOD_FIELDS = scgi_fields(scgi_params("GET", "/hello"))
WITHOUT_CONTENT_LENGTH = scgi_fields(p for p in scgi_params("GET", "/hello") if p[0] != b"CONTENT_LENGTH")
SCGI_FIRST = scgi_fields([(b"SCGI", b"1")] + scgi_params("GET", "/hello", scgi=False))


def with_content_length(value: bytes) -> bytes:
    pairs = scgi_params("GET", "/hello")
    return scgi_fields([(b"CONTENT_LENGTH", value)] + pairs[1:])


# (case id, bytes to send, regexes that one WARN line must all match)
BAD_INPUT = [
    ("length-not-a-digit", b"x" + netstring(GOOD_FIELDS), [r"length", r"digit"]),
    ("length-leading-zero", netstring(GOOD_FIELDS, length=b"0" + str(len(GOOD_FIELDS)).encode()),
     [r"leading zero"]),
    ("header-over-max-size",
     netstring(scgi_fields(scgi_params("GET", "/hello", extra=[("HTTP_COOKIE", "c" * 5000)]))),
     [r"limit", rf"\b{MAX_HEADER}\b"]),
    ("header-length-huge", b"99999999999999999999999999:" + GOOD_FIELDS + b",",
     [r"limit|overflow|fit", r"length"]),
    ("missing-colon", str(len(GOOD_FIELDS)).encode() + GOOD_FIELDS + b",", [r"':'|colon"]),
    ("missing-comma", netstring(GOOD_FIELDS, end=b";"), [r"','|comma"]),
    ("odd-field-count", netstring(GOOD_FIELDS + b"LONELY_NAME\0"), [r"odd", r"LONELY_NAME"]),
    ("content-length-missing", netstring(WITHOUT_CONTENT_LENGTH), [r"CONTENT_LENGTH"]),
    ("empty-header-block", b"0:,", [r"CONTENT_LENGTH", r"missing"]),
    ("content-length-not-first", netstring(SCGI_FIRST), [r"CONTENT_LENGTH", r"first", r"SCGI"]),
    ("content-length-not-a-number", netstring(with_content_length(b"12a")),
     [r"CONTENT_LENGTH", r"decimal|number|digit"]),
    ("content-length-empty", netstring(with_content_length(b"")), [r"CONTENT_LENGTH", r"empty"]),
]


def assert_still_serving(gw):
    r = scgi_request(gw.socket, "GET", "/hello")
    assert (r.status, r.body) == (200, b"hello"), gw.describe()
    assert gw.alive()


@pytest.mark.parametrize("data, patterns", [c[1:] for c in BAD_INPUT], ids=[c[0] for c in BAD_INPUT])
def test_bad_head_is_refused_logged_and_survived(raw_gateway, data, patterns):
    mark = raw_gateway.log.mark()
    received = scgi_exchange(raw_gateway.socket, data, timeout=10)
    assert b" 200 " not in received.split(b"\r\n", 1)[0] + b" ", (
        f"bad input was served: {received[:200]!r}"
    )
    warns = raw_gateway.log.wait_for(r"\bWARN\b", *patterns, since=mark, timeout=5)
    assert warns, (
        f"no WARN line matching {patterns} after sending {data[:80]!r}\n" + raw_gateway.describe(mark)
    )
    assert_still_serving(raw_gateway)


def test_header_just_under_the_limit_is_served(raw_gateway):
    base = len(scgi_fields(scgi_params("GET", "/hello", extra=[("HTTP_COOKIE", "")])))
    cookie = "c" * (MAX_HEADER - base)
    head = scgi_head(scgi_params("GET", "/hello", extra=[("HTTP_COOKIE", cookie)]))
    assert head.startswith(f"{MAX_HEADER}:".encode())
    r = scgi_request(raw_gateway.socket, "GET", "/hello", extra=[("HTTP_COOKIE", cookie)])
    assert (r.status, r.body) == (200, b"hello"), raw_gateway.describe()


def test_body_shorter_than_content_length(raw_gateway, scratch):
    # 13 of 4321 body bytes, then the client shuts down its write side.
    marker = scratch / "short-body.txt"
    mark = raw_gateway.log.mark()
    head = scgi_head(
        scgi_params("POST", "/short-body", body_len=4321, query=f"path={marker}")
    )
    scgi_exchange(raw_gateway.socket, head + b"b" * 13, shut_wr=True, timeout=10)
    assert wait_until(marker.exists, timeout=5), "the app never finished its read\n" + raw_gateway.describe(mark)
    assert marker.read_text().startswith("OSError"), marker.read_text()
    lines = raw_gateway.log.wait_for(r"body", r"\b13\b", r"\b4321\b", since=mark, timeout=5)
    assert lines, raw_gateway.describe(mark)
    assert_still_serving(raw_gateway)


def test_missing_scgi_1_is_served_with_a_warning(raw_gateway):
    mark = raw_gateway.log.mark()
    r = scgi_request(raw_gateway.socket, "GET", "/hello", scgi=False)
    assert (r.status, r.body) == (200, b"hello"), raw_gateway.describe(mark)
    assert raw_gateway.log.wait_for(r"\bWARN\b", r"SCGI", r"missing", since=mark, timeout=5), (
        raw_gateway.describe(mark)
    )


def test_well_formed_request_with_body(raw_gateway):
    body = bytes(range(256)) * 10
    r = scgi_request(raw_gateway.socket, "POST", "/echo", body)
    assert (r.status, r.body) == (200, body), raw_gateway.describe()
    assert r.header("Content-Length") == str(len(body))


def test_body_streams_to_the_app(raw_gateway, scratch):
    # Head and half the body, a pause, then the rest: the app's first read
    # must return during the pause (the gateway does not wait for the whole
    # body before it calls the app).
    marker = scratch / "first-read.txt"
    half = 64 * 1024
    head = scgi_head(scgi_params("POST", "/first-read", body_len=2 * half, query=f"path={marker}"))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(20)
        sock.connect(raw_gateway.socket)
        sock.sendall(head + b"1" * half)
        time.sleep(1.0)
        second_sent_at = time.time()
        sock.sendall(b"2" * half)
        response = parse_cgi_response(read_until_eof(sock))
    assert response.status == 200, raw_gateway.describe()
    assert response.body == f"first=4096 total={2 * half}".encode()
    stamp, first_len = marker.read_text().split()
    assert int(first_len) == 4096
    assert float(stamp) < second_sent_at, (
        f"the first read returned {float(stamp) - second_sent_at:.3f}s after the second half was sent"
    )


def test_write_before_read_with_a_client_that_sends_everything_first(raw_gateway):
    # Like Apache's mod_proxy_scgi: the client sends the whole 8 MiB body
    # before it reads a byte, while the app yields 4 MiB before it reads the
    # body. The gateway must keep taking the body in (spooling it) while the
    # response waits, or both sides block for ever.
    body = os.urandom(8 * MiB)
    first = 4 * MiB
    head = scgi_head(scgi_params("POST", "/write-before-read", body_len=len(body), query=f"first={first}"))
    raw = scgi_exchange(raw_gateway.socket, head + body, timeout=30)
    response = parse_cgi_response(raw)
    assert response.status == 200, raw_gateway.describe()
    assert response.body[:first] == b"x" * first
    assert response.body[first:] == f"\nsha256={hashlib.sha256(body).hexdigest()} len={len(body)}\n".encode()


def read_until_eof(sock) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data
