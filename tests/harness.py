"""Process control and clients for the integration suite.

- `Gateway`: one rustgi-gateway child process, its stderr log, its RSS.
- `Nginx`: one nginx in the foreground with a config written for the suite.
- A raw SCGI client (`scgi_head`, `scgi_exchange`, `scgi_request`) that
  shares no code with the Rust encoders/decoders, so each checks the other
  (its socket side and response parsing are raw_client.py's; the uwsgi and
  FastCGI clients are uwsgi_client.py and fcgi_client.py).
- HTTP helpers built on http.client and raw sockets, where `requests` would
  hide what we want to see (repeated headers, half-sent bodies).
- The byte pattern the test apps generate (`pattern_block`), kept in step
  with tests/apps/conformance.py by hand.
"""

from __future__ import annotations

import ctypes
import hashlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from raw_client import ConnectionKeptOpen, CgiResponse, as_bytes, exchange, parse_cgi_response  # noqa: F401

REPO = Path(__file__).resolve().parent.parent
APPS = REPO / "tests" / "apps"
ARTIFACTS = REPO / "tests" / ".run"

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


# --------------------------------------------------------------------------
# children die with the test run


def _die_with_parent():
    """preexec_fn: SIGKILL this child if pytest itself dies (PR_SET_PDEATHSIG)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
    except Exception:
        pass


def stop_process(proc: subprocess.Popen, sig=signal.SIGTERM, timeout=15.0) -> int:
    """Sends `sig`, waits up to `timeout`, then SIGKILLs. Returns the exit code."""
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def wait_until(predicate, timeout: float, interval: float = 0.05):
    """Polls `predicate` until it returns something truthy; returns that or None."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


# --------------------------------------------------------------------------
# log files


class LogFile:
    """A log file written by a child process, read with ANSI colours stripped.

    `mark()` remembers the current end so a test can look only at what was
    written after it.
    """

    def __init__(self, path: Path):
        self.path = Path(path)

    def text(self, since: int = 0) -> str:
        try:
            with open(self.path, "rb") as f:
                f.seek(since)
                data = f.read()
        except FileNotFoundError:
            return ""
        return ANSI.sub("", data.decode("utf-8", "replace"))

    def mark(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def tail(self, lines: int = 60, since: int = 0) -> str:
        return "\n".join(self.text(since).splitlines()[-lines:])

    def lines_matching(self, *patterns: str, since: int = 0) -> list[str]:
        """Lines that match every regex in `patterns` (case-insensitive)."""
        regexes = [re.compile(p, re.I) for p in patterns]
        return [
            line
            for line in self.text(since).splitlines()
            if all(r.search(line) for r in regexes)
        ]

    def wait_for(self, *patterns: str, since: int = 0, timeout: float = 5.0) -> list[str]:
        """Waits until some line matches every regex; returns the matching lines."""
        return wait_until(lambda: self.lines_matching(*patterns, since=since), timeout) or []


# --------------------------------------------------------------------------
# the gateway


def gateway_binary() -> Path:
    if os.environ.get("RUSTGI_BIN"):
        return Path(os.environ["RUSTGI_BIN"])
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    if not target.is_absolute():
        target = REPO / target
    return target / "debug" / "rustgi-gateway"


def can_connect_unix(path: str | Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(str(path))
            return True
        except OSError:
            return False


def can_connect_tcp(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1.0).close()
        return True
    except OSError:
        return False


def unix_connections(path: str | Path) -> set[int]:
    """Inodes of the connected sockets bound to `path` (the server side of
    each accepted connection on a listening Unix socket), from
    /proc/net/unix: state 03 (SS_CONNECTED). The listener itself is not
    counted."""
    path = str(path)
    found = set()
    with open("/proc/net/unix") as f:
        next(f)  # Num RefCount Protocol Flags Type St Inode Path
        for line in f:
            fields = line.split()
            if len(fields) >= 8 and fields[7] == path and fields[5] == "03":
                found.add(int(fields[6]))
    return found


def child_pids(parent: int) -> list[int]:
    """Live (not zombie) processes whose parent is `parent`, sorted."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == parent and fields[0] != "Z":
            found.append(int(entry))
    return sorted(found)


def process_title(pid: int) -> str:
    """What `ps -o args` shows for `pid`: its command line with the NULs
    between arguments as spaces and the trailing ones dropped (a
    rustgi-gateway master or worker shows its title there)."""
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace")


def rss_kib(pid: int) -> int:
    """VmRSS of one process, in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS in /proc/{pid}/status")


class GatewayExited(AssertionError):
    pass


class Gateway:
    """One rustgi-gateway child: `--proto PROTO --socket SOCKET --chmod 666 ARGS`
    (PROTO is `scgi` unless `proto=` says otherwise: `fastcgi`, `uwsgi`).

    stderr and stdout go to `log_path`. `start()` waits until a connect() to
    the socket succeeds and fails with the log if the process exits first.

    With `socket_path=None` there is no --socket: the gateway takes the
    listening socket on its fd 0, which is `stdin` (a file descriptor or a
    subprocess constant), and `start()` waits for its "listening on" line.

    With `new_session` it starts a session of its own, so that its process
    group is its master and workers (`os.killpg(gw.pid, ...)`).
    """

    def __init__(self, name: str, socket_path: str | None, args: list[str], log_path: Path,
                 env: dict | None = None, binary: Path | None = None, stdin=subprocess.DEVNULL,
                 proto: str = "scgi", new_session: bool = False):
        self.name = name
        self.new_session = new_session
        self.proto = proto
        self.socket = None if socket_path is None else str(socket_path)
        self.stdin = stdin
        self.args = list(args)
        self.log = LogFile(log_path)
        self.binary = Path(binary or gateway_binary())
        self.env = dict(os.environ)
        self.env.setdefault("RUST_LOG", "info")
        self.env["NO_COLOR"] = "1"
        self.env.pop("PYTHONPATH", None)
        self.env.pop("PYTHONHOME", None)
        self.env.pop("VIRTUAL_ENV", None)
        if env:
            self.env.update(env)
        self.proc: subprocess.Popen | None = None
        self.output_start = 0

    @property
    def command(self) -> list[str]:
        cmd = [str(self.binary), "--proto", self.proto]
        if self.socket is None:  # the socket comes on fd 0
            return cmd + self.args
        cmd += ["--socket", self.socket]
        if ":" not in self.socket or self.socket.startswith("/"):
            cmd += ["--chmod", "666"]
        return cmd + self.args

    @property
    def pid(self) -> int:
        return self.proc.pid

    def spawn(self) -> "Gateway":
        """Starts the process without waiting for it to listen."""
        self.log.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log.path, "ab") as out:
            out.write(f"\n##### {' '.join(self.command)}\n".encode())
            out.flush()
            self.output_start = out.tell()
            self.proc = subprocess.Popen(
                self.command,
                stdin=self.stdin,
                stdout=out,
                stderr=out,
                env=self.env,
                cwd=REPO,
                preexec_fn=_die_with_parent,
                start_new_session=self.new_session,
            )
        return self

    def start(self, timeout: float = 30.0) -> "Gateway":
        mark = self.log.mark()
        self.spawn()
        self.wait_listening(timeout, since=mark)
        return self

    @property
    def where(self) -> str:
        return self.socket or "the socket on fd 0"

    def ready(self) -> bool:
        if self.socket is None:
            return bool(self.log.lines_matching(r"\blistening on\b", since=self.output_start))
        if self.socket.startswith("/"):
            return can_connect_unix(self.socket)
        host, port = self.socket.rsplit(":", 1)
        return can_connect_tcp(host, int(port))

    def wait_listening(self, timeout: float = 30.0, since: int = 0):
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise GatewayExited(
                    f"gateway {self.name!r} exited with {self.proc.returncode} before "
                    f"listening on {self.where}:\n{self.log.tail(since=since)}"
                )
            if self.ready():
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"gateway {self.name!r} not accepting on {self.where} after {timeout}s:\n"
                    f"{self.log.tail(since=since)}"
                )
            time.sleep(0.05)

    def output(self) -> str:
        """What the process wrote since its last spawn (without our header line)."""
        return self.log.text(self.output_start)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_exit(self, timeout: float = 30.0) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"gateway {self.name!r} still running after {timeout}s:\n{self.log.tail()}"
            )

    def send_signal(self, sig: int):
        """Sends `sig` without waiting (see `wait_exit`)."""
        self.proc.send_signal(sig)

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM, wait (then SIGKILL). Returns the exit code."""
        if self.proc is None:
            return 0
        return stop_process(self.proc, signal.SIGTERM, timeout)

    def workers(self) -> list[int]:
        """The pids of the master's live worker processes."""
        return child_pids(self.pid)

    def rss_kib(self) -> int:
        """VmRSS of the gateway, in KiB: its master and its workers."""
        return sum(rss_kib(pid) for pid in [self.pid, *self.workers()])

    def describe(self, since: int = 0) -> str:
        state = "running" if self.alive() else f"exited {self.proc.returncode}"
        return f"[gateway {self.name}: {state}; log {self.log.path}]\n{self.log.tail(since=since)}"


# --------------------------------------------------------------------------
# nginx


@dataclass
class Location:
    """One `location PREFIX { scgi_pass UPSTREAM; ... }` block; with
    `proto="fastcgi"` one `location PREFIX { include /etc/nginx/fastcgi_params;
    PARAMS; fastcgi_pass UPSTREAM; ... }` block, and with `proto="uwsgi"` one
    `location PREFIX { include /etc/nginx/uwsgi_params; PARAMS; uwsgi_pass
    UPSTREAM; ... }` block (the stock files, as shipped; `params` are extra
    directives right after the include, e.g. `fastcgi_param ...;`)."""

    prefix: str
    upstream: str  # "unix:/path.sock", "127.0.0.1:PORT" or an upstream{} name
    request_buffering: bool = True  # off: {scgi,fastcgi,uwsgi}_request_buffering off
    response_buffering: bool = True  # off: {scgi,fastcgi,uwsgi}_buffering off
    extra: str = ""
    proto: str = "scgi"  # or "fastcgi" or "uwsgi"
    params: str = ""  # fastcgi and uwsgi: directives after `include *_params;`
    keep_conn: bool = False  # fastcgi only: fastcgi_keep_conn on

    def render(self) -> str:
        if self.proto == "scgi":
            assert not self.params and not self.keep_conn, "params/keep_conn are not for scgi"
            lines = [f"scgi_pass {self.upstream};"]
        elif self.proto in ("fastcgi", "uwsgi"):
            assert not self.keep_conn or self.proto == "fastcgi", "keep_conn is for fastcgi"
            lines = [f"include /etc/nginx/{self.proto}_params;"]
            if self.params:
                lines.append(self.params)
            lines.append(f"{self.proto}_pass {self.upstream};")
            if self.keep_conn:
                lines.append("fastcgi_keep_conn on;")
        else:
            raise ValueError(f"unknown proto {self.proto!r}")
        directive = self.proto
        if not self.request_buffering:
            lines.append(f"{directive}_request_buffering off;")
        if not self.response_buffering:
            lines.append(f"{directive}_buffering off;")
        if self.extra:
            lines.append(self.extra)
        body = "\n            ".join(lines)
        return f"        location {self.prefix} {{\n            {body}\n        }}"


_PORTS_GIVEN: set[int] = set()


def free_port() -> int:
    """A port free now and not handed out before in this session: the
    kernel may offer the same free port twice, and two nginx servers on
    one port route every request to the first (seen: a whole conformance
    cell answered 502 by another server's upstream)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _PORTS_GIVEN:
            _PORTS_GIVEN.add(port)
            return port


def nginx_preamble(run_dir: Path, error_log: Path, log_dir: Path, connections: int = 1024) -> str:
    """An nginx.conf up to the inside of its `http {` block: in the
    foreground, as root when we are root (its workers must reach sockets
    in the run dir), its pid, temp paths and logs our own."""
    r = run_dir
    user = "user root;" if os.geteuid() == 0 else ""
    return f"""
daemon off;
{user}
worker_processes 1;
pid {r}/nginx.pid;
error_log {error_log} info;
events {{ worker_connections {connections}; }}
http {{
    access_log {log_dir}/nginx-access.log;
    client_body_temp_path {r}/client_body;
    proxy_temp_path {r}/proxy;
    fastcgi_temp_path {r}/fastcgi;
    uwsgi_temp_path {r}/uwsgi;
    scgi_temp_path {r}/scgi;"""


class Nginx:
    """nginx in the foreground with its own prefix, config and logs.

    Uses the stock /etc/nginx/scgi_params (and fastcgi_params in FastCGI
    locations, uwsgi_params in uwsgi ones), as users do.

    `locations` make the main server (`port`, `url()`). `servers` adds more
    servers, each on a port of its own, by name: {name: [Location, ...]}
    (`server_port(name)`, `url(path, server=name)`); they share the error
    and access logs. `upstreams` is raw `upstream NAME { ... }` text put
    into the http {} block.
    """

    def __init__(self, binary: str, run_dir: Path, log_dir: Path, locations: list[Location],
                 servers: dict[str, list[Location]] | None = None, upstreams: str = ""):
        self.binary = binary
        self.run_dir = Path(run_dir)
        self.log_dir = Path(log_dir)
        self.locations = locations
        self.servers = dict(servers or {})
        self.upstreams = upstreams
        self.port = free_port()
        self.server_ports = {name: free_port() for name in self.servers}
        self.error_log = LogFile(self.log_dir / "nginx-error.log")
        self.stderr_log = LogFile(self.log_dir / "nginx-stderr.log")
        self.conf_path = self.run_dir / "nginx.conf"
        self.proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> str:
        r = self.run_dir
        locations = "\n".join(loc.render() for loc in self.locations)
        servers = "".join(
            f"""
    server {{
        listen 127.0.0.1:{self.server_ports[name]};
        server_name localhost;
        include /etc/nginx/scgi_params;
{chr(10).join(loc.render() for loc in locs)}
    }}"""
            for name, locs in self.servers.items()
        )
        return f"""{nginx_preamble(r, self.error_log.path, self.log_dir)}
    client_max_body_size 0;
    large_client_header_buffers 8 64k;
    scgi_read_timeout 10s;
    scgi_send_timeout 10s;
    scgi_connect_timeout 5s;
    scgi_max_temp_file_size 0;
    fastcgi_read_timeout 10s;
    fastcgi_send_timeout 10s;
    fastcgi_connect_timeout 5s;
    fastcgi_max_temp_file_size 0;
    uwsgi_read_timeout 10s;
    uwsgi_send_timeout 10s;
    uwsgi_connect_timeout 5s;
    uwsgi_max_temp_file_size 0;
{self.upstreams}
    server {{
        listen 127.0.0.1:{self.port};
        server_name localhost;
        include /etc/nginx/scgi_params;
{locations}
    }}{servers}
}}
"""

    def start(self, timeout: float = 15.0) -> "Nginx":
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(self.config())
        with open(self.stderr_log.path, "ab") as err:
            self.proc = subprocess.Popen(
                [self.binary, "-p", str(self.run_dir), "-e", str(self.error_log.path),
                 "-c", str(self.conf_path)],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + timeout
        while not all(can_connect_tcp("127.0.0.1", p) for p in [self.port, *self.server_ports.values()]):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(
                    f"nginx did not start (exit {self.proc.returncode}):\n"
                    f"{self.stderr_log.tail()}\n{self.error_log.tail()}"
                )
            time.sleep(0.05)
        return self

    def stop(self):
        if self.proc is not None:
            # SIGQUIT: graceful; the master waits for its workers.
            stop_process(self.proc, signal.SIGQUIT, timeout=10)

    def server_port(self, server: str | None = None) -> int:
        return self.port if server is None else self.server_ports[server]

    def url(self, path: str, server: str | None = None) -> str:
        return f"http://127.0.0.1:{self.server_port(server)}{path}"


# --------------------------------------------------------------------------
# HTTP helpers


@dataclass
class HttpResponse:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def header_all(self, name: str) -> list[str]:
        return self.headers.get_all(name) or []


def http_request(port: int, method: str, path: str, *, headers=(), body: bytes | None = None,
                 timeout: float = 30.0, conn: http.client.HTTPConnection | None = None) -> HttpResponse:
    """One request with http.client. `headers` is a list of (name, value):
    a name may repeat. Pass `conn` to reuse a keep-alive connection."""
    own = conn is None
    if own:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        data = resp.read()
        return HttpResponse(resp.status, resp.msg, data)
    finally:
        if own:
            conn.close()


def get_environ(port: int, path: str = "/environ", **kw) -> dict:
    """The environ the conformance app saw (its /environ route, or any path
    with ?dump=environ), as JSON; `kw` as for http_request (`method=` too)."""
    r = http_request(port, kw.pop("method", "GET"), path, **kw)
    assert r.status == 200, r.body[:500]
    return json.loads(r.body)


# "/café" as the UTF-8 bytes nginx decodes it to, decoded as latin-1 (PEP 3333)
LATIN1_CAFE = "/caf\xc3\xa9"


def read_http_response(sock: socket.socket, timeout: float = 30.0) -> tuple[int, dict, bytes]:
    """Reads a `Connection: close` HTTP response until EOF; returns (status, headers, body)."""
    sock.settimeout(timeout)
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep, f"no complete HTTP head in {data[:200]!r}"
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = dechunk(body)
    return status, headers, body


def dechunk(data: bytes) -> bytes:
    out = b""
    while True:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return out
        out += rest[:size]
        data = rest[size + 2:]


# --------------------------------------------------------------------------
# the byte pattern the apps generate (same as tests/apps/conformance.py)


def pattern_block(index: int, size: int) -> bytes:
    """Block `index` of a generated response: its index as 8 big-endian bytes, repeated."""
    unit = index.to_bytes(8, "big")
    return (unit * (size // 8 + 1))[:size]


def pattern_sha256(total: int, chunk: int) -> str:
    h = hashlib.sha256()
    index = 0
    left = total
    while left > 0:
        n = min(chunk, left)
        h.update(pattern_block(index, n))
        left -= n
        index += 1
    return h.hexdigest()


# --------------------------------------------------------------------------
# raw SCGI client (written from the SCGI spec; shares nothing with the Rust side)


def netstring(payload: bytes, length: bytes | None = None, end: bytes = b",") -> bytes:
    """`LEN ":" payload ","`; `length` and `end` may be overridden to make bad input."""
    if length is None:
        length = str(len(payload)).encode()
    return length + b":" + payload + end


def scgi_fields(pairs) -> bytes:
    """NAME NUL VALUE NUL ... for (name, value) pairs."""
    return b"".join(as_bytes(k) + b"\0" + as_bytes(v) + b"\0" for k, v in pairs)


def scgi_params(method: str = "GET", path: str = "/hello", *, body_len: int = 0, query: str = "",
                scgi: bool = True, extra=()) -> list[tuple[bytes, bytes]]:
    """The params nginx's stock scgi_params would send, CONTENT_LENGTH first."""
    pairs = [
        (b"CONTENT_LENGTH", str(body_len)),
        (b"REQUEST_METHOD", method),
        (b"REQUEST_URI", path + ("?" + query if query else "")),
        (b"QUERY_STRING", query),
        (b"CONTENT_TYPE", ""),
        (b"DOCUMENT_URI", path),
        (b"DOCUMENT_ROOT", "/srv"),
    ]
    if scgi:
        pairs.append((b"SCGI", "1"))
    pairs += [
        (b"SERVER_PROTOCOL", "HTTP/1.1"),
        (b"REQUEST_SCHEME", "http"),
        (b"REMOTE_ADDR", "127.0.0.1"),
        (b"REMOTE_PORT", "40000"),
        (b"SERVER_PORT", "80"),
        (b"SERVER_NAME", "localhost"),
        (b"HTTP_HOST", "localhost"),
    ]
    pairs += [(as_bytes(k), as_bytes(v)) for k, v in extra]
    return [(as_bytes(k), as_bytes(v)) for k, v in pairs]


def scgi_head(pairs) -> bytes:
    return netstring(scgi_fields(pairs))


# The SCGI exchange is the one every raw client uses.
scgi_exchange = exchange


def scgi_request(address: str, method: str = "GET", path: str = "/hello", body: bytes = b"", *,
                 query: str = "", scgi: bool = True, extra=(), timeout: float = 10.0) -> CgiResponse:
    """A well-formed SCGI request straight to the gateway."""
    head = scgi_head(scgi_params(method, path, body_len=len(body), query=query, scgi=scgi, extra=extra))
    return parse_cgi_response(scgi_exchange(address, head + body, timeout=timeout))
