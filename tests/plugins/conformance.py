"""The conformance matrix: protocol x front server x lane.

Each (protocol, lane) has a session gateway of its own running the
conformance app (`conf-PROTO-LANE`), started with `RUSTGI_LANE=LANE`:
`python` makes the Python threads accept, read and answer the requests
themselves, `io` sends everything through the tokio I/O thread (unset, as
in every other gateway of the suite, the gateway chooses). Each gateway sits
behind a server of the session's nginx (`conf-PROTO-LANE`) that includes
the protocol's stock params file, with `/` (nginx's defaults) and
`/unbuffered/` (request and response buffering off).

Apache and lighttpd sit in front of the FastCGI and uwsgi gateways too,
each an instance of its own (`apache-conf-PROTO-LANE`, ...) with `/` to the
gateway; AJP is served behind Apache's mod_proxy_ajp only (nginx has no
AJP, and lighttpd's mod_ajp13 frames request bodies its own way: see
test_ajp.py).

`front` is one cell of the matrix, parametrized with ids such as
`fastcgi-nginx-python` or `uwsgi-apache-io`; `nginx_front` the cells behind
nginx only. tests/test_conformance.py runs each case on every cell it
applies to.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from frontservers import Apache, Lighttpd
from harness import Gateway, Location, Nginx
from plugins.base import _STARTED, CONFORMANCE_FILE

PROTOCOLS = ("scgi", "fastcgi", "uwsgi")
# AJP's shared secret (Apache's `secret=`), for the gateways and fronts
# that speak it.
AJP_SECRET = "conformance-secret"
LANES = ("python", "io")

# nginx's per-protocol buffers large enough for the big bodies.
_BIG_BUFFERS = {
    proto: f"{proto}_buffer_size 64k; {proto}_buffers 8 64k; {proto}_busy_buffers_size 128k;"
    for proto in PROTOCOLS
}

# Where nginx 1.22 sends the request body's length right with request
# buffering off: not over SCGI (it sends what it had read when it
# connected: fixed upstream by nginx PR #1118).
_UNBUFFERED_BODY_LENGTH_RIGHT = {"scgi": False, "fastcgi": True, "uwsgi": True}


def gateway_name(proto: str, lane: str) -> str:
    return f"conf-{proto}-{lane}"


def nginx_servers(unix) -> dict[str, list[Location]]:
    """The session nginx's servers for the matrix; `unix(name)` is the
    upstream of the gateway `name`."""
    servers = {}
    for proto in PROTOCOLS:
        for lane in LANES:
            name = gateway_name(proto, lane)
            servers[name] = [
                Location("/", unix(name), proto=proto, extra=_BIG_BUFFERS[proto]),
                Location("/unbuffered/", unix(name), proto=proto, request_buffering=False,
                         response_buffering=False, extra=_BIG_BUFFERS[proto]),
            ]
    return servers


@dataclass
class Front:
    """One cell of the matrix: a protocol and a lane, behind a front server
    listening on `port`."""

    protocol: str
    server: str
    lane: str
    gateway: Gateway
    port: int
    nginx: Nginx | None = None  # the session's nginx, for its error log

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def body_prefixes(self) -> list[str]:
        """The locations to send bodies to: nginx's unbuffered one too, where
        the app sees the body's length right there."""
        right = self.server == "nginx" and _UNBUFFERED_BODY_LENGTH_RIGHT.get(self.protocol, False)
        return ["", "/unbuffered"] if right else [""]


def _cell_id(cell) -> str:
    return "-".join(cell)


# nginx for every protocol; Apache (mod_proxy_fcgi, mod_proxy_uwsgi) and
# lighttpd (mod_fastcgi, mod_scgi speaking uwsgi) where the suite runs them.
NGINX_CELLS = [(proto, "nginx", lane) for proto in PROTOCOLS for lane in LANES]
OTHER_CELLS = [
    (proto, server, lane)
    for server in ("apache", "lighttpd")
    for proto in ("fastcgi", "uwsgi")
    for lane in LANES
] + [("ajp", "apache", lane) for lane in LANES]
MATRIX = NGINX_CELLS + OTHER_CELLS


def _apache_site(proto: str, lane: str, socket_path: str) -> tuple[str, list[str]]:
    scheme = {"fastcgi": "fcgi", "uwsgi": "uwsgi", "ajp": "ajp"}[proto]
    modules = {"uwsgi": ["proxy_uwsgi"], "ajp": ["proxy_ajp"]}.get(proto, [])
    options = f" secret={AJP_SECRET}" if proto == "ajp" else ""
    target = f"unix:{socket_path}|{scheme}://{gateway_name(proto, lane)}/"
    return f'ProxyPass "/" "{target}"{options}\n', modules


def _lighttpd_site(proto: str, socket_path: str) -> tuple[str, tuple[str, ...]]:
    entry = (f'("/" => (("socket" => "{socket_path}", "check-local" => "disable", '
             f'"fix-root-scriptname" => "enable")))')
    if proto == "fastcgi":
        return f"fastcgi.server = {entry}\n", ("mod_fastcgi",)
    return f'scgi.protocol = "uwsgi"\nscgi.server = {entry}\n', ("mod_scgi",)


@pytest.fixture(scope="session")
def lane_gateways(gateways):
    """Starts the gateway of a (protocol, lane) the first time it is asked for."""
    started: dict[tuple[str, str], Gateway] = {}

    def get(proto: str, lane: str) -> Gateway:
        if (proto, lane) not in started:
            started[proto, lane] = gateways.start(
                gateway_name(proto, lane),
                ["--app", CONFORMANCE_FILE, "--threads", "8"]
                + (["--ajp-secret", AJP_SECRET] if proto == "ajp" else []),
                proto=proto,
                env={"RUSTGI_LANE": lane},
            )
        return started[proto, lane]

    return get


@pytest.fixture(scope="session")
def other_fronts(run_dir, log_dir, apache_binary, lighttpd_binary):
    """Starts the Apache or lighttpd of a cell the first time it is asked
    for; all stopped at the end of the session."""
    started = {}

    def get(proto: str, server: str, lane: str, gateway: Gateway):
        if (proto, server, lane) not in started:
            name = f"{server}-{gateway_name(proto, lane)}"
            if server == "apache":
                body, modules = _apache_site(proto, lane, gateway.socket)
                front = Apache(apache_binary, run_dir / name, log_dir / name, name, body, modules)
            else:
                body, modules = _lighttpd_site(proto, gateway.socket)
                front = Lighttpd(lighttpd_binary, run_dir / name, log_dir / name, name, body,
                                 modules=modules)
            _STARTED.append(front)
            started[proto, server, lane] = front.start()
        return started[proto, server, lane]

    yield get
    for front in started.values():
        front.stop()


def _front(request, nginx, lane_gateways, other_fronts) -> Front:
    proto, server, lane = request.param
    gateway = lane_gateways(proto, lane)
    if server == "nginx":
        return Front(proto, server, lane, gateway, nginx.server_port(gateway_name(proto, lane)), nginx)
    return Front(proto, server, lane, gateway, other_fronts(proto, server, lane, gateway).port)


@pytest.fixture(scope="session", params=MATRIX, ids=[_cell_id(cell) for cell in MATRIX])
def front(request, nginx, lane_gateways, other_fronts) -> Front:
    """Every cell of the matrix."""
    return _front(request, nginx, lane_gateways, other_fronts)


@pytest.fixture(scope="session", params=NGINX_CELLS, ids=[_cell_id(cell) for cell in NGINX_CELLS])
def nginx_front(request, nginx, lane_gateways, other_fronts) -> Front:
    """The cells behind nginx: for cases about what nginx does (its stock
    params, its error log, its unbuffered mode, X-Accel-Buffering)."""
    return _front(request, nginx, lane_gateways, other_fronts)


# A body streaming into an application that is already running needs the
# I/O lane: forced, the Python lane gathers the whole request first.
STREAMING_CELLS = [cell for cell in NGINX_CELLS if cell[2] != "python"]


@pytest.fixture(
    scope="session", params=STREAMING_CELLS, ids=[_cell_id(cell) for cell in STREAMING_CELLS]
)
def streaming_front(request, nginx, lane_gateways, other_fronts) -> Front:
    """The nginx cells where a request body can stream into a running app."""
    return _front(request, nginx, lane_gateways, other_fronts)
