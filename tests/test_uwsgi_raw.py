"""uwsgi (`--proto uwsgi`), spoken by a small raw client (tests/uwsgi_client.py,
written from the protocol description) straight to gateways on Unix
sockets, without a front server.

The gateways are this module's own, each on a socket in the session's temp
dir, with its stderr in tests/.run/logs/uwsgi-raw-<name>-<pid>.log (read
through a descriptor held from the start). The app is
tests/apps/uwsgi_app.py: tests/apps/conformance.py plus a `/body` route for
chunked bodies, all under wsgiref.validate.

Covers the response's HTTP status line, modifier1 0 / 30 / others, uWSGI's
chunked request bodies, the vars-block limit, bad input (for each: the
gateway closes the connection, logs one WARN line that names the problem,
and goes on serving) and, briefly, the conformance cases of the SCGI suite.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
import time

import pytest

import uwsgi_client as uw
from harness import MiB, pattern_sha256, wait_until
from plugins.fronts import module_gateway

APP = "tests/apps/uwsgi_app.py"
MAX_HEADER = 4096


uwsgi_gw = module_gateway("uwsgi-raw-main", ["--app", APP, "--threads", "10"], proto="uwsgi",
                          doc="Default limits; 10 threads (for the concurrency case).")
strict = module_gateway(
    "uwsgi-raw-strict",
    ["--app", APP, "--threads", "2", "--max-header-size", str(MAX_HEADER), "--bad-input-warnings", "0"],
    proto="uwsgi", doc="--max-header-size 4096, for the limit and the bad-input cases (each logged).",
)


@pytest.fixture
def marker(scratch, request):
    """A path for a marker file the app writes (not created)."""
    return scratch / f"{request.node.name.replace('/', '_')[:60]}.txt"


# --------------------------------------------------------------------------
# helpers


def get(gw, path="/hello", **kw) -> uw.UwsgiResponse:
    return uw.request(gw.socket, "GET", path, **kw)


def environ_of(gw, path, **kw) -> dict:
    r = uw.request(gw.socket, "GET", path, query="dump=environ", **kw)
    assert r.status == 200, (r, gw.describe())
    return json.loads(r.body)


def assert_served(gw, what=""):
    r = get(gw)
    assert (r.status_line, r.body) == ("HTTP/1.1 200 OK", b"hello"), (what, r, gw.describe())
    assert gw.alive(), gw.describe()


def warn_lines(gw, since):
    return gw.log.lines_matching(r"\bWARN\b", since=since)


def assert_one_warn(gw, mark, patterns) -> str:
    """Exactly one WARN line since `mark`, and it matches every pattern."""
    found = gw.log.wait_for(r"\bWARN\b", *patterns, since=mark, timeout=5)
    assert found, f"no WARN line matching {patterns}\n" + gw.describe(mark)
    time.sleep(0.2)  # anything else it would log about this connection
    warns = warn_lines(gw, mark)
    assert len(warns) == 1, f"expected one WARN line, got {len(warns)}:\n" + "\n".join(warns)
    return warns[0]


def chunked_params(path="/body", query="", content_length=None, te="chunked", **kw):
    extra = [("HTTP_TRANSFER_ENCODING", te)]
    return uw.uwsgi_params("POST", path, body_len=content_length, query=query, extra=extra, **kw)


def body_answer(raw: bytes, gw) -> dict:
    r = uw.parse_response(raw)
    assert r.status_line == "HTTP/1.1 200 OK", (r, gw.describe())
    return json.loads(r.body)


# --------------------------------------------------------------------------
# the response's status line


@pytest.mark.parametrize("protocol, line", [
    ("HTTP/1.1", "HTTP/1.1 200 OK"),
    ("HTTP/1.0", "HTTP/1.0 200 OK"),
    (None, "HTTP/1.0 200 OK"),
], ids=["http-1.1", "http-1.0", "missing"])
def test_status_line_follows_server_protocol(uwsgi_gw, protocol, line):
    pairs = uw.uwsgi_params("GET", "/hello", protocol=protocol)
    raw = uw.exchange(uwsgi_gw.socket, uw.encode_request(pairs))
    assert raw.startswith(line.encode() + b"\r\n"), raw[:200]
    r = uw.parse_response(raw)
    assert (r.status_line, r.body) == (line, b"hello")
    assert r.header("Content-Length") == "5"


def test_status_line_carries_the_app_status(uwsgi_gw):
    r = get(uwsgi_gw, "/no-such-route")
    assert r.status_line == "HTTP/1.1 404 Not Found", r
    assert r.body == b"no route for '/no-such-route'"


# --------------------------------------------------------------------------
# modifier1


def test_modifier1_0(uwsgi_gw):
    mark = uwsgi_gw.log.mark()
    env = environ_of(uwsgi_gw, "/x/y", modifier1=0)
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("", "/x/y")
    # modifier1 0 cuts nothing: a split sent on purpose is kept as sent
    env = environ_of(uwsgi_gw, "/app/x", modifier1=0, script_name="/app")
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/app", "/app/x")
    assert warn_lines(uwsgi_gw, mark) == []


@pytest.mark.parametrize("path_info, expected", [
    ("/app/x", ("/app", "/x")),
    ("/app/x/y/", ("/app", "/x/y/")),
    ("/app/", ("/app", "/")),
])
def test_modifier1_30_strips_script_name_when_it_is_a_prefix(uwsgi_gw, path_info, expected):
    mark = uwsgi_gw.log.mark()
    env = environ_of(uwsgi_gw, path_info, modifier1=30, script_name="/app")
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == expected
    assert warn_lines(uwsgi_gw, mark) == []


def test_modifier1_30_path_info_equal_to_script_name(uwsgi_gw):
    """The app's root: PATH_INFO /app with SCRIPT_NAME /app is cut to ''
    (PEP 3333: SCRIPT_NAME '/app', PATH_INFO '')."""
    env = environ_of(uwsgi_gw, "/app", modifier1=30, script_name="/app")
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/app", ""), (
        "modifier1 30 with PATH_INFO == SCRIPT_NAME: the app does not see its root"
    )


def test_modifier1_30_leaves_a_non_prefix_alone(uwsgi_gw):
    mark = uwsgi_gw.log.mark()
    env = environ_of(uwsgi_gw, "/application/x", modifier1=30, script_name="/app")
    assert env["PATH_INFO"] == "/application/x"
    assert env["SCRIPT_NAME"] == "/app"
    assert_one_warn(uwsgi_gw, mark, [r"modifier1 30", r'SCRIPT_NAME "/app" is not a prefix of PATH_INFO '
                                                      r'"/application/x"'])


def test_modifier1_30_without_script_name_cuts_nothing(uwsgi_gw):
    mark = uwsgi_gw.log.mark()
    env = environ_of(uwsgi_gw, "/app/x", modifier1=30)
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("", "/app/x")
    assert_one_warn(uwsgi_gw, mark, [r"modifier1 30 without a SCRIPT_NAME var"])


# --------------------------------------------------------------------------
# chunked request bodies (uWSGI's extension)


CHUNKED_SIZES = [0, 1, 4096, 100_003, 1 * MiB]


@pytest.mark.parametrize("size", CHUNKED_SIZES)
def test_chunked_body_is_dechunked(uwsgi_gw, size):
    rng = random.Random(f"uwsgi-chunked-{size}")
    body = rng.randbytes(size)
    sizes = uw.chunk_sizes(size, rng, largest=max(1, min(size // 3, 100_000)))
    framed = uw.encode_chunked(body, sizes, extensions=size == 4096,
                               trailers=[("X-Checksum", "whatever")] if size == 4096 else ())
    data = uw.encode_request(chunked_params(), framed)
    pieces = uw.split_randomly(data, rng, largest=max(8, min(len(data) // 8, 70_000)))
    answer = body_answer(uw.exchange(uwsgi_gw.socket, pieces, pause=0.001, timeout=30), uwsgi_gw)
    assert answer == {
        "sha256": hashlib.sha256(body).hexdigest(),
        "len": size,
        "input_terminated": True,
        "CONTENT_LENGTH": None,
        "HTTP_TRANSFER_ENCODING": "chunked",
    }, f"{len(sizes)} chunks, sent in {len(pieces)} pieces"


def test_chunked_body_with_empty_content_length(uwsgi_gw):
    # nginx sends CONTENT_LENGTH "" for a request without a length: that is
    # no CONTENT_LENGTH, so the chunked body is decoded.
    body = b"abc" * 1000
    data = uw.encode_request(chunked_params(content_length=0), uw.encode_chunked(body, [1, 999, 2000]))
    assert b"CONTENT_LENGTH\x00\x00" in data  # the value is empty
    answer = body_answer(uw.exchange(uwsgi_gw.socket, data), uwsgi_gw)
    assert (answer["sha256"], answer["len"]) == (hashlib.sha256(body).hexdigest(), len(body))
    assert answer["input_terminated"] is True


def test_content_length_wins_over_chunked(uwsgi_gw):
    # What nginx 1.22 sends for a chunked upload: the header and CONTENT_LENGTH,
    # with a body it has already de-chunked. Bytes that look like chunked
    # framing are taken as they are.
    raw = uw.encode_chunked(b"hello world", [5, 6])
    data = uw.encode_request(chunked_params(content_length=len(raw)), raw)
    answer = body_answer(uw.exchange(uwsgi_gw.socket, data), uwsgi_gw)
    assert answer == {
        "sha256": hashlib.sha256(raw).hexdigest(),
        "len": len(raw),
        "input_terminated": True,
        "CONTENT_LENGTH": str(len(raw)),
        "HTTP_TRANSFER_ENCODING": "chunked",
    }


# --------------------------------------------------------------------------
# the vars block's size


def cookie_for_block(size: int, **kw) -> tuple[list, int]:
    """Params whose vars block is exactly `size` bytes (the rest a cookie)."""
    base = len(uw.encode_vars(uw.uwsgi_params("GET", "/hello", query="dump=environ",
                                              extra=[("HTTP_COOKIE", "")], **kw)))
    cookie = "c=" + "x" * (size - base - 2)
    pairs = uw.uwsgi_params("GET", "/hello", query="dump=environ", extra=[("HTTP_COOKIE", cookie)], **kw)
    assert len(uw.encode_vars(pairs)) == size
    return pairs, len(cookie)


@pytest.mark.parametrize("size", [65000, 65535])
def test_huge_vars_block_is_accepted_by_default(uwsgi_gw, size):
    pairs, cookie_len = cookie_for_block(size)
    data = uw.encode_request(pairs)
    assert data[1:3] == size.to_bytes(2, "little")
    r = uw.parse_response(uw.exchange(uwsgi_gw.socket, data))
    assert r.status == 200, (r.status_line, uwsgi_gw.describe())
    assert len(json.loads(r.body)["HTTP_COOKIE"]) == cookie_len


def test_max_header_size_limits_the_vars_block(strict):
    pairs, _ = cookie_for_block(MAX_HEADER)
    r = uw.parse_response(uw.exchange(strict.socket, uw.encode_request(pairs)))
    assert r.status == 200, (r.status_line, strict.describe())

    mark = strict.log.mark()
    pairs, _ = cookie_for_block(5000)
    received = uw.exchange(strict.socket, uw.encode_request(pairs))
    assert received == b""
    assert_one_warn(strict, mark, [r"uwsgi vars block of 5000 bytes is over the limit of 4096"])
    assert_served(strict)


# --------------------------------------------------------------------------
# bad input


GOOD_VARS = uw.encode_vars(uw.uwsgi_params("GET", "/hello"))
AT = 4 + len(GOOD_VARS)  # the offset of a var appended to GOOD_VARS


def bad_block(tail: bytes) -> bytes:
    """GOOD_VARS + `tail` as the vars block (datasize covering both)."""
    return uw.encode_request(GOOD_VARS + tail)


OVER_LIMIT, _ = cookie_for_block(5000)

# (case id, bytes to send, shut down our write side after, regexes the WARN line must match)
BAD_HEADS = [
    ("http-get", b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", False,
     [r'an HTTP request \("GET "\) was sent to the uwsgi socket']),
    ("http-post", b"POST /form HTTP/1.0\r\nContent-Length: 3\r\n\r\na=b", False,
     [r'an HTTP request \("POST"\) was sent to the uwsgi socket']),
    ("modifier1-5", uw.encode_request(uw.uwsgi_params(), modifier1=5), False,
     [r"uwsgi modifier1 5 \(modifier2 0\) is not supported"]),
    ("modifier1-255", uw.encode_request(uw.uwsgi_params(), modifier1=255, modifier2=7), False,
     [r"uwsgi modifier1 255 \(modifier2 7\) is not supported"]),
    ("value-past-block", bad_block(uw.u16le(6) + b"HTTP_X" + uw.u16le(300) + b"v" * 50), False,
     [rf'uwsgi var "HTTP_X" at offset {AT}: value length 300 runs past the block \(50 bytes left\)']),
    ("key-past-block", bad_block(uw.u16le(500) + b"HTTP_Y" * 3), False,
     [rf"uwsgi var at offset {AT}: key length 500 runs past the block \(18 bytes left\)"]),
    ("key-length-cut", bad_block(b"\x05"), False,
     [rf"uwsgi var at offset {AT}: its 2-byte key length runs past the block \(1 byte left\)"]),
    ("value-length-cut", bad_block(uw.u16le(3) + b"KEY"), False,
     [rf'uwsgi var "KEY" at offset {AT}: its 2-byte value length runs past the block \(0 bytes left\)']),
    ("empty-key", bad_block(uw.encode_var(b"", b"value")), False,
     [rf"uwsgi var at offset {AT} has an empty key"]),
    ("block-over-limit", uw.encode_request(OVER_LIMIT), False,
     [r"uwsgi vars block of 5000 bytes is over the limit of 4096"]),
    ("content-length-not-a-number",
     uw.encode_request([(b"CONTENT_LENGTH", b"12a")] + uw.uwsgi_params("POST", "/hello", body_len=None)),
     False, [r"uwsgi CONTENT_LENGTH is not a decimal number: 'a' \(0x61\)"]),
    ("closed-inside-the-block", uw.encode_request(GOOD_VARS, datasize=len(GOOD_VARS) + 100), True,
     [rf"the connection closed after {AT} bytes, before the uwsgi request head was complete"]),
]


@pytest.mark.parametrize("data, shut_wr, patterns", [c[1:] for c in BAD_HEADS], ids=[c[0] for c in BAD_HEADS])
def test_bad_head_is_refused_logged_and_survived(strict, data, shut_wr, patterns):
    mark = strict.log.mark()
    received = uw.exchange(strict.socket, data, shut_wr=shut_wr, timeout=10)
    assert received == b"", f"the gateway answered bad input: {received[:200]!r}"
    assert_one_warn(strict, mark, patterns)
    assert_served(strict, "right after the bad input")


# (case id, chunked body bytes, shut down our write side after, regexes the WARN line must match)
BAD_CHUNKED = [
    ("size-not-hex", b"x\r\nhello\r\n0\r\n\r\n", False,
     [r"chunked body: the chunk size at offset 0 must start with a hex digit, found 'x' \(0x78\)"]),
    ("no-crlf-after-data", b"5\r\nhelloXX\r\n0\r\n\r\n", False,
     [r"chunked body: the 5-byte chunk must be followed by CRLF, found 'X' \(0x58\) at offset 8"]),
    ("bare-lf", b"5\nhello\r\n0\r\n\r\n", False,
     [r"chunked body: LF without CR at offset 1"]),
    ("closed-before-last-chunk", b"5\r\nhello\r\n", True,
     [r"request body ended early: the client closed the connection after 5 bytes, "
      r"before the chunked body's last chunk"]),
]


@pytest.mark.parametrize("framed, shut_wr, patterns", [c[1:] for c in BAD_CHUNKED],
                         ids=[c[0] for c in BAD_CHUNKED])
def test_bad_chunked_body_fails_the_read(strict, marker, framed, shut_wr, patterns):
    mark = strict.log.mark()
    data = uw.encode_request(chunked_params(query=f"path={marker}"), framed)
    received = uw.exchange(strict.socket, data, shut_wr=shut_wr, timeout=10)
    assert b" 200 " not in received.split(b"\r\n", 1)[0], f"served: {received[:200]!r}"
    assert wait_until(marker.exists, timeout=5), "the app's read did not fail\n" + strict.describe(mark)
    assert marker.read_text().startswith("OSError: request body "), marker.read_text()
    line = assert_one_warn(strict, mark, patterns)
    if not shut_wr:  # the app's OSError carries the same description
        described = line.split("bad chunked request body: ", 1)[1].split(" peer=")[0]
        assert described in marker.read_text(), (line, marker.read_text())
    assert_served(strict, "right after the bad chunked body")


def test_body_shorter_than_content_length(strict, marker):
    # 13 of 4321 body bytes, then the client shuts down its write side.
    mark = strict.log.mark()
    data = uw.encode_request(uw.uwsgi_params("POST", "/body", body_len=4321, query=f"path={marker}"),
                             b"b" * 13)
    received = uw.exchange(strict.socket, data, shut_wr=True, timeout=10)
    assert b" 200 " not in received.split(b"\r\n", 1)[0], f"served: {received[:200]!r}"
    assert wait_until(marker.exists, timeout=5), "the app's read did not fail\n" + strict.describe(mark)
    assert "after 13 of 4321 bytes" in marker.read_text(), marker.read_text()
    assert_one_warn(strict, mark, [r"request body ended early", r"\b13 of 4321 bytes"])
    assert_served(strict, "right after the short body")


# --------------------------------------------------------------------------
# the conformance cases of the SCGI suite, over raw uwsgi


def test_validated_get_and_post(uwsgi_gw):
    r = get(uwsgi_gw, "/hello")
    assert (r.status, r.body, r.header("Content-Type")) == (200, b"hello", "text/plain; charset=utf-8")
    body = bytes(range(256)) * 10
    r = uw.request(uwsgi_gw.socket, "POST", "/echo", body,
                   extra=[("CONTENT_TYPE", "application/x-test")])
    assert (r.status, r.body) == (200, body), uwsgi_gw.describe()
    assert r.header("Content-Length") == str(len(body))
    env = environ_of(uwsgi_gw, "/environ/check", extra=[("HTTP_X_CUSTOM", "yes")])
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.version"] == [1, 0]
    assert env["HTTP_X_CUSTOM"] == "yes"
    assert env["REQUEST_METHOD"] == "GET"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"


def test_5_mib_upload(uwsgi_gw):
    body = os.urandom(5 * MiB)
    r = uw.request(uwsgi_gw.socket, "POST", "/sha256", body, timeout=60)
    assert r.status == 200, uwsgi_gw.describe()
    assert r.body == f"{hashlib.sha256(body).hexdigest()} {len(body)} past_end=0".encode()


def test_5_mib_streamed_download(uwsgi_gw):
    total = 5 * MiB
    r = get(uwsgi_gw, "/generate", query=f"bytes={total}&chunk=65536", timeout=60)
    assert r.status_line == "HTTP/1.1 200 OK", uwsgi_gw.describe()
    assert r.header("Content-Length") == str(total)
    assert len(r.body) == total
    assert hashlib.sha256(r.body).hexdigest() == pattern_sha256(total, 65536)


def test_exception_gives_500(uwsgi_gw):
    mark = uwsgi_gw.log.mark()
    r = get(uwsgi_gw, "/raise-before-body", query="message=uwsgi-boom")
    assert r.status_line == "HTTP/1.1 500 Internal Server Error", r
    assert uwsgi_gw.log.wait_for(r"uwsgi-boom", since=mark), uwsgi_gw.describe(mark)
    assert_served(uwsgi_gw)


def test_disconnect_during_slow_stream_calls_close(uwsgi_gw, marker):
    data = uw.encode_request(uw.uwsgi_params("GET", "/endless", query=f"path={marker}"))
    with uw.connect(uwsgi_gw.socket) as sock:
        sock.sendall(data)
        received = b""
        while len(received) < 256 * 1024:
            chunk = sock.recv(65536)
            assert chunk, f"closed early: {received[:200]!r}"
            received += chunk
        assert received.startswith(b"HTTP/1.1 200 OK\r\n"), received[:200]
        assert not marker.exists(), "close() called while the client was reading"
    assert wait_until(marker.exists, timeout=10), "close() was not called\n" + uwsgi_gw.describe()
    assert marker.read_text().startswith("closed after"), marker.read_text()
    assert "exhausted=False" in marker.read_text()
    assert_served(uwsgi_gw)


def test_10_concurrent_slow_requests(uwsgi_gw):
    # /parallel waits until 10 requests are running at once (or 10 s pass)
    # and answers the peak it saw.
    results: list = [None] * 10
    errors: list = []

    def one(i):
        try:
            results[i] = get(uwsgi_gw, "/parallel", query="target=10&timeout=10", timeout=30)
        except Exception as e:  # reported below
            errors.append(repr(e))

    started = time.monotonic()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(40)
    elapsed = time.monotonic() - started
    assert not errors, errors
    assert [(r.status, r.body) for r in results] == [(200, b"10")] * 10, uwsgi_gw.describe()
    assert elapsed < 8, f"took {elapsed:.1f}s: the requests did not run together"
