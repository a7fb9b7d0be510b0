"""Starting and stopping: app import failures, SIGTERM and SIGINT (with a
request in flight), what is already at the socket path."""

import concurrent.futures
import hashlib
import os
import signal
import socket
import stat

import pytest

from harness import APPS, http_request, pattern_sha256, scgi_request, wait_until


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
    # A module that is not there has no frame of its own to show (the
    # importlib frames are left out): its error line, then where Python looked.
    assert ("Traceback" in log) == (module == "broken_import"), log
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


# Graceful stop: a request in flight when the signal arrives still completes.

SLOW_SECONDS = 1.5
SLOW_BYTES = 200_000


def refuses_connections(path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            return True
    return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_lets_the_request_in_flight_finish(gateways, private_nginx, scratch, sig):
    name = f"graceful-{sig.name}"
    shutdown_log = scratch / "shutdown.txt"
    gw = gateways.start(
        name, ["--app", "tests/apps/conformance.py", "--threads", "2"],
        env={"RUSTGI_TEST_SHUTDOWN_LOG": str(shutdown_log)},
    )
    front = private_nginx(name, gw)
    started = scratch / "started.txt"
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow = pool.submit(
            http_request, front.port, "GET",
            f"/slow?seconds={SLOW_SECONDS}&bytes={SLOW_BYTES}&path={started}", timeout=30,
        )
        assert wait_until(started.exists, timeout=10), (
            "the slow request never reached the app\n" + gw.describe()
        )
        mark = gw.log.mark()
        gw.send_signal(sig)

        # Stops accepting at once, while the slow request is still running.
        assert wait_until(lambda: not os.path.exists(gw.socket), timeout=5), (
            "the socket file is still there after the signal\n" + gw.describe(mark)
        )
        assert refuses_connections(gw.socket)
        late = http_request(front.port, "GET", "/hello", timeout=10)
        assert late.status == 502, f"a request after {sig.name} got {late.status}"
        assert not slow.done(), "the slow request ended before the new connection was tried"

        r = slow.result(timeout=30)
    assert r.status == 200, gw.describe(mark)
    assert len(r.body) == SLOW_BYTES
    assert hashlib.sha256(r.body).hexdigest() == pattern_sha256(SLOW_BYTES, 16384)
    assert gw.wait_exit(timeout=15) == 0, gw.describe(mark)
    assert gw.log.lines_matching(rf"{sig.name}: stopping gracefully", since=mark), gw.describe(mark)
    assert gw.log.lines_matching(r"\bstopped\b", since=mark), gw.describe(mark)
    # Python shut down as usual: no exception escaped into it, it waited for
    # the app's non-daemon thread (started at import, still sleeping when the
    # signal came), then ran the atexit handlers.
    assert shutdown_log.read_text().splitlines() == [
        "non-daemon thread finished",
        "atexit handler ran",
    ], gw.describe(mark)
    assert not gw.log.lines_matching(r"Traceback|KeyboardInterrupt|Exception ignored", since=mark), (
        gw.describe(mark)
    )
