"""rustgi-gateway --proto uwsgi behind real Apache httpd (mod_proxy_uwsgi)
and lighttpd (mod_scgi with `scgi.protocol = "uwsgi"`).

Each test starts its own gateways and front servers (tests/frontservers.py)
and stops them all in its teardown, whatever happened; the teardown fails
the test if anything is left running. The app is tests/apps/front_app.py
(validator-wrapped): it echoes the environ and the body as JSON. A raw
capture (`UwsgiCapture`, built on tests/uwsgi_client.py) records what the
front server itself sends, where the test is about that.
"""

from __future__ import annotations


import pytest
import requests

import uwsgi_client as uw
from frontservers import (
    CaptureServer,
    check_chunked_upload,
    check_echo_requests,
    check_path_info_is_the_request_path,
    env_of,
    explain,
    latin1_path,
)
from harness import APPS

ECHO = ["--app", str(APPS / "front_app.py")]


# mod_proxy_uwsgi for Apache; lighttpd speaks uwsgi through mod_scgi.
APACHE_UWSGI = ["proxy_uwsgi"]
LIGHTTPD_UWSGI = ("mod_scgi",)


class UwsgiCapture(CaptureServer):
    """For each connection reads one uwsgi request, records (modifier1,
    modifier2, env dict, body) in `requests` and answers `response` as it
    is, then closes."""

    OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\ncaptured\n"

    def __init__(self, path: str, response: bytes = OK):
        super().__init__(path, response)

    def _connection(self, conn):
        with conn:
            try:
                m1, m2, pairs, body = uw.read_request(conn)
            except (OSError, EOFError, ValueError) as e:
                self.errors.append(repr(e))
                return
            self.requests.append((m1, m2, dict(pairs), body))
            try:
                conn.sendall(self.response)
            except OSError:
                pass


# ---------------------------------------------------------------------------
# helpers


def proxy_errors(server) -> list[str]:
    return server.error_log.lines_matching(r"proxy_uwsgi:error|proxy:error")


# ---------------------------------------------------------------------------
# 1. Apache mod_proxy_uwsgi


@pytest.fixture
def apache_app(per_test_gateway, apache):
    """The echo app behind `ProxyPass "/app" ...`."""
    gw = per_test_gateway("echo", ECHO + ["--threads", "4"], proto="uwsgi")
    server = apache("app", f'ProxyPass "/app" "unix:{gw.socket}|uwsgi://uwapp/"\n', APACHE_UWSGI)
    return server, gw


def test_apache_get_post_and_authorization(apache_app):
    server, gw = apache_app
    s = requests.Session()
    got, *_ = check_echo_requests(server, gw, prefix="/app", script_name="/app", s=s)
    assert got["environ"]["SERVER_SOFTWARE"].startswith("Apache")

    # the app's status comes through Apache's parse of our HTTP status line
    r = s.get(server.url("/app/x/status/418"))
    assert r.status_code == 418, f"{r.status_code} {r.text[:300]}\n{explain(server, gw)}"
    assert r.json()["environ"]["PATH_INFO"] == "/x/status/418"
    assert not proxy_errors(server), explain(server, gw)


def test_apache_sends_the_prefix_as_script_name_and_the_split_is_kept(apache_app, procs, unique, apache,
                                                                     run_dir):
    server, gw = apache_app
    # What Apache itself sends (raw capture behind the same configuration).
    capture = procs.add(UwsgiCapture(str(run_dir / f"{unique('cap')[0]}.sock")))
    via_cap = apache("capture", f'ProxyPass "/app" "unix:{capture.path}|uwsgi://uwcap/"\n', APACHE_UWSGI)
    r = requests.get(via_cap.url("/app/x/y?q=1"), headers={"Authorization": "Bearer t"}, timeout=10)
    assert (r.status_code, r.content) == (200, b"captured\n"), via_cap.logs()
    m1, m2, sent, _ = capture.requests[-1]
    assert (m1, m2) == (0, 0)
    assert (sent[b"SCRIPT_NAME"], sent[b"PATH_INFO"]) == (b"/app", b"/x/y"), sent
    assert sent[b"REQUEST_URI"] == b"/app/x/y?q=1"
    assert sent[b"HTTP_AUTHORIZATION"] == b"Bearer t"

    s = requests.Session()
    for path, expected in [
        ("/app/x/y", ("/app", "/x/y")),
        ("/app/a/b/", ("/app", "/a/b/")),
        ("/app/caf%C3%A9/x%20y", ("/app", latin1_path("/caf%C3%A9/x%20y"))),
    ]:
        env = env_of(s.get(server.url(path)))
        assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == expected, (path, env)
        assert env["REQUEST_URI"] == path
    assert not proxy_errors(server), explain(server, gw)


def test_apache_proxypass_root_path_info_is_the_request_path(per_test_gateway, apache):
    gw = per_test_gateway("echo", ECHO + ["--threads", "4"], proto="uwsgi")
    server = apache("root", f'ProxyPass "/" "unix:{gw.socket}|uwsgi://uwroot/"\n', APACHE_UWSGI)
    s = requests.Session()
    check_path_info_is_the_request_path(server, gw, s=s)
    r = s.post(server.url("/post/here"), data=b"payload")
    assert (r.status_code, r.json()["body"]) == (200, "payload"), explain(server, gw)
    assert not proxy_errors(server), explain(server, gw)


def test_apache_needs_the_http_status_line(procs, unique, apache, run_dir):
    """The control for the status line: a raw backend that answers CGI style
    (`Status: 200 OK`, no HTTP status line) gets an error from Apache, while
    one that answers `HTTP/1.1 200 OK` is passed on."""
    good = procs.add(UwsgiCapture(str(run_dir / f"{unique('good')[0]}.sock")))
    cgi_style = procs.add(UwsgiCapture(
        str(run_dir / f"{unique('cgi')[0]}.sock"),
        response=b"Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\ncaptured\n",
    ))
    server = apache(
        "status-line",
        f'ProxyPass "/good" "unix:{good.path}|uwsgi://good/"\n'
        f'ProxyPass "/cgi" "unix:{cgi_style.path}|uwsgi://cgi/"\n',
        APACHE_UWSGI,
    )
    r = requests.get(server.url("/good/x"), timeout=10)
    assert (r.status_code, r.content) == (200, b"captured\n"), server.logs()
    r = requests.get(server.url("/cgi/x"), timeout=10)
    print("Apache, backend answering `Status: 200 OK` (no HTTP status line):", r.status_code)
    assert len(cgi_style.requests) == 1, cgi_style.errors
    assert r.status_code >= 500 and r.content != b"captured\n", (r.status_code, r.text[:200])


# ---------------------------------------------------------------------------
# 2. lighttpd mod_scgi, scgi.protocol = "uwsgi"


def test_lighttpd_get_post_and_path_info(per_test_gateway, lighttpd):
    gw = per_test_gateway("echo", ECHO + ["--threads", "4"], proto="uwsgi")
    server = lighttpd(
        "root",
        f'scgi.protocol = "uwsgi"\n'
        f'scgi.server = ("/" => (("socket" => "{gw.socket}", "check-local" => "disable", '
        f'"fix-root-scriptname" => "enable")))\n',
        modules=LIGHTTPD_UWSGI,
    )
    s = requests.Session()
    got, *_ = check_echo_requests(server, gw, s=s)
    assert got["environ"]["SERVER_SOFTWARE"].startswith("lighttpd")
    # lighttpd de-chunks a chunked upload and sends CONTENT_LENGTH
    check_chunked_upload(server, [b"one,", b"two,", b"z" * 50000], gw, s=s)
    check_path_info_is_the_request_path(server, gw, s=s)
