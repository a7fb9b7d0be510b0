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

import concurrent.futures
import os
import threading
import time
import uuid

import requests

from harness import (
    LATIN1_CAFE,
    MiB,
    get_environ,
    unix_connections,
    wait_until,
)


def url(nginx, path, server="fcgi"):
    return nginx.url(path, server=server)


# ---------------------------------------------------------------------------
# stock fastcgi_params: requests and bodies


# ---------------------------------------------------------------------------
# SCRIPT_NAME / PATH_INFO with other configurations


def test_workaround_params_path_info_is_the_request_path(nginx, fcgi_gateway):
    # fastcgi_param SCRIPT_NAME ""; fastcgi_param PATH_INFO $uri; after the
    # include: both sent, so both are kept as sent.
    env = get_environ(nginx.server_port("fcgi"), "/wa/some/path?dump=environ")
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("", "/wa/some/path")
    env = get_environ(nginx.server_port("fcgi"), "/wa/caf%C3%A9?dump=environ")
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("", "/wa" + LATIN1_CAFE)


def test_mount_splits_script_name_and_path_info(nginx, fcgi_mount_gateway):
    env = get_environ(nginx.server_port("fcgi"), "/app/environ")
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/app", "/environ")
    env = get_environ(nginx.server_port("fcgi"), "/app/x/caf%C3%A9?dump=environ")
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


def test_sigterm_with_idle_kept_connections(gateways, private_nginx):
    # nginx holds idle FCGI_KEEP_CONN connections to the gateway; SIGTERM
    # must still end it cleanly, without waiting for nginx to close them.
    gw = gateways.start(
        "fcgi-ka-term", ["--app", "tests/apps/conformance.py", "--graceful-timeout", "20"],
        proto="fastcgi",
    )
    front = private_nginx("fcgi-ka-term", gw, keepalive=4, proto="fastcgi")
    assert not hammer(front.port, threads=2, per_thread=20)
    assert unix_connections(gw.socket), "no kept connection to test with"
    started = time.monotonic()
    code = gw.terminate(timeout=30)
    took = time.monotonic() - started
    assert code == 0, gw.describe()
    assert took < 15, f"SIGTERM took {took:.1f}s with idle kept connections\n{gw.describe()}"
    assert not os.path.exists(gw.socket)
