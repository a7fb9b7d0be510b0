"""Fixtures for tests that start their own processes: Apache, lighttpd,
gateways of their own, and the tools that start gateways (spawn-fcgi,
cgi-fcgi, systemd's). Every process a test starts goes into `procs`, which
stops them all at the test's end and fails the test if one is left.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

import pytest

from frontservers import Apache, Lighttpd, OwnGateway, Processes, which
from harness import APPS, free_port

EXAMPLE_APP = APPS / "example_app.py"


def required_tool(name: str, package: str):
    """A session fixture: the path of a program the suite needs. A test that
    needs it fails, never skips, when it is missing."""

    def fixture() -> str:
        found = which(name)
        if not found:
            pytest.fail(f"{name} is not installed (Debian: {package}): run the suite through tests/run")
        return found

    fixture.__doc__ = f"The path of `{name}` (Debian: {package})."
    return pytest.fixture(scope="session")(fixture)


apache_binary = required_tool("apache2", "apache2")
lighttpd_binary = required_tool("lighttpd", "lighttpd")
cgi_fcgi = required_tool("cgi-fcgi", "libfcgi-bin")
spawn_fcgi = required_tool("spawn-fcgi", "spawn-fcgi")
systemd_analyze = required_tool("systemd-analyze", "systemd")
socket_activate = required_tool("systemd-socket-activate", "systemd")


@pytest.fixture
def procs():
    """The processes this test starts; all stopped at its end, whatever
    happened. A process that does not stop fails the test."""
    p = Processes()
    yield p
    problems = p.stop_all()
    assert not problems, "cleanup failed:\n" + "\n".join(problems)


def _short_name(test_name: str, limit: int) -> str:
    """The test's name, made safe for a path and cut to `limit` characters
    (a Unix socket path has at most 107 bytes); a cut name keeps a hash of
    the whole one, so that each parameter still has its own."""
    name = re.sub(r"[^A-Za-z0-9_]+", "-", test_name.removeprefix("test_")).strip("-")
    if len(name) > limit:
        name = name[: limit - 7] + "-" + hashlib.sha1(name.encode()).hexdigest()[:6]
    return name


def _fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(mode=0o755)
    os.chmod(path, 0o755)  # whatever the umask: the front servers' users must reach it
    return path


@pytest.fixture
def site_dir(request, run_dir) -> Path:
    """A fresh, short-named directory (0755) for this test: its rendered
    files, sockets and servers' files."""
    return _fresh_dir(run_dir / f"{_short_name(request.node.name, 28)}-{os.getpid()}")


def install_app(source: Path, path: Path):
    """Copies a test app to `path`, with the module the apps share
    (tests/apps/echo.py) next to it, readable by everyone."""
    for src, dst in ((source, path), (APPS / "echo.py", path.parent / "echo.py")):
        shutil.copy(src, dst)
        os.chmod(dst, 0o644)


@pytest.fixture
def app_file(site_dir) -> Path:
    """tests/apps/example_app.py as the rendered /srv/app/app.py, readable
    by everyone (the front servers run as www-data, services as nobody)."""
    path = _fresh_dir(site_dir / "srv-app") / "app.py"
    install_app(EXAMPLE_APP, path)
    return path


@pytest.fixture
def unique(request, run_dir):
    """unique(kind) -> (a short name unique to this test, a fresh directory
    (0755) of that name)."""
    counter = {"n": 0}

    def make(kind: str) -> tuple[str, Path]:
        counter["n"] += 1
        name = f"{_short_name(request.node.name, 28)}-{kind}-{counter['n']}-{os.getpid()}"
        return name, _fresh_dir(run_dir / name)

    return make


@pytest.fixture
def per_test_gateway(procs, unique, gateway_bin, log_dir, run_dir):
    """per_test_gateway(kind, args, proto=, tcp=False) -> a started gateway of
    this test's own on a Unix socket in the run dir (mode 0755, so the front
    servers' www-data workers reach it), or on 127.0.0.1:a free port."""

    def make(kind: str, args: list[str], *, proto: str, tcp: bool = False) -> OwnGateway:
        name, _ = unique(f"gw-{kind}")
        where = f"127.0.0.1:{free_port()}" if tcp else str(run_dir / f"{name}.sock")
        gw = OwnGateway(name, where, args, log_dir / f"{name}.log", binary=gateway_bin, proto=proto)
        procs.add(gw)
        return gw.start()

    return make


def module_gateway(name: str, args: list[str], *, proto: str, check_exit: bool = True, doc: str = ""):
    """A module-scoped fixture: an OwnGateway `NAME-PID` on a Unix socket in
    the run dir, started for the first test of the module that asks for it
    and stopped after its last (`check_exit`: failing unless SIGTERM ends
    it with 0)."""

    def fixture(run_dir, log_dir, gateway_bin):
        tag = f"{name}-{os.getpid()}"
        gw = OwnGateway(tag, str(run_dir / f"{tag}.sock"), args, log_dir / f"{tag}.log",
                        binary=gateway_bin, proto=proto).start()
        yield gw
        if check_exit:
            gw.stop()
        else:
            gw.terminate()
            gw.log.close()

    fixture.__doc__ = doc or f"`rustgi-gateway --proto {proto} {' '.join(args)}`"
    return pytest.fixture(scope="module")(fixture)


@pytest.fixture
def apache(procs, unique, apache_binary, log_dir):
    """apache(kind, body, modules=(), log_level="warn") -> a started Apache
    (see frontservers.Apache)."""

    def make(kind: str, body: str, modules=(), log_level="warn") -> Apache:
        name, d = unique(f"apache-{kind}")
        server = Apache(apache_binary, d, log_dir / name, name, body, modules, log_level)
        procs.add(server)
        return server.start()

    return make


@pytest.fixture
def lighttpd(procs, unique, lighttpd_binary, log_dir):
    """lighttpd(kind, body, docroot=None, modules=("mod_fastcgi",)) -> a
    started lighttpd (see frontservers.Lighttpd)."""

    def make(kind: str, body: str, docroot: Path | None = None, modules=("mod_fastcgi",)) -> Lighttpd:
        name, d = unique(f"lighttpd-{kind}")
        server = Lighttpd(lighttpd_binary, d, log_dir / name, name, body, docroot, modules)
        procs.add(server)
        return server.start()

    return make
