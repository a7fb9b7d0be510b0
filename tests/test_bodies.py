"""Request and response bodies through nginx: size, streaming, wsgi.input's
reading methods, early responses, client disconnects."""

import concurrent.futures
import hashlib
import io
import os
import socket
import time

import requests

from harness import MiB, http_request, pattern_sha256, read_http_response, wait_until


def test_10mib_upload_checksum(nginx, main_gateway):
    body = os.urandom(10 * MiB)
    r = requests.post(nginx.url("/sha256"), data=body, timeout=60)
    assert r.status_code == 200, main_gateway.describe()
    assert r.text == f"{hashlib.sha256(body).hexdigest()} {len(body)} past_end=0"


def test_20mib_response_in_64k_chunks(nginx, main_gateway):
    total, chunk = 20 * MiB, 64 * 1024
    r = requests.get(nginx.url(f"/generate?bytes={total}&chunk={chunk}"), stream=True, timeout=60)
    assert r.status_code == 200, main_gateway.describe()
    h = hashlib.sha256()
    n = 0
    for piece in r.iter_content(256 * 1024):
        h.update(piece)
        n += len(piece)
    assert n == total
    assert h.hexdigest() == pattern_sha256(total, chunk)


def test_unread_1mib_body_does_not_break_the_response(nginx, main_gateway):
    mark = nginx.error_log.mark()
    body = os.urandom(1 * MiB)
    r = requests.post(nginx.url("/no-read"), data=body, timeout=30)
    assert r.status_code == 200, main_gateway.describe()
    assert r.text == f"ignored {len(body)} bytes"
    time.sleep(0.3)  # let nginx finish writing its log
    trouble = nginx.error_log.lines_matching(
        r"reset by peer|prematurely closed|broken pipe", since=mark
    )
    assert not trouble, "\n".join(trouble)


def test_write_4mib_before_reading_8mib_body_does_not_deadlock(nginx, main_gateway):
    # The app yields 4 MiB before it reads its 8 MiB body. Measured with
    # nginx 1.22 (request buffering on): nginx reads the upstream's response
    # while it is still sending the body, and once the response head has
    # arrived it sends no more of the body (the backend then waits for bytes
    # that never come). So the gateway must not pass the response head on
    # before it has received the whole body. test_scgi_raw.py has the other
    # half: a client that sends the whole body before reading anything.
    body = os.urandom(8 * MiB)
    first = 4 * MiB
    r = requests.post(nginx.url(f"/write-before-read?first={first}"), data=body, timeout=(5, 30))
    assert r.status_code == 200, main_gateway.describe()
    assert r.content[:first] == b"x" * first
    tail = r.content[first:].decode()
    assert tail == f"\nsha256={hashlib.sha256(body).hexdigest()} len={len(body)}\n"


LINES_BODY = b"alpha\nbeta is longer than five\n\n\ngamma\r\ndelta-without-newline"


def test_read_without_size(nginx, main_gateway):
    body = os.urandom(300_000)
    r = requests.post(nginx.url("/raw/read-all"), data=body, timeout=30)
    assert r.status_code == 200, main_gateway.describe()
    assert r.text == f"{hashlib.sha256(body).hexdigest()} {len(body)} again=0"


def test_readline_with_size(nginx, main_gateway):
    expected = []
    ref = io.BytesIO(LINES_BODY)
    while line := ref.readline(5):
        expected.append(line.decode())
    r = requests.post(nginx.url("/readline?n=5"), data=LINES_BODY, timeout=10)
    assert r.status_code == 200, main_gateway.describe()
    assert r.json() == expected


def test_readlines(nginx, main_gateway):
    expected = [line.decode() for line in io.BytesIO(LINES_BODY).readlines()]
    r = requests.post(nginx.url("/raw/readlines"), data=LINES_BODY, timeout=10)
    assert r.status_code == 200, main_gateway.describe()
    assert r.json() == expected


def test_iterating_over_wsgi_input(nginx, main_gateway):
    expected = [line.decode() for line in io.BytesIO(LINES_BODY)]
    r = requests.post(nginx.url("/raw/iterate"), data=LINES_BODY, timeout=10)
    assert r.status_code == 200, main_gateway.describe()
    assert r.json() == expected


def test_iterating_over_a_long_body_with_long_lines(nginx, main_gateway):
    # Lines longer than any read-ahead buffer, and many short ones.
    body = b"".join([b"a" * 200_000 + b"\n", b"b\n" * 5000, b"c" * 70_000])
    expected = [line.decode() for line in io.BytesIO(body)]
    r = requests.post(nginx.url("/raw/iterate"), data=body, timeout=30)
    assert r.status_code == 200, main_gateway.describe()
    assert r.json() == expected


def test_unbuffered_first_read_returns_before_the_body_is_complete(nginx, main_gateway, scratch):
    # With scgi_request_buffering off, nginx passes the body on as it comes:
    # the app's first read must return while the client still holds back
    # the second half.
    #
    # nginx 1.22 bug (fixed upstream in 2026, nginx PR #1118 "SCGI: fixed
    # passing CONTENT_LENGTH in unbuffered mode"): in this mode it sends as
    # CONTENT_LENGTH only what it had read of the body when it connected,
    # then sends the whole body anyway. So the app sees a short
    # CONTENT_LENGTH here, and this test checks only the timing;
    # test_scgi_raw.py::test_body_streams_to_the_app checks streaming with
    # a correct CONTENT_LENGTH.
    marker = scratch / "first-read.txt"
    half = 64 * 1024
    first_half, second_half = os.urandom(half), os.urandom(half)
    head = (
        f"POST /unbuffered/first-read?path={marker} HTTP/1.1\r\n"
        f"Host: localhost\r\nContent-Length: {2 * half}\r\n"
        f"Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", nginx.port), timeout=20) as sock:
        sock.sendall(head + first_half)
        time.sleep(1.0)
        second_sent_at = time.time()
        sock.sendall(second_half)
        status, _, body = read_http_response(sock, timeout=20)
    assert status == 200, main_gateway.describe()
    assert body.startswith(b"first="), body
    stamp, first_len = marker.read_text().split()
    assert int(first_len) > 0
    assert float(stamp) < second_sent_at, (
        f"the first read returned {float(stamp) - second_sent_at:.3f}s after the second half was sent"
    )


def test_close_is_called_after_client_disconnect(nginx, main_gateway, scratch):
    marker = scratch / "closed.txt"
    with socket.create_connection(("127.0.0.1", nginx.port), timeout=10) as sock:
        sock.sendall(
            f"GET /endless?path={marker} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()
        )
        got = 0
        while got < 256 * 1024:
            chunk = sock.recv(65536)
            assert chunk, "the endless response ended"
            got += len(chunk)
        assert not marker.exists(), "close() was called while the client was still reading"
    # The client is gone; nginx drops the upstream connection and the
    # gateway must stop iterating and call close().
    assert wait_until(marker.exists, timeout=15), (
        "close() not called 15 s after the client disconnected\n" + main_gateway.describe()
    )
    assert "exhausted=False" in marker.read_text()
    after = requests.get(nginx.url("/hello"), timeout=10)
    assert (after.status_code, after.text) == (200, "hello")


def test_parallel_requests_are_not_mixed_up(nginx, main_gateway):
    # Several different uploads at once; each answer matches its own body.
    bodies = [os.urandom(n) for n in (1, 1000, 100_000, 3 * MiB, 555_555, 42)]

    def post(body):
        return http_request(nginx.port, "POST", "/sha256", body=body, timeout=60)

    with concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
        results = list(pool.map(post, bodies))
    for body, r in zip(bodies, results):
        assert r.status == 200
        assert r.body.decode() == f"{hashlib.sha256(body).hexdigest()} {len(body)} past_end=0"

