"""rustgi-gateway under systemd: socket activation, readiness notification
(sd_notify), and the privilege flags a daemon started as root needs.

systemd cannot run units in this container (it is not PID 1), so each test
does what systemd would, with the real protocol:

- Socket activation with `systemd-socket-activate` (Debian: systemd), which
  binds the socket, waits for the first connection and execs the program
  with LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES, as systemd does for a .socket
  unit. examples/rustgi.socket and examples/rustgi.service are rendered and
  run that way (ListenStream=, ExecStart as User=/Group=, SocketUser=,
  SocketGroup=, SocketMode= applied to the socket), behind nginx; the
  socket file is systemd's, so it is still there after rustgi exits.
- A restart under socket activation: the test holds the listening socket
  (as systemd does across restarts) and passes it on fd 3 to one gateway,
  then another; a request that arrives between the two waits in the
  socket's queue and is answered by the second.
- Mistakes are refused with a message: a --socket that is not the passed
  socket, several passed sockets and no --socket to choose.
- sd_notify: NOTIFY_SOCKET names a datagram socket the test binds (a path,
  and an abstract name): READY=1 arrives only once the app is loaded (before
  that, connections are refused; right after, a request is served), and
  STOPPING=1 on SIGTERM.
- --user nobody --group nogroup --chown www-data:www-data --pidfile: the app
  runs as nobody (all four uids and gids, no supplementary groups but
  nogroup, HOME from the passwd entry); the socket file belongs to
  www-data; the pidfile holds the pid, a second start with it is refused,
  and both files are gone after SIGTERM. This machine's Python lives under
  /root (mode 0700), which nobody cannot read: rustgi then refuses to start
  with a message that says so; the successful run points the loader at
  Debian's libpython3.11 (LD_LIBRARY_PATH overrides the binary's RUNPATH),
  as a real deployment uses a Python its --user can read.
- --user without root is refused before Python starts.
"""

from __future__ import annotations

import json
import os
import pwd
import grp
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import pytest

from harness import (
    APPS,
    REPO,
    free_port,
    http_request,
    scgi_request,
    stop_process,
    wait_until,
)
from test_spawn import (
    Child,
    SYSTEMD_PATH,
    one,
    render_socket_unit,
    render_unit,
    unit_directives,
)

AS_ROOT = os.geteuid() == 0
DEBIAN_LIBPYTHON_DIR = "/usr/lib/x86_64-linux-gnu"


class Notifications:
    """A datagram socket standing for systemd's NOTIFY_SOCKET."""

    def __init__(self, address: str):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        # '@name' is the abstract namespace: a leading NUL for the kernel.
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        if not address.startswith("@"):
            os.chmod(address, 0o777)  # a service that dropped root can still send
        self.address = address
        self.received: list[str] = []

    def wait_for(self, field: str, timeout: float = 30.0, alive=None) -> str:
        """The first message (since the last one taken) with the line `field`."""
        deadline = time.monotonic() + timeout
        while True:
            for i, message in enumerate(self.received):
                if field in message.split("\n"):
                    del self.received[: i + 1]
                    return message
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {field} within {timeout}s; got {self.received}")
            if alive is not None and not alive():
                raise AssertionError(f"the process exited before {field}; got {self.received}")
            self.sock.settimeout(min(left, 0.2))
            try:
                self.received.append(self.sock.recv(4096).decode())
            except socket.timeout:
                pass

    def close(self):
        self.sock.close()


def proc_ids(pid: int) -> dict[str, list[int]]:
    """Uid, Gid and Groups lines of /proc/PID/status."""
    ids = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("Uid", "Gid", "Groups"):
                ids[key] = [int(v) for v in value.split()]
    return ids


# Puts the inherited descriptors (argv[1], comma-separated) on fds 3, 4, ...,
# sets LISTEN_PID to its own pid and execs argv[2:]: the pid stays, as the
# protocol wants (systemd does the same between fork and exec).
SD_EXEC = """
import fcntl, os, sys
fds = [int(fd) for fd in sys.argv[1].split(",")]
high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in fds]
for fd in fds:
    os.close(fd)
for i, fd in enumerate(high):
    os.dup2(fd, 3 + i)
    os.close(fd)
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.argv[2], sys.argv[2:])
"""


def activated(argv: list[str], sockets: list[socket.socket], names: str | None = None) -> tuple[list, dict]:
    """The command and Popen arguments that start `argv` the way systemd
    passes sockets: on fds 3, 4, ..., with LISTEN_FDS, LISTEN_PID (its own
    pid) and LISTEN_FDNAMES."""
    fds = [s.fileno() for s in sockets]
    env = dict(os.environ, LISTEN_FDS=str(len(sockets)), RUST_LOG="info", NO_COLOR="1")
    env.pop("LISTEN_FDNAMES", None)
    if names is not None:
        env["LISTEN_FDNAMES"] = names
    command = [sys.executable, "-c", SD_EXEC, ",".join(map(str, fds)), *argv]
    return command, dict(env=env, pass_fds=tuple(fds))


def served_by(got: dict, pid: int) -> bool:
    """Whether the app's answer came from `pid` or one of its workers."""
    return pid in (got["pid"], got.get("ppid"))


def listening_unix(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.listen(64)
    return s


def is_socket_file(path) -> bool:
    import stat
    try:
        return stat.S_ISSOCK(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


# ---------------------------------------------------------------------------
# 1. the example units, with socket activation, behind nginx


def test_example_units_with_socket_activation_behind_nginx(procs, socket_activate, gateway_bin, log_dir,
                                                           site_dir, app_file, private_nginx):
    sock = str(site_dir / "run" / "rustgi" / "app.sock")
    units = unit_directives(render_unit(gateway_bin, sock, app_file.parent))
    service = units["Service"]
    sock_unit = unit_directives(render_socket_unit(sock))["Socket"]
    listen = one(sock_unit, "ListenStream")
    assert listen == sock
    (site_dir / "run" / "rustgi").mkdir(parents=True, mode=int(one(sock_unit, "DirectoryMode"), 8))
    argv = shlex.split(one(service, "ExecStart"))
    assert argv[0] == str(gateway_bin) and argv[argv.index("--socket") + 1] == listen

    try:
        pw = pwd.getpwnam(one(service, "User"))
    except KeyError:
        pw = pwd.getpwnam("nobody")  # the unit's user does not exist here
    gid = grp.getgrnam(one(service, "Group")).gr_gid
    notify = Notifications(str(site_dir / "notify.sock"))
    # systemd: binds ListenStream=, then runs ExecStart as User=/Group= with
    # the socket on fd 3 (setpriv execs in place: LISTEN_PID stays right)
    become = [shutil.which("setpriv"), f"--reuid={pw.pw_uid}", f"--regid={gid}", "--clear-groups", "--"] if AS_ROOT else []
    command = [socket_activate, "-l", listen, "--fdname=rustgi.socket",
               "-E", f"NOTIFY_SOCKET={notify.address}", "-E", "RUST_LOG=info", "-E", "NO_COLOR=1",
               "-E", "LANG=C.UTF-8", "--", *become, *argv]
    child = procs.add(Child(site_dir.name, command, log_dir / f"{site_dir.name}.log",
                            env={"PATH": SYSTEMD_PATH, "HOME": pw.pw_dir},
                            cwd=one(service, "WorkingDirectory")))
    assert wait_until(lambda: is_socket_file(sock) or child.proc.poll() is not None, 10), child.describe()
    assert child.proc.poll() is None, child.describe()
    # SocketUser=, SocketGroup=, SocketMode= (systemd applies them at bind)
    if AS_ROOT:
        os.chown(sock, pwd.getpwnam(one(sock_unit, "SocketUser")).pw_uid,
                 grp.getgrnam(one(sock_unit, "SocketGroup")).gr_gid)
    os.chmod(sock, int(one(sock_unit, "SocketMode"), 8))
    before = os.stat(sock)

    nginx = private_nginx(site_dir.name, types.SimpleNamespace(socket=sock))
    # The first connection starts the service; it waits in the queue until
    # the app is loaded.
    r = http_request(nginx.port, "POST", "/first?x=1", body=b"first body")
    assert r.status == 200, (r.status, r.body[:300], child.describe())
    got = json.loads(r.body)
    assert served_by(got, child.pid), "not exec'd in place: LISTEN_PID would be wrong"
    assert got["environ"]["PATH_INFO"] == "/first" and got["body"] == "first body"
    ready = notify.wait_for("READY=1", alive=lambda: child.proc.poll() is None)
    assert any(line.startswith("STATUS=") for line in ready.split("\n")), ready
    if AS_ROOT:
        for pid in {child.pid, got["pid"]}:
            ids = proc_ids(pid)
            assert ids["Uid"] == [pw.pw_uid] * 4 and ids["Gid"] == [gid] * 4, ids
    out = child.output()
    assert f"socket activation: serving unix:{sock}" in out, out

    # FastCGI, SCGI and uwsgi all reach it through the one passed socket
    for i in range(5):
        r = http_request(nginx.port, "GET", f"/again/{i}")
        assert r.status == 200 and json.loads(r.body)["environ"]["PATH_INFO"] == f"/again/{i}"

    # KillSignal: STOPPING=1, exit 0, and the socket file is systemd's: kept
    code = stop_process(child.proc, signal.Signals[one(service, "KillSignal")],
                        timeout=float(one(service, "TimeoutStopSec")))
    assert code == 0, child.describe()
    notify.wait_for("STOPPING=1", timeout=1)
    notify.close()
    assert is_socket_file(sock), "rustgi removed the socket systemd created"
    after = os.stat(sock)
    assert (after.st_ino, after.st_uid, after.st_gid, after.st_mode) == \
           (before.st_ino, before.st_uid, before.st_gid, before.st_mode)
    assert "could not remove" not in child.output()


# ---------------------------------------------------------------------------
# 2. a restart under socket activation loses no connection


def test_requests_wait_in_the_socket_while_rustgi_restarts(procs, gateway_bin, log_dir, site_dir, app_file):
    path = site_dir / "held.sock"
    held = listening_unix(path)  # what systemd keeps open across restarts
    argv = [str(gateway_bin), "--socket", str(path), "--app", str(app_file), "--threads", "2"]

    def start(name):
        shell, kw = activated(argv, [held], names="rustgi.socket")
        return procs.add(Child(name, shell, log_dir / f"{site_dir.name}-{name}.log", **kw))

    first = start("first")
    r = scgi_request(str(path), "GET", "/one", timeout=30)
    assert r.status == 200, first.describe()
    assert served_by(json.loads(r.body), first.pid)
    assert f"socket activation: serving unix:{path}" in first.output()
    first.stop()
    assert is_socket_file(path), "rustgi removed a socket it was passed"

    # nobody serves now: a request waits in the queue...
    answer = {}

    def waiting():
        try:
            answer["r"] = scgi_request(str(path), "POST", "/meanwhile", b"queued", timeout=30)
        except Exception as e:  # reported below
            answer["error"] = repr(e)

    t = threading.Thread(target=waiting)
    t.start()
    time.sleep(0.5)
    assert not answer, answer
    # ...and the next gateway answers it
    second = start("second")
    t.join(30)
    assert "r" in answer, (answer, second.describe())
    got = json.loads(answer["r"].body)
    assert served_by(got, second.pid) and got["body"] == "queued"
    second.stop()
    assert is_socket_file(path)
    held.close()


# ---------------------------------------------------------------------------
# 3. TCP, several sockets, and mistakes


def test_tcp_socket_activation_without_socket_flag(procs, socket_activate, gateway_bin, log_dir, site_dir,
                                                   app_file):
    port = free_port()
    command = [socket_activate, "-l", f"127.0.0.1:{port}", "-E", "RUST_LOG=info", "-E", "NO_COLOR=1",
               "--", str(gateway_bin), "--app", str(app_file)]
    child = procs.add(Child(site_dir.name, command, log_dir / f"{site_dir.name}.log"))
    assert wait_until(lambda: "Listening on" in child.output() or child.proc.poll() is not None, 10)
    r = scgi_request(f"127.0.0.1:{port}", "GET", "/over/tcp", timeout=30)
    assert r.status == 200, child.describe()
    assert served_by(json.loads(r.body), child.pid)
    assert f"socket activation: serving tcp:127.0.0.1:{port}" in child.output()
    child.stop()


def test_the_passed_socket_is_chosen_by_socket_flag_and_mistakes_are_refused(procs, gateway_bin, log_dir,
                                                                            site_dir, app_file):
    a, b = site_dir / "a.sock", site_dir / "b.sock"
    sa, sb = listening_unix(a), listening_unix(b)
    base = [str(gateway_bin), "--app", str(app_file)]

    def run_to_exit(name, extra, sockets, names=None):
        shell, kw = activated(base + extra, sockets, names)
        done = subprocess.run(shell, capture_output=True, text=True, timeout=30, **kw)
        return done.returncode, done.stdout + done.stderr

    # --socket names one that was not passed: refused, naming both
    other = site_dir / "other.sock"
    code, out = run_to_exit("mismatch", ["--socket", str(other)], [sa])
    assert code != 0 and str(other) in out and str(a) in out, out
    assert not other.exists()
    # two passed, no --socket to choose: refused, naming them
    code, out = run_to_exit("two", [], [sa, sb], names="one:two")
    assert code != 0 and "--socket" in out and str(a) in out and str(b) in out, out
    assert is_socket_file(a) and is_socket_file(b)

    # two passed, --socket chooses the second
    shell, kw = activated(base + ["--socket", str(b)], [sa, sb], names="one:two")
    child = procs.add(Child(site_dir.name, shell, log_dir / f"{site_dir.name}.log", **kw))
    r = scgi_request(str(b), "GET", "/chosen", timeout=30)
    assert r.status == 200 and served_by(json.loads(r.body), child.pid), child.describe()
    child.stop()
    assert is_socket_file(a) and is_socket_file(b)
    sa.close()
    sb.close()


# ---------------------------------------------------------------------------
# 4. sd_notify


SLOW_IMPORT_APP = '''
import time
time.sleep(1.0)  # a slow import: READY=1 must wait for it

def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"loaded"]
'''


@pytest.mark.parametrize("where", ["path", "abstract"])
def test_sd_notify_ready_after_the_app_loaded_and_stopping_on_sigterm(gateways, site_dir, where):
    address = str(site_dir / "notify.sock") if where == "path" else f"@rustgi-test-notify-{os.getpid()}"
    notify = Notifications(address)
    app = site_dir / "slow_app.py"
    app.write_text(SLOW_IMPORT_APP)
    gw = gateways.make(f"notify-{where}", ["--app", str(app)], socket=str(site_dir / "app.sock"),
                       env={"NOTIFY_SOCKET": address})
    gw.spawn()
    # Bound, but refusing connections while the app imports
    assert wait_until(lambda: is_socket_file(gw.socket) or not gw.alive(), 10), gw.describe()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        with pytest.raises(ConnectionRefusedError):
            s.connect(gw.socket)
    notify.sock.setblocking(False)
    with pytest.raises(BlockingIOError):
        notify.sock.recv(4096)  # nothing said yet
    ready = notify.wait_for("READY=1", alive=gw.alive)
    assert any(line.startswith("STATUS=") for line in ready.split("\n")), ready
    r = scgi_request(gw.socket, "GET", "/right-after", timeout=5)
    assert (r.status, r.body) == (200, b"loaded"), gw.describe()
    gw.send_signal(signal.SIGTERM)
    notify.wait_for("STOPPING=1", timeout=10)
    assert gw.wait_exit(timeout=15) == 0, gw.describe()
    assert not os.path.exists(gw.socket)
    notify.close()


def test_a_broken_notify_socket_does_not_stop_the_server(gateways, site_dir):
    gw = gateways.start("notify-broken", ["--app", "tests/apps/conformance.py"],
                        socket=str(site_dir / "app.sock"), env={"NOTIFY_SOCKET": str(site_dir / "nobody-here")})
    assert scgi_request(gw.socket, "GET", "/hello").status == 200
    assert gw.terminate() == 0, gw.describe()


# ---------------------------------------------------------------------------
# 5. --user, --group, --chown, --pidfile


IDENTITY_APP = '''
import json, os

def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({
        "uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "egid": os.getegid(),
        "groups": sorted(os.getgroups()), "home": os.environ.get("HOME"),
        "user": os.environ.get("USER"), "pid": os.getpid(), "ppid": os.getppid(),
    }).encode()]
'''


def python_readable_by(user: pwd.struct_passwd) -> bool:
    """Whether `user` can read the standard library of the Python the
    gateway was built against (the suite's own base Python)."""
    stdlib = Path(sys.base_prefix) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "os.py"
    done = subprocess.run(["test", "-r", str(stdlib)], user=user.pw_uid, group=user.pw_gid, extra_groups=[])
    return done.returncode == 0


def test_user_group_chown_and_pidfile(gateways, site_dir):
    if not AS_ROOT:
        pytest.fail("--user needs root: run the suite as root (tests/run)")
    nobody = pwd.getpwnam("nobody")
    nogroup = grp.getgrnam("nogroup").gr_gid
    www = pwd.getpwnam("www-data")
    # the directory is nobody's, so that nobody can remove its files at exit
    run = site_dir / "run"
    run.mkdir(mode=0o755)
    os.chown(run, nobody.pw_uid, nogroup)
    app = site_dir / "identity.py"
    app.write_text(IDENTITY_APP)
    os.chmod(app, 0o644)
    sock, pidfile = str(run / "app.sock"), run / "rustgi.pid"
    args = ["--user", "nobody", "--group", "nogroup", "--chown", "www-data:www-data", "--pidfile", str(pidfile),
            "--app", str(app)]

    if not python_readable_by(nobody):
        # This machine's Python is not readable by nobody: refused, saying why
        gw = gateways.make("user-unreadable-python", args, socket=sock)
        gw.spawn()
        assert gw.wait_exit(timeout=30) != 0
        out = gw.output()
        assert "--user nobody" in out and "read the Python installation" in out, out
        assert not os.path.exists(sock) and not pidfile.exists(), "left behind after the refusal"
        env = {"LD_LIBRARY_PATH": DEBIAN_LIBPYTHON_DIR}  # Debian's libpython3.11, readable by all
    else:
        env = {}

    gw = gateways.make("user-nobody", args, socket=sock, env=env).start()
    # the pidfile: written after binding, the server's pid
    assert pidfile.read_text() == f"{gw.pid}\n"
    # the socket: --chown's owner, --chmod's mode (the harness passes 666)
    st = os.stat(sock)
    assert (st.st_uid, st.st_gid) == (www.pw_uid, www.pw_gid), (st.st_uid, st.st_gid)
    assert st.st_mode & 0o777 == 0o666
    # the app runs as nobody:nogroup, with no other group, HOME from passwd
    r = scgi_request(sock, "GET", "/who")
    assert r.status == 200, gw.describe()
    got = json.loads(r.body)
    assert (got["uid"], got["euid"], got["gid"], got["egid"]) == (nobody.pw_uid, nobody.pw_uid, nogroup, nogroup)
    assert got["groups"] == [nogroup]
    assert (got["home"], got["user"]) == (nobody.pw_dir, "nobody") and served_by(got, gw.pid)
    # real, effective, saved and filesystem ids: root cannot come back
    for pid in {gw.pid, got["pid"]}:
        ids = proc_ids(pid)
        assert ids == {"Uid": [nobody.pw_uid] * 4, "Gid": [nogroup] * 4, "Groups": [nogroup]}, ids
    assert f"running as uid {nobody.pw_uid} gid {nogroup}" in gw.output()

    # a second start with the same pidfile is refused; the first one's files stay
    second = gateways.make("user-nobody-again", args, socket=str(run / "other.sock"), env=env)
    second.spawn()
    assert second.wait_exit(timeout=30) != 0
    assert f"already running as pid {gw.pid}" in second.output(), second.output()
    assert not os.path.exists(run / "other.sock")
    assert pidfile.read_text() == f"{gw.pid}\n"

    # SIGTERM: exit 0, the socket and the pidfile removed (by nobody)
    assert gw.terminate() == 0, gw.describe()
    assert not os.path.exists(sock), gw.describe()
    assert not pidfile.exists(), gw.describe()
    assert "could not remove" not in gw.output()


def test_user_without_root_is_refused(gateway_bin, site_dir):
    nobody = pwd.getpwnam("nobody")
    if not AS_ROOT:
        pytest.fail("the test starts the gateway as nobody: run the suite as root (tests/run)")
    sock = site_dir / "app.sock"
    os.chmod(site_dir, 0o777)
    done = subprocess.run(
        [str(gateway_bin), "--socket", str(sock), "--user", "daemon", "--app", str(APPS / "conformance.py")],
        user=nobody.pw_uid, group=nobody.pw_gid, extra_groups=[], capture_output=True, text=True,
        timeout=30, env={"PATH": SYSTEMD_PATH, "NO_COLOR": "1"}, cwd=REPO,
    )
    assert done.returncode != 0
    assert "--user daemon" in done.stderr and "only root can switch users" in done.stderr, done.stderr
    assert not sock.exists()
