"""uwsgi behind the real nginx (`--proto uwsgi`, `uwsgi_pass`), with Debian's
stock /etc/nginx/uwsgi_params included as shipped (PATH_INFO =
$document_uri, no SCRIPT_NAME).

The conformance app is the one the SCGI and FastCGI tests use
(validator-wrapped routes, `/raw/*` unwrapped). nginx server `uwsgi` and its
gateways are in conftest.py: `/` stock params, `/unbuffered/` with
uwsgi_request_buffering and uwsgi_buffering off, `/app/` a gateway with
--mount /app, `/par/` a gateway with --threads 40.

A few requests go straight to the gateway's socket: with the raw client of
harness.py (to see the response's first line as the gateway wrote it) and
with `uwsgi_curl` (PyPI uwsgi-tools, an independent client; GETs only: it
sends no CONTENT_LENGTH with -d).
"""

import collections
import concurrent.futures
import hashlib
import http.client
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from harness import (
    KiB,
    MiB,
    http_request,
    pattern_sha256,
    read_http_response,
    uwsgi_request,
    wait_until,
)

LATIN1_CAFE = "/caf\xc3\xa9"  # "/café" as UTF-8 bytes, decoded as latin-1 (PEP 3333)


def url(nginx, path, server="uwsgi"):
    return nginx.url(path, server=server)


def port(nginx):
    return nginx.server_port("uwsgi")


def get_environ(nginx, path, **kw) -> dict:
    r = http_request(port(nginx), kw.pop("method", "GET"), path, **kw)
    assert r.status == 200, r.body[:500]
    return json.loads(r.body)


# ---------------------------------------------------------------------------
# stock uwsgi_params: requests and the environ


def test_get(nginx, uwsgi_gateway):
    r = requests.get(url(nginx, "/hello"), timeout=10)
    assert r.status_code == 200, uwsgi_gateway.describe()
    assert r.text == "hello"
    assert r.headers["Content-Type"].startswith("text/plain")
    assert r.headers["Content-Length"] == "5"


def test_post_echo(nginx, uwsgi_gateway):
    body = bytes(range(256)) * 300 + b"\r\n\0tail"
    r = requests.post(
        url(nginx, "/echo"), data=body, headers={"Content-Type": "application/x-test"}, timeout=10
    )
    assert r.status_code == 200, uwsgi_gateway.describe()
    assert r.content == body
    assert r.headers["Content-Type"] == "application/x-test"


def test_post_empty_body(nginx, uwsgi_gateway):
    r = requests.post(url(nginx, "/echo"), data=b"", timeout=10)
    assert (r.status_code, r.content) == (200, b""), uwsgi_gateway.describe()


def test_unknown_route_is_the_apps_404(nginx, uwsgi_gateway):
    r = requests.get(url(nginx, "/no/such/route"), timeout=10)
    assert r.status_code == 404
    assert r.text == "no route for '/no/such/route'"


def test_environ_with_stock_params(nginx, uwsgi_gateway):
    # Stock uwsgi_params: PATH_INFO=$document_uri and no SCRIPT_NAME.
    env = get_environ(nginx, "/environ?x=1&y=two%20words")
    assert env["REQUEST_METHOD"] == "GET"
    assert env["SCRIPT_NAME"] == ""
    assert env["PATH_INFO"] == "/environ"
    assert env["QUERY_STRING"] == "x=1&y=two%20words"
    assert env["REQUEST_URI"] == "/environ?x=1&y=two%20words"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["SERVER_NAME"] == "localhost"
    assert env["SERVER_PORT"] == str(port(nginx))
    assert env["HTTP_HOST"] == "127.0.0.1"  # Debian's params: HTTP_HOST $host (no port)
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.version"] == [1, 0]
    assert env["wsgi.input_terminated"] is True
    assert env["wsgi.multithread"] is True


def test_path_info_equals_the_request_path(nginx, uwsgi_gateway):
    for path in ("/a/b/c.py/d", "/x/", "/environ/more"):
        env = get_environ(nginx, path + "?dump=environ")
        assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("", path)


def test_percent_encoded_utf8_path_is_latin1_bytes_as_str(nginx, uwsgi_gateway):
    env = get_environ(nginx, "/caf%C3%A9?dump=environ")
    assert env["PATH_INFO"] == LATIN1_CAFE
    assert env["PATH_INFO"].encode("latin-1").decode("utf-8") == "/café"
    assert env["SCRIPT_NAME"] == ""
    assert env["REQUEST_URI"] == "/caf%C3%A9?dump=environ"


def test_content_type_and_length_not_duplicated_as_http_keys(nginx, uwsgi_gateway):
    env = get_environ(
        nginx, "/environ", method="POST", body=b"a=1",
        headers=[("Content-Type", "application/x-www-form-urlencoded")],
    )
    assert env["REQUEST_METHOD"] == "POST"
    assert env["CONTENT_TYPE"] == "application/x-www-form-urlencoded"
    assert env["CONTENT_LENGTH"] == "3"
    assert "HTTP_CONTENT_TYPE" not in env
    assert "HTTP_CONTENT_LENGTH" not in env


def test_repeated_cookie_headers_are_merged(nginx, uwsgi_gateway):
    # nginx 1.22 sends a repeated header as a repeated var.
    env = get_environ(
        nginx, "/environ",
        headers=[("Cookie", "a=1"), ("X-Multi", "one"), ("Cookie", "b=2"), ("X-Multi", "two")],
    )
    assert env["HTTP_COOKIE"] == "a=1; b=2"
    assert env["HTTP_X_MULTI"] == "one, two"


def test_mount_splits_script_name_and_path_info(nginx, uwsgi_mount_gateway):
    env = get_environ(nginx, "/app/environ")
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/app", "/environ")
    env = get_environ(nginx, "/app/x/caf%C3%A9?dump=environ")
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/app", "/x" + LATIN1_CAFE)
    env = get_environ(nginx, "/app/?dump=environ")
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/app", "/")
    r = requests.get(url(nginx, "/app/hello"), timeout=10)
    assert (r.status_code, r.text) == (200, "hello"), uwsgi_mount_gateway.describe()


def test_60kib_cookie(nginx, uwsgi_gateway):
    # uWSGI's 4 KiB default vars block makes this fail ("invalid request
    # block size"); the format allows 65535 bytes, the gateway's default.
    # nginx: large_client_header_buffers 8 64k (conftest) lets the request
    # in; nginx sizes the uwsgi request to fit (at most 64 KiB of vars).
    cookie = "; ".join(f"c{i:05d}={uuid.uuid4().hex}" for i in range(60 * KiB // 40))[: 60 * KiB]
    assert len(cookie) == 60 * KiB
    r = requests.get(url(nginx, "/cookie-sum"), headers={"Cookie": cookie}, timeout=10)
    assert r.status_code == 200, (r.status_code, r.text[:300], uwsgi_gateway.describe())
    assert r.text == f"{len(cookie)} {hashlib.sha256(cookie.encode()).hexdigest()}"


def test_largest_vars_block_nginx_sends(nginx, uwsgi_gateway):
    # nginx refuses to build a uwsgi request whose vars block is over 65535
    # bytes (500, "uwsgi request is too big" in its log). Find the longest
    # cookie it still forwards (bisection; each cookie byte adds one byte to
    # the block): that request's block is exactly 65535 bytes, the most the
    # format can say, and the gateway must take it by default.
    def send(length):
        cookie = "k=" + "v" * (length - 2)
        r = requests.get(url(nginx, "/cookie-sum"), headers={"Cookie": cookie}, timeout=10)
        return cookie, r

    mark = nginx.error_log.mark()
    low, high = 60_000, 65_535  # low is forwarded; high cannot be (the header alone)
    assert send(low)[1].status_code == 200
    while high - low > 1:
        mid = (low + high) // 2
        if send(mid)[1].status_code == 200:
            low = mid
        else:
            high = mid
    assert nginx.error_log.lines_matching(r"uwsgi request is too big: 65536\b", since=mark), (
        "the longest forwarded cookie was not the 65535-byte boundary\n"
        + nginx.error_log.tail(5, since=mark)
    )
    cookie, r = send(low)
    assert r.status_code == 200, (r.status_code, uwsgi_gateway.describe())
    assert r.text == f"{len(cookie)} {hashlib.sha256(cookie.encode()).hexdigest()}"


def test_smaller_max_header_size_is_honoured(gateways, private_nginx):
    gw = gateways.start(
        "uwsgi-small-head",
        ["--app", "tests/apps/conformance.py", "--threads", "2", "--max-header-size", "16384"],
        proto="uwsgi",
    )
    front = private_nginx("uwsgi-small-head", gw, proto="uwsgi")
    small = "s=" + "x" * 10_000
    r = requests.get(front.url("/cookie-sum"), headers={"Cookie": small}, timeout=10)
    assert (r.status_code, r.text) == (
        200, f"{len(small)} {hashlib.sha256(small.encode()).hexdigest()}"
    ), gw.describe()
    mark = gw.log.mark()
    big = "b=" + "x" * 20_000
    r = requests.get(front.url("/cookie-sum"), headers={"Cookie": big}, timeout=10)
    assert r.status_code == 502, (r.status_code, r.text[:200])
    assert gw.log.wait_for(r"vars block of \d+ bytes is over the limit of 16384", since=mark), (
        gw.describe(mark)
    )
    r = requests.get(front.url("/hello"), timeout=10)
    assert (r.status_code, r.text) == (200, "hello")


# ---------------------------------------------------------------------------
# the response's status line


def test_custom_status_and_reason_pass_through_nginx(nginx, uwsgi_gateway):
    conn = http.client.HTTPConnection("127.0.0.1", port(nginx), timeout=10)
    try:
        conn.request("GET", "/status?status=299%20Custom")
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    assert (resp.status, resp.reason) == (299, "Custom"), (resp.status, resp.reason, body)
    assert body == b"status 299 Custom"


def test_response_starts_with_an_http_status_line(uwsgi_gateway):
    # Straight to the socket: the first line is what the gateway wrote.
    r = uwsgi_request(uwsgi_gateway.socket, "GET", "/hello")
    assert r.status_line == "HTTP/1.1 200 OK", r
    assert r.header("Content-Length") == "5"
    assert r.body == b"hello"
    r = uwsgi_request(uwsgi_gateway.socket, "GET", "/status", query="status=299%20Custom")
    assert r.status_line == "HTTP/1.1 299 Custom", r
    assert r.body == b"status 299 Custom"
    # The protocol version follows the request's SERVER_PROTOCOL.
    r = uwsgi_request(
        uwsgi_gateway.socket, "GET", "/hello", extra=[("SERVER_PROTOCOL", "HTTP/1.0")]
    )
    assert r.status_line == "HTTP/1.0 200 OK", r


def test_raw_post_with_content_length(uwsgi_gateway):
    body = os.urandom(200_000)
    r = uwsgi_request(uwsgi_gateway.socket, "POST", "/sha256", body)
    assert r.status_line == "HTTP/1.1 200 OK", r
    assert r.body == f"{hashlib.sha256(body).hexdigest()} {len(body)} past_end=0".encode()


# ---------------------------------------------------------------------------
# uwsgi_curl (PyPI uwsgi-tools), straight to the socket: simple GETs only


def uwsgi_curl(socket_path, target, *args):
    tool = Path(sys.executable).parent / "uwsgi_curl"
    assert tool.exists(), f"{tool} missing: tests/run installs uwsgi-tools"
    return subprocess.run(
        [str(tool), "-t", "10", *args, socket_path, target],
        capture_output=True, timeout=30,
    )


def test_uwsgi_curl_get(uwsgi_gateway):
    done = uwsgi_curl(uwsgi_gateway.socket, "/hello")
    out = done.stdout.decode()
    assert done.returncode == 0, (done.returncode, out, done.stderr.decode())
    head, _, body = out.partition("\r\n\r\n")
    assert head.split("\r\n")[0] == "HTTP/1.1 200 OK", out
    assert body == "hello\n"  # uwsgi_curl prints the response with a newline


def test_uwsgi_curl_get_environ_and_404(uwsgi_gateway):
    done = uwsgi_curl(uwsgi_gateway.socket, "localhost/a/b?dump=environ", "-H", "Xtest: yes")
    assert done.returncode == 0, (done.stdout, done.stderr)
    head, _, body = done.stdout.decode().partition("\r\n\r\n")
    env = json.loads(body)
    assert env["PATH_INFO"] == "/a/b"
    assert env["SCRIPT_NAME"] == ""
    assert env["QUERY_STRING"] == "dump=environ"
    assert env["REQUEST_URI"] == "/a/b?dump=environ"
    assert env["HTTP_XTEST"] == "yes"  # it would send "X-Test" as HTTP_X-TEST
    assert env["HTTP_HOST"] == "localhost"
    done = uwsgi_curl(uwsgi_gateway.socket, "/no/such/route")
    assert done.returncode == 1  # its exit status says "not 2xx"
    assert done.stdout.decode().startswith("HTTP/1.1 404 Not Found\r\n")


# ---------------------------------------------------------------------------
# bodies


@pytest.mark.parametrize("prefix", ["", "/unbuffered"])
def test_10mib_upload_checksum(nginx, uwsgi_gateway, prefix):
    # Also with uwsgi_request_buffering off: unlike SCGI's (test_bodies.py),
    # nginx 1.22's uwsgi module sends the client's Content-Length there.
    body = os.urandom(10 * MiB)
    r = requests.post(url(nginx, f"{prefix}/sha256"), data=body, timeout=60)
    assert r.status_code == 200, uwsgi_gateway.describe()
    assert r.text == f"{hashlib.sha256(body).hexdigest()} {len(body)} past_end=0"


def test_20mib_download_in_64k_chunks(nginx, uwsgi_gateway):
    total, chunk = 20 * MiB, 64 * 1024
    r = requests.get(url(nginx, f"/generate?bytes={total}&chunk={chunk}"), stream=True, timeout=60)
    assert r.status_code == 200, uwsgi_gateway.describe()
    h = hashlib.sha256()
    n = 0
    for piece in r.iter_content(256 * 1024):
        h.update(piece)
        n += len(piece)
    assert n == total
    assert h.hexdigest() == pattern_sha256(total, chunk)


def test_unread_1mib_body_does_not_break_the_response(nginx, uwsgi_gateway):
    # The app answers without reading its 1 MiB body while nginx may still
    # be sending it: the gateway must drain the rest rather than close on
    # nginx (which then logs "broken pipe"/"reset by peer" and may 502).
    # Repeated: how much of the body is in flight when the app answers varies.
    mark = nginx.error_log.mark()
    statuses = collections.Counter()
    for _ in range(50):
        body = os.urandom(1 * MiB)
        r = requests.post(url(nginx, "/no-read"), data=body, timeout=30)
        statuses[r.status_code] += 1
        if r.status_code == 200:
            assert r.text == f"ignored {len(body)} bytes"
    time.sleep(0.3)  # let nginx finish writing its log
    trouble = nginx.error_log.lines_matching(
        r"reset by peer|prematurely closed|broken pipe|upstream", since=mark
    )
    assert statuses == {200: 50} and not trouble, (
        f"statuses of 50 POSTs: {dict(statuses)}\n" + "\n".join(trouble[:5])
    )
    after = requests.get(url(nginx, "/hello"), timeout=10)
    assert (after.status_code, after.text) == (200, "hello")


@pytest.mark.parametrize("prefix", ["", "/unbuffered"])
def test_write_4mib_before_reading_8mib_body_does_not_deadlock(nginx, uwsgi_gateway, prefix):
    # The app yields 4 MiB before it reads its 8 MiB body. A deadlock shows
    # as the client's read timeout (or nginx's 10 s uwsgi_read_timeout: 504).
    # /unbuffered: nginx sends the body while the response is coming back.
    body = os.urandom(8 * MiB)
    first = 4 * MiB
    r = requests.post(
        url(nginx, f"{prefix}/write-before-read?first={first}"), data=body, timeout=(5, 30)
    )
    assert r.status_code == 200, uwsgi_gateway.describe()
    assert len(r.content) > first, len(r.content)
    assert r.content[:first] == b"x" * first
    tail = r.content[first:].decode()
    assert tail == f"\nsha256={hashlib.sha256(body).hexdigest()} len={len(body)}\n"


def test_unbuffered_first_read_returns_before_the_body_is_complete(nginx, uwsgi_gateway, scratch):
    # uwsgi_request_buffering off: nginx passes the body on as it comes, so
    # the app's first read returns while the client still holds back the
    # second half; and (unlike SCGI in nginx 1.22) CONTENT_LENGTH is right.
    marker = scratch / "first-read.txt"
    half = 64 * 1024
    first_half, second_half = os.urandom(half), os.urandom(half)
    head = (
        f"POST /unbuffered/first-read?path={marker} HTTP/1.1\r\n"
        f"Host: localhost\r\nContent-Length: {2 * half}\r\n"
        f"Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port(nginx)), timeout=20) as sock:
        sock.sendall(head + first_half)
        assert wait_until(marker.exists, timeout=10), (
            "the app's first read did not return while half the body was held back\n"
            + uwsgi_gateway.describe()
        )
        sock.sendall(second_half)
        status, _, body = read_http_response(sock, timeout=20)
    assert status == 200, uwsgi_gateway.describe()
    assert body.decode().endswith(f" total={2 * half}"), body
    assert int(marker.read_text().split()[1]) > 0


def chunked_post(nginx, path, chunks, *, pause=0.0, timeout=60):
    """POST with `Transfer-Encoding: chunked` (http.client encodes the
    chunks), optionally pausing between chunks; returns (status, body)."""

    def body():
        for i, chunk in enumerate(chunks):
            if i and pause:
                time.sleep(pause)
            yield chunk

    conn = http.client.HTTPConnection("127.0.0.1", port(nginx), timeout=timeout)
    try:
        conn.request(
            "POST", path, body=body(), encode_chunked=True,
            headers={"Transfer-Encoding": "chunked", "Content-Type": "application/octet-stream"},
        )
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def three_mib_in_chunks():
    data = os.urandom(3 * MiB + 12345)
    sizes = [1, 100, 4096, 65536, 100_000, 262_144]
    chunks, at, i = [], 0, 0
    while at < len(data):
        n = sizes[i % len(sizes)]
        chunks.append(data[at:at + n])
        at += n
        i += 1
    return data, chunks


def test_chunked_upload_with_request_buffering(nginx, uwsgi_gateway):
    # nginx de-chunks the body and sends CONTENT_LENGTH with it (and
    # HTTP_TRANSFER_ENCODING: chunked): CONTENT_LENGTH wins.
    data, chunks = three_mib_in_chunks()
    status, body = chunked_post(nginx, "/sha256", chunks)
    assert status == 200, (status, body[:300], uwsgi_gateway.describe())
    assert body.decode() == f"{hashlib.sha256(data).hexdigest()} {len(data)} past_end=0"
    status, body = chunked_post(nginx, "/environ", [b"abc", b"defg"])
    env = json.loads(body)
    assert env["CONTENT_LENGTH"] == "7"
    assert env["HTTP_TRANSFER_ENCODING"] == "chunked"


def test_chunked_upload_without_request_buffering(nginx, uwsgi_gateway):
    # uwsgi_request_buffering off: nginx 1.22 still reads a chunked body
    # whole before it calls the backend (its uwsgi module only streams
    # bodies of known length), so CONTENT_LENGTH is right here too.
    data, chunks = three_mib_in_chunks()
    status, body = chunked_post(nginx, "/unbuffered/sha256", chunks)
    assert status == 200, (status, body[:300], uwsgi_gateway.describe())
    assert body.decode() == f"{hashlib.sha256(data).hexdigest()} {len(data)} past_end=0"
    status, body = chunked_post(nginx, "/unbuffered/environ", [b"abc", b"defg"], pause=0.2)
    env = json.loads(body)
    assert (env["CONTENT_LENGTH"], env["HTTP_TRANSFER_ENCODING"]) == ("7", "chunked")


def test_curl_chunked_upload(nginx, uwsgi_gateway, scratch):
    # The same with curl, as users do it, through both locations.
    data = os.urandom(3 * MiB)
    path = scratch / "upload.bin"
    path.write_bytes(data)
    expected = f"{hashlib.sha256(data).hexdigest()} {len(data)} past_end=0"
    for prefix in ("", "/unbuffered"):
        done = subprocess.run(
            ["curl", "-sS", "--max-time", "30", "-H", "Transfer-Encoding: chunked",
             "-H", "Content-Type: application/octet-stream",
             "--data-binary", f"@{path}", url(nginx, f"{prefix}/sha256")],
            capture_output=True, timeout=60,
        )
        assert done.returncode == 0, done.stderr.decode()
        assert done.stdout.decode() == expected, (prefix, done.stdout[:300], uwsgi_gateway.describe())


# ---------------------------------------------------------------------------
# responses


def test_streaming_with_x_accel_buffering_no(nginx, uwsgi_gateway, scratch):
    # /lockstep sends X-Accel-Buffering: no and waits, before each block,
    # for the client to acknowledge the previous one: the blocks can only
    # all arrive if each was passed on while the app was still running.
    acks = scratch / "acks.txt"
    blocks = 5
    with socket.create_connection(("127.0.0.1", port(nginx)), timeout=20) as sock:
        sock.sendall(
            f"GET /lockstep?blocks={blocks}&path={acks} HTTP/1.1\r\n"
            f"Host: localhost\r\nConnection: close\r\n\r\n".encode()
        )
        received = b""
        acked = 0
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
            while f"block {acked}\n".encode() in received:
                with open(acks, "a") as f:
                    f.write(f"ack {acked}\n")
                acked += 1
    head, _, _ = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), received[:300]
    assert b"no ack" not in received, received[-300:]
    assert acked == blocks, (acked, received[-300:], uwsgi_gateway.describe())


def test_exception_before_body_gives_500_and_traceback(nginx, uwsgi_gateway):
    message = f"boom-{uuid.uuid4().hex}"
    mark = uwsgi_gateway.log.mark()
    r = requests.get(url(nginx, f"/raise-before-body?message={message}"), timeout=10)
    assert r.status_code == 500, uwsgi_gateway.describe(mark)
    assert message not in r.text  # tracebacks go to the log, not to the client
    assert uwsgi_gateway.log.wait_for("Traceback", since=mark), uwsgi_gateway.describe(mark)
    assert uwsgi_gateway.log.wait_for(message, since=mark), uwsgi_gateway.describe(mark)
    assert uwsgi_gateway.alive()
    after = requests.get(url(nginx, "/hello"), timeout=10)
    assert (after.status_code, after.text) == (200, "hello")


def test_close_is_called_after_client_disconnect(nginx, uwsgi_gateway, scratch):
    # /endless sends X-Accel-Buffering: no, so nginx streams it.
    marker = scratch / "closed.txt"
    with socket.create_connection(("127.0.0.1", port(nginx)), timeout=10) as sock:
        sock.sendall(
            f"GET /endless?path={marker} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()
        )
        got = 0
        while got < 256 * 1024:
            chunk = sock.recv(65536)
            assert chunk, "the endless response ended"
            got += len(chunk)
        assert not marker.exists(), "close() was called while the client was still reading"
    # The client is gone: nginx closes the uwsgi connection; the gateway
    # must stop iterating and call close().
    assert wait_until(marker.exists, timeout=15), (
        "close() not called 15 s after the client disconnected\n" + uwsgi_gateway.describe()
    )
    assert "exhausted=False" in marker.read_text()
    after = requests.get(url(nginx, "/hello"), timeout=10)
    assert (after.status_code, after.text) == (200, "hello")


def test_several_set_cookie_headers_all_arrive(nginx, uwsgi_gateway):
    r = http_request(port(nginx), "GET", "/cookies")
    assert r.status == 200, uwsgi_gateway.describe()
    assert r.header_all("Set-Cookie") == [
        "first=1; Path=/",
        "second=2; Path=/; HttpOnly",
        "third=3; Max-Age=60",
    ]
    assert r.body == b"cookies"


def test_head_has_headers_and_no_body(nginx, uwsgi_gateway):
    conn = http.client.HTTPConnection("127.0.0.1", port(nginx), timeout=10)
    try:
        head = http_request(port(nginx), "HEAD", "/hello", conn=conn)
        assert head.status == 200, uwsgi_gateway.describe()
        assert head.header("Content-Type").startswith("text/plain")
        assert head.body == b""
        # Same connection: stray body bytes would corrupt this response.
        after = http_request(port(nginx), "GET", "/hello", conn=conn)
        assert (after.status, after.body) == (200, b"hello")
    finally:
        conn.close()


def test_204_has_no_body(nginx, uwsgi_gateway):
    conn = http.client.HTTPConnection("127.0.0.1", port(nginx), timeout=10)
    try:
        r = http_request(port(nginx), "GET", "/no-content", conn=conn)
        assert r.status == 204, uwsgi_gateway.describe()
        assert r.body == b""
        assert r.header("Content-Type") is None
        after = http_request(port(nginx), "GET", "/hello", conn=conn)
        assert (after.status, after.body) == (200, b"hello")
    finally:
        conn.close()


def test_40_requests_run_in_parallel_with_40_threads(nginx, uwsgi_par_gateway):
    # Each request waits until 40 are active at once (or 10 s pass): the
    # peak the app recorded shows how many really ran together.
    def one(_):
        return http_request(port(nginx), "GET", "/par/parallel?target=40&timeout=10", timeout=30)

    with concurrent.futures.ThreadPoolExecutor(40) as pool:
        results = list(pool.map(one, range(40)))
    statuses = [r.status for r in results]
    assert statuses == [200] * 40, (statuses, uwsgi_par_gateway.describe())
    peak = requests.get(url(nginx, "/par/peak"), timeout=10).text
    assert peak == "40", f"only {peak} requests were active at once"
