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

import requests

import uwsgi_client
from harness import (
    LATIN1_CAFE,
    KiB,
    MiB,
    get_environ,
)


def url(nginx, path, server="uwsgi"):
    return nginx.url(path, server=server)


def port(nginx):
    return nginx.server_port("uwsgi")


# ---------------------------------------------------------------------------
# stock uwsgi_params: requests and the environ


def test_http_host_is_the_host_without_its_port(nginx, uwsgi_gateway):
    # Debian's uwsgi_params send HTTP_HOST $host (no port); the rest of the
    # stock environ is checked in test_conformance.py.
    env = get_environ(port(nginx), "/environ?x=1&y=two%20words")
    assert env["HTTP_HOST"] == "127.0.0.1"


def test_mount_splits_script_name_and_path_info(nginx, uwsgi_mount_gateway):
    env = get_environ(port(nginx), "/app/environ")
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/app", "/environ")
    env = get_environ(port(nginx), "/app/x/caf%C3%A9?dump=environ")
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/app", "/x" + LATIN1_CAFE)
    env = get_environ(port(nginx), "/app/?dump=environ")
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
    r = uwsgi_client.request(uwsgi_gateway.socket, "GET", "/hello")
    assert r.status_line == "HTTP/1.1 200 OK", r
    assert r.header("Content-Length") == "5"
    assert r.body == b"hello"
    r = uwsgi_client.request(uwsgi_gateway.socket, "GET", "/status", query="status=299%20Custom")
    assert r.status_line == "HTTP/1.1 299 Custom", r
    assert r.body == b"status 299 Custom"
    # The protocol version follows the request's SERVER_PROTOCOL.
    r = uwsgi_client.request(uwsgi_gateway.socket, "GET", "/hello", protocol="HTTP/1.0")
    assert r.status_line == "HTTP/1.0 200 OK", r


def test_raw_post_with_content_length(uwsgi_gateway):
    body = os.urandom(200_000)
    r = uwsgi_client.request(uwsgi_gateway.socket, "POST", "/sha256", body)
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

