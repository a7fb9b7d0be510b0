"""The suite's core fixtures: prerequisites, the run and log directories,
the gateways and the session's nginx (see tests/conftest.py for the layout
of a run and the table of locations)."""


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


def session_gateway(name: str, args: list[str], *, proto: str = "scgi", needs=(), doc: str = ""):
    """A session-scoped fixture that starts the gateway `name` the first time
    a test asks for it. `args` may hold the names of other session fixtures
    in `needs` as `{name}` placeholders (e.g. `{venv_dir}`)."""

    def fixture(request, gateways) -> Gateway:
        values = {need: request.getfixturevalue(need) for need in needs}
        return gateways.start(name, [a.format(**values) for a in args], proto=proto)

    fixture.__doc__ = doc or f"`rustgi-gateway --proto {proto} {' '.join(args)}`"
    return pytest.fixture(scope="session")(fixture)


def _conformance(threads: int, *more: str) -> list[str]:
    return ["--app", CONFORMANCE_FILE, "--threads", str(threads), *more]


# SCGI gateways, behind the main nginx server.
main_gateway = session_gateway(
    "main", _conformance(8), doc="The conformance app, named by file path (`--app path/to/file.py`)."
)
mount_gateway = session_gateway(
    "mount",
    ["--chdir", str(APPS), "--app", "conformance", "--mount", "/app", "--threads", "2",
     "--env", "RUSTGI_TEST_ENV=set by --env"],
    doc="The conformance app, named as a module (`--chdir` + `--app module`), mounted at /app.",
)
flask_gateway = session_gateway(
    "flask", ["--venv", "{venv_dir}", "--app", str(APPS / "flask_app.py") + ":app", "--threads", "2"],
    needs=["venv_dir"],
)
demo_gateway = session_gateway("demo", ["--threads", "2"])
par_gateway = session_gateway(
    "par", ["--pythonpath", str(APPS), "--app", "conformance:application", "--threads", "40"],
    doc="Named through --pythonpath, with an explicit callable.",
)
mem_gateway = session_gateway("mem", _conformance(2))

# FastCGI gateways (--proto fastcgi), behind the `fcgi*` nginx servers.
fcgi_gateway = session_gateway(
    "fcgi", _conformance(8), proto="fastcgi",
    doc="The conformance app over FastCGI (nginx servers `fcgi`: / and /wa/).",
)
fcgi_mount_gateway = session_gateway("fcgi-mount", _conformance(2, "--mount", "/app"), proto="fastcgi")
fcgi_par_gateway = session_gateway("fcgi-par", _conformance(40), proto="fastcgi")
fcgi_ka_gateway = session_gateway(
    "fcgi-ka", _conformance(8), proto="fastcgi",
    doc="Only the keepalive tests use it, so its connections can be counted.",
)
fcgi_quiet_gateway = session_gateway(
    "fcgi-quiet", _conformance(2, "--no-fastcgi-stderr"), proto="fastcgi",
    doc="wsgi.errors goes to its log only, not to nginx as FCGI_STDERR.",
)

# uwsgi gateways (--proto uwsgi), behind the nginx server `uwsgi`.
uwsgi_gateway = session_gateway(
    "uwsgi", _conformance(8), proto="uwsgi",
    doc="The conformance app over uwsgi (nginx server `uwsgi`: / and /unbuffered/).",
)
uwsgi_mount_gateway = session_gateway("uwsgi-mount", _conformance(2, "--mount", "/app"), proto="uwsgi")
uwsgi_par_gateway = session_gateway("uwsgi-par", _conformance(40), proto="uwsgi")


# ---------------------------------------------------------------------------
# nginx


@pytest.fixture(scope="session")
def nginx(nginx_binary, gateways, run_dir, log_dir) -> Nginx:
    from plugins import conformance  # it builds on this module

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
        # sends a wrong CONTENT_LENGTH (see test_conformance.py).
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
    servers.update(conformance.nginx_servers(unix))
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

    `private_nginx(name, gateway, keepalive=None, keepalive_timeout=None,
    **location_options)` -> a started Nginx (options as for `Location`).
    With `keepalive=N` nginx reaches the gateway through an upstream that
    keeps N idle connections (each for `keepalive_timeout`, nginx's default
    60s when None), with FCGI_KEEP_CONN set (FastCGI). Its files live in RUNDIR/nginx-NAME and
    its logs in tests/.run/logs/nginx-NAME/."""
    started = []

    def make(name: str, gateway: Gateway, keepalive: int | None = None,
             keepalive_timeout: str | None = None, **location) -> Nginx:
        own_dir = run_dir / f"nginx-{name}"
        own_dir.mkdir(mode=0o755, exist_ok=True)
        upstream, upstreams = "unix:" + gateway.socket, ""
        if keepalive is not None:
            upstream = "kept"
            idle = f" keepalive_timeout {keepalive_timeout};" if keepalive_timeout else ""
            upstreams = (f"    upstream kept {{ server unix:{gateway.socket}; "
                         f"keepalive {keepalive};{idle} }}")
            location["keep_conn"] = True
        server = Nginx(
            nginx_binary, own_dir, log_dir / f"nginx-{name}",
            [Location("/", upstream, **location)], upstreams=upstreams,
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

