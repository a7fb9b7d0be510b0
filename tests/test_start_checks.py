"""Saying why it would fail, before it fails (issue 15, item 4): a socket
the web server's user cannot reach is warned about at start with the fix;
socket paths are logged absolute; a missing socket directory is named; a
venv of another Python installation is refused with the command that makes
a right one; --version names the embedded Python and the commit; an import
error shows no importlib frames but the working directory and sys.path; a
reload of broken code prints its traceback once, not once per worker."""

import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from harness import APPS, REPO, can_connect_unix, scgi_request, stop_process, wait_until

WARNING = "cannot connect to"
PYTHON_AS_WWW = "/usr/bin/python3"  # a Python www-data can run (not the one under /root)


def gateway(gateway_bin, log: Path, *args, cwd=REPO) -> subprocess.Popen:
    """rustgi-gateway with exactly these flags (the suite's Gateway adds
    --chmod 666), its output to `log`."""
    env = dict(os.environ, RUST_LOG="info", NO_COLOR="1")
    env.pop("VIRTUAL_ENV", None)
    with open(log, "ab") as out:
        return subprocess.Popen([str(gateway_bin), *map(str, args)], stdout=out, stderr=out,
                                stdin=subprocess.DEVNULL, env=env, cwd=cwd)


def started(proc: subprocess.Popen, socket: Path, log: Path) -> str:
    assert wait_until(lambda: proc.poll() is not None or can_connect_unix(socket), 30), log.read_text()
    assert proc.poll() is None, log.read_text()
    return log.read_text()


def refused(proc: subprocess.Popen, log: Path) -> str:
    try:
        code = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        stop_process(proc)
        raise AssertionError(f"still running:\n{log.read_text()}")
    text = log.read_text()
    assert code != 0, text
    return text


def www_data_connects(socket: Path) -> bool:
    """What the kernel says: can www-data connect to `socket`?"""
    probe = ("import socket, sys\ns = socket.socket(socket.AF_UNIX)\n"
             "try:\n    s.connect(sys.argv[1])\nexcept OSError:\n    sys.exit(1)\n")
    return subprocess.run(["setpriv", "--reuid=www-data", "--regid=www-data", "--init-groups",
                           PYTHON_AS_WWW, "-c", probe, str(socket)],
                          capture_output=True, timeout=30).returncode == 0


@pytest.fixture
def place(run_dir):
    """A directory of its own (mode 0755) for this test's socket and log."""
    path = Path(tempfile.mkdtemp(prefix="chk-", dir=run_dir))  # short: socket paths are limited
    path.chmod(0o755)
    return path


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="--chown and setpriv need root")


@needs_root
@pytest.mark.parametrize("flags, dir_mode, fix", [
    ([], 0o755, ["--chown :www-data", "--chmod 666"]),  # root:root 660, the default
    (["--chmod", "600"], 0o755, ["--chown :www-data --chmod 660", "--chmod 666"]),
    (["--chown", ":www-data", "--chmod", "640"], 0o755, ["give --chmod 660"]),
    (["--chmod", "666"], 0o700, ["chmod o+x {dir}"]),  # a closed directory on the way
    (["--chown", ":www-data"], 0o755, None),
    (["--chmod", "666"], 0o755, None),
    (["--chmod", "666"], 0o711, None),  # x without r is enough
], ids=["root-660", "600", "group-640", "closed-dir", "chown", "666", "dir-711"])
def test_a_socket_the_web_user_cannot_reach_is_warned_with_the_fix(gateway_bin, place, flags, dir_mode, fix):
    inner = place / "sock"
    inner.mkdir()
    inner.chmod(dir_mode)
    socket, log = inner / "app.sock", place / "gw.log"
    proc = gateway(gateway_bin, log, "--socket", socket, "--app", APPS / "conformance.py",
                   "--web-user", "www-data", *flags)
    try:
        text = started(proc, socket, log)
        warnings = [line for line in text.splitlines() if WARNING in line]
        # The warning and the kernel agree.
        assert www_data_connects(socket) == (fix is None), text
        if fix is None:
            assert not warnings, text
        else:
            assert len(warnings) == 1, text
            assert re.search(r"\bWARN\b.*www-data \(--web-user\) cannot connect to "
                             + re.escape(str(socket)), warnings[0])
            assert "SupplementaryGroups=" in warnings[0], warnings[0]
            for word in fix:
                assert word.format(dir=inner) in warnings[0], warnings[0]
    finally:
        assert stop_process(proc) == 0, log.read_text()


@needs_root
def test_the_usual_web_users_are_checked_without_web_user(gateway_bin, place):
    socket, log = place / "app.sock", place / "gw.log"
    proc = gateway(gateway_bin, log, "--socket", socket, "--app", APPS / "conformance.py")
    try:
        text = started(proc, socket, log)
        assert re.search(r"www-data \(a user web servers usually run as; --web-user NAME names yours\)"
                         r" cannot connect to ", text), text
    finally:
        assert stop_process(proc) == 0, log.read_text()


def test_an_unknown_web_user_is_refused(gateway_bin, place):
    log = place / "gw.log"
    text = refused(gateway(gateway_bin, log, "--socket", place / "app.sock", "--app",
                           APPS / "conformance.py", "--web-user", "no-such-user-rustgi"), log)
    assert "--web-user no-such-user-rustgi: no such user" in text, text
    assert not (place / "app.sock").exists()


def test_a_relative_socket_is_logged_absolute(gateway_bin, place):
    log = place / "gw.log"
    proc = gateway(gateway_bin, log, "--socket", "rel.sock", "--chdir", place, "--chmod", "666",
                   "--app", APPS / "conformance.py")
    socket = place / "rel.sock"  # from --chdir's directory
    try:
        text = started(proc, socket, log)
        assert f"listening on unix:{socket} " in text, text
        assert not re.search(r"listening on unix:rel\.sock", text), text
        assert scgi_request(str(socket), "GET", "/hello").status == 200
    finally:
        assert stop_process(proc) == 0, log.read_text()
    assert not socket.exists(), "the socket file stays after the stop"


def test_a_short_relative_socket_in_a_deep_chdir_binds(gateway_bin, place):
    """The socket is bound by the path as given, relative to --chdir's
    directory: its absolute form is longer than a Unix socket's 107 bytes
    and would not bind. The log still names it absolute."""
    deep = place / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    socket, log = deep / "rel.sock", place / "gw.log"
    assert len(str(socket)) >= 108
    # A short way to the same file, for this test's own connects.
    fd = os.open(deep, os.O_RDONLY | os.O_DIRECTORY)
    short = f"/proc/{os.getpid()}/fd/{fd}/rel.sock"
    proc = gateway(gateway_bin, log, "--socket", "rel.sock", "--chdir", deep, "--chmod", "666",
                   "--app", APPS / "conformance.py")
    try:
        text = started(proc, short, log)
        assert f"listening on unix:{socket} " in text, text
        assert scgi_request(short, "GET", "/hello").status == 200
    finally:
        assert stop_process(proc) == 0, log.read_text()
        os.close(fd)
    assert not socket.exists(), "the socket file stays after the stop"


@pytest.mark.parametrize("how", ["path", "name"])
def test_a_symlink_in_a_venvs_bin_serves_that_venv(gateway_bin, place, how):
    """A venv's bin/rustgi-gateway that is a symlink to the gateway
    installed elsewhere serves that venv, started by its path or by its
    name through PATH; without a venv, the log says so."""
    venv = place / "v"
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", venv], check=True)
    (venv / "bin" / "rustgi-gateway").symlink_to(gateway_bin)
    socket, log = place / "app.sock", place / "gw.log"
    env = dict(os.environ, RUST_LOG="info", NO_COLOR="1")
    env.pop("VIRTUAL_ENV", None)
    if how == "path":
        argv0 = str(venv / "bin" / "rustgi-gateway")
    else:
        argv0 = "rustgi-gateway"
        env["PATH"] = f"{venv / 'bin'}:{env['PATH']}"
    with open(log, "ab") as out:
        proc = subprocess.Popen([argv0, "--socket", socket, "--app", APPS / "conformance.py"],
                                stdout=out, stderr=out, stdin=subprocess.DEVNULL, env=env, cwd=REPO)
    try:
        text = started(proc, socket, log)
        assert f"serving the venv {venv}: rustgi-gateway was started from its bin/, as {venv}/bin/rustgi-gateway" \
            in text, text
    finally:
        assert stop_process(proc) == 0, log.read_text()

    log2 = place / "gw2.log"
    proc = gateway(gateway_bin, log2, "--socket", socket, "--app", APPS / "conformance.py")
    try:
        text = started(proc, socket, log2)
        assert re.search(r"no venv: serving the packages of the Python at /\S+", text), text
    finally:
        assert stop_process(proc) == 0, log2.read_text()


def test_a_missing_socket_directory_is_named(gateway_bin, place):
    log = place / "gw.log"
    socket = place / "gone" / "deeper" / "app.sock"
    text = refused(gateway(gateway_bin, log, "--socket", socket, "--app", APPS / "conformance.py"), log)
    assert (f"the directory {socket.parent} does not exist, nor does {place / 'gone'}" in text), text
    assert "No such file or directory" not in text, text


DEBIAN_PYTHON = Path("/usr/bin/python3.11")


@pytest.mark.skipif(Path(sys.base_prefix) == Path("/usr"), reason="the suite's own Python is Debian's")
def test_a_venv_of_another_installation_is_refused_with_the_command_for_a_right_one(gateway_bin, place):
    # Debian's python3.11 (tests/run installs it): the same major.minor as
    # the embedded one, another installation.
    assert DEBIAN_PYTHON.exists(), "tests/run installs python3.11"
    venv = place / "debian-venv"
    subprocess.run([DEBIAN_PYTHON, "-m", "venv", "--without-pip", venv], check=True)
    theirs = subprocess.run([DEBIAN_PYTHON, "-c", "import platform; print(platform.python_version())"],
                            capture_output=True, text=True, check=True).stdout.strip()
    log = place / "gw.log"
    text = refused(gateway(gateway_bin, log, "--socket", place / "app.sock", "--venv", venv,
                           "--app", APPS / "conformance.py"), log)
    ours = sys.version.split()[0]
    assert f"{venv} was made by the Python in /usr/bin (Python {theirs})" in text, text
    assert f"embeds Python {ours} at {sys.base_prefix}" in text, text
    assert f"`{sys.base_prefix}/bin/python3 -m venv PATH`" in text, text
    assert not (place / "app.sock").exists(), "refused before the socket was made"
    # The command it names makes one that is accepted.
    good = place / "good-venv"
    subprocess.run([Path(sys.base_prefix) / "bin" / "python3", "-m", "venv", "--without-pip", good], check=True)
    proc = gateway(gateway_bin, log, "--socket", place / "app.sock", "--chmod", "666", "--venv", good,
                   "--app", APPS / "conformance.py")
    try:
        text = started(proc, place / "app.sock", log)
        assert f"(prefix {good})" in text, text
    finally:
        assert stop_process(proc) == 0, log.read_text()


def test_version_names_the_embedded_python_and_the_commit(gateway_bin):
    out = subprocess.run([gateway_bin, "--version"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out
    text = out.stdout
    commit = re.match(r"rustgi-gateway \d+\.\d+\.\d+ \(git ([0-9a-f]{7,})(-dirty)?\)\n", text)
    assert commit, text
    known = subprocess.run(["git", "-C", REPO, "cat-file", "-e", commit[1] + "^{commit}"])
    assert known.returncode == 0, f"{commit[1]} is not a commit of this repository"
    assert f"\nPython {sys.version.split()[0]} " in text, text
    assert f"\nbuilt against the Python at {sys.base_prefix} ({sys.version.split()[0]})" in text, text
    assert re.search(rf"\nlibpython: {re.escape(sys.base_prefix)}/lib/libpython3\.\d+\.so", text), text


@pytest.mark.parametrize("module, expected, frame", [
    ("no_such_module_xyz", "ModuleNotFoundError: No module named 'no_such_module_xyz'", None),
    ("broken_import", "RuntimeError: broken_import fails on purpose", "broken_import.py"),
])
def test_an_import_error_shows_no_importlib_frames_and_where_python_looked(gateway_bin, place, module,
                                                                          expected, frame):
    log = place / "gw.log"
    text = refused(gateway(gateway_bin, log, "--socket", place / "app.sock", "--chdir", APPS,
                           "--app", module), log)
    assert expected in text, text
    assert "<frozen importlib" not in text and "importlib/__init__.py" not in text, text
    if frame:
        assert re.search(rf'File "{re.escape(str(APPS / frame))}", line \d+, in <module>', text), text
    if module == "no_such_module_xyz":
        assert f"working directory: {APPS}\n" in text, text
        path = text.split("sys.path:\n", 1)[1].splitlines()
        assert path[0].strip() == str(APPS), text
        assert any(line.strip() == f"{sys.base_prefix}/lib/python3.{sys.version_info.minor}"
                   for line in path), text


BARRIER_APP = '''\
import os
import pathlib
import time

here = pathlib.Path(__file__).parent
if (here / "broken").exists():
    # Every new worker reaches this point before any fails, so that all of
    # them fail together, as they do on a real deploy of broken code.
    (here / f"arrived-{os.getpid()}").touch()
    deadline = time.monotonic() + 10
    while len(list(here.glob("arrived-*"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.001)
    raise RuntimeError("broken on purpose")


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"v0"]
'''


def test_a_failed_reload_prints_its_traceback_once(gateway_bin, place):
    site = place / "site"
    site.mkdir()
    (site / "barrier_app.py").write_text(BARRIER_APP)
    socket, log = place / "app.sock", place / "gw.log"
    proc = gateway(gateway_bin, log, "--socket", socket, "--chmod", "666", "--processes", "3",
                   "--threads", "1", "--app", site / "barrier_app.py")
    try:
        started(proc, socket, log)
        assert wait_until(lambda: "3 worker(s) ready" in log.read_text(), 30), log.read_text()
        mark = len(log.read_text())
        (site / "broken").touch()
        proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: "reload failed" in log.read_text()[mark:], 30), log.read_text()
        # All three new workers got to the failure, and all have ended
        # (failed, or told to stop): everything they could log is in.
        assert len(list(site.glob("arrived-*"))) == 3, log.read_text()[mark:]
        new = re.findall(r"worker (\d+) started \(generation 2\)", log.read_text()[mark:])
        assert len(new) == 3, log.read_text()[mark:]

        def all_ended():
            text = log.read_text()[mark:]
            return all(re.search(rf"(new )?worker {pid} (exited|killed|could not load)", text) for pid in new)

        assert wait_until(all_ended, 30), log.read_text()[mark:]
        text = log.read_text()[mark:]
        assert text.count("RuntimeError: broken on purpose") == 1, text
        assert text.count("Traceback (most recent call last)") == 1, text
        assert scgi_request(str(socket), "GET", "/").body == b"v0", "the old workers serve on"
    finally:
        assert stop_process(proc) == 0, log.read_text()
