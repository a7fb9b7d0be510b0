"""Apache httpd and lighttpd in front of rustgi-gateway, for the FastCGI tests.

- `OwnGateway`: a harness `Gateway` that a test starts for itself, its log
  read through a descriptor held from the start (`HeldLogFile`), failing
  its `stop()` unless SIGTERM ends it with 0; `CommandLineGateway` runs the
  command line an example gives.
- `Apache`: `apache2 -d DIR -f DIR/httpd.conf -DFOREGROUND` with a config of
  its own (only the modules it is told to load), on a free 127.0.0.1 port.
- `Lighttpd`: `lighttpd -D -f DIR/lighttpd.conf`, likewise.
- `CaptureServer`, `FcgiCapture`: a minimal FastCGI responder written here from the spec (it
  shares no code with the Rust side) that records the PARAMS each request
  carried and answers 200, to see what a front server really sends.
- `answer`, `env_of`, `explain`, `latin1_path`, `check_echo_requests`,
  `check_chunked_upload`: reading what the app answered, and the logs to show when it is not what was expected.
- `Processes`: everything a test started, stopped in reverse order whatever
  happens (a fixture calls `stop_all()` in its teardown; an atexit hook is
  the last resort).
- `StrayProcesses`: processes another program started (lighttpd's bin-path,
  spawn-fcgi), found by a path in their command line, killed and reported
  if they outlive the test.
- /proc helpers: `proc_stat`, `process_gone`, `listening_unix_sockets`
  (inode -> path), `socket_inodes` (a process's fd -> inode).

Each server's files live in its own directory under the run dir; its logs
(error log, stderr, access log) under the log dir, kept after the run.
`start()` waits until the port accepts connections and fails with the logs
if the server exits first; `stop()` stops the whole process group and
checks that no process of it is left.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from urllib.parse import unquote_to_bytes

import requests

from harness import ANSI, Gateway, LogFile, _die_with_parent, can_connect_tcp, free_port

APACHE_MODULES = Path("/usr/lib/apache2/modules")


def which(name: str) -> str | None:
    return shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)), None
    )


def _pids_with_arg(needle: str) -> list[int]:
    """Processes whose command line contains `needle` (a path unique to one
    server), so that leftover children can be found after a stop."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if any(needle.encode() in a for a in args):
            found.append(int(entry))
    return found


class HeldLogFile(LogFile):
    """A LogFile read through a descriptor opened when its process starts.

    Another pytest session in the same checkout may clear tests/.run/logs/
    when it starts (conftest's `log_dir`); the process keeps writing to its
    unlinked file, and this keeps reading it. `fd` is a descriptor of the
    file (taken over); without it the path is opened. After `close()` the
    path is read again."""

    def __init__(self, path: Path, fd: int | None = None):
        super().__init__(path)
        self.fd = os.open(path, os.O_RDONLY) if fd is None else fd

    def text(self, since: int = 0) -> str:
        if self.fd is None:
            return super().text(since)
        size = os.fstat(self.fd).st_size
        data = os.pread(self.fd, max(0, size - since), since)
        return ANSI.sub("", data.decode("utf-8", "replace"))

    def mark(self) -> int:
        if self.fd is None:
            return super().mark()
        return os.fstat(self.fd).st_size

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class OwnGateway(Gateway):
    """A gateway a test or a module starts for itself (any `proto=`), its
    log read through a descriptor of the file it really writes to (its own
    fd 2, opened at spawn: see HeldLogFile). A failed `start()` leaves no
    process behind; `stop()` fails if SIGTERM does not end it with exit
    code 0."""

    def spawn(self) -> "OwnGateway":
        if isinstance(self.log, HeldLogFile):
            self.log.close()
        super().spawn()
        try:
            fd = os.open(f"/proc/{self.proc.pid}/fd/2", os.O_RDONLY)
        except OSError:  # already gone: its file by name
            fd = None
        self.log = HeldLogFile(self.log.path, fd)
        return self

    def start(self, timeout: float = 30.0) -> "OwnGateway":
        try:
            return super().start(timeout)
        except BaseException:
            self.terminate()
            raise

    def stop(self):
        """SIGTERM (then SIGKILL); closes the held log descriptor."""
        code = self.terminate(timeout=10)
        tail = self.log.tail(20)
        if isinstance(self.log, HeldLogFile):
            self.log.close()
        if code != 0:
            raise AssertionError(f"gateway {self.name} exited {code} on SIGTERM:\n{tail}")

    def __repr__(self):
        return f"<{type(self).__name__} {self.name} ({self.proto}) on {self.where}>"


class CommandLineGateway(OwnGateway):
    """The gateway started with the command line an example's comment gives
    (`#   rustgi-gateway ...`), rendered, with our binary in its place."""

    def __init__(self, name, argv: list[str], socket_path: str, log_path: Path, binary: Path):
        # `NAME=VALUE` words before the program are its environment.
        env = {}
        while argv and "=" in argv[0] and not argv[0].startswith("-"):
            key, value = argv.pop(0).split("=", 1)
            env[key] = value
        super().__init__(name, socket_path, [], log_path, env=env, binary=binary)
        self.argv = [str(binary)] + argv[1:]

    @property
    def command(self) -> list[str]:
        return self.argv


class FrontServer:
    """Common process handling for Apache and lighttpd."""

    kind = "front server"

    def __repr__(self):
        return f"<{self.kind} {self.name} on port {self.port}>"

    def __init__(self, binary: str, run_dir: Path, log_dir: Path, name: str):
        self.binary = binary
        self.name = name
        self.dir = Path(run_dir)
        self.dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        os.chmod(self.dir, 0o755)
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.error_log = LogFile(self.log_dir / "error.log")
        self.access_log = LogFile(self.log_dir / "access.log")
        self.stderr_log = LogFile(self.log_dir / "stderr.log")
        self.proc: subprocess.Popen | None = None

    # subclasses: config_path, config() and argv()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def logs(self, lines: int = 30) -> str:
        return (
            f"--- {self.kind} {self.name} stderr ({self.stderr_log.path}):\n{self.stderr_log.tail(lines)}\n"
            f"--- {self.kind} {self.name} error log ({self.error_log.path}):\n{self.error_log.tail(lines)}"
        )

    def start(self, timeout: float = 20.0):
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config())
        with open(self.stderr_log.path, "ab") as err:
            err.write(f"\n##### {' '.join(self.argv())}\n".encode())
            err.flush()
            self.proc = subprocess.Popen(
                self.argv(),
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                preexec_fn=lambda: (_die_with_parent(), os.setpgid(0, 0)),
            )
        deadline = time.monotonic() + timeout
        while not can_connect_tcp("127.0.0.1", self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                code = self.proc.poll()
                self.stop()
                raise AssertionError(
                    f"{self.kind} {self.name} did not start (exit {code}); config "
                    f"{self.config_path}:\n{self.logs()}"
                )
            time.sleep(0.05)
        return self

    def stop(self, timeout: float = 15.0):
        """Stops the server and every process of its group; fails if any
        process running its config is left."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # the master stops its children
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        # children (Apache's workers) may outlive the parent briefly
        deadline = time.monotonic() + timeout
        while True:
            left = _pids_with_arg(str(self.config_path))
            if not left:
                break
            if time.monotonic() > deadline:
                for pid in left:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                if self.proc.poll() is None:
                    self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"{self.kind} {self.name}: processes {left} outlived stop()")
            time.sleep(0.05)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def leftover_pids(self) -> list[int]:
        return _pids_with_arg(str(self.config_path))

    def crashes(self) -> list[str]:
        """Error-log lines about a process of this server dying on a signal."""
        return self.error_log.lines_matching(r"exit signal|Segmentation fault|Aborted")


class Apache(FrontServer):
    """Apache httpd 2.4 in the foreground with its own ServerRoot and config.

    `body` is the part of the config after the globals (ProxyPass lines,
    <Location> blocks...); `modules` are extra module names to load
    (`authnz_fcgi`, `authn_core`...) beyond mpm_event, authz_core, proxy and
    proxy_fcgi. mod_unixd and mod_log_config are built in.
    """

    kind = "apache"
    BASE_MODULES = ["mpm_event", "authz_core", "proxy", "proxy_fcgi"]

    def __init__(self, binary, run_dir, log_dir, name, body: str, modules=(), log_level="warn"):
        super().__init__(binary, run_dir, log_dir, name)
        self.body = body
        self.modules = self.BASE_MODULES + [m for m in modules if m not in self.BASE_MODULES]
        self.log_level = log_level
        self.config_path = self.dir / "httpd.conf"

    def argv(self) -> list[str]:
        return [self.binary, "-d", str(self.dir), "-f", str(self.config_path), "-DFOREGROUND"]

    def preamble(self, listen: bool = True) -> str:
        """The start of httpd.conf: its own root, pid, mutex and logs, the
        modules, www-data when we are root, and (with `listen`) its port."""
        d = self.dir
        loads = "\n".join(
            f"LoadModule {m}_module {APACHE_MODULES}/mod_{m}.so" for m in self.modules
        )
        user = "User www-data\nGroup www-data" if os.geteuid() == 0 else ""
        listen_line = f"Listen 127.0.0.1:{self.port}\n" if listen else ""
        return f"""
ServerRoot "{d}"
ServerName 127.0.0.1
{listen_line}PidFile "{d}/httpd.pid"
DefaultRuntimeDir "{d}"
Mutex file:{d} default
{loads}
{user}
ErrorLog "{self.error_log.path}"
LogLevel {self.log_level}
LogFormat "%h \\"%r\\" %>s %B pid=%P" simple
CustomLog "{self.access_log.path}" simple
Timeout 30"""

    def config(self) -> str:
        return f"""{self.preamble()}
ProxyTimeout 20
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 15
StartServers 1
ServerLimit 2
ThreadsPerChild 32
MaxRequestWorkers 64
<Directory />
    Require all granted
</Directory>
{self.body}
"""


class Lighttpd(FrontServer):
    """lighttpd 1.4 in the foreground (`-D`) with its own config.

    `body` is appended after the globals: fastcgi.server etc. mod_fastcgi is
    loaded (it is built in; without the module line `fastcgi.server` is
    ignored and static files are served)."""

    kind = "lighttpd"

    def __init__(self, binary, run_dir, log_dir, name, body: str, docroot: Path | None = None,
                 modules=("mod_fastcgi",)):
        super().__init__(binary, run_dir, log_dir, name)
        self.body = body
        self.modules = list(modules)
        self.docroot = Path(docroot) if docroot else self.dir / "www"
        self.docroot.mkdir(mode=0o755, parents=True, exist_ok=True)
        self.config_path = self.dir / "lighttpd.conf"

    def argv(self) -> list[str]:
        return [self.binary, "-D", "-f", str(self.config_path)]

    def config(self) -> str:
        modules = ", ".join(f'"{m}"' for m in self.modules)
        return f"""
server.document-root = "{self.docroot}"
server.bind = "127.0.0.1"
server.port = {self.port}
server.errorlog = "{self.error_log.path}"
server.max-keep-alive-requests = 1000
server.max-request-size = 0
server.modules += ({modules})
mimetype.assign = (".txt" => "text/plain", ".html" => "text/html")
{self.body}
"""


# --------------------------------------------------------------------------
# a FastCGI responder that records what it was sent (written from the spec)

FCGI_BEGIN_REQUEST, FCGI_END_REQUEST, FCGI_PARAMS, FCGI_STDIN, FCGI_STDOUT = 1, 3, 4, 5, 6


def _fcgi_record(rtype: int, req_id: int, content: bytes) -> bytes:
    pad = -len(content) % 8
    return struct.pack(">BBHHBx", 1, rtype, req_id, len(content), pad) + content + b"\0" * pad


def decode_fcgi_pairs(data: bytes) -> list[tuple[bytes, bytes]]:
    pairs, i = [], 0

    def length():
        nonlocal i
        if data[i] & 0x80:
            n = struct.unpack(">I", data[i:i + 4])[0] & 0x7FFFFFFF
            i += 4
        else:
            n = data[i]
            i += 1
        return n

    while i < len(data):
        nlen = length()
        vlen = length()
        name = data[i:i + nlen]
        i += nlen
        value = data[i:i + vlen]
        i += vlen
        pairs.append((name, value))
    return pairs


class CaptureServer:
    """Listens on a Unix socket path, or on 127.0.0.1:free port when `path`
    is None (then `address` is "127.0.0.1:PORT"), and hands each connection
    to `_connection(conn)` in a thread of its own; records what it was sent
    in `requests`, and answers `response`."""

    def __init__(self, path: str | None, response: bytes):
        self.path = path
        self.response = response
        self.requests: list = []
        self.errors: list[str] = []
        if path is None:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.bind(("127.0.0.1", 0))
            self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]
        else:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            if os.path.exists(path):
                os.unlink(path)
            self.sock.bind(path)
            os.chmod(path, 0o666)
            self.address = path
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._connection, args=(conn,), daemon=True).start()

    def _connection(self, conn: socket.socket):
        raise NotImplementedError

    def stop(self):
        self.stopping = True
        self.sock.close()
        self.thread.join(timeout=5)
        if self.path:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    def __repr__(self):
        return f"<{type(self).__name__} {self.address}>"


class FcgiCapture(CaptureServer):
    """A FastCGI responder that, for each request, records its role, flags
    and PARAMS (`pairs`: a list of (bytes, bytes); `env`: a dict of them) in
    `requests`, and answers `response` (CGI-style head and body, sent in ONE
    FCGI_STDOUT record). One request at a time per connection."""

    OK = b"Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\ncaptured\n"

    def __init__(self, path: str | None, response: bytes = OK):
        super().__init__(path, response)

    def _connection(self, conn: socket.socket):
        buf = b""
        conn.settimeout(10)
        state: dict[int, dict] = {}
        try:
            while True:
                while len(buf) >= 8:
                    version, rtype, rid, clen, plen = struct.unpack(">BBHHBx", buf[:8])
                    if len(buf) < 8 + clen + plen:
                        break
                    content = buf[8:8 + clen]
                    buf = buf[8 + clen + plen:]
                    if rtype == FCGI_BEGIN_REQUEST:
                        role, flags = struct.unpack(">HB", content[:3])
                        state[rid] = {"role": role, "flags": flags, "params": b"", "stdin": b""}
                    elif rtype == FCGI_PARAMS and rid in state:
                        state[rid]["params"] += content
                        if not content:
                            state[rid]["pairs"] = decode_fcgi_pairs(state[rid]["params"])
                            state[rid]["env"] = dict(state[rid]["pairs"])
                    elif rtype == FCGI_STDIN and rid in state:
                        state[rid]["stdin"] += content
                        if not content:
                            if not self._answer(conn, rid, state.pop(rid)):
                                return
                    if rtype == FCGI_PARAMS and not content and rid in state and state[rid]["role"] == 2:
                        # AUTHORIZER: Apache sends no STDIN at all
                        if not self._answer(conn, rid, state.pop(rid)):
                            return
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buf += chunk
        except OSError:
            return
        finally:
            conn.close()

    def _answer(self, conn: socket.socket, rid: int, req: dict) -> bool:
        """Sends the response; False when the connection is to be closed."""
        self.requests.append(req)
        conn.sendall(
            _fcgi_record(FCGI_STDOUT, rid, self.response)
            + _fcgi_record(FCGI_STDOUT, rid, b"")
            + _fcgi_record(FCGI_END_REQUEST, rid, b"\0" * 8)
        )
        return bool(req["flags"] & 1)


# --------------------------------------------------------------------------
# reading what the front server's app (tests/apps/front_app.py) answered

PATHS = ["/", "/a", "/a/b/c", "/a/b/", "/caf%C3%A9", "/x%20y/z.txt", "/deep/er/path/file.py/more"]


def latin1_path(url_path: str) -> str:
    """The percent-decoded path as PEP 3333 bytes-as-str."""
    return unquote_to_bytes(url_path).decode("latin-1")


def explain(*things) -> str:
    """The logs of the gateways and front servers a failure may be about."""
    out = []
    for t in things:
        if isinstance(t, Gateway):
            out.append(f"--- gateway {t.name} log:\n{t.log.tail(30, since=t.output_start)}")
        elif hasattr(t, "logs"):
            out.append(t.logs())
    return "\n".join(out)


def answer(resp, *things) -> dict:
    """The JSON answer of a 200 response; on anything else, fails with the
    logs of `things`."""
    assert resp.status_code == 200, f"{resp.status_code}: {resp.text[:500]}\n{explain(*things)}"
    assert resp.headers.get("Content-Type") == "application/json", resp.headers
    return resp.json()


def env_of(resp, *things) -> dict:
    """The environ the app saw, from its JSON answer."""
    return answer(resp, *things)["environ"]


def check_echo_requests(server, *things, prefix: str = "", script_name: str = "",
                        s: requests.Session | None = None) -> list[dict]:
    """Through `server` to an echo app (tests/apps/front_app.py and its
    kin): a GET with a query, a binary POST of 300,000 bytes (every byte
    value), a form and the Authorization header, each checked as the app saw
    it, under `prefix` (which the app must see as SCRIPT_NAME
    `script_name`). Returns the answers: [GET, POST, form, Authorization]."""
    s = s or requests.Session()
    got = answer(s.get(server.url(prefix + "/hello?x=1&y=%C3%A9")), server, *things)
    env = got["environ"]
    assert env["REQUEST_METHOD"] == "GET"
    assert env["QUERY_STRING"] == "x=1&y=%C3%A9"
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == (script_name, "/hello"), env
    assert "HTTP_CONTENT_LENGTH" not in env and "HTTP_CONTENT_TYPE" not in env

    body = (bytes(range(256)) * 1200)[:300_000]
    r = s.post(server.url(prefix + "/submit"), data=body, headers={"Content-Type": "application/octet-stream"})
    posted = answer(r, server, *things)
    env = posted["environ"]
    assert env["REQUEST_METHOD"] == "POST"
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == (script_name, "/submit"), env
    assert env["CONTENT_LENGTH"] == str(len(body))
    assert env["CONTENT_TYPE"] == "application/octet-stream"
    assert posted["body"].encode("latin-1") == body

    form = answer(s.post(server.url(prefix + "/form"), data={"a": "1", "b": "two"}), server, *things)
    assert form["body"] == "a=1&b=two"
    assert form["environ"]["CONTENT_TYPE"] == "application/x-www-form-urlencoded"

    auth = answer(s.get(server.url(prefix + "/auth"), headers={"Authorization": "Bearer xyz"}),
                  server, *things)
    assert auth["environ"].get("HTTP_AUTHORIZATION") == "Bearer xyz", (
        "Authorization did not reach the app: " + repr(sorted(auth["environ"]))
    )
    return [got, posted, form, auth]


def check_path_info_is_the_request_path(server, *things, s: requests.Session | None = None):
    """For each of PATHS through `server` (mounted at /): SCRIPT_NAME is
    empty, PATH_INFO the decoded path as PEP 3333 bytes-as-str, REQUEST_URI
    the path as sent."""
    s = s or requests.Session()
    for path in PATHS:
        env = env_of(s.get(server.url(path)), server, *things)
        assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("", latin1_path(path)), (path, env)
        assert env["REQUEST_URI"] == path
    env = env_of(s.get(server.url("/caf%C3%A9")), server, *things)
    assert env["PATH_INFO"] == "/caf\u00c3\u00a9"  # UTF-8 bytes as latin-1
    assert env["PATH_INFO"].encode("latin-1").decode("utf-8") == "/café"


def check_chunked_upload(server, chunks: list[bytes], *things, s: requests.Session | None = None) -> dict:
    """A chunked upload (requests sends an iterator chunked): the front server
    de-chunks it, and the app must get every byte. Returns its answer."""
    got = answer((s or requests).post(server.url("/chunked"), data=iter(chunks)), server, *things)
    print(f"chunked upload through {server.kind}: CONTENT_LENGTH =", got["environ"].get("CONTENT_LENGTH"))
    assert got["body"].encode("latin-1") == b"".join(chunks)
    return got


# --------------------------------------------------------------------------
# process bookkeeping


_ALIVE: list = []


def _stop_leftovers():
    for thing in reversed(_ALIVE):
        try:
            thing.stop()
        except Exception as e:
            print(f"cleanup of {thing!r} failed: {e}", file=sys.stderr)
    _ALIVE.clear()


atexit.register(_stop_leftovers)


class Processes:
    """What one test started; `stop_all()` stops them in reverse order,
    collecting failures instead of stopping at the first one."""

    def __init__(self):
        self.things: list = []

    def add(self, thing):
        self.things.append(thing)
        _ALIVE.append(thing)
        return thing

    def stop_all(self) -> list[str]:
        problems = []
        for thing in reversed(self.things):
            try:
                thing.stop()
            except Exception as e:
                problems.append(f"{thing!r}: {e}")
            if thing in _ALIVE:
                _ALIVE.remove(thing)
            proc = getattr(thing, "proc", None)
            if proc is not None and proc.poll() is None:
                problems.append(f"{thing!r} still running (pid {proc.pid})")
            if isinstance(thing, FrontServer):
                if thing.leftover_pids():
                    problems.append(f"{thing!r} left processes {thing.leftover_pids()}")
                for line in thing.crashes():
                    warnings.warn(f"{thing.kind} {thing.name} ({thing.error_log.path}): {line}")
        self.things.clear()
        return problems


class StrayProcesses:
    """Processes whose command line contains `needle` (a path unique to one
    test, such as its rendered app file): gateways that something else
    started (lighttpd's bin-path, spawn-fcgi's forked children), which are
    not our children. Add it to `Processes` first so that it stops last:
    by then whatever started them should have stopped them; any left is
    SIGKILLed and reported."""

    def __init__(self, needle: str):
        self.needle = needle

    def pids(self) -> list[int]:
        return _pids_with_arg(self.needle)

    def stop(self):
        left = self.pids()
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if left:
            raise AssertionError(f"processes running {self.needle} outlived the test: {left}")

    def __repr__(self):
        return f"<StrayProcesses {self.needle}>"


# --------------------------------------------------------------------------
# /proc


def proc_stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name: [state, ppid, ...]."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def process_gone(pid: int) -> bool:
    try:
        return proc_stat(pid)[0] == "Z"
    except FileNotFoundError:
        return True


def listening_unix_sockets() -> dict[int, str]:
    """inode -> path of the listening Unix stream sockets (/proc/net/unix:
    flag __SO_ACCEPTCON 0x10000)."""
    found = {}
    with open("/proc/net/unix") as f:
        next(f)
        for line in f:
            fields = line.split()
            if len(fields) >= 8 and int(fields[3], 16) & 0x10000:
                found[int(fields[6])] = fields[7]
    return found


def socket_inodes(pid: int) -> dict[int, int]:
    """fd -> inode of each socket the process holds."""
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        if target.startswith("socket:[") and target.endswith("]"):
            out[int(fd)] = int(target[len("socket:["):-1])
    return out
