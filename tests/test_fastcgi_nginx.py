"""FastCGI behind the real nginx (`--proto fastcgi`, `fastcgi_pass`), with
Debian's stock /etc/nginx/fastcgi_params included as shipped.

The conformance app is the one the SCGI tests use (validator-wrapped routes,
`/raw/*` unwrapped). nginx servers and gateways are in conftest.py:
- server `fcgi`: `/` stock params (SCRIPT_NAME = the whole path, no
  PATH_INFO), `/wa/` the common workaround (SCRIPT_NAME "" and PATH_INFO
  $uri after the include), `/app/` a gateway with --mount /app, `/par/` a
  gateway with --threads 40;
- server `fcgi-quiet`: a gateway with --no-fastcgi-stderr;
- servers `fcgi-ka` (upstream keepalive 4 + fastcgi_keep_conn on) and
  `fcgi-ka-plain` (no keep_conn), both to the gateway `fcgi-ka`.
"""

import collections
import concurrent.futures
import hashlib
import http.client
import json
import os
import socket
import threading
import time
import uuid

import requests

from harness import (
    MiB,
    Location,
    Nginx,
    http_request,
    pattern_sha256,
    unix_connections,
    wait_until,
)

LATIN1_CAFE = "/caf\xc3\xa9"  # "/café" as UTF-8 bytes, decoded as latin-1 (PEP 3333)


def url(nginx, path, server="fcgi"):
    return nginx.url(path, server=server)


def get_environ(nginx, path, server="fcgi", **kw) -> dict:
    r = http_request(nginx.server_port(server), kw.pop("method", "GET"), path, **kw)
    assert r.status == 200, r.body[:500]
    return json.loads(r.body)


# ---------------------------------------------------------------------------
# stock fastcgi_params: requests and bodies


def test_get(nginx, fcgi_gateway):
    r = requests.get(url(nginx, "/hello"), timeout=10)
    assert r.status_code == 200, fcgi_gateway.describe()
    assert r.text == "hello"
    assert r.headers["Content-Type"].startswith("text/plain")
    assert r.headers["Content-Length"] == "5"


def test_post_echo(nginx, fcgi_gateway):
    body = bytes(range(256)) * 300 + b"\r\n\0tail"  # > one 64 KiB record
    r = requests.post(
        url(nginx, "/echo"), data=body, headers={"Content-Type": "application/x-test"}, timeout=10
    )
    assert r.status_code == 200, fcgi_gateway.describe()
    assert r.content == body
    assert r.headers["Content-Type"] == "application/x-test"


def test_post_empty_body(nginx, fcgi_gateway):
    r = requests.post(url(nginx, "/echo"), data=b"", timeout=10)
    assert (r.status_code, r.content) == (200, b""), fcgi_gateway.describe()


def test_unknown_route_is_the_apps_404(nginx, fcgi_gateway):
    r = requests.get(url(nginx, "/no/such/route"), timeout=10)
    assert r.status_code == 404
    assert r.text == "no route for '/no/such/route'"


def test_environ_with_stock_params(nginx, fcgi_gateway):
    # Stock fastcgi_params: SCRIPT_NAME=$fastcgi_script_name (the whole
    # path) and no PATH_INFO. The app must see the whole path as PATH_INFO.
    env = get_environ(nginx, "/environ?x=1&y=two%20words")
    assert env["REQUEST_METHOD"] == "GET"
    assert env["SCRIPT_NAME"] == ""
    assert env["PATH_INFO"] == "/environ"
    assert env["QUERY_STRING"] == "x=1&y=two%20words"
    assert env["REQUEST_URI"] == "/environ?x=1&y=two%20words"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["SERVER_NAME"] == "localhost"
    assert env["SERVER_PORT"] == str(nginx.server_port("fcgi"))
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.version"] == [1, 0]
    assert env["wsgi.input_terminated"] is True
    assert env["wsgi.multithread"] is True


def test_deep_path_is_all_path_info(nginx, fcgi_gateway):
    env = get_environ(nginx, "/a/b/c.py/d?dump=environ")
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("", "/a/b/c.py/d")


def test_percent_encoded_utf8_path_is_latin1_bytes_as_str(nginx, fcgi_gateway):
    env = get_environ(nginx, "/caf%C3%A9?dump=environ")
    assert env["PATH_INFO"] == LATIN1_CAFE
    assert env["PATH_INFO"].encode("latin-1").decode("utf-8") == "/café"
    assert env["SCRIPT_NAME"] == ""
    assert env["REQUEST_URI"] == "/caf%C3%A9?dump=environ"


def test_content_type_and_length_not_duplicated_as_http_keys(nginx, fcgi_gateway):
    env = get_environ(
        nginx, "/environ", method="POST", body=b"a=1",
        headers=[("Content-Type", "application/x-www-form-urlencoded")],
    )
    assert env["CONTENT_TYPE"] == "application/x-www-form-urlencoded"
    assert env["CONTENT_LENGTH"] == "3"
    assert "HTTP_CONTENT_TYPE" not in env
    assert "HTTP_CONTENT_LENGTH" not in env


def test_repeated_cookie_headers_are_merged(nginx, fcgi_gateway):
    env = get_environ(
        nginx, "/environ",
        headers=[("Cookie", "a=1"), ("X-Multi", "one"), ("Cookie", "b=2"), ("X-Multi", "two")],
    )
    assert env["HTTP_COOKIE"] == "a=1; b=2"
    assert env["HTTP_X_MULTI"] == "one, two"


def test_10mib_upload_checksum(nginx, fcgi_gateway):
    body = os.urandom(10 * MiB)
    r = requests.post(url(nginx, "/sha256"), data=body, timeout=60)
    assert r.status_code == 200, fcgi_gateway.describe()
    assert r.text == f"{hashlib.sha256(body).hexdigest()} {len(body)} past_end=0"


def test_20mib_download_in_64k_chunks(nginx, fcgi_gateway):
    total, chunk = 20 * MiB, 64 * 1024
    r = requests.get(url(nginx, f"/generate?bytes={total}&chunk={chunk}"), stream=True, timeout=60)
    assert r.status_code == 200, fcgi_gateway.describe()
    h = hashlib.sha256()
    n = 0
    for piece in r.iter_content(256 * 1024):
        h.update(piece)
        n += len(piece)
    assert n == total
    assert h.hexdigest() == pattern_sha256(total, chunk)


def test_unread_1mib_body_does_not_break_the_response(nginx, fcgi_gateway):
    # The app answers without reading its 1 MiB body while nginx is still
    # sending it in STDIN records: the gateway must take (and discard) the
    # rest of STDIN rather than close on nginx, which would then fail its
    # write ("Broken pipe while sending request to upstream") and answer 502.
    # Repeated, because how much of the body is still on its way when the
    # app answers varies from one request to the next.
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


def test_write_4mib_before_reading_8mib_body_does_not_deadlock(nginx, fcgi_gateway):
    # The app yields 4 MiB before it reads its 8 MiB body; nginx sends the
    # body in STDIN records while it reads the response. A deadlock shows as
    # the client's read timeout (or nginx's 10 s fastcgi_read_timeout: 504).
    body = os.urandom(8 * MiB)
    first = 4 * MiB
    r = requests.post(url(nginx, f"/write-before-read?first={first}"), data=body, timeout=(5, 30))
    assert r.status_code == 200, fcgi_gateway.describe()
    assert len(r.content) > first, len(r.content)
    assert r.content[:first] == b"x" * first
    tail = r.content[first:].decode()
    assert tail == f"\nsha256={hashlib.sha256(body).hexdigest()} len={len(body)}\n"


def test_exception_before_body_gives_500_and_traceback(nginx, fcgi_gateway):
    message = f"boom-{uuid.uuid4().hex}"
    mark = fcgi_gateway.log.mark()
    r = requests.get(url(nginx, f"/raise-before-body?message={message}"), timeout=10)
    assert r.status_code == 500, fcgi_gateway.describe(mark)
    assert message not in r.text  # tracebacks go to the log, not to the client
    assert fcgi_gateway.log.wait_for("Traceback", since=mark), fcgi_gateway.describe(mark)
    assert fcgi_gateway.log.wait_for(message, since=mark), fcgi_gateway.describe(mark)
    assert fcgi_gateway.alive()
    after = requests.get(url(nginx, "/hello"), timeout=10)
    assert (after.status_code, after.text) == (200, "hello")


def test_close_is_called_after_client_disconnect(nginx, fcgi_gateway, scratch):
    # /endless sends X-Accel-Buffering: no, so nginx streams it.
    marker = scratch / "closed.txt"
    with socket.create_connection(("127.0.0.1", nginx.server_port("fcgi")), timeout=10) as sock:
        sock.sendall(
            f"GET /endless?path={marker} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()
        )
        got = 0
        while got < 256 * 1024:
            chunk = sock.recv(65536)
            assert chunk, "the endless response ended"
            got += len(chunk)
        assert not marker.exists(), "close() was called while the client was still reading"
    # The client is gone: nginx closes the FastCGI connection (it never
    # sends ABORT_REQUEST); the gateway must stop iterating and call close().
    assert wait_until(marker.exists, timeout=15), (
        "close() not called 15 s after the client disconnected\n" + fcgi_gateway.describe()
    )
    assert "exhausted=False" in marker.read_text()
    after = requests.get(url(nginx, "/hello"), timeout=10)
    assert (after.status_code, after.text) == (200, "hello")


def test_several_set_cookie_headers_all_arrive(nginx, fcgi_gateway):
    r = http_request(nginx.server_port("fcgi"), "GET", "/cookies")
    assert r.status == 200, fcgi_gateway.describe()
    assert r.header_all("Set-Cookie") == [
        "first=1; Path=/",
        "second=2; Path=/; HttpOnly",
        "third=3; Max-Age=60",
    ]
    assert r.body == b"cookies"


def test_head_has_headers_and_no_body(nginx, fcgi_gateway):
    port = nginx.server_port("fcgi")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        head = http_request(port, "HEAD", "/hello", conn=conn)
        assert head.status == 200, fcgi_gateway.describe()
        assert head.header("Content-Type").startswith("text/plain")
        assert head.body == b""
        # Same connection: stray body bytes would corrupt this response.
        after = http_request(port, "GET", "/hello", conn=conn)
        assert (after.status, after.body) == (200, b"hello")
    finally:
        conn.close()


def test_204_has_no_body(nginx, fcgi_gateway):
    port = nginx.server_port("fcgi")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        r = http_request(port, "GET", "/no-content", conn=conn)
        assert r.status == 204, fcgi_gateway.describe()
        assert r.body == b""
        assert r.header("Content-Type") is None
        after = http_request(port, "GET", "/hello", conn=conn)
        assert (after.status, after.body) == (200, b"hello")
    finally:
        conn.close()


def test_40_requests_run_in_parallel_with_40_threads(nginx, fcgi_par_gateway):
    # Each request waits until 40 are active at once (or 10 s pass): the
    # peak the app recorded shows how many really ran together.
    port = nginx.server_port("fcgi")

    def one(_):
        return http_request(port, "GET", "/par/parallel?target=40&timeout=10", timeout=30)

    with concurrent.futures.ThreadPoolExecutor(40) as pool:
        results = list(pool.map(one, range(40)))
    statuses = [r.status for r in results]
    assert statuses == [200] * 40, (statuses, fcgi_par_gateway.describe())
    peak = requests.get(url(nginx, "/par/peak"), timeout=10).text
    assert peak == "40", f"only {peak} requests were active at once"


# ---------------------------------------------------------------------------
# SCRIPT_NAME / PATH_INFO with other configurations


def test_workaround_params_path_info_is_the_request_path(nginx, fcgi_gateway):
    # fastcgi_param SCRIPT_NAME ""; fastcgi_param PATH_INFO $uri; after the
    # include: both sent, so both are kept as sent.
    env = get_environ(nginx, "/wa/some/path?dump=environ")
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("", "/wa/some/path")
    env = get_environ(nginx, "/wa/caf%C3%A9?dump=environ")
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("", "/wa" + LATIN1_CAFE)


def test_mount_splits_script_name_and_path_info(nginx, fcgi_mount_gateway):
    env = get_environ(nginx, "/app/environ")
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/app", "/environ")
    env = get_environ(nginx, "/app/x/caf%C3%A9?dump=environ")
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/app", "/x" + LATIN1_CAFE)
    r = requests.get(url(nginx, "/app/hello"), timeout=10)
    assert (r.status_code, r.text) == (200, "hello"), fcgi_mount_gateway.describe()


# ---------------------------------------------------------------------------
# wsgi.errors and FCGI_STDERR


def test_wsgi_errors_reach_nginx_error_log_and_gateway_log(nginx, fcgi_gateway):
    message = f"wsgi-errors-{uuid.uuid4().hex}"
    mark, gw_mark = nginx.error_log.mark(), fcgi_gateway.log.mark()
    r = requests.get(url(nginx, f"/errors?message={message}"), timeout=10)
    assert (r.status_code, r.text) == (200, "logged"), fcgi_gateway.describe(gw_mark)
    assert nginx.error_log.wait_for("FastCGI sent in stderr", message, since=mark), (
        nginx.error_log.tail(20, since=mark)
    )
    assert fcgi_gateway.log.wait_for(message, since=gw_mark), fcgi_gateway.describe(gw_mark)


def test_no_fastcgi_stderr_keeps_wsgi_errors_in_the_gateway_log(nginx, fcgi_quiet_gateway):
    message = f"quiet-errors-{uuid.uuid4().hex}"
    mark, gw_mark = nginx.error_log.mark(), fcgi_quiet_gateway.log.mark()
    r = requests.get(url(nginx, f"/errors?message={message}", server="fcgi-quiet"), timeout=10)
    assert (r.status_code, r.text) == (200, "logged"), fcgi_quiet_gateway.describe(gw_mark)
    assert fcgi_quiet_gateway.log.wait_for(message, since=gw_mark), fcgi_quiet_gateway.describe(gw_mark)
    # nginx logs STDERR records as it reads them, before the response ends.
    time.sleep(0.5)
    leaked = nginx.error_log.lines_matching(message, since=mark)
    assert not leaked, "\n".join(leaked)


# ---------------------------------------------------------------------------
# keepalive: upstream keepalive + fastcgi_keep_conn on


class ConnectionSampler:
    """Samples the gateway-side connections of a Unix socket
    (`unix_connections`) in a thread, remembering every inode it saw."""

    def __init__(self, path):
        self.path = path
        self.seen: set[int] = set()
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.seen |= unix_connections(self.path)
            self.samples += 1
            time.sleep(0.002)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def hammer(port: int, threads: int, per_thread: int) -> list[str]:
    """`threads` clients, each one requests.Session (HTTP keep-alive to
    nginx), `per_thread` requests each: GET /hello, and every 10th a POST
    /echo of a body of its own. Returns the failures."""

    def client(t):
        failures = []
        with requests.Session() as s:
            for i in range(per_thread):
                try:
                    if i % 10 == 9:
                        body = f"{t}-{i}-{uuid.uuid4().hex}".encode() * (i % 7 + 1)
                        r = s.post(f"http://127.0.0.1:{port}/echo", data=body, timeout=10)
                        ok = r.status_code == 200 and r.content == body
                    else:
                        r = s.get(f"http://127.0.0.1:{port}/hello", timeout=10)
                        ok = r.status_code == 200 and r.text == "hello"
                    if not ok:
                        failures.append(f"client {t} request {i}: {r.status_code} {r.content[:100]!r}")
                except requests.RequestException as e:
                    failures.append(f"client {t} request {i}: {e}")
        return failures

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        return [f for fs in pool.map(client, range(threads)) for f in fs]


def test_keepalive_upstream_carries_thousands_of_requests_on_a_handful_of_connections(
    nginx, fcgi_ka_gateway
):
    sock = fcgi_ka_gateway.socket
    mark = nginx.error_log.mark()
    with ConnectionSampler(sock) as sampler:
        failures = hammer(nginx.server_port("fcgi-ka"), threads=4, per_thread=750)
    assert not failures, f"{len(failures)} of 3000 failed, first: {failures[:5]}\n" + (
        fcgi_ka_gateway.describe()
    )
    # nginx keeps at most `keepalive 4` idle connections per worker (one
    # worker), and 4 clients never need more than 4 at once.
    assert 1 <= len(sampler.seen) <= 8, (
        f"{len(sampler.seen)} different gateway connections seen in {sampler.samples} samples"
    )
    still_open = unix_connections(sock)
    assert 1 <= len(still_open) <= 8, f"{len(still_open)} connections open after the run"
    trouble = nginx.error_log.lines_matching(r"upstream|FastCGI", since=mark)
    assert not trouble, "\n".join(trouble[:10])


def test_keepalive_connections_survive_unread_bodies(nginx, fcgi_ka_gateway):
    # An app that does not read its 1 MiB body: the gateway must skip the
    # rest of STDIN before the next request on the same kept connection.
    port = nginx.server_port("fcgi-ka")
    with requests.Session() as s:
        for i in range(5):
            body = os.urandom(MiB)
            r = s.post(f"http://127.0.0.1:{port}/no-read", data=body, timeout=30)
            assert (r.status_code, r.text) == (200, f"ignored {MiB} bytes"), fcgi_ka_gateway.describe()
            r = s.post(f"http://127.0.0.1:{port}/echo", data=b"after %d" % i, timeout=10)
            assert (r.status_code, r.content) == (200, b"after %d" % i), fcgi_ka_gateway.describe()
    assert 1 <= len(unix_connections(fcgi_ka_gateway.socket)) <= 8


def test_without_keep_conn_connections_are_not_kept(nginx, fcgi_ka_gateway):
    # Same gateway, no fastcgi_keep_conn: the gateway closes each connection
    # after its request. Connections kept by the keepalive location (other
    # tests) are left out by taking them as a baseline.
    sock = fcgi_ka_gateway.socket
    before = unix_connections(sock)
    port = nginx.server_port("fcgi-ka-plain")
    with ConnectionSampler(sock) as sampler:
        failures = hammer(port, threads=4, per_thread=100)
        # A fast request's connection lives for microseconds; these last
        # long enough (50 ms) for the sampler to see each one.
        for _ in range(12):
            r = requests.get(f"http://127.0.0.1:{port}/slow?seconds=0.05&bytes=10", timeout=10)
            assert r.status_code == 200
    assert not failures, failures[:5]
    assert wait_until(lambda: not (unix_connections(sock) - before), timeout=5), (
        f"{len(unix_connections(sock) - before)} connections still open"
    )
    # One connection per request: the sampler sees many of them go by.
    assert len(sampler.seen - before) > 8, (
        f"only {len(sampler.seen - before)} connections seen for 412 requests"
    )


def test_sigterm_with_idle_kept_connections(gateways, nginx_binary, run_dir, log_dir):
    # nginx holds idle FCGI_KEEP_CONN connections to the gateway; SIGTERM
    # must still end it cleanly, without waiting for nginx to close them.
    gw = gateways.start(
        "fcgi-ka-term", ["--app", "tests/apps/conformance.py", "--graceful-timeout", "20"],
        proto="fastcgi",
    )
    own_dir = run_dir / "nginx-fcgi-ka-term"
    own_dir.mkdir(mode=0o755, exist_ok=True)
    front = Nginx(
        nginx_binary, own_dir, log_dir / "nginx-fcgi-ka-term",
        [Location("/", "ka_term", proto="fastcgi", keep_conn=True)],
        upstreams=f"    upstream ka_term {{ server unix:{gw.socket}; keepalive 4; }}",
    )
    try:
        front.start()
        assert not hammer(front.port, threads=2, per_thread=20)
        assert unix_connections(gw.socket), "no kept connection to test with"
        started = time.monotonic()
        code = gw.terminate(timeout=30)
        took = time.monotonic() - started
        assert code == 0, gw.describe()
        assert took < 15, f"SIGTERM took {took:.1f}s with idle kept connections\n{gw.describe()}"
        assert not os.path.exists(gw.socket)
    finally:
        front.stop()
