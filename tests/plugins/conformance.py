"""The conformance matrix: protocol x front server x lane.

Each (protocol, lane) has a session gateway of its own running the
conformance app (`conf-PROTO-LANE`), started with `RUSTGI_LANE=LANE`:
`python` makes the Python threads accept, read and answer the requests
themselves, `io` sends everything through the tokio I/O thread (unset, as
in every other gateway of the suite, the gateway chooses). Each gateway sits
behind a server of the session's nginx (`conf-PROTO-LANE`) that includes
the protocol's stock params file, with `/` (nginx's defaults) and
`/unbuffered/` (request and response buffering off).

`front` is one cell of the matrix, parametrized with ids such as
`fastcgi-nginx-python`; tests/test_conformance.py runs each case on every
cell.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from harness import Gateway, Location, Nginx
from plugins.base import CONFORMANCE_FILE

PROTOCOLS = ("scgi", "fastcgi", "uwsgi")
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
    """One cell of the matrix: a protocol and a lane, behind a front server."""

    protocol: str
    server: str
    lane: str
    gateway: Gateway
    nginx: Nginx

    @property
    def port(self) -> int:
        return self.nginx.server_port(gateway_name(self.protocol, self.lane))

    def url(self, path: str) -> str:
        return self.nginx.url(path, server=gateway_name(self.protocol, self.lane))

    @property
    def body_prefixes(self) -> list[str]:
        """The locations where the app sees the body with a right length."""
        return ["", "/unbuffered"] if _UNBUFFERED_BODY_LENGTH_RIGHT[self.protocol] else [""]


MATRIX = [(proto, "nginx", lane) for proto in PROTOCOLS for lane in LANES]


@pytest.fixture(scope="session")
def lane_gateways(gateways):
    """Starts the gateway of a (protocol, lane) the first time it is asked for."""
    started: dict[tuple[str, str], Gateway] = {}

    def get(proto: str, lane: str) -> Gateway:
        if (proto, lane) not in started:
            started[proto, lane] = gateways.start(
                gateway_name(proto, lane),
                ["--app", CONFORMANCE_FILE, "--threads", "8"],
                proto=proto,
                env={"RUSTGI_LANE": lane},
            )
        return started[proto, lane]

    return get


@pytest.fixture(scope="session", params=MATRIX, ids=["-".join(cell) for cell in MATRIX])
def front(request, nginx, lane_gateways) -> Front:
    proto, server, lane = request.param
    return Front(proto, server, lane, lane_gateways(proto, lane), nginx)
