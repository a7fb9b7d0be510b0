"""What every protocol must do the same, written once and run on each cell of
the matrix protocol x front server x lane (`front`, tests/plugins/
conformance.py): ids such as `[fastcgi-nginx-python]`.

The app is tests/apps/conformance.py (validator-wrapped routes, `/raw/*`
unwrapped), behind nginx with each protocol's stock params file as shipped
(Debian's scgi_params: PATH_INFO from DOCUMENT_URI; fastcgi_params:
SCRIPT_NAME = the whole path and no PATH_INFO, yet the app must see the
whole path as PATH_INFO; uwsgi_params: PATH_INFO = $document_uri, no
SCRIPT_NAME), and, for FastCGI and uwsgi, behind Apache and lighttpd. The
cases about what nginx itself does (its params, its error log, its
unbuffered mode, X-Accel-Buffering) take `nginx_front`, the cells behind
nginx only. What only one protocol does stays in its own file
(test_scgi_raw.py, test_wsgi.py, test_fastcgi_nginx.py, test_uwsgi_nginx.py
and the others).
"""

import collections
import concurrent.futures
import hashlib
import http.client
import io
import os
import socket
import time
import uuid

import pytest
import requests

from harness import (
    LATIN1_CAFE,
    MiB,
    get_environ,
    http_request,
    pattern_sha256,
    read_http_response,
    wait_until,
)
from plugins.conformance import PROTOCOLS

def assert_still_serving(front):
    after = requests.get(front.url("/hello"), timeout=10)
    assert (after.status_code, after.text) == (200, "hello"), front.gateway.describe()


# ---------------------------------------------------------------------------
# the lane


def test_forced_lane_is_logged_at_start(nginx_front):
    # RUSTGI_LANE is for tests only: the gateway says at start that it
    # obeys it, so a run cannot silently test the lane it did not mean to.
    # The line comes before the gateway listens, which start() waited for.
    gw = nginx_front.gateway
    assert gw.log.wait_for(rf"RUSTGI_LANE={nginx_front.lane}\b", since=gw.output_start, timeout=1), gw.describe()


def test_the_forced_lane_is_the_one_that_answers(nginx_front):
    # A forced Python lane logs each request it answers; the I/O lane never
    # does. Without this a Python cell that quietly fell back to the I/O
    # lane would still pass every case.
    gw = nginx_front.gateway
    mark = gw.log.mark()
    tag = uuid.uuid4().hex
    r = requests.get(nginx_front.url(f"/hello?lane={tag}"), timeout=10)
    assert r.status_code == 200, gw.describe()
    answered_here = gw.log.wait_for(
        "answered in the Python lane", tag, since=mark, timeout=2 if nginx_front.lane == "python" else 0.3
    )
    assert bool(answered_here) == (nginx_front.lane == "python"), gw.describe()


# ---------------------------------------------------------------------------
# requests and the environ


def test_get(front):
    r = requests.get(front.url("/hello"), timeout=10)
    assert r.status_code == 200, front.gateway.describe()
    assert r.text == "hello"
    assert r.headers["Content-Type"].startswith("text/plain")
    if (front.protocol, front.server) not in {("fastcgi", "apache"), ("ajp", "apache")}:
        # (mod_proxy_fcgi and mod_proxy_ajp answer chunked, whatever the
        # app's Content-Length)
        assert r.headers["Content-Length"] == "5"


def test_post_echo(front):
    body = bytes(range(256)) * 300 + b"\r\n\0tail"  # > one 64 KiB FastCGI record
    r = requests.post(
        front.url("/echo"), data=body, headers={"Content-Type": "application/x-test"}, timeout=10
    )
    assert r.status_code == 200, front.gateway.describe()
    assert r.content == body
    assert r.headers["Content-Type"] == "application/x-test"


def test_post_empty_body(front):
    r = requests.post(front.url("/echo"), data=b"", timeout=10)
    assert (r.status_code, r.content) == (200, b""), front.gateway.describe()


def test_unknown_route_is_the_apps_404(front):
    r = requests.get(front.url("/no/such/route"), timeout=10)
    assert r.status_code == 404
    assert r.text == "no route for '/no/such/route'"


def test_environ_with_stock_params(nginx_front):
    env = get_environ(nginx_front.port, "/environ?x=1&y=two%20words")
    assert env["REQUEST_METHOD"] == "GET"
    assert env["SCRIPT_NAME"] == ""
    assert env["PATH_INFO"] == "/environ"
    assert env["QUERY_STRING"] == "x=1&y=two%20words"
    assert env["REQUEST_URI"] == "/environ?x=1&y=two%20words"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["SERVER_NAME"] == "localhost"
    assert env["SERVER_PORT"] == str(nginx_front.port)
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.version"] == [1, 0]
    assert env["wsgi.input_terminated"] is True
    assert env["wsgi.multithread"] is True


def test_path_info_is_the_whole_request_path(front):
    for path in ("/a/b/c.py/d", "/x/", "/environ/more"):
        env = get_environ(front.port, path + "?dump=environ")
        assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("", path)


def test_percent_encoded_utf8_path_is_latin1_bytes_as_str(front):
    # nginx decodes /caf%C3%A9 to the bytes "/caf\xc3\xa9"; PEP 3333 wants
    # those bytes decoded as latin-1.
    env = get_environ(front.port, "/caf%C3%A9?dump=environ")
    assert env["PATH_INFO"] == LATIN1_CAFE
    assert env["PATH_INFO"].encode("latin-1").decode("utf-8") == "/café"
    assert env["SCRIPT_NAME"] == ""
    assert env["REQUEST_URI"] == "/caf%C3%A9?dump=environ"


def test_content_type_and_length_not_duplicated_as_http_keys(front):
    env = get_environ(
        front.port, "/environ", method="POST", body=b"a=1",
        headers=[("Content-Type", "application/x-www-form-urlencoded")],
    )
    assert env["REQUEST_METHOD"] == "POST"
    assert env["CONTENT_TYPE"] == "application/x-www-form-urlencoded"
    assert env["CONTENT_LENGTH"] == "3"
    assert "HTTP_CONTENT_TYPE" not in env
    assert "HTTP_CONTENT_LENGTH" not in env


def test_repeated_headers_are_merged(nginx_front):
    # nginx 1.22 sends a repeated header as a repeated variable.
    env = get_environ(
        nginx_front.port, "/environ",
        headers=[("Cookie", "a=1"), ("X-Multi", "one"), ("Cookie", "b=2"), ("X-Multi", "two")],
    )
    assert env["HTTP_COOKIE"] == "a=1; b=2"
    assert env["HTTP_X_MULTI"] == "one, two"


# ---------------------------------------------------------------------------
# response heads


def test_several_set_cookie_headers_all_arrive(front):
    r = http_request(front.port, "GET", "/cookies")
    assert r.status == 200, front.gateway.describe()
    assert r.header_all("Set-Cookie") == [
        "first=1; Path=/",
        "second=2; Path=/; HttpOnly",
        "third=3; Max-Age=60",
    ]
    assert r.body == b"cookies"


def test_head_has_headers_and_no_body(front):
    conn = http.client.HTTPConnection("127.0.0.1", front.port, timeout=10)
    try:
        head = http_request(front.port, "HEAD", "/hello", conn=conn)
        assert head.status == 200, front.gateway.describe()
        assert head.header("Content-Type").startswith("text/plain")
        assert head.body == b""
        # Same connection: stray body bytes would corrupt this response.
        after = http_request(front.port, "GET", "/hello", conn=conn)
        assert (after.status, after.body) == (200, b"hello")
    finally:
        conn.close()


def test_204_has_no_body(front):
    conn = http.client.HTTPConnection("127.0.0.1", front.port, timeout=10)
    try:
        r = http_request(front.port, "GET", "/no-content", conn=conn)
        assert r.status == 204, front.gateway.describe()
        assert r.body == b""
        assert r.header("Content-Type") is None
        after = http_request(front.port, "GET", "/hello", conn=conn)
        assert (after.status, after.body) == (200, b"hello")
    finally:
        conn.close()


def test_exception_before_body_gives_500_and_traceback(front):
    gw = front.gateway
    message = f"boom-{uuid.uuid4().hex}"
    mark = gw.log.mark()
    r = requests.get(front.url(f"/raise-before-body?message={message}"), timeout=10)
    assert r.status_code == 500, gw.describe(mark)
    assert message not in r.text  # tracebacks go to the log, not to the client
    assert gw.log.wait_for("Traceback", since=mark), gw.describe(mark)
    assert gw.log.wait_for(message, since=mark), gw.describe(mark)
    assert gw.alive()
    assert_still_serving(front)


def test_wsgi_errors_reach_the_gateway_log(front):
    gw = front.gateway
    message = f"wsgi-errors-{uuid.uuid4().hex}"
    mark = gw.log.mark()
    r = requests.get(front.url(f"/errors?message={message}"), timeout=10)
    assert (r.status_code, r.text) == (200, "logged"), gw.describe(mark)
    assert gw.log.wait_for(message, since=mark), gw.describe(mark)


# ---------------------------------------------------------------------------
# bodies


def test_10mib_upload_checksum(front):
    # Also unbuffered where nginx sends the right length there (not SCGI).
    for prefix in front.body_prefixes:
        body = os.urandom(10 * MiB)
        r = requests.post(front.url(f"{prefix}/sha256"), data=body, timeout=60)
        assert r.status_code == 200, (prefix, front.gateway.describe())
        assert r.text == f"{hashlib.sha256(body).hexdigest()} {len(body)} past_end=0", prefix


def test_20mib_download_in_64k_chunks(front):
    total, chunk = 20 * MiB, 64 * 1024
    r = requests.get(front.url(f"/generate?bytes={total}&chunk={chunk}"), stream=True, timeout=60)
    assert r.status_code == 200, front.gateway.describe()
    h = hashlib.sha256()
    n = 0
    for piece in r.iter_content(256 * 1024):
        h.update(piece)
        n += len(piece)
    assert n == total
    assert h.hexdigest() == pattern_sha256(total, chunk)


def test_unread_1mib_body_does_not_break_the_response(nginx_front):
    # The app answers without reading its 1 MiB body while nginx may still
    # be sending it: the gateway must take (and discard) the rest rather
    # than close on nginx, which then logs "broken pipe"/"reset by peer"
    # and may answer 502. Repeated, because how much of the body is still
    # on its way when the app answers varies from one request to the next.
    nginx = nginx_front.nginx
    mark = nginx.error_log.mark()
    statuses = collections.Counter()
    for _ in range(50):
        body = os.urandom(1 * MiB)
        r = requests.post(nginx_front.url("/no-read"), data=body, timeout=30)
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
    assert_still_serving(nginx_front)


def test_write_4mib_before_reading_8mib_body_does_not_deadlock(nginx_front):
    # The app yields 4 MiB before it reads its 8 MiB body. Measured with
    # nginx 1.22 (request buffering on): nginx reads the upstream's response
    # while it is still sending the body, and once the response head has
    # arrived it sends no more of the body (the backend then waits for bytes
    # that never come). So the gateway must not pass the response head on
    # before it has received the whole body. A deadlock shows as the
    # client's read timeout (or nginx's 10 s read timeout: 504).
    # test_scgi_raw.py has the other half: a client that sends the whole
    # body before reading anything. Unbuffered (not SCGI), nginx sends the
    # body while the response is coming back.
    first = 4 * MiB
    for prefix in nginx_front.body_prefixes:
        body = os.urandom(8 * MiB)
        r = requests.post(
            nginx_front.url(f"{prefix}/write-before-read?first={first}"), data=body, timeout=(5, 30)
        )
        assert r.status_code == 200, (prefix, nginx_front.gateway.describe())
        assert len(r.content) > first, len(r.content)
        assert r.content[:first] == b"x" * first
        tail = r.content[first:].decode()
        assert tail == f"\nsha256={hashlib.sha256(body).hexdigest()} len={len(body)}\n"


def test_parallel_requests_are_not_mixed_up(front):
    # Several different uploads at once; each answer matches its own body.
    bodies = [os.urandom(n) for n in (1, 1000, 100_000, 3 * MiB, 555_555, 42)]

    def post(body):
        return http_request(front.port, "POST", "/sha256", body=body, timeout=60)

    with concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
        results = list(pool.map(post, bodies))
    for body, r in zip(bodies, results):
        assert r.status == 200
        assert r.body.decode() == f"{hashlib.sha256(body).hexdigest()} {len(body)} past_end=0"


def test_unbuffered_first_read_returns_before_the_body_is_complete(streaming_front, scratch):
    # With request buffering off, nginx passes the body on as it comes: the
    # app's first read must return while the client still holds back the
    # second half.
    #
    # nginx 1.22 bug over SCGI (fixed upstream in 2026, nginx PR #1118
    # "SCGI: fixed passing CONTENT_LENGTH in unbuffered mode"): in this mode
    # it sends as CONTENT_LENGTH only what it had read of the body when it
    # connected, then sends the whole body anyway. So there the app sees a
    # short CONTENT_LENGTH, and only the timing is checked;
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
    with socket.create_connection(("127.0.0.1", streaming_front.port), timeout=20) as sock:
        sock.sendall(head + first_half)
        assert wait_until(marker.exists, timeout=10), (
            "the app's first read did not return while half the body was held back\n"
            + streaming_front.gateway.describe()
        )
        if "/unbuffered" not in streaming_front.body_prefixes:
            # The app answers once it has the short CONTENT_LENGTH's worth:
            # let that answer come back before nginx writes the rest of the
            # body to a connection the gateway has closed (a 502).
            time.sleep(1.0)
        sock.sendall(second_half)
        status, _, body = read_http_response(sock, timeout=20)
    assert status == 200, streaming_front.gateway.describe()
    assert body.startswith(b"first="), body
    if "/unbuffered" in streaming_front.body_prefixes:
        assert body.decode().endswith(f" total={2 * half}"), body
    assert int(marker.read_text().split()[1]) > 0


# ---------------------------------------------------------------------------
# wsgi.input's reading methods

LINES_BODY = b"alpha\nbeta is longer than five\n\n\ngamma\r\ndelta-without-newline"


def test_read_without_size(front):
    body = os.urandom(300_000)
    r = requests.post(front.url("/raw/read-all"), data=body, timeout=30)
    assert r.status_code == 200, front.gateway.describe()
    assert r.text == f"{hashlib.sha256(body).hexdigest()} {len(body)} again=0"


def test_readline_with_size(front):
    expected = []
    ref = io.BytesIO(LINES_BODY)
    while line := ref.readline(5):
        expected.append(line.decode())
    r = requests.post(front.url("/readline?n=5"), data=LINES_BODY, timeout=10)
    assert r.status_code == 200, front.gateway.describe()
    assert r.json() == expected


@pytest.mark.parametrize(
    "route, body",
    [
        ("readlines", LINES_BODY),
        ("iterate", LINES_BODY),
        # Lines longer than any read-ahead buffer, and many short ones.
        ("iterate", b"".join([b"a" * 200_000 + b"\n", b"b\n" * 5000, b"c" * 70_000])),
    ],
    ids=["readlines", "iterate", "iterate-long-lines"],
)
def test_lines_of_wsgi_input(front, route, body):
    # readlines() and iterating give what io.BytesIO gives for the same bytes.
    expected = [line.decode() for line in io.BytesIO(body).readlines()]
    r = requests.post(front.url(f"/raw/{route}"), data=body, timeout=30)
    assert r.status_code == 200, front.gateway.describe()
    assert r.json() == expected


# ---------------------------------------------------------------------------
# the client goes away


def test_close_is_called_after_client_disconnect(nginx_front, scratch):
    # /endless sends X-Accel-Buffering: no, so nginx streams it.
    marker = scratch / "closed.txt"
    with socket.create_connection(("127.0.0.1", nginx_front.port), timeout=10) as sock:
        sock.sendall(
            f"GET /endless?path={marker} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()
        )
        got = 0
        while got < 256 * 1024:
            chunk = sock.recv(65536)
            assert chunk, "the endless response ended"
            got += len(chunk)
        assert not marker.exists(), "close() was called while the client was still reading"
    # The client is gone: nginx closes the upstream connection (over FastCGI
    # it never sends ABORT_REQUEST); the gateway must stop iterating and
    # call close().
    assert wait_until(marker.exists, timeout=15), (
        "close() not called 15 s after the client disconnected\n" + nginx_front.gateway.describe()
    )
    assert "exhausted=False" in marker.read_text()
    assert_still_serving(nginx_front)


# ---------------------------------------------------------------------------
# threads (the lane the gateway chooses; a gateway with --threads 40 each)

PARALLEL = {"scgi": (None, "par_gateway"), "fastcgi": ("fcgi", "fcgi_par_gateway"),
            "uwsgi": ("uwsgi", "uwsgi_par_gateway")}


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=[f"{p}-nginx-auto" for p in PROTOCOLS])
def test_40_requests_run_in_parallel_with_40_threads(request, nginx, protocol):
    # Each request waits until 40 are active at once (or 10 s pass): the
    # peak the app recorded shows how many really ran together.
    server, fixture = PARALLEL[protocol]
    gateway = request.getfixturevalue(fixture)
    port = nginx.server_port(server)

    def one(_):
        return http_request(port, "GET", "/par/parallel?target=40&timeout=10", timeout=30)

    with concurrent.futures.ThreadPoolExecutor(40) as pool:
        results = list(pool.map(one, range(40)))
    statuses = [r.status for r in results]
    assert statuses == [200] * 40, (statuses, gateway.describe())
    peak = requests.get(nginx.url("/par/peak", server=server), timeout=10).text
    assert peak == "40", f"only {peak} requests were active at once"
