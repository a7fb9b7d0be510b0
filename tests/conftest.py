"""Fixtures: one nginx and the rustgi-gateway processes behind it.

Layout of a run:
- /tmp/rustgi-test-XXXX (mode 0755, so nginx's workers can reach the sockets;
  nginx also runs with `user root;` when we are root): the gateways' Unix
  sockets, nginx.conf and nginx's temp directories. Removed at the end.
- tests/.run/logs/: every gateway's stderr (`<name>.log`) and nginx's
  error/access logs, kept after the run for reading. Cleared at the start,
  unless another pytest session in this checkout is running (`log_dir`).
- tests/.run/rss.txt: the memory figures of test_memory.py.

nginx routes by location prefix; each prefix belongs to one gateway, all
sharing one session-scoped nginx. A gateway is started the first time a test
asks for it (session scope) and stopped with SIGTERM at the end; a location
whose gateway is not running answers 502.

| location       | gateway | how it is started                                       |
|----------------|---------|---------------------------------------------------------|
| /              | main    | --app tests/apps/conformance.py --threads 8            |
| /unbuffered/   | main    | (same; scgi_request_buffering off, scgi_buffering off)   |
| /app/          | mount   | --chdir tests/apps --app conformance --mount /app --env |
| /flask/        | flask   | --venv .venv-test --app tests/apps/flask_app.py:app      |
| /demo/         | demo    | no --app: the built-in demo                              |
| /par/          | par     | --pythonpath tests/apps, conformance:application, 40 thr |
| /mem/          | mem     | conformance (scgi_buffering off)                         |

FastCGI (`--proto fastcgi`) has servers of its own on other ports
(`nginx.url(path, server=NAME)`, `nginx.server_port(NAME)`), each location
including the stock /etc/nginx/fastcgi_params as shipped:

| server        | location | gateway    | notes                                          |
|---------------|----------|------------|------------------------------------------------|
| fcgi          | /        | fcgi       | stock params (SCRIPT_NAME = path, no PATH_INFO) |
| fcgi          | /wa/     | fcgi       | + SCRIPT_NAME "" and PATH_INFO $uri            |
| fcgi          | /app/    | fcgi-mount | --mount /app                                   |
| fcgi          | /par/    | fcgi-par   | --threads 40                                   |
| fcgi-quiet    | /        | fcgi-quiet | --no-fastcgi-stderr                            |
| fcgi-ka       | /        | fcgi-ka    | upstream keepalive 4 + fastcgi_keep_conn on    |
| fcgi-ka-plain | /        | fcgi-ka    | no keep_conn                                   |

uwsgi (`--proto uwsgi`) likewise, every location including the stock
/etc/nginx/uwsgi_params as shipped (PATH_INFO = $document_uri, no
SCRIPT_NAME):

| server | location     | gateway     | notes                                        |
|--------|--------------|-------------|----------------------------------------------|
| uwsgi  | /            | uwsgi       | stock params                                 |
| uwsgi  | /unbuffered/ | uwsgi       | uwsgi_request_buffering off, uwsgi_buffering off |
| uwsgi  | /app/        | uwsgi-mount | --mount /app                                 |
| uwsgi  | /par/        | uwsgi-par   | --threads 40                                 |

Tests that stop their gateway, or need one with other flags, start their
own (`gateways.start(name, args)`, or `gateways.make(name, args, fd0=...)`
for one that takes its socket on fd 0) and, to reach it through nginx, an
nginx of their own (`private_nginx`).
"""

from __future__ import annotations

import atexit
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from harness import APPS, ARTIFACTS, REPO, Gateway, Location, Nginx, gateway_binary

LOG_DIR = ARTIFACTS / "logs"

# Everything started in this run, stopped at the end whatever happens.
_STARTED: list = []


def _stop_everything():
    for thing in reversed(_STARTED):
        try:
            if isinstance(thing, Gateway):
                thing.terminate(timeout=10)
            else:
                thing.stop()
        except Exception as e:  # keep stopping the others
            print(f"cleanup of {thing!r} failed: {e}", file=sys.stderr)
    _STARTED.clear()


atexit.register(_stop_everything)


# ---------------------------------------------------------------------------
# prerequisites


@pytest.fixture(scope="session")
def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if not found:
        pytest.fail("nginx is not installed: run the suite through tests/run, which installs it")
    return found


@pytest.fixture(scope="session")
def gateway_bin() -> Path:
    path = gateway_binary()
    if not os.access(path, os.X_OK):
        pytest.fail(f"no gateway binary at {path}: run `cargo build -p rustgi-gateway` or set RUSTGI_BIN")
    return path


@pytest.fixture(scope="session")
def venv_dir() -> Path:
    """The venv pytest runs in (.venv-test from tests/run): it has Flask."""
    if sys.prefix == sys.base_prefix:
        pytest.fail("the suite must run inside the .venv-test venv (use tests/run)")
    return Path(sys.prefix)


# ---------------------------------------------------------------------------
# directories


@pytest.fixture(scope="session")
def run_dir():
    path = Path(tempfile.mkdtemp(prefix="rustgi-test-", dir="/tmp"))
    os.chmod(path, 0o755)
    yield path
    _stop_everything()
    if not os.environ.get("RUSTGI_KEEP_RUN"):
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def log_dir():
    """tests/.run/logs, cleared first unless another pytest session in this
    checkout is using it: each session holds a shared flock on
    tests/.run/logs.lock while it runs, and clears the directory only when it
    can take the lock exclusively (otherwise the other session's logs would
    vanish under its tests)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    lock = open(ARTIFACTS / "logs.lock", "a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        shutil.rmtree(LOG_DIR, ignore_errors=True)
        fcntl.flock(lock, fcntl.LOCK_SH)
    except BlockingIOError:
        fcntl.flock(lock, fcntl.LOCK_SH)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    yield LOG_DIR
    lock.close()


@pytest.fixture
def scratch(run_dir) -> Path:
    """A fresh directory (mode 0777) for marker files written by the apps."""
    path = Path(tempfile.mkdtemp(prefix="scratch-", dir=run_dir))
    os.chmod(path, 0o777)
    return path


# ---------------------------------------------------------------------------
# gateways


class Gateways:
    """Makes gateways with sockets in the run dir and logs in the log dir."""

    def __init__(self, binary: Path, run_dir: Path, log_dir: Path):
        self.binary = binary
        self.run_dir = run_dir
        self.log_dir = log_dir

    def socket_path(self, name: str) -> str:
        return str(self.run_dir / f"{name}.sock")

    def make(self, name: str, args: list[str], *, socket: str | None = None, env=None,
             fd0=None, proto: str = "scgi") -> Gateway:
        """A Gateway, not started; stopped at the end of the session if it was.

        With `fd0` (a file descriptor or subprocess.DEVNULL) the gateway gets
        no --socket and `fd0` as its stdin: it must listen on what it finds
        there. `proto` is its --proto (scgi, fastcgi or uwsgi)."""
        if fd0 is not None:
            assert socket is None, "fd0 and socket exclude each other"
        gw = Gateway(
            name,
            None if fd0 is not None else socket or self.socket_path(name),
            args,
            self.log_dir / f"{name}.log",
            env=env,
            binary=self.binary,
            stdin=subprocess.DEVNULL if fd0 is None else fd0,
            proto=proto,
        )
        _STARTED.append(gw)
        return gw

    def start(self, name: str, args: list[str], **kw) -> Gateway:
        return self.make(name, args, **kw).start()


@pytest.fixture(scope="session")
def gateways(gateway_bin, run_dir, log_dir) -> Gateways:
    return Gateways(gateway_bin, run_dir, log_dir)


CONFORMANCE_FILE = str((APPS / "conformance.py").relative_to(REPO))


@pytest.fixture(scope="session")
def main_gateway(gateways) -> Gateway:
    """The conformance app, named by file path (`--app path/to/file.py`)."""
    return gateways.start("main", ["--app", CONFORMANCE_FILE, "--threads", "8"])


@pytest.fixture(scope="session")
def mount_gateway(gateways) -> Gateway:
    """The conformance app, named as a module (`--chdir` + `--app module`),
    mounted at /app."""
    return gateways.start(
        "mount",
        ["--chdir", str(APPS), "--app", "conformance", "--mount", "/app", "--threads", "2",
         "--env", "RUSTGI_TEST_ENV=set by --env"],
    )


@pytest.fixture(scope="session")
def flask_gateway(gateways, venv_dir) -> Gateway:
    return gateways.start(
        "flask",
        ["--venv", str(venv_dir), "--app", str(APPS / "flask_app.py") + ":app", "--threads", "2"],
    )


@pytest.fixture(scope="session")
def demo_gateway(gateways) -> Gateway:
    return gateways.start("demo", ["--threads", "2"])


@pytest.fixture(scope="session")
def par_gateway(gateways) -> Gateway:
    """Named through --pythonpath, with an explicit callable."""
    return gateways.start(
        "par", ["--pythonpath", str(APPS), "--app", "conformance:application", "--threads", "40"]
    )


@pytest.fixture(scope="session")
def mem_gateway(gateways) -> Gateway:
    return gateways.start("mem", ["--app", CONFORMANCE_FILE, "--threads", "2"])


# FastCGI gateways (--proto fastcgi), behind the `fcgi*` nginx servers.


@pytest.fixture(scope="session")
def fcgi_gateway(gateways) -> Gateway:
    """The conformance app over FastCGI (nginx servers `fcgi`: / and /wa/)."""
    return gateways.start("fcgi", ["--app", CONFORMANCE_FILE, "--threads", "8"], proto="fastcgi")


@pytest.fixture(scope="session")
def fcgi_mount_gateway(gateways) -> Gateway:
    return gateways.start(
        "fcgi-mount", ["--app", CONFORMANCE_FILE, "--mount", "/app", "--threads", "2"], proto="fastcgi"
    )


@pytest.fixture(scope="session")
def fcgi_par_gateway(gateways) -> Gateway:
    return gateways.start("fcgi-par", ["--app", CONFORMANCE_FILE, "--threads", "40"], proto="fastcgi")


@pytest.fixture(scope="session")
def fcgi_ka_gateway(gateways) -> Gateway:
    """Only the keepalive tests use it, so its connections can be counted."""
    return gateways.start("fcgi-ka", ["--app", CONFORMANCE_FILE, "--threads", "8"], proto="fastcgi")


@pytest.fixture(scope="session")
def fcgi_quiet_gateway(gateways) -> Gateway:
    """wsgi.errors goes to its log only, not to nginx as FCGI_STDERR."""
    return gateways.start(
        "fcgi-quiet", ["--app", CONFORMANCE_FILE, "--threads", "2", "--no-fastcgi-stderr"],
        proto="fastcgi",
    )


# uwsgi gateways (--proto uwsgi), behind the nginx server `uwsgi`.


@pytest.fixture(scope="session")
def uwsgi_gateway(gateways) -> Gateway:
    """The conformance app over uwsgi (nginx server `uwsgi`: / and /unbuffered/)."""
    return gateways.start("uwsgi", ["--app", CONFORMANCE_FILE, "--threads", "8"], proto="uwsgi")


@pytest.fixture(scope="session")
def uwsgi_mount_gateway(gateways) -> Gateway:
    return gateways.start(
        "uwsgi-mount", ["--app", CONFORMANCE_FILE, "--mount", "/app", "--threads", "2"], proto="uwsgi"
    )


@pytest.fixture(scope="session")
def uwsgi_par_gateway(gateways) -> Gateway:
    return gateways.start("uwsgi-par", ["--app", CONFORMANCE_FILE, "--threads", "40"], proto="uwsgi")


# ---------------------------------------------------------------------------
# nginx


@pytest.fixture(scope="session")
def nginx(nginx_binary, gateways, run_dir, log_dir) -> Nginx:
    def unix(name):
        return "unix:" + gateways.socket_path(name)

    big_buffers = "scgi_buffer_size 64k; scgi_buffers 8 64k; scgi_busy_buffers_size 128k;"
    locations = [
        Location("/", unix("main")),
        Location(
            "/unbuffered/",
            unix("main"),
            request_buffering=False,
            response_buffering=False,
            extra=big_buffers,
        ),
        Location("/app/", unix("mount")),
        Location("/flask/", unix("flask")),
        Location("/demo/", unix("demo")),
        Location("/par/", unix("par")),
        # Response buffering only: nginx 1.22's scgi_request_buffering off
        # sends a wrong CONTENT_LENGTH (see test_bodies.py).
        Location("/mem/", unix("mem"), response_buffering=False, extra=big_buffers),
    ]
    # FastCGI: servers of their own (own ports), so that the app sees the
    # request path itself under `location /`. Every location includes the
    # stock /etc/nginx/fastcgi_params as shipped.
    workaround = 'fastcgi_param SCRIPT_NAME ""; fastcgi_param PATH_INFO $uri;'
    fcgi_buffers = "fastcgi_buffer_size 64k; fastcgi_buffers 8 64k; fastcgi_busy_buffers_size 128k;"
    servers = {
        "fcgi": [
            Location("/", unix("fcgi"), proto="fastcgi", extra=fcgi_buffers),
            Location("/wa/", unix("fcgi"), proto="fastcgi", params=workaround),
            Location("/app/", unix("fcgi-mount"), proto="fastcgi"),
            Location("/par/", unix("fcgi-par"), proto="fastcgi"),
        ],
        "fcgi-quiet": [Location("/", unix("fcgi-quiet"), proto="fastcgi")],
        "fcgi-ka": [Location("/", "fcgi_ka", proto="fastcgi", keep_conn=True)],
        "fcgi-ka-plain": [Location("/", unix("fcgi-ka"), proto="fastcgi")],
        # uwsgi: every location includes the stock /etc/nginx/uwsgi_params.
        "uwsgi": [
            Location("/", unix("uwsgi"), proto="uwsgi"),
            Location(
                "/unbuffered/", unix("uwsgi"), proto="uwsgi",
                request_buffering=False, response_buffering=False,
            ),
            Location("/app/", unix("uwsgi-mount"), proto="uwsgi"),
            Location("/par/", unix("uwsgi-par"), proto="uwsgi"),
        ],
    }
    upstreams = f"""    upstream fcgi_ka {{
        server {unix("fcgi-ka")};
        keepalive 4;
    }}"""
    server = Nginx(nginx_binary, run_dir, log_dir, locations, servers=servers, upstreams=upstreams)
    _STARTED.append(server)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def private_nginx(nginx_binary, run_dir, log_dir):
    """Makes an nginx of the test's own in front of one gateway (`location /`),
    for tests that stop or reconfigure their gateway; stopped after the test.

    `private_nginx(name, gateway, **location_options)` -> a started Nginx
    (options as for `Location`). Its files live in RUNDIR/nginx-NAME and its
    logs in tests/.run/logs/nginx-NAME/."""
    started = []

    def make(name: str, gateway: Gateway, **location) -> Nginx:
        own_dir = run_dir / f"nginx-{name}"
        own_dir.mkdir(mode=0o755, exist_ok=True)
        server = Nginx(
            nginx_binary, own_dir, log_dir / f"nginx-{name}",
            [Location("/", "unix:" + gateway.socket, **location)],
        )
        _STARTED.append(server)
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.stop()


# ---------------------------------------------------------------------------
# on failure, show the logs of the processes the test used


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    for name, value in getattr(item, "funcargs", {}).items():
        if isinstance(value, Gateway):
            report.sections.append((f"gateway {value.name} log (tail)", value.log.tail(40)))
        elif isinstance(value, Nginx):
            report.sections.append(("nginx error.log (tail)", value.error_log.tail(20)))


def pytest_report_header(config):
    return [f"rustgi-gateway: {gateway_binary()}", f"logs: {LOG_DIR}"]

