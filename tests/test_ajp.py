"""AJP 1.3 (`--proto ajp`): spoken by a raw client written from the
specification (tests/ajp_client.py), and by Apache 2.4's mod_proxy_ajp and
lighttpd 1.4's mod_ajp13 in front of the real binary. The conformance
cases run behind Apache too (test_conformance.py, `ajp-apache-*`).

Covers the environ a forward request gives (attributes, HTTPS), CPING,
bodies in many chunks asked for with GET_BODY_CHUNK, 1,000 requests on
one kept connection, each bad input (a typed error, a log line naming it,
the connection closed, the gateway serving on), the secret (required,
missing, wrong; Apache with a wrong `secret=`), REMOTE_USER from Apache's
basic auth, HTTPS from Apache over TLS (SSLEngine, a self-signed
certificate), connection reuse behind Apache, --proto auto, and what
lighttpd's mod_ajp13 does.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import subprocess
import time

import pytest
import requests

import ajp_client as ajp
from harness import wait_until
from plugins.fronts import module_gateway

APP = "tests/apps/conformance.py"
SECRET = "t0p-s3cret"

ajp_gw = module_gateway(
    "ajp-raw",
    ["--app", APP, "--threads", "4", "--ajp-secret", SECRET,
     "--bad-input-warnings", "0"],
    proto="ajp",
    doc="--ajp-secret, 8 KiB packets at most, every bad input logged.",
)
auto_gw = module_gateway(
    "ajp-auto", ["--app", APP, "--threads", "2", "--ajp-secret", SECRET], proto="auto",
)
auto_no_secret_gw = module_gateway(
    "ajp-auto-nosecret", ["--app", APP, "--threads", "2", "--bad-input-warnings", "0"], proto="auto",
)


def environ(conn: ajp.Connection, uri="/environ", **kw) -> dict:
    r = conn.request("GET", uri, secret=kw.pop("secret", SECRET), **kw)
    assert r.status == 200, r
    return json.loads(r.body)


# --------------------------------------------------------------------------
# requests


def test_environ_from_a_forward_request(ajp_gw):
    with ajp.Connection(ajp_gw.socket) as c:
        env = environ(
            c, "/environ", query="a=1&b=%C3%A9",
            headers=[("Host", "example.org"), ("X-Thing", "yes"), ("Cookie", "k=v")],
            attributes=[
                (ajp.REMOTE_USER, ajp.string("alice")),
                (ajp.AUTH_TYPE, ajp.string("Basic")),
                (ajp.REQ_ATTRIBUTE, ajp.string("AJP_REMOTE_PORT") + ajp.string("4242")),
            ],
        )
    assert env["REQUEST_METHOD"] == "GET"
    assert env["PATH_INFO"] == "/environ"
    assert env["SCRIPT_NAME"] == ""
    assert env["QUERY_STRING"] == "a=1&b=%C3%A9"
    assert env["REQUEST_URI"] == "/environ?a=1&b=%C3%A9"
    assert env["HTTP_HOST"] == "example.org"
    assert env["HTTP_X_THING"] == "yes"
    assert env["HTTP_COOKIE"] == "k=v"
    assert env["REMOTE_USER"] == "alice"
    assert env["AUTH_TYPE"] == "Basic"
    assert env["REMOTE_PORT"] == "4242"
    assert env["wsgi.url_scheme"] == "http"
    assert "HTTPS" not in env
    assert not any("secret" in k.lower() for k in env), "the secret stays out of the environ"


def test_https_attributes(ajp_gw):
    with ajp.Connection(ajp_gw.socket) as c:
        env = environ(
            c, is_ssl=True, server_port=443,
            attributes=[
                (ajp.SSL_CIPHER, ajp.string("TLS_AES_256_GCM_SHA384")),
                (ajp.SSL_SESSION, ajp.string("ab12")),
                (ajp.SSL_KEY_SIZE, struct.pack(">H", 256)),
            ],
        )
    assert env["HTTPS"] == "on"
    assert env["wsgi.url_scheme"] == "https"
    assert env["SERVER_PORT"] == "443"
    assert env["SSL_CIPHER"] == "TLS_AES_256_GCM_SHA384"
    assert env["SSL_SESSION"] == "ab12"
    assert env["SSL_KEY_SIZE"] == "256"


def test_cping_is_answered_with_cpong_and_the_connection_stays(ajp_gw):
    with ajp.Connection(ajp_gw.socket) as c:
        c.send(ajp.packet(b"\x0a"))
        assert c.read_packet() == b"\x09"
        r = c.request("GET", "/hello", secret=SECRET)
        assert (r.status, r.body, r.reuse) == (200, b"hello", True)


def test_a_body_in_many_chunks(ajp_gw):
    body = os.urandom(200_000)
    with ajp.Connection(ajp_gw.socket) as c:
        r = c.request("POST", "/sha256", body=body, chunk=1000, secret=SECRET)
    assert r.status == 200, ajp_gw.describe()
    assert r.body.decode().split()[:2] == [hashlib.sha256(body).hexdigest(), str(len(body))]
    # The first 1000 came unasked; each of the others was asked for.
    assert len(r.asked) == 199
    assert all(0 < size <= 8186 for size in r.asked)


def test_an_unread_body_leaves_the_connection_clean(ajp_gw):
    with ajp.Connection(ajp_gw.socket) as c:
        body = b"x" * 1_000_000
        r = c.request("POST", "/hello", body=body, secret=SECRET)
        assert (r.status, r.body) == (200, b"hello")
        # --buffer-body (64 KiB) was asked for before the app ran; never
        # the rest, which the app did not read.
        assert 0 < len(r.asked) < len(body) // 8186 // 2, r.asked
        r = c.request("GET", "/hello", secret=SECRET)
        assert (r.status, r.body) == (200, b"hello")


def test_large_response_in_chunks_of_at_most_8184(ajp_gw):
    with ajp.Connection(ajp_gw.socket) as c:
        r = c.request("GET", "/generate", query="bytes=1000000&chunk=300000", secret=SECRET)
    assert r.status == 200 and len(r.body) == 1_000_000
    assert max(r.chunks) <= 8184
    assert r.reuse is True


def test_a_head_over_the_packet_size_is_a_500_with_a_log_line(per_test_gateway, run_dir):
    # Apache's default buffer takes 8188 bytes of payload; a larger head
    # makes it answer 500 with nothing in our log (AH01081).
    log = run_dir / "ajp-big-head-access.log"
    gw = per_test_gateway("ajp-big-head", ["--app", APP, "--threads", "2", "--ajp-secret", SECRET,
                                           "--access-log", str(log)],
                          proto="ajp")
    mark = gw.log.mark()
    with ajp.Connection(gw.socket) as c:
        r = c.request("GET", "/big-header", query="size=9000", secret=SECRET)
        assert (r.status, r.body, r.reuse) == (500, b"Internal Server Error\n", True), r
        # The one just under the limit goes out as it is, on the same connection.
        r = c.request("GET", "/big-header", query="size=8000", secret=SECRET)
        assert (r.status, len(r.header("X-Big"))) == (200, 8000), r
    assert gw.log.wait_for(r"WARN.*response head of 90\d\d bytes over AJP's packet size of 8192 "
                           r"\(--ajp-packet-size\).*request=#\S+ GET /big-header", since=mark), gw.describe(since=mark)
    assert wait_until(lambda: log.exists() and len(log.read_text().splitlines()) >= 2, timeout=5)
    first, second = log.read_text().splitlines()[:2]
    assert "/big-header?size=9000" in first and " 500 " in first, first
    assert " 200 " in second, second


def _pulled_gateway(per_test_gateway, kind, *args):
    # --buffer-body 1: the request runs after the first packet, and the
    # rest is pulled while the response is under way.
    return per_test_gateway(kind, ["--app", APP, "--threads", "2", "--ajp-secret", SECRET,
                                   "--buffer-body", "1", "--bad-input-warnings", "0", *args],
                            proto="ajp")


def test_body_timeout_runs_on_while_a_streaming_app_writes(per_test_gateway):
    # The app yields every 0.2 s while a packet it asked for never comes:
    # the response's events must not restart the packet's --body-timeout.
    gw = _pulled_gateway(per_test_gateway, "ajp-pull-timeout", "--body-timeout", "1")
    mark = gw.log.mark()
    with ajp.Connection(gw.socket) as c:
        c.send(ajp.forward_request("POST", "/tick-while-reading", query="secs=30", secret=SECRET,
                                   headers=[("Content-Length", "100000")]))
        c.send(ajp.body_packet(b"x" * 10))
        assert gw.log.wait_for(r"no AJP body packet within --body-timeout 1s", since=mark,
                               timeout=10), gw.describe(since=mark)
        kinds = []
        while (p := c.read_packet()) is not None:
            kinds.append(p[0])
    assert 6 in kinds, "a packet was asked for"
    assert 5 not in kinds, "cut: no END_RESPONSE"


def test_body_min_rate_applies_to_pulled_packets(per_test_gateway):
    # 10 bytes every 0.3 s: ~33 bytes/s, under --body-min-rate 1000,1.
    gw = _pulled_gateway(per_test_gateway, "ajp-pull-rate", "--body-min-rate", "1000,1",
                         "--body-timeout", "30")
    mark = gw.log.mark()
    with ajp.Connection(gw.socket) as c:
        c.send(ajp.forward_request("POST", "/sha256", secret=SECRET,
                                   headers=[("Content-Length", "100000")]))
        c.send(ajp.body_packet(b"x" * 10))
        for _ in range(40):
            p = c.read_packet()
            if p is None:
                break
            if p[0] == 6:
                time.sleep(0.3)
                try:
                    c.send(ajp.body_packet(b"x" * 10))
                except (BrokenPipeError, ConnectionResetError):
                    break
        else:
            pytest.fail("the slow body was never cut")
    assert gw.log.wait_for(r"--body-min-rate 1000 bytes/s", r"after \d+ of 100000 bytes",
                           since=mark), gw.describe(since=mark)


@pytest.mark.parametrize("lane", ["python", "io"])
@pytest.mark.parametrize("during", ["empty-packet", "next-request"])
def test_bytes_from_the_front_during_a_response_wait_for_after_it(ajp_gw, tmp_path, lane, during):
    # lighttpd follows a request without a body with an empty packet; when
    # a read separates the two, it arrives while the response runs. A
    # request alone in its read is the Python lane's; after a CPING in the
    # same read, the I/O lane's. Both keep what comes for after the response.
    marker = tmp_path / "started"
    first = ajp.forward_request("GET", "/slow", query=f"path={marker}&seconds=1&bytes=10", secret=SECRET)
    second = ajp.forward_request("GET", "/hello", secret=SECRET)
    with ajp.Connection(ajp_gw.socket) as c:
        if lane == "io":
            c.send(ajp.packet(b"\x0a") + first)
            assert c.read_packet() == b"\x09", "CPONG"
        else:
            c.send(first)
        assert wait_until(marker.exists, timeout=10), "the app started"
        c.send(ajp.packet(b"") if during == "empty-packet" else second)
        r = c.response()
        assert (r.status, len(r.body), r.reuse) == (200, 10, True), r
        if during == "empty-packet":
            c.send(second)
        r = c.response()
        assert (r.status, r.body, r.reuse) == (200, b"hello", True), r


def test_1000_requests_on_one_connection(ajp_gw):
    with ajp.Connection(ajp_gw.socket) as c:
        for i in range(1000):
            r = c.request("GET", "/hello", secret=SECRET)
            assert (r.status, r.body, r.reuse) == (200, b"hello", True), (i, r)


# --------------------------------------------------------------------------
# bad input: a typed error, one log line naming it, the connection closed


def _forward_with(extra_attribute: bytes) -> bytes:
    # A valid forward request whose attribute list gets `extra_attribute`
    # before its terminator.
    p = ajp.forward_request("GET", "/hello", secret=SECRET)
    payload = p[4:-1] + extra_attribute + b"\xff"
    return ajp.packet(payload)


BAD_INPUTS = {
    "wrong-magic": (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", r"must start with 0x12 0x34.*an HTTP request\?"),
    "too-long": (b"\x12\x34\x20\x01" + b"\x02" * 64, r"packet of 8193 bytes is over the limit of 8192"),
    "string-without-nul": (
        ajp.packet(b"\x02\x02" + struct.pack(">H", 8) + b"HTTP/1.1X"),
        r"string \(protocol\) is not ended by NUL",
    ),
    "unknown-attribute": (_forward_with(b"\x42" + ajp.string("x")), r"attribute code 0x42 .* not in the table"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_logged_and_closes(ajp_gw, case):
    data, pattern = BAD_INPUTS[case]
    mark = ajp_gw.log.mark()
    with ajp.Connection(ajp_gw.socket) as c:
        c.send(data)
        assert wait_until(c.closed, timeout=5), f"{case}: still open"
    assert ajp_gw.log.wait_for(pattern, since=mark), ajp_gw.describe(since=mark)
    with ajp.Connection(ajp_gw.socket) as c:
        assert c.request("GET", "/hello", secret=SECRET).status == 200


def test_a_body_chunk_longer_than_announced(ajp_gw):
    mark = ajp_gw.log.mark()
    with ajp.Connection(ajp_gw.socket) as c:
        c.send(ajp.forward_request("POST", "/sha256", secret=SECRET,
                                   headers=[("Content-Length", "10")]))
        # The chunk says 50 bytes; the packet holds 12.
        c.send(ajp.packet(struct.pack(">H", 50) + b"0123456789"))
        r = c.response()
        assert r.reuse is None, "no END_RESPONSE: the connection is cut"
    assert ajp_gw.log.wait_for(r"body chunk announces 50 bytes in a packet of 12", since=mark)


def test_a_body_beyond_its_content_length(ajp_gw):
    mark = ajp_gw.log.mark()
    with ajp.Connection(ajp_gw.socket) as c:
        c.send(ajp.forward_request("POST", "/sha256", secret=SECRET,
                                   headers=[("Content-Length", "4")]))
        c.send(ajp.body_packet(b"0123456789"))
        assert c.response().reuse is None
    assert ajp_gw.log.wait_for(r"beyond its Content-Length 4", since=mark)


def test_shutdown_is_refused(ajp_gw):
    mark = ajp_gw.log.mark()
    with ajp.Connection(ajp_gw.socket) as c:
        c.send(ajp.packet(b"\x07"))
        assert wait_until(c.closed, timeout=5)
    assert ajp_gw.log.wait_for(r"refused an AJP shutdown request", since=mark)
    assert ajp_gw.alive()


# --------------------------------------------------------------------------
# the secret


@pytest.mark.parametrize("sent,what", [(None, "without a secret"), ("guess", "with the wrong secret")])
def test_a_missing_or_wrong_secret_is_refused(ajp_gw, sent, what):
    mark = ajp_gw.log.mark()
    with ajp.Connection(ajp_gw.socket) as c:
        c.send(ajp.forward_request("GET", "/hello", secret=sent))
        r = c.response()
        # As Tomcat answers it: 403, the connection not to be reused, closed.
        assert (r.status, r.body, r.reuse) == (403, b"", False), r
        assert wait_until(c.closed, timeout=5), "closed after the 403"
    assert ajp_gw.log.wait_for(f"refused: AJP request {what}.*answering 403", since=mark), \
        ajp_gw.describe(since=mark)


def test_proto_ajp_refuses_to_start_without_a_secret(gateway_bin):
    out = subprocess.run([str(gateway_bin), "--proto", "ajp", "--socket", "127.0.0.1:1", "--app", APP],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert "--ajp-secret" in out.stderr and "--ajp-secret-optional" in out.stderr, out.stderr


def test_auto_tells_ajp_by_its_first_byte(auto_gw):
    with ajp.Connection(auto_gw.socket) as c:
        r = c.request("GET", "/hello", secret=SECRET)
    assert (r.status, r.body) == (200, b"hello")


def test_auto_without_a_secret_refuses_ajp(auto_no_secret_gw):
    gw = auto_no_secret_gw
    mark = gw.log.mark()
    with ajp.Connection(gw.socket) as c:
        c.send(ajp.forward_request("GET", "/hello"))
        assert wait_until(c.closed, timeout=5)
    assert gw.log.wait_for(r"refused an AJP connection: give --ajp-secret", since=mark)


# --------------------------------------------------------------------------
# behind Apache's mod_proxy_ajp

AUTH_MODULES = ["proxy_ajp", "auth_basic", "authn_core", "authn_file", "authz_user"]


def _apache_site(gw, secret: str, htpasswd=None) -> str:
    target = f"unix:{gw.socket}|ajp://rustgi/" if gw.socket.startswith("/") else f"ajp://{gw.socket}/"
    site = f'ProxyPass "/" "{target}" secret={secret}\n'
    if htpasswd:
        site += f"""<Location "/private">
    AuthType Basic
    AuthName "rustgi"
    AuthUserFile "{htpasswd}"
    Require valid-user
</Location>
"""
    return site


def test_remote_user_from_apache_basic_auth(apache, ajp_gw, unique):
    _, d = unique("htpasswd")
    htpasswd = d / "htpasswd"
    subprocess.run(["htpasswd", "-bc", str(htpasswd), "alice", "wonderland"], check=True,
                   capture_output=True)
    os.chmod(htpasswd, 0o644)
    front = apache("ajp-auth", _apache_site(ajp_gw, SECRET, htpasswd), AUTH_MODULES)
    r = requests.get(front.url("/private/x?dump=environ"), timeout=10)
    assert r.status_code == 401
    r = requests.get(front.url("/private/x?dump=environ"), auth=("alice", "wonderland"), timeout=10)
    assert r.status_code == 200, front.logs()
    env = r.json()
    assert env["REMOTE_USER"] == "alice"
    assert env["AUTH_TYPE"] == "Basic"
    assert env["PATH_INFO"] == "/private/x"


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_https_attributes_from_apache_over_tls(apache, ajp_gw, unique):
    # SSLEngine with a self-signed certificate: mod_proxy_ajp sends
    # is_ssl and the ?ssl_cipher, ?ssl_session and ?ssl_key_size attributes.
    _, d = unique("tls")
    key, cert = d / "key.pem", d / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"],
                   check=True, capture_output=True)
    site = (f'SSLEngine on\nSSLCertificateFile "{cert}"\nSSLCertificateKeyFile "{key}"\n'
            + _apache_site(ajp_gw, SECRET))
    front = apache("ajp-tls", site, ["proxy_ajp", "ssl", "socache_shmcb"])
    r = requests.get(f"https://127.0.0.1:{front.port}/x?dump=environ", verify=False, timeout=10)
    assert r.status_code == 200, front.logs()
    env = r.json()
    assert env["HTTPS"] == "on"
    assert env["wsgi.url_scheme"] == "https"
    assert env["SERVER_PORT"] == str(front.port)
    assert re.fullmatch(r"[A-Z0-9_-]+", env["SSL_CIPHER"]), env
    assert int(env["SSL_KEY_SIZE"]) >= 128


def test_apache_with_a_wrong_secret_is_refused(apache, ajp_gw):
    mark = ajp_gw.log.mark()
    front = apache("ajp-wrong", _apache_site(ajp_gw, "not-" + SECRET), ["proxy_ajp"])
    r = requests.get(front.url("/hello"), timeout=10)
    # Passed on as rustgi answered it, not taken for a dead backend (503).
    assert r.status_code == 403, (r.status_code, front.logs())
    assert ajp_gw.log.wait_for("AJP request with the wrong secret", since=mark)


def _connections_to(port: int, state: str) -> int:
    out = subprocess.run(["ss", "-Htn", "state", state, f"( dport = :{port} )"],
                         capture_output=True, text=True, check=True).stdout
    return len([line for line in out.splitlines() if line.strip()])


def test_apache_reuses_connections_over_1000_requests(apache, per_test_gateway):
    gw = per_test_gateway("ajp-reuse", ["--app", APP, "--threads", "4", "--ajp-secret", SECRET],
                          proto="ajp", tcp=True)
    port = int(gw.socket.rsplit(":", 1)[1])
    front = apache("ajp-reuse", _apache_site(gw, SECRET), ["proxy_ajp"])
    with requests.Session() as s:
        for i in range(1000):
            r = s.get(front.url("/hello"), timeout=10)
            assert (r.status_code, r.text) == (200, "hello"), (i, front.logs())
    # Kept: Apache's pooled connections stay open, and it opened few (a
    # connection per request would leave ~1000 in TIME_WAIT on its side).
    assert _connections_to(port, "established") >= 1
    assert _connections_to(port, "time-wait") < 20


# --------------------------------------------------------------------------
# lighttpd's mod_ajp13 (Debian 12's lighttpd 1.4.69 ships it)


def test_lighttpd_mod_ajp13_sends_only_the_matched_prefix_and_unframed_bodies(lighttpd, per_test_gateway):
    gw = per_test_gateway("ajp-lighttpd", ["--app", APP, "--threads", "2", "--ajp-secret-optional",
                                          "--bad-input-warnings", "0"], proto="ajp")
    site = (f'ajp13.server = ("/environ" => (("socket" => "{gw.socket}", '
            f'"check-local" => "disable")))\n')
    front = lighttpd("ajp", site, modules=("mod_ajp13",))
    r = requests.get(front.url("/environ/more/path?x=1"), timeout=10)
    assert r.status_code == 200, front.logs()
    env = r.json()
    # req_uri is what the prefix matched: the rest of the path is lost.
    assert (env["PATH_INFO"], env["QUERY_STRING"]) == ("/environ", "x=1")
    mark = gw.log.mark()
    r = requests.post(front.url("/environ"), data=b"\x00\x01" + b"z" * 100, timeout=10)
    assert r.status_code >= 500
    assert gw.log.wait_for(r"lighttpd's mod_ajp13 sends bodies without AJP's chunk length", since=mark)
