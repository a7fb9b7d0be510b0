"""Several rustgi hosts on one machine, for tests/test_two_hosts.py and
bench/two_hosts.py: each host is a network namespace joined to the test's
own namespace by a veth pair on a bridge, as machines on one LAN are.

- `Lan`: the bridge (the front server's address, `.1`) and one namespace
  per host (`.2`, `.3`, ...), made with `ip` (Debian's iproute2) under
  names unique to the run, and taken down by `close()` whatever happened,
  with every process still running in the namespaces killed first.
- `HostGateway`: a harness `Gateway` started in a host's namespace
  (`ip netns exec`) in a session of its own, so that `kill_hard()` can
  SIGKILL the host's whole gateway (master and workers) at once, as a
  crash or an OOM kill of the service's cgroup would.
- `FrontNginx`: nginx running examples/nginx-two-hosts.conf as written,
  its addresses replaced (`render_example`); `HostGateways`: one gateway
  per host, serving tests/apps/hosts_app.py.
- `Load`: client threads sending GETs and POSTs through the front server
  over kept HTTP connections, with every request's outcome recorded.

Needs root (network namespaces); `ip` missing is a failure, never a skip.
"""

from __future__ import annotations

import atexit
import hashlib
import http.client
import ipaddress
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field

from harness import APPS, REPO, Gateway, Nginx, nginx_preamble

_OPEN: list["Lan"] = []


def ip_command() -> str:
    """The `ip` binary, or an AssertionError that says how to get it."""
    found = shutil.which("ip") or next((p for p in ("/usr/sbin/ip", "/sbin/ip") if os.access(p, os.X_OK)), None)
    if not found:
        raise AssertionError("`ip` is missing: install iproute2 (tests/run does)")
    return found


def _run(*args: str) -> str:
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 in 10.0.0.0/8 that no address or route of this machine uses."""
    used = _run(ip_command(), "-4", "-o", "addr") + _run(ip_command(), "-4", "route")
    for _ in range(100):
        net = ipaddress.IPv4Network(f"10.{random.randint(64, 254)}.{random.randint(0, 255)}.0/24")
        prefix = ".".join(str(net.network_address).split(".")[:3]) + "."
        if prefix not in used:
            return net
    raise AssertionError("no free 10.x.y.0/24 for the test LAN")


@dataclass
class Host:
    name: str  # "a", "b", ...
    netns: str
    address: str  # in the LAN


class Lan:
    """A bridge in this namespace and `count` host namespaces on it."""

    def __init__(self, count: int = 2):
        self.ip = ip_command()
        token = secrets.token_hex(3)
        self.bridge = f"rg{token}br"
        self.subnet = _free_subnet()
        addresses = list(self.subnet.hosts())
        self.front_address = str(addresses[0])
        self.hosts = [
            Host(chr(ord("a") + i), f"rustgi-{token}-{chr(ord('a') + i)}", str(addresses[1 + i]))
            for i in range(count)
        ]
        self._veths: list[str] = []
        self._made_netns: list[str] = []
        self._bridge_made = False
        _OPEN.append(self)
        try:
            self._build(token)
        except BaseException:
            self.close()
            raise

    def _build(self, token: str):
        ip, bits = self.ip, self.subnet.prefixlen
        _run(ip, "link", "add", self.bridge, "type", "bridge")
        self._bridge_made = True
        _run(ip, "addr", "add", f"{self.front_address}/{bits}", "dev", self.bridge)
        _run(ip, "link", "set", self.bridge, "up")
        for host in self.hosts:
            _run(ip, "netns", "add", host.netns)
            self._made_netns.append(host.netns)
            veth = f"rg{token}{host.name}"
            _run(ip, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", host.netns)
            self._veths.append(veth)
            _run(ip, "link", "set", veth, "master", self.bridge, "up")
            _run(ip, "-n", host.netns, "addr", "add", f"{host.address}/{bits}", "dev", "eth0")
            _run(ip, "-n", host.netns, "link", "set", "eth0", "up")
            _run(ip, "-n", host.netns, "link", "set", "lo", "up")

    def pids_in(self, host: Host) -> list[int]:
        done = subprocess.run([self.ip, "netns", "pids", host.netns], capture_output=True, text=True)
        return [int(p) for p in done.stdout.split()]

    def close(self) -> list[str]:
        """Kills what still runs in the namespaces, deletes them and the
        bridge. Returns what it had to kill or could not delete."""
        problems = []
        for netns in self._made_netns:
            host = next(h for h in self.hosts if h.netns == netns)
            for pid in self.pids_in(host):
                problems.append(f"pid {pid} still ran in {netns}: killed")
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            done = subprocess.run([self.ip, "netns", "del", netns], capture_output=True, text=True)
            if done.returncode != 0:
                problems.append(f"ip netns del {netns}: {done.stderr.strip()}")
        self._made_netns.clear()
        # Deleting a namespace deletes its end of each veth pair, and so
        # the pair; a veth left (the namespace was not made) goes here.
        for veth in self._veths:
            subprocess.run([self.ip, "link", "del", veth], capture_output=True)
        self._veths.clear()
        if self._bridge_made:
            done = subprocess.run([self.ip, "link", "del", self.bridge], capture_output=True, text=True)
            if done.returncode != 0:
                problems.append(f"ip link del {self.bridge}: {done.stderr.strip()}")
            self._bridge_made = False
        if self in _OPEN:
            _OPEN.remove(self)
        return problems


@atexit.register
def _close_all():
    for lan in list(_OPEN):
        lan.close()


class HostGateway(Gateway):
    """A gateway run in `host`'s namespace, in a session of its own (its
    process group is its master and workers)."""

    def __init__(self, lan: Lan, host: Host, *args, **kw):
        super().__init__(*args, new_session=True, **kw)
        self.lan = lan
        self.host = host

    @property
    def command(self) -> list[str]:
        return [self.lan.ip, "netns", "exec", self.host.netns, *super().command]

    def kill_hard(self) -> list[int]:
        """SIGKILL to the gateway's whole process group; returns the pids
        of its workers as they were just before."""
        workers = self.workers()
        os.killpg(self.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        return workers


# ---------------------------------------------------------------------------
# examples/nginx-two-hosts.conf in front of the hosts


EXAMPLE = REPO / "examples" / "nginx-two-hosts.conf"
EXAMPLE_LISTEN = "listen 8080;"
EXAMPLE_HOSTS = ["10.0.0.2:9000", "10.0.0.3:9000"]
PORT = 9000
APP = APPS / "hosts_app.py"
PROCESSES = 2


def render_example(lan: Lan, port: int, max_fails: str | None = "0") -> str:
    """The example without its comment lines, its listen and its servers
    replaced; each must occur once, so a changed example fails here
    instead of testing something else. `max_fails` other than the
    example's "0" is for bench/two_hosts.py (None: nginx's default)."""
    text = "".join(line for line in EXAMPLE.read_text().splitlines(True) if not line.startswith("#"))
    replacements = [(EXAMPLE_LISTEN, f"listen 127.0.0.1:{port};")]
    if max_fails != "0":
        assert text.count(" max_fails=0;") == len(EXAMPLE_HOSTS), f"{EXAMPLE}: max_fails=0 on each server"
        text = text.replace(" max_fails=0;", ";" if max_fails is None else f" max_fails={max_fails};")
    replacements += [(old, f"{host.address}:{PORT}") for old, host in zip(EXAMPLE_HOSTS, lan.hosts)]
    for needle, value in replacements:
        assert text.count(needle) == 1, f"{EXAMPLE} should contain {needle!r} once"
        text = text.replace(needle, value)
    return text


class FrontNginx(Nginx):
    """nginx whose only server is the rendered example."""

    def __init__(self, binary, run_dir, log_dir, lan: Lan, max_fails: str | None = "0"):
        super().__init__(binary, run_dir, log_dir, locations=[])
        self.site = self.run_dir / "sites-enabled" / EXAMPLE.name
        self.site.parent.mkdir(exist_ok=True)
        self.site.write_text(render_example(lan, self.port, max_fails))
        params = self.run_dir / "fastcgi_params"
        if not params.exists():
            params.symlink_to("/etc/nginx/fastcgi_params")

    def config(self) -> str:
        return f"""{nginx_preamble(self.run_dir, self.error_log.path, self.log_dir, connections=256)}
    include {self.site};
}}
"""


class HostGateways:
    """One gateway per host of `lan` (not started), by host name: the
    hosts app, FastCGI on TCP, `--allow-from` the front's address, each
    with its version file in `scratch` ("v1" to begin with)."""

    def __init__(self, lan, gateway_bin, log_dir, scratch):
        self.lan = lan
        self.version_files = {}
        self.gateways: dict[str, HostGateway] = {}
        for host in lan.hosts:
            version = scratch / f"version-{host.name}.txt"
            version.write_text("v1\n")
            self.version_files[host.name] = version
            self.gateways[host.name] = HostGateway(
                lan, host, f"host-{host.name}", f"{host.address}:{PORT}",
                ["--app", str(APP), "--processes", str(PROCESSES), "--threads", "4",
                 "--allow-from", lan.front_address, "--graceful-timeout", "20",
                 "--env", f"RUSTGI_TEST_HOST={host.name}", "--env", f"RUSTGI_TEST_VERSION_FILE={version}"],
                log_dir / f"host-{host.name}.log",
                binary=gateway_bin, proto="fastcgi", env={"PYTHONDONTWRITEBYTECODE": "1"},
            )

    def start(self, name: str) -> HostGateway:
        gw = self.gateways[name]
        mark = gw.log.mark()
        gw.start()
        assert gw.log.wait_for(rf"\b{PROCESSES} worker\(s\) ready", since=mark, timeout=30), gw.describe(mark)
        return gw

    def describe(self) -> str:
        return "\n".join(gw.describe() for gw in self.gateways.values() if gw.proc is not None)

    def stop_all(self) -> list[str]:
        problems = []
        for gw in self.gateways.values():
            if gw.alive():
                code = gw.terminate(timeout=30)
                if code != 0:
                    problems.append(f"{gw.name} exited {code} on SIGTERM")
        return problems



# ---------------------------------------------------------------------------
# load through the front server


@dataclass
class Outcome:
    method: str
    start: float
    end: float
    status: int | None = None  # None: no HTTP answer (`error` says why)
    host: str | None = None
    version: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.error is None


@dataclass
class Tally:
    outcomes: list[Outcome] = field(default_factory=list)

    def failed(self, method: str | None = None) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok and (method is None or o.method == method)]

    def count(self, method: str | None = None) -> int:
        return sum(1 for o in self.outcomes if method is None or o.method == method)

    def served_by(self, host: str, after: float = 0.0) -> list[Outcome]:
        return [o for o in self.outcomes if o.ok and o.host == host and o.start >= after]

    def summary(self) -> str:
        parts = [f"{len(self.outcomes)} requests"]
        for method in ("GET", "POST"):
            parts.append(f"{method} {len(self.failed(method))} failed of {self.count(method)}")
        took = sorted(o.end - o.start for o in self.outcomes)
        if took:
            parts.append(f"latency median {took[len(took) // 2] * 1000:.0f} ms, max {took[-1] * 1000:.0f} ms")
        kinds: dict[str, int] = {}
        for o in self.failed():
            key = f"{o.method} {o.status if o.status is not None else o.error}"
            kinds[key] = kinds.get(key, 0) + 1
        if kinds:
            parts.append("failures: " + ", ".join(f"{k} x{n}" for k, n in sorted(kinds.items())))
        return "; ".join(parts)


class Load:
    """`clients` threads, each with its own kept HTTP connection to the
    front server, alternating GET /?ms=MS and POST /?ms=MS with a body of
    its own until `stop()`. Every request's outcome is kept: a wrong body counts
    as a failure as a 5xx does."""

    def __init__(self, port: int, clients: int = 8, ms: int = 5):
        self.port = port
        self.clients = clients
        self.ms = ms
        self.tally = Tally()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(clients)]

    def __enter__(self) -> "Load":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self) -> Tally:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=120)
        return self.tally

    def wait_requests(self, count: int, timeout: float = 60.0) -> None:
        """Waits until `count` more requests have completed."""
        target = len(self.tally.outcomes) + count
        deadline = time.monotonic() + timeout
        while len(self.tally.outcomes) < target:
            if time.monotonic() > deadline:
                raise AssertionError(f"the load is stuck: {self.tally.summary()}")
            time.sleep(0.02)

    def _client(self, index: int):
        body = os.urandom(1024 + 512 * index)
        digest = hashlib.sha256(body).hexdigest()
        conn = None
        n = index
        while not self._stop.is_set():
            n += 1
            method = "POST" if n % 2 else "GET"
            outcome = Outcome(method, time.monotonic(), 0.0)
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            try:
                if method == "GET":
                    conn.request("GET", f"/?ms={self.ms}")
                else:
                    conn.request("POST", f"/?ms={self.ms}", body=body,
                                 headers={"Content-Type": "application/octet-stream"})
                resp = conn.getresponse()
                data = resp.read()
                outcome.status = resp.status
                if resp.status == 200:
                    answer = json.loads(data)
                    outcome.host, outcome.version = answer["host"], answer["version"]
                    if method == "POST" and (answer.get("sha256"), answer.get("length")) != (digest, len(body)):
                        outcome.error = f"wrong echo: {answer}"
                if resp.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException, ValueError, KeyError) as e:
                outcome.error = f"{type(e).__name__}: {e}"
                if conn is not None:
                    conn.close()
                conn = None
            outcome.end = time.monotonic()
            with self._lock:
                self.tally.outcomes.append(outcome)
        if conn is not None:
            conn.close()
