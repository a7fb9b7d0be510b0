"""rustgi-gateway started by a process manager instead of a front server:
spawn-fcgi, and systemd with examples/rustgi.service.

spawn-fcgi (Debian: spawn-fcgi) binds the socket itself and execs the
program with the listening socket on fd 0: rustgi is given no --socket and no
--proto, serves FastCGI there (detected per connection), and, the socket
being spawn-fcgi's, never removes it, not even on SIGTERM.

- `-s SOCK -n`: spawn-fcgi becomes the gateway (same pid); cgi-fcgi and a raw
  FastCGI client (tests/fcgi_client.py) are answered; after SIGTERM (exit 0)
  the socket file is still there, and a new spawn-fcgi can take its place.
- `-a 127.0.0.1 -p PORT -n`: the same over TCP.
- `-s SOCK -F 2 -P PIDFILE`: spawn-fcgi forks two gateways on one socket and
  exits; both serve it; SIGTERM stops them, the socket stays.

examples/rustgi.service and examples/rustgi.socket: `systemd-analyze
verify` accepts the rendered units (placeholders /usr/local/bin/rustgi-gateway,
/run/rustgi/app.sock and /srv/app replaced, each asserted present) without a
warning; a copy with a mistyped key is not accepted silently, and the service
alone (without the socket unit it requires) is refused, so the check means
something. The settings that matter are asserted (Type=notify, the socket
unit's ListenStream= is the service's --socket, no RuntimeDirectory= that
would delete the socket at stop). systemd itself cannot run units in this
container (it is not PID 1), so the service's promises are checked by doing
what systemd would: its ExecStart, rendered, is run as is (as `User=`, or
`nobody` when that user does not exist here, with `Group=`, in
`WorkingDirectory=`, with systemd's minimal environment, without the socket
unit, in a fresh directory for the socket) and serves FastCGI, SCGI and uwsgi
on its socket, which only its group can use; KillSignal during a request lets
the request finish, and the gateway exits 0 within TimeoutStopSec, its socket
removed. tests/test_systemd.py runs the two units together, with socket
activation.

The app is tests/apps/example_app.py (validator-wrapped), copied to the
rendered /srv/app/app.py.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import fcgi_client as fc
import uwsgi_client
from frontservers import StrayProcesses, process_gone
from harness import (
    REPO,
    LogFile,
    _die_with_parent,
    can_connect_tcp,
    can_connect_unix,
    free_port,
    parse_cgi_response,
    process_title,
    scgi_request,
    stop_process,
    unix_connections,
    wait_until,
)

EXAMPLES = REPO / "examples"
AS_ROOT = os.geteuid() == 0


# ---------------------------------------------------------------------------
# fixtures and helpers


class Child:
    """A process we start (spawn-fcgi, or the service's ExecStart), its
    stdout and stderr in `log`. `stop()` sends SIGTERM and fails unless it
    exits 0."""

    def __init__(self, name: str, argv: list[str], log_path: Path, *, env=None, cwd=None,
                 user=None, group=None, extra_groups=None, pass_fds=()):
        self.name = name
        self.argv = argv
        self.log = LogFile(log_path)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as out:
            out.write(f"\n##### {shlex.join(argv)}\n".encode())
            out.flush()
            self.output_start = out.tell()
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env, cwd=cwd,
                user=user, group=group, extra_groups=extra_groups, preexec_fn=_die_with_parent,
                pass_fds=pass_fds,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log.text(self.output_start)

    def describe(self) -> str:
        state = "running" if self.proc.poll() is None else f"exited {self.proc.returncode}"
        return f"[{self.name}: {state}; log {self.log.path}]\n" + "\n".join(self.output().splitlines()[-30:])

    def stop(self):
        code = stop_process(self.proc, signal.SIGTERM, timeout=15)
        if code != 0:
            raise AssertionError(f"{self.name} exited {code} on SIGTERM:\n{self.describe()}")

    def __repr__(self):
        return f"<Child {self.name} pid {self.proc.pid}>"


def wait_started(child: Child, pattern: str, timeout: float = 30.0):
    """Waits for the gateway's `listening on` line (matching `pattern`)."""
    def ready():
        if child.proc.poll() is not None:
            raise AssertionError(f"{child.name} exited before listening:\n{child.describe()}")
        return re.search(pattern, child.output())

    assert wait_until(ready, timeout), f"{child.name} not listening after {timeout}s:\n{child.describe()}"


def cgi_env(method: str, path: str, query: str = "", body: bytes | None = None) -> dict:
    env = {
        "GATEWAY_INTERFACE": "CGI/1.1", "REQUEST_METHOD": method, "SCRIPT_NAME": "",
        "PATH_INFO": path, "QUERY_STRING": query, "REQUEST_URI": path + ("?" + query if query else ""),
        "SERVER_NAME": "localhost", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_SOFTWARE": "cgi-fcgi", "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "localhost",
    }
    if body is not None:
        env["CONTENT_LENGTH"] = str(len(body))
        env["CONTENT_TYPE"] = "application/octet-stream"
    return env


def via_cgi_fcgi(binary: str, where: str, method: str, path: str, body: bytes | None = None,
                 query: str = "") -> dict:
    """One request through libfcgi's cgi-fcgi; the app's JSON answer."""
    done = subprocess.run([binary, "-bind", "-connect", where], input=body or b"",
                          env=cgi_env(method, path, query, body), capture_output=True, timeout=30)
    assert done.returncode == 0, (done.returncode, done.stderr, done.stdout[:300])
    response = parse_cgi_response(done.stdout)
    assert response.status == 200, (response.status, response.body[:300])
    return json.loads(response.body)


def via_raw_fastcgi(path_: str, method: str, path: str, body: bytes = b"") -> dict:
    """One request through tests/fcgi_client.py (keep-conn off); the app's JSON."""
    with fc.FcgiConnection(path_) as conn:
        conn.request(1, fc.responder_params(method, path, body_len=len(body)), body, keep_conn=False)
        reply = conn.read_end(1)
    assert reply.protocol_status == fc.REQUEST_COMPLETE, reply
    response = reply.response()
    assert response.status == 200, (response.status, response.body[:300])
    return json.loads(response.body)


BODY = (bytes(range(256)) * 800)[:200_000]  # every byte value


def check_fastcgi_served(where: str, cgi_fcgi: str, pids, unix: bool = True) -> list[dict]:
    """GET and POST (with a body) through cgi-fcgi, and through the raw
    client on a Unix socket; each answered by one of `pids`."""
    answers = []
    got = via_cgi_fcgi(cgi_fcgi, where, "GET", "/hello/world", query="x=1")
    assert (got["environ"]["SCRIPT_NAME"], got["environ"]["PATH_INFO"]) == ("", "/hello/world")
    assert got["environ"]["QUERY_STRING"] == "x=1"
    assert got["environ"]["FCGI_ROLE"] == "RESPONDER"
    answers.append(got)
    got = via_cgi_fcgi(cgi_fcgi, where, "POST", "/upload", body=BODY)
    assert got["environ"]["CONTENT_LENGTH"] == str(len(BODY))
    assert got["body"].encode("latin-1") == BODY
    answers.append(got)
    if unix:
        got = via_raw_fastcgi(where, "POST", "/raw", BODY)
        assert got["environ"]["PATH_INFO"] == "/raw"
        assert got["body"].encode("latin-1") == BODY
        answers.append(got)
    for a in answers:
        assert a["ppid"] in pids, (a["ppid"], pids)  # a worker of one of the gateways
        assert a["run_once"] is False
    return answers


# ---------------------------------------------------------------------------
# 1. spawn-fcgi


def test_spawn_fcgi_unix_socket_is_served_and_left_in_place(procs, spawn_fcgi, cgi_fcgi, gateway_bin,
                                                            log_dir, site_dir, app_file):
    sock = site_dir / "app.sock"
    argv = [spawn_fcgi, "-s", str(sock), "-n", "--", str(gateway_bin), "--app", str(app_file)]
    child = procs.add(Child(site_dir.name, argv, log_dir / f"{site_dir.name}.log"))
    wait_started(child, r"listening on an inherited unix socket")
    # -n: spawn-fcgi exec'd the gateway: same process (the master, whose
    # title replaced the command line; no --socket, no --proto)
    assert process_title(child.pid) == f"rustgi-gateway: master [{app_file}:application]"
    assert os.path.realpath(f"/proc/{child.pid}/exe") == os.path.realpath(gateway_bin)
    check_fastcgi_served(str(sock), cgi_fcgi, {child.pid})

    child.stop()  # SIGTERM, exit 0
    assert "stopped" in child.output(), child.describe()
    assert sock.is_socket(), "rustgi removed the socket spawn-fcgi created"
    assert not can_connect_unix(sock)  # nobody listens: a stale socket file

    # spawn-fcgi replaces the stale socket file: the same command starts again
    again = procs.add(Child(site_dir.name + "-again", argv, log_dir / f"{site_dir.name}-again.log"))
    wait_started(again, r"listening on an inherited unix socket")
    check_fastcgi_served(str(sock), cgi_fcgi, {again.pid})
    again.stop()
    assert sock.is_socket()
    sock.unlink()


def test_spawn_fcgi_tcp_port_is_served(procs, spawn_fcgi, cgi_fcgi, gateway_bin, log_dir, site_dir,
                                       app_file):
    port = free_port()
    argv = [spawn_fcgi, "-a", "127.0.0.1", "-p", str(port), "-n", "--", str(gateway_bin),
            "--app", str(app_file)]
    child = procs.add(Child(site_dir.name, argv, log_dir / f"{site_dir.name}.log"))
    wait_started(child, rf"listening on tcp:127\.0\.0\.1:{port}\b")
    check_fastcgi_served(f"127.0.0.1:{port}", cgi_fcgi, {child.pid}, unix=False)
    child.stop()
    assert not can_connect_tcp("127.0.0.1", port)


def test_spawn_fcgi_forked_children_share_the_socket(procs, spawn_fcgi, cgi_fcgi, gateway_bin, log_dir,
                                                     site_dir, app_file):
    procs.add(StrayProcesses(str(app_file)))
    sock = site_dir / "app.sock"
    pidfile = site_dir / "spawn-fcgi.pid"
    done = subprocess.run(
        [spawn_fcgi, "-s", str(sock), "-F", "2", "-P", str(pidfile), "--", str(gateway_bin),
         "--app", str(app_file)],
        capture_output=True, timeout=30,
    )
    assert done.returncode == 0, done
    pids = [int(p) for p in pidfile.read_text().split()]
    assert len(pids) == 2, pidfile.read_text()
    # spawn-fcgi writes a child's pid as it forks, maybe before the exec
    expected = f"rustgi-gateway: master [{app_file}:application]"
    for pid in pids:
        assert wait_until(lambda: process_title(pid) == expected, 5), process_title(pid)
    # the children's output goes to /dev/null: wait for the socket to answer
    assert wait_until(lambda: can_connect_unix(sock), 30)
    check_fastcgi_served(str(sock), cgi_fcgi, set(pids))

    # both accept on the one socket: concurrent slow requests reach both
    seen, errors = [], []

    def slow():
        try:
            seen.append(via_raw_fastcgi(str(sock), "GET", "/sleep/0.5")["ppid"])  # its master
        except Exception as e:  # reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=slow) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and len(seen) == 8, errors
    print(f"spawn-fcgi -F 2: gateways {pids}; concurrent requests answered by {sorted(set(seen))}")
    assert set(seen) <= set(pids)

    # one of them stops (SIGTERM): the socket stays, and the other one
    # answers on it
    first = seen[0]
    (other,) = set(pids) - {first}
    os.kill(first, signal.SIGTERM)
    assert wait_until(lambda: process_gone(first), 15), f"gateway {first} still running 15 s after SIGTERM"
    assert sock.is_socket(), "rustgi removed the socket spawn-fcgi created (and its sibling still serves)"
    check_fastcgi_served(str(sock), cgi_fcgi, {other})

    os.kill(other, signal.SIGTERM)
    assert wait_until(lambda: process_gone(other), 15), f"gateway {other} still running 15 s after SIGTERM"
    assert sock.is_socket(), "rustgi removed the socket spawn-fcgi created"
    sock.unlink()


# ---------------------------------------------------------------------------
# 2. examples/rustgi.service


UNIT = EXAMPLES / "rustgi.service"
SOCKET_UNIT = EXAMPLES / "rustgi.socket"
BINARY = "/usr/local/bin/rustgi-gateway"
SOCKET = "/run/rustgi/app.sock"
APP_DIR = "/srv/app"


def unit_directives(text: str) -> dict[str, dict[str, list[str]]]:
    """section -> key -> values (in order), as systemd reads a unit file:
    `#` and `;` comments, a trailing backslash continues the line."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    logical = re.sub(r"\\\n", " ", text)
    for raw in logical.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        m = re.fullmatch(r"\[(.+)\]", line)
        if m:
            current = sections.setdefault(m.group(1), {})
            continue
        assert current is not None, f"{line!r} outside a section"
        key, eq, value = line.partition("=")
        assert eq, f"not a key=value line: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def render_unit(binary: Path, sock: str, app_dir: Path) -> str:
    """The unit with its placeholders replaced, each asserted present
    (counted outside comments)."""
    text = UNIT.read_text()
    directives = "".join(line for line in text.splitlines(True) if not line.lstrip().startswith(("#", ";")))
    for needle, count in ((BINARY, 1), (SOCKET, 1), (APP_DIR + "/app.py", 2), (APP_DIR, 3)):
        found = directives.count(needle)
        assert found == count, f"{UNIT} should contain {needle!r} {count} time(s) outside comments, has {found}"
    return text.replace(BINARY, str(binary)).replace(SOCKET, sock).replace(APP_DIR, str(app_dir))


def render_socket_unit(sock: str) -> str:
    """rustgi.socket with its ListenStream= path replaced (asserted present)."""
    text = SOCKET_UNIT.read_text()
    directives = "".join(line for line in text.splitlines(True) if not line.lstrip().startswith(("#", ";")))
    found = directives.count(SOCKET)
    assert found == 1, f"{SOCKET_UNIT} should contain {SOCKET!r} once outside comments, has {found}"
    return text.replace(SOCKET, sock)


def one(section: dict, key: str) -> str:
    values = section.get(key, [])
    assert len(values) == 1, f"expected one {key}=, got {values}"
    return values[0]


def test_rustgi_service_passes_systemd_analyze_verify(systemd_analyze, gateway_bin, site_dir, app_file):
    unit_dir = site_dir / "units"
    unit_dir.mkdir()
    rendered = unit_dir / "rustgi.service"
    rendered_socket = unit_dir / "rustgi.socket"
    sock = str(site_dir / "run" / "rustgi" / "app.sock")
    rendered.write_text(render_unit(gateway_bin, sock, app_file.parent))
    rendered_socket.write_text(render_socket_unit(sock))
    done = subprocess.run([systemd_analyze, "verify", str(rendered_socket), str(rendered)],
                          capture_output=True, text=True, timeout=60)
    said = done.stdout + done.stderr
    print(f"systemd-analyze verify {rendered_socket} {rendered}: exit {done.returncode}, output {said!r}")
    assert done.returncode == 0, done
    assert not said.strip(), f"systemd-analyze has something to say:\n{said}"

    # the service requires its socket unit: alone, it is refused
    alone = site_dir / "alone"
    alone.mkdir()
    shutil.copy(rendered, alone / "rustgi.service")
    bad = subprocess.run([systemd_analyze, "verify", str(alone / "rustgi.service")], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode != 0 and "rustgi.socket" in bad.stderr, bad

    # the check is not vacuous: a mistyped key and a missing binary are reported
    broken = unit_dir / "broken.service"
    broken.write_text(rendered.read_text().replace("KillSignal=", "KilSignal=")
                      .replace(str(gateway_bin), "/nonexistent/rustgi-gateway")
                      .replace("Requires=rustgi.socket", "Requires=broken.socket"))
    broken_socket = unit_dir / "broken.socket"
    broken_socket.write_text(rendered_socket.read_text().replace("SocketMode=", "SockMode="))
    bad = subprocess.run([systemd_analyze, "verify", str(broken_socket), str(broken)], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode != 0, bad
    for mistake in ("KilSignal", "/nonexistent/rustgi-gateway", "SockMode"):
        assert mistake in bad.stderr, (mistake, bad.stderr)


def test_rustgi_service_unit_settings():
    units = unit_directives(UNIT.read_text())
    unit, service = units["Unit"], units["Service"]
    argv = shlex.split(one(service, "ExecStart"))
    assert argv[0] == BINARY
    assert argv[argv.index("--socket") + 1] == SOCKET
    assert "--proto" not in argv, "no --proto: one unit for FastCGI, SCGI and uwsgi"
    assert "--user" not in argv, "systemd's User= does it"
    assert one(service, "User") not in ("root", "0", "www-data"), "a dedicated user"
    assert one(service, "Restart") == "on-failure"
    assert one(service, "KillSignal") == "SIGTERM"
    graceful = float(argv[argv.index("--graceful-timeout") + 1]) if "--graceful-timeout" in argv else 30.0
    stop = float(one(service, "TimeoutStopSec"))
    assert graceful < stop <= graceful + 30, (graceful, stop)
    # readiness from rustgi itself, the main process only
    assert one(service, "Type") == "notify"
    assert one(service, "NotifyAccess") == "main"
    assert shlex.split(one(service, "ExecReload")) == ["/bin/kill", "-HUP", "$MAINPID"]
    # the socket unit holds the socket: required, ordered before, same path
    assert "rustgi.socket" in one(unit, "Requires").split()
    assert "rustgi.socket" in " ".join(unit.get("After", [])).split()
    assert "RuntimeDirectory" not in service, "it would delete the socket unit's socket at every stop"
    socket = unit_directives(SOCKET_UNIT.read_text())["Socket"]
    assert one(socket, "ListenStream") == SOCKET
    assert socket.get("Accept", ["no"]) == ["no"], "rustgi takes a listening socket, not one per connection"
    # only the front server's user connects
    assert (one(socket, "SocketUser"), one(socket, "SocketGroup")) == ("www-data", "www-data")
    assert one(socket, "SocketMode") == "0660"


SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def connects_as(user: str, sock: str) -> bool:
    """Whether `user` (with its own groups) can connect to the Unix socket."""
    done = subprocess.run(
        ["/usr/bin/python3", "-c",
         "import socket, sys; s = socket.socket(socket.AF_UNIX)\n"
         "try:\n    s.connect(sys.argv[1])\nexcept PermissionError:\n    sys.exit(3)\n", sock],
        user=user, group=pwd.getpwnam(user).pw_gid, extra_groups=[], capture_output=True, timeout=20,
    )
    assert done.returncode in (0, 3), done
    return done.returncode == 0


def test_rustgi_service_exec_start_serves_and_stops_on_kill_signal(procs, gateway_bin, log_dir,
                                                                   site_dir, app_file):
    """What systemd would do with the unit, done by hand: ExecStart, rendered,
    run as User:Group in WorkingDirectory with a fresh RuntimeDirectory, then
    KillSignal with a request in flight."""
    run = site_dir / "run"
    run.mkdir(mode=0o755)
    sock = str(run / "rustgi" / "app.sock")
    service = unit_directives(render_unit(gateway_bin, sock, app_file.parent))["Service"]
    exec_start = one(service, "ExecStart")
    assert not re.search(r"[%$]|^[-@:+!]", exec_start), f"specifiers, variables or prefixes: {exec_start}"
    argv = shlex.split(exec_start)
    assert argv[0] == str(gateway_bin)

    user = one(service, "User")
    group = one(service, "Group")
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        pw = pwd.getpwnam("nobody")  # the unit's user does not exist on this machine
    gid = grp.getgrnam(group).gr_gid
    # Without the socket unit rustgi creates the socket itself, in a
    # directory its user can write (as a RuntimeDirectory= would be).
    runtime = Path(sock).parent
    runtime.mkdir(mode=0o755)
    if AS_ROOT:
        os.chown(runtime, pw.pw_uid, gid)
    env = {"PATH": SYSTEMD_PATH, "LANG": "C.UTF-8", "HOME": pw.pw_dir, "USER": pw.pw_name,
           "LOGNAME": pw.pw_name, "SHELL": pw.pw_shell}
    for assignment in service.get("Environment", []):
        for word in shlex.split(assignment):
            key, _, value = word.partition("=")
            env[key] = value
    who = dict(user=pw.pw_uid, group=gid, extra_groups=[]) if AS_ROOT else {}
    child = procs.add(Child(site_dir.name, argv, log_dir / f"{site_dir.name}.log", env=env,
                            cwd=one(service, "WorkingDirectory"), **who))
    wait_until(lambda: can_connect_unix(sock) or child.proc.poll() is not None, 30)
    assert child.proc.poll() is None and can_connect_unix(sock), child.describe()

    # the socket: mode 660, the unit's group; its group can connect, others cannot
    st = os.stat(sock)
    assert oct(st.st_mode & 0o777) == "0o660", oct(st.st_mode)
    if AS_ROOT:
        assert st.st_gid == gid, (st.st_gid, gid)
        assert st.st_uid == pw.pw_uid
        assert connects_as("www-data", sock), "the front server's user cannot connect"
        assert not connects_as("daemon", sock), "a user outside the unit's group can connect"

    # no --proto: FastCGI, SCGI and uwsgi on the one socket
    got = via_raw_fastcgi(sock, "POST", "/over/fastcgi", BODY)
    assert got["environ"]["FCGI_ROLE"] == "RESPONDER" and got["body"].encode("latin-1") == BODY
    assert got["ppid"] == child.pid and got["environ"]["PATH_INFO"] == "/over/fastcgi"
    r = scgi_request(sock, "POST", "/over/scgi", b"scgi body")
    assert r.status == 200, child.describe()
    got = json.loads(r.body)
    assert got["environ"]["SCGI"] == "1" and got["body"] == "scgi body"
    r = uwsgi_client.request(sock, "GET", "/over/uwsgi")
    assert r.status == 200, child.describe()
    assert json.loads(r.body)["environ"]["PATH_INFO"] == "/over/uwsgi"

    # KillSignal with a request in flight: it finishes, the socket goes at once,
    # the gateway exits 0 well within TimeoutStopSec
    in_flight = {}

    def slow():
        try:
            in_flight["answer"] = via_raw_fastcgi(sock, "GET", "/sleep/2")
        except Exception as e:  # reported below
            in_flight["error"] = repr(e)

    t = threading.Thread(target=slow)
    t.start()
    assert wait_until(lambda: unix_connections(sock), 5), "the slow request never connected"
    time.sleep(0.5)  # it reached the app, which sleeps 2 s
    kill_signal = signal.Signals[one(service, "KillSignal")]
    timeout_stop = float(one(service, "TimeoutStopSec"))
    started = time.monotonic()
    child.proc.send_signal(kill_signal)
    assert wait_until(lambda: not os.path.exists(sock), 5), "the socket is still there after KillSignal"
    try:
        code = child.proc.wait(timeout=timeout_stop)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"still running {timeout_stop}s (TimeoutStopSec) after {kill_signal.name}:\n"
                             f"{child.describe()}")
    took = time.monotonic() - started
    t.join(10)
    print(f"{kill_signal.name} with a 2 s request in flight: exit {code} after {took:.2f}s")
    assert code == 0, child.describe()
    assert "answer" in in_flight, f"the request in flight failed: {in_flight}\n{child.describe()}"
    assert in_flight["answer"]["environ"]["PATH_INFO"] == "/sleep/2"
    assert 1.0 <= took < timeout_stop, took
    assert not os.path.exists(sock)
    assert runtime.is_dir() and not any(runtime.iterdir()), list(runtime.iterdir())
