"""No --socket: the gateway listens on the socket it finds on fd 0, as when a
front server (lighttpd's bin-path, systemd socket activation, spawn-fcgi)
spawns it. That socket is not ours: it must never be unlinked. Without a
listening socket on fd 0 the gateway must refuse to start."""

import socket
import subprocess

import pytest

from harness import scgi_request

APP = ["--app", "tests/apps/conformance.py", "--threads", "2"]


def listening_unix_socket(path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(16)
    return sock


def listening_tcp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


def assert_serves(address: str, gw):
    r = scgi_request(address, "GET", "/hello")
    assert (r.status, r.body) == (200, b"hello"), gw.describe()
    r = scgi_request(address, "POST", "/echo", b"through the inherited socket")
    assert (r.status, r.body) == (200, b"through the inherited socket"), gw.describe()


def test_inherited_unix_socket_is_served_and_not_unlinked(gateways, run_dir):
    path = run_dir / "inherited.sock"
    with listening_unix_socket(path) as sock:
        gw = gateways.make("fd0-unix", APP, fd0=sock.fileno()).start()
        assert "--socket" not in gw.command
        assert gw.log.lines_matching(r"listening on an inherited unix socket", since=gw.output_start), (
            gw.describe()
        )
        assert_serves(str(path), gw)
        assert gw.terminate(timeout=20) == 0, gw.describe()
    assert path.exists(), "the gateway removed a socket file it did not create"
    path.unlink()


def test_inherited_tcp_socket_is_served(gateways):
    with listening_tcp_socket() as sock:
        host, port = sock.getsockname()
        gw = gateways.make("fd0-tcp", APP, fd0=sock.fileno()).start()
        assert gw.log.lines_matching(rf"listening on tcp:{host}:{port}\b", since=gw.output_start), (
            gw.describe()
        )
        assert_serves(f"{host}:{port}", gw)
        assert gw.terminate(timeout=20) == 0, gw.describe()


@pytest.mark.parametrize("stdin", ["devnull", "connected-socket"])
def test_no_socket_and_no_listening_socket_on_fd0_is_refused(gateways, stdin):
    # /dev/null is no socket at all; one end of a socketpair is a socket,
    # but not a listening one (SO_ACCEPTCONN is 0).
    pair = socket.socketpair() if stdin == "connected-socket" else None
    try:
        fd0 = pair[0].fileno() if pair else subprocess.DEVNULL
        gw = gateways.make(f"fd0-refused-{stdin}", APP, fd0=fd0)
        gw.spawn()
        code = gw.wait_exit(timeout=10)
    finally:
        if pair:
            for s in pair:
                s.close()
    log = gw.output()
    assert code != 0, log
    assert "--socket" in log, log
    assert "fd 0" in log, log
    assert "listening on" not in log, log

