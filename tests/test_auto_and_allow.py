"""`--proto auto` (and no --proto at all, which means auto with --socket),
and the TCP allow list (`--allow-from`, FCGI_WEB_SERVER_ADDRS).

- One Unix socket takes FastCGI, SCGI and uwsgi at once: an nginx of this
  module's own sends to it with fastcgi_pass (stock fastcgi_params; one
  location through an upstream with keepalive and fastcgi_keep_conn on),
  scgi_pass (stock scgi_params) and uwsgi_pass (stock uwsgi_params). The app
  (tests/apps/which_protocol.py, validator-wrapped) says which protocol
  carried each request, from the environ: FCGI_ROLE only for FastCGI, SCGI
  '1' only for SCGI, neither for uwsgi.
- Anything else on that socket (an HTTP request, a TLS ClientHello) is
  closed with a WARN naming its first bytes, and a connection that sends
  nothing is closed after --header-timeout.
- TCP gateways serve only the peers on their list, checked with raw SCGI and
  FastCGI clients bound to a chosen source address (127.0.0.1, 127.0.0.2,
  ::1).

The gateways here are `OwnGateway`s: a harness Gateway that can be started
without --proto, and that waits for its "listening on" log line instead of
probing a TCP socket (a probe from 127.0.0.1 would itself be refused and
logged, and could be mistaken for the test's own connection).
"""

import concurrent.futures
import hashlib
import http.client
import json
import os
import random
import re
import socket
import ssl
import time
import uuid

import pytest

import fcgi_client as fcgi
import uwsgi_client
from harness import (
    APPS,
    KiB,
    REPO,
    ConnectionKeptOpen,
    Gateway,
    Location,
    Nginx,
    free_port,
    http_request,
    parse_cgi_response,
    scgi_exchange,
    scgi_head,
    scgi_params,
    scgi_request,
    unix_connections,
    wait_until,
)

APP = str((APPS / "which_protocol.py").relative_to(REPO))

ALLOW_SERVED_PATH = "/tcp/check"


class OwnGateway(Gateway):
    """A Gateway started with `--proto PROTO`, or with no --proto at all when
    `proto` is None. A TCP one counts as ready once it logs "listening on"
    (no probe connection: it would show up in the allow-list log)."""

    @property
    def command(self) -> list[str]:
        cmd = super().command
        if self.proto is None:
            assert cmd[1] == "--proto", cmd
            del cmd[1:3]
        return cmd

    def ready(self) -> bool:
        if self.socket is not None and not self.socket.startswith("/"):
            return bool(self.log.lines_matching(r"\blistening on\b", since=self.output_start))
        return super().ready()


@pytest.fixture
def own_gateway(gateway_bin, run_dir, log_dir):
    """`own_gateway(name, args, socket=..., proto=None, env=None, start=True)`
    -> an OwnGateway (started unless start=False), stopped after the test."""
    made = []

    def make(name, args, *, socket=None, proto=None, env=None, start=True):
        gw = OwnGateway(
            name, socket or str(run_dir / f"{name}.sock"), args, log_dir / f"{name}.log",
            env=env, binary=gateway_bin, proto=proto,
        )
        made.append(gw)
        return gw.start() if start else gw

    yield make
    for gw in made:
        gw.terminate(timeout=10)


def warnings_since(gw, mark) -> list[str]:
    return gw.log.lines_matching(r"\b(WARN|ERROR)\b", since=mark)


# ---------------------------------------------------------------------------
# one auto socket behind nginx: fastcgi_pass, scgi_pass and uwsgi_pass


# location prefix -> the protocol nginx speaks there
LOCATIONS = {
    "/fcgi/": "fastcgi",
    "/fcgi-ka/": "fastcgi",
    "/scgi/": "scgi",
    "/uwsgi/": "uwsgi",
}

# how the gateway is started: --proto auto, or no --proto (auto by default with --socket)
MODES = {"proto-auto": "auto", "no-proto": None}


class Site:
    def __init__(self, gateway: OwnGateway, nginx: Nginx):
        self.gateway = gateway
        self.nginx = nginx

    def request(self, method, path, body=None, **kw):
        return http_request(self.nginx.port, method, path, body=body, **kw)


@pytest.fixture(scope="module", params=list(MODES))
def site(request, nginx_binary, gateway_bin, run_dir, log_dir):
    """One gateway (--proto auto or no --proto) on one Unix socket, and an
    nginx whose locations reach it over all three protocols."""
    mode = request.param
    name = f"auto-{mode}"
    gw = OwnGateway(
        name, str(run_dir / f"{name}.sock"), ["--app", APP, "--threads", "8"],
        log_dir / f"{name}.log", binary=gateway_bin, proto=MODES[mode],
    )
    gw.start()
    try:
        own_dir = run_dir / f"nginx-{name}"
        own_dir.mkdir(mode=0o755, exist_ok=True)
        unix = "unix:" + gw.socket
        upstream = name.replace("-", "_") + "_keepalive"
        locations = [
            Location("/fcgi/", unix, proto="fastcgi"),
            Location("/fcgi-ka/", upstream, proto="fastcgi", keep_conn=True),
            Location("/scgi/", unix),  # the server block includes the stock scgi_params
            Location("/uwsgi/", unix, proto="uwsgi"),
        ]
        upstreams = f"""    upstream {upstream} {{
        server {unix};
        keepalive 4;
    }}"""
        server = Nginx(nginx_binary, own_dir, log_dir / f"nginx-{name}", locations, upstreams=upstreams)
        server.start()
        try:
            yield Site(gw, server)
        finally:
            server.stop()
    finally:
        gw.terminate()


def check_answer(r, *, location, method, path, query, body):
    """The app's JSON answer for one request through `location`."""
    assert r.status == 200, (location, r.status, r.body[:300])
    got = json.loads(r.body)
    want_proto = LOCATIONS[location]
    assert got["protocol"] == want_proto, (location, got)
    if want_proto == "fastcgi":
        assert (got["FCGI_ROLE"], got["SCGI"]) == ("RESPONDER", None), got
    elif want_proto == "scgi":
        assert (got["FCGI_ROLE"], got["SCGI"]) == (None, "1"), got
    else:
        assert (got["FCGI_ROLE"], got["SCGI"]) == (None, None), got
    assert got["method"] == method
    assert got["path"] == path
    assert got["query"] == query
    assert got["length"] == len(body)
    assert got["sha256"] == hashlib.sha256(body).hexdigest()
    assert got["past_end"] == 0
    return got


def test_without_proto_a_socket_serves_auto(site):
    # Both modes must announce auto detection; "no-proto" is the default.
    assert site.gateway.log.lines_matching(
        r"listening on unix:" + re.escape(site.gateway.socket), r"auto", since=site.gateway.output_start
    ), site.gateway.describe()


@pytest.mark.parametrize("location", list(LOCATIONS))
def test_get_and_post_over_each_protocol(site, location):
    mark = site.gateway.log.mark()
    path = location + "check"
    r = site.request("GET", path + "?q=1")
    check_answer(r, location=location, method="GET", path=path, query="q=1", body=b"")
    body = os.urandom(150 * KiB) + b"\r\n\0end"  # more than one FastCGI record
    r = site.request("POST", path + "?q=2", body=body, headers=[("Content-Type", "application/x-test")])
    check_answer(r, location=location, method="POST", path=path, query="q=2", body=body)
    assert not warnings_since(site.gateway, mark)


def test_three_protocols_interleaved_and_concurrent(site):
    # 50 requests through each location (GETs and POSTs of assorted sizes),
    # shuffled together and sent from 16 threads at once: each must come back
    # whole, over the protocol its location speaks, with its own body.
    rng = random.Random(7)
    sizes = [1, 100, 4095, 65535, 65536, 65537, 200_000]
    jobs = []
    for location in LOCATIONS:
        for i in range(50):
            method = "POST" if i % 2 else "GET"
            body = os.urandom(rng.choice(sizes)) if method == "POST" else b""
            jobs.append((location, method, f"id={uuid.uuid4().hex}", body))
    rng.shuffle(jobs)
    gw_mark = site.gateway.log.mark()
    nginx_mark = site.nginx.error_log.mark()

    def one(job):
        location, method, query, body = job
        path = location + "check"
        r = site.request(method, f"{path}?{query}", body=body if method == "POST" else None)
        return check_answer(r, location=location, method=method, path=path, query=query, body=body)

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(one, jobs))
    seen = {}
    for (location, *_), got in zip(jobs, answers):
        seen.setdefault(location, set()).add(got["protocol"])
    assert seen == {loc: {proto} for loc, proto in LOCATIONS.items()}
    assert not warnings_since(site.gateway, gw_mark)
    assert not site.nginx.error_log.lines_matching(r"\[(error|crit|alert|emerg)\]", since=nginx_mark)


def test_fastcgi_keep_conn_reuses_connections_on_the_auto_socket(site):
    # With fastcgi_keep_conn and an upstream keepalive, nginx keeps its
    # FastCGI connections to the auto socket: sequential requests through
    # /fcgi-ka/ open no new connection (and the ones it keeps stay open).
    # The client keeps its own connection to nginx open too: one that closes
    # as soon as it has Content-Length bytes can make nginx drop the upstream
    # connection before END_REQUEST arrives ("client prematurely closed
    # connection, so upstream connection is closed too").
    client = http.client.HTTPConnection("127.0.0.1", site.nginx.port, timeout=10)
    try:
        r = site.request("GET", "/fcgi-ka/check", conn=client)
        check_answer(r, location="/fcgi-ka/", method="GET", path="/fcgi-ka/check", query="", body=b"")
        kept = wait_until(lambda: unix_connections(site.gateway.socket), timeout=5)
        assert kept, "no connection kept open after a request with fastcgi_keep_conn on"
        for i in range(10):
            r = site.request("POST", f"/fcgi-ka/check?n={i}", body=b"x" * i, conn=client)
            check_answer(r, location="/fcgi-ka/", method="POST", path="/fcgi-ka/check",
                         query=f"n={i}", body=b"x" * i)
        now = unix_connections(site.gateway.socket)
    finally:
        client.close()
    assert now and now <= kept, f"kept before: {sorted(kept)}, now: {sorted(now)}"


# ---------------------------------------------------------------------------
# what the auto socket refuses


def served_over_all_three(site):
    """Raw SCGI, uwsgi and FastCGI requests straight to the socket, and one
    through nginx: the daemon is still serving."""
    sock = site.gateway.socket
    body = b"still here " * 100
    digest = hashlib.sha256(body).hexdigest()

    r = scgi_request(sock, "POST", "/after", body)
    assert r.status == 200, site.gateway.describe()
    got = json.loads(r.body)
    assert (got["protocol"], got["sha256"]) == ("scgi", digest)

    r = uwsgi_client.request(sock, "POST", "/after", body)
    assert r.status == 200, site.gateway.describe()
    got = json.loads(r.body)
    assert (got["protocol"], got["sha256"]) == ("uwsgi", digest)

    with fcgi.FcgiConnection(sock) as conn:
        conn.request(1, fcgi.responder_params("POST", "/after", body_len=len(body)), body)
        reply = conn.read_end(1)
    assert (reply.protocol_status, reply.app_status) == (fcgi.REQUEST_COMPLETE, 0)
    head = reply.response()
    assert head.status == 200, site.gateway.describe()
    got = json.loads(head.body)
    assert (got["protocol"], got["sha256"]) == ("fastcgi", digest)

    r = site.request("GET", "/scgi/check")
    check_answer(r, location="/scgi/", method="GET", path="/scgi/check", query="", body=b"")


def client_hello() -> bytes:
    """A real TLS ClientHello, as a browser pointed at the socket would send."""
    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="example.com")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = outgoing.read()
    assert hello[0] == 0x16, hello[:8]
    return hello


def test_http_request_is_refused_with_a_hint(site):
    mark = site.gateway.log.mark()
    received = scgi_exchange(site.gateway.socket, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", timeout=5)
    assert received == b"", received[:200]
    lines = site.gateway.log.wait_for(r"\bWARN\b", r"GET / HT", since=mark)
    assert lines, site.gateway.describe(mark)
    assert "HTTP" in lines[0].split("GET / HT", 1)[1], lines  # a hint beyond the quoted bytes
    served_over_all_three(site)


def test_tls_client_hello_is_refused(site):
    mark = site.gateway.log.mark()
    received = scgi_exchange(site.gateway.socket, client_hello(), timeout=5)
    assert received == b"", received[:200]
    # The first byte, 0x16, must be named, in whatever notation.
    lines = site.gateway.log.wait_for(r"\bWARN\b", r"\\u\{16\}|\\x16|0x16", since=mark)
    assert lines, site.gateway.describe(mark)
    assert not any("HTTP request" in line for line in lines), lines
    served_over_all_three(site)


# ---------------------------------------------------------------------------
# --header-timeout on the auto socket


@pytest.fixture
def impatient(own_gateway):
    """No --proto (auto), --header-timeout 1."""
    return own_gateway("auto-impatient", ["--app", APP, "--threads", "2", "--header-timeout", "1"])


def seconds_until_closed(path: str, sends=(), timeout: float = 10.0) -> float:
    """Connects, sends each (delay, bytes) of `sends` at its delay after the
    connect, then waits for the peer to close; returns the seconds from the
    connect to the close. Fails if a response arrives."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        start = time.monotonic()
        for delay, data in sends:
            time.sleep(max(0.0, start + delay - time.monotonic()))
            s.sendall(data)
        try:
            data = s.recv(65536)
        except ConnectionResetError:
            data = b""
        except socket.timeout:
            raise ConnectionKeptOpen(f"still open {timeout}s after connecting")
        assert data == b"", data[:200]
        return time.monotonic() - start


def test_silent_connection_is_closed_after_header_timeout(impatient):
    mark = impatient.log.mark()
    elapsed = seconds_until_closed(impatient.socket)
    assert 0.9 <= elapsed < 2.5, elapsed
    assert impatient.log.wait_for(r"\bWARN\b", r"timed out", since=mark), impatient.describe(mark)
    r = scgi_request(impatient.socket, "GET", "/after")
    assert json.loads(r.body)["protocol"] == "scgi"


def test_header_timeout_counts_from_accept_on_the_auto_socket(impatient):
    # README: --header-timeout runs "from accept to a complete request head".
    # A head that starts 0.6 s after the connect and then stalls must be cut
    # off about 1 s after the connect, whichever protocol its first byte
    # chose, as it is with an explicit --proto.
    timings = {}
    for proto, first in (("scgi", b"1"), ("fastcgi", b"\x01"), ("uwsgi", b"\x00")):
        timings[proto] = round(seconds_until_closed(impatient.socket, [(0.6, first)]), 2)
    late = {proto: t for proto, t in timings.items() if not 0.9 <= t < 1.5}
    assert not late, (
        f"closed this long after the connect (--header-timeout 1): {timings}\n"
        + impatient.log.tail(6)
    )


# ---------------------------------------------------------------------------
# the TCP allow list


def tcp_exchange(host: str, port: int, data: bytes, *, source: str | None = None,
                 timeout: float = 10.0) -> bytes:
    """Connects from `source` (an address to bind first), sends `data`, and
    reads until the peer closes (a reset counts as a close)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    received = b""
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        if source is not None:
            s.bind((source, 0))
        s.connect((host, port))
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            return received
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            except socket.timeout:
                raise ConnectionKeptOpen(f"still open {timeout}s after sending (received {received[:200]!r})")
            if not chunk:
                break
            received += chunk
    return received


def scgi_over_tcp(host, port, *, source=None) -> bytes:
    body = b"over tcp"
    head = scgi_head(scgi_params("POST", ALLOW_SERVED_PATH, body_len=len(body)))
    return tcp_exchange(host, port, head + body, source=source)


def fastcgi_over_tcp(host, port, *, source=None) -> bytes:
    body = b"over tcp"
    records = fcgi.request_records(
        1, fcgi.responder_params("POST", ALLOW_SERVED_PATH, body_len=len(body)), body, keep_conn=False
    )
    return tcp_exchange(host, port, records, source=source)


def assert_served(raw: bytes, proto: str):
    assert raw, "the connection was closed with no response"
    if proto == "fastcgi":
        records, rest = fcgi.decode_records(raw)
        assert not rest, rest[:64]
        stdout = b"".join(r.content for r in records if r.type == fcgi.STDOUT)
        ends = [r for r in records if r.type == fcgi.END_REQUEST]
        assert len(ends) == 1, records
        response = fcgi.parse_cgi(stdout)
    else:
        response = parse_cgi_response(raw)
    assert response.status == 200, response
    got = json.loads(response.body)
    assert got["protocol"] == proto, got
    assert got["path"] == ALLOW_SERVED_PATH
    assert got["sha256"] == hashlib.sha256(b"over tcp").hexdigest()


def assert_refused(gw, mark, raw: bytes, peer: str):
    assert raw == b"", f"a refused peer got a response: {raw[:200]!r}"
    pattern = r"refused a connection from " + peer.replace(".", r"\.") + r"(?![\d.])"
    assert gw.log.wait_for(r"\bWARN\b", pattern, since=mark), gw.describe(mark)


def refusals(gw, peer: str, mark: int) -> list[str]:
    return gw.log.lines_matching(r"refused a connection from " + peer.replace(".", r"\.") + r"(?![\d.])",
                                 since=mark)


def tcp_gateway(own_gateway, name, args, *, proto=None, env=None, host="127.0.0.1", port=None):
    port = port or free_port()
    sock = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    gw = own_gateway(name, ["--app", APP, "--threads", "2", *args], socket=sock, proto=proto, env=env)
    return gw, port


@pytest.mark.parametrize("addrs", ["127.0.0.2", "192.0.2.1, 127.0.0.2"], ids=["one", "list"])
def test_fcgi_web_server_addrs(own_gateway, addrs):
    # flup's variable, with a FastCGI gateway: only 127.0.0.2 may connect.
    gw, port = tcp_gateway(own_gateway, "allow-env", [], proto="fastcgi",
                           env={"FCGI_WEB_SERVER_ADDRS": addrs})
    mark = gw.log.mark()
    assert_refused(gw, mark, fastcgi_over_tcp("127.0.0.1", port), "127.0.0.1")
    assert_served(fastcgi_over_tcp("127.0.0.1", port, source="127.0.0.2"), "fastcgi")
    assert not refusals(gw, "127.0.0.2", mark)
    # refused again: nothing is remembered
    assert_refused(gw, gw.log.mark(), fastcgi_over_tcp("127.0.0.1", port), "127.0.0.1")


def test_allow_from_address(own_gateway):
    # No --proto: auto on TCP, so SCGI and FastCGI clients are both served.
    gw, port = tcp_gateway(own_gateway, "allow-addr", ["--allow-from", "127.0.0.2"])
    mark = gw.log.mark()
    assert_refused(gw, mark, scgi_over_tcp("127.0.0.1", port), "127.0.0.1")
    assert_served(scgi_over_tcp("127.0.0.1", port, source="127.0.0.2"), "scgi")
    assert_served(fastcgi_over_tcp("127.0.0.1", port, source="127.0.0.2"), "fastcgi")
    mark = gw.log.mark()
    assert_refused(gw, mark, fastcgi_over_tcp("127.0.0.1", port), "127.0.0.1")
    assert not refusals(gw, "127.0.0.2", gw.output_start)


def test_allow_from_network(own_gateway):
    gw, port = tcp_gateway(own_gateway, "allow-net", ["--allow-from", "127.0.0.0/8"])
    mark = gw.log.mark()
    assert_served(scgi_over_tcp("127.0.0.1", port), "scgi")
    assert_served(scgi_over_tcp("127.0.0.1", port, source="127.0.0.2"), "scgi")
    assert_served(fastcgi_over_tcp("127.0.0.1", port), "fastcgi")
    assert not gw.log.lines_matching(r"refused", since=mark)


def test_allow_from_repeated_and_fcgi_web_server_addrs_add_up(own_gateway):
    gw, port = tcp_gateway(
        own_gateway, "allow-many",
        ["--allow-from", "192.0.2.0/24", "--allow-from", "127.0.0.2"],
        env={"FCGI_WEB_SERVER_ADDRS": "127.0.0.3"},
    )
    mark = gw.log.mark()
    assert_served(scgi_over_tcp("127.0.0.1", port, source="127.0.0.2"), "scgi")
    assert_served(scgi_over_tcp("127.0.0.1", port, source="127.0.0.3"), "scgi")
    assert_refused(gw, mark, scgi_over_tcp("127.0.0.1", port, source="127.0.0.4"), "127.0.0.4")
    assert_refused(gw, mark, scgi_over_tcp("127.0.0.1", port), "127.0.0.1")


@pytest.fixture(scope="module")
def ipv6_port():
    """A free port on ::1; skips when the machine has no IPv6 loopback."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
            return s.getsockname()[1]
    except OSError as e:
        pytest.skip(f"no IPv6 loopback (::1) on this machine: binding it failed: {e}")


def test_ipv6_allowed_peer(own_gateway, ipv6_port):
    gw, port = tcp_gateway(own_gateway, "allow-v6", ["--allow-from", "::1"], host="::1", port=ipv6_port)
    mark = gw.log.mark()
    assert_served(scgi_over_tcp("::1", port), "scgi")
    assert_served(fastcgi_over_tcp("::1", port), "fastcgi")
    assert not gw.log.lines_matching(r"refused", since=mark)


def test_ipv6_peer_not_on_an_ipv4_list_is_refused(own_gateway, ipv6_port):
    gw, port = tcp_gateway(own_gateway, "allow-v6-refused", ["--allow-from", "127.0.0.1"], host="::1",
                           port=ipv6_port)
    mark = gw.log.mark()
    assert_refused(gw, mark, scgi_over_tcp("::1", port), "::1")


@pytest.mark.parametrize(
    "args, env, bad",
    [
        (["--allow-from", "localhost"], None, "localhost"),
        (["--allow-from", "10.0.0.0/33"], None, "10.0.0.0/33"),
        ([], {"FCGI_WEB_SERVER_ADDRS": "garbage"}, "garbage"),
        ([], {"FCGI_WEB_SERVER_ADDRS": "127.0.0.1,garbage"}, "garbage"),
    ],
    ids=["allow-from-name", "allow-from-prefix", "env-garbage", "env-list-with-garbage"],
)
def test_invalid_allow_list_exits_naming_the_value(own_gateway, args, env, bad):
    gw = own_gateway("allow-bad", ["--app", APP, *args], socket=f"127.0.0.1:{free_port()}", env=env,
                     start=False)
    gw.spawn()
    code = gw.wait_exit(timeout=30)
    out = gw.output()
    assert code != 0, out
    assert bad in out, out
    if env:
        assert "FCGI_WEB_SERVER_ADDRS" in out, out


# ---------------------------------------------------------------------------
# TCP without an allow list (issue 13, item 9)

OPEN_TCP_WARNING = r"WARN.*--socket tcp:\S+ is not a loopback address and there is no --allow-from"


@pytest.mark.parametrize(
    "host, args, env, warned",
    [
        ("0.0.0.0", [], None, True),
        ("0.0.0.0", ["--allow-from", "127.0.0.1"], None, False),
        ("0.0.0.0", [], {"FCGI_WEB_SERVER_ADDRS": "127.0.0.1"}, False),
        ("127.0.0.1", [], None, False),
    ],
    ids=["any-address", "with-allow-from", "with-fcgi-web-server-addrs", "loopback"],
)
def test_tcp_beyond_loopback_without_an_allow_list_warns_at_start(own_gateway, host, args, env, warned):
    gw, port = tcp_gateway(own_gateway, "open-tcp", args, host=host, env=env)
    warnings = gw.log.lines_matching(OPEN_TCP_WARNING, since=gw.output_start)
    if warned:
        assert len(warnings) == 1, gw.describe(gw.output_start)
        assert f":{port}" in warnings[0] and "REMOTE_ADDR, REMOTE_USER and HTTPS" in warnings[0]
    else:
        assert not warnings, gw.describe(gw.output_start)
    # Served either way: the warning is advice, not a refusal.
    assert_served(scgi_over_tcp("127.0.0.1", port), "scgi")
