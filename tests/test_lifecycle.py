"""Starting and stopping: app import failures, SIGTERM, what is already at
the socket path."""

import os
import socket
import stat

import pytest

from harness import APPS, scgi_request


def is_socket(path) -> bool:
    try:
        return stat.S_ISSOCK(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


@pytest.mark.parametrize(
    "module, expected",
    [
        ("broken_import", "broken_import fails on purpose"),  # raises while importing
        ("no_such_module_xyz", "ModuleNotFoundError"),  # does not exist
    ],
)
def test_app_import_failure_exits_nonzero_before_listening(gateways, module, expected):
    gw = gateways.make(f"import-{module}", ["--chdir", str(APPS), "--app", f"{module}:application"])
    gw.spawn()
    code = gw.wait_exit(timeout=30)
    log = gw.output()
    assert code != 0, log
    assert module in log
    assert "Traceback" in log
    assert expected in log
    assert not os.path.exists(gw.socket), "a socket was left behind"


def test_sigterm_exits_0_and_removes_the_socket(gateways):
    gw = gateways.start("sigterm", ["--app", "tests/apps/conformance.py"])
    assert is_socket(gw.socket)
    assert scgi_request(gw.socket, "GET", "/hello").status == 200
    assert gw.terminate(timeout=20) == 0, gw.describe()
    assert not os.path.exists(gw.socket)


def test_stale_socket_file_is_replaced(gateways, run_dir):
    path = str(run_dir / "stale.sock")
    # A socket file nobody listens on any more (left by a killed process).
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()
    assert is_socket(path)
    gw = gateways.start("stale", ["--app", "tests/apps/conformance.py"], socket=path)
    r = scgi_request(path, "GET", "/hello")
    assert (r.status, r.body) == (200, b"hello"), gw.describe()
    assert gw.terminate() == 0
    assert not os.path.exists(path)


def test_regular_file_at_socket_path_is_refused_and_kept(gateways, run_dir):
    path = run_dir / "not-a-socket.sock"
    path.write_bytes(b"precious data\n")
    gw = gateways.make("regular-file", ["--app", "tests/apps/conformance.py"], socket=str(path))
    gw.spawn()
    code = gw.wait_exit(timeout=30)
    log = gw.output()
    assert code != 0, log
    assert str(path) in log, "the message should name the path"
    assert "socket" in log.lower()
    assert path.read_bytes() == b"precious data\n"
    assert not is_socket(path)


def test_a_live_socket_is_not_stolen(gateways, main_gateway):
    # Another gateway already listens there: refuse, and leave it serving.
    gw = gateways.make("steal", ["--app", "tests/apps/conformance.py"], socket=main_gateway.socket)
    gw.spawn()
    code = gw.wait_exit(timeout=30)
    assert code != 0, gw.output()
    assert main_gateway.alive()
    r = scgi_request(main_gateway.socket, "GET", "/hello")
    assert (r.status, r.body) == (200, b"hello")
