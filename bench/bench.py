#!/usr/bin/env python3
"""rustgi against uWSGI, flup, Granian and gunicorn, behind one nginx and
straight to the socket.

Run through bench/run, which installs and builds what this needs first.
Standard library only (matplotlib for --plots, valgrind for --instructions).

For every target (a server on a protocol) and scenario (an app route) it
measures, in interleaved rounds (every cell once per round, then again):

1. behind nginx: wrk's req/s and latency percentiles, the backend's peak
   RSS (sum of VmHWM over its process tree), and
2. the CPU per request over the wrk run: the backend's user and system time
   apart (utime and stime of its process tree from /proc), and nginx's
   workers' (what a user pays per request is nginx + backend), each
   divided by wrk's request count;
3. direct capacity: rustgi-loadgen speaks the protocol straight to the
   backend's socket, pinned to core 1, with the backend started on core 0:
   req/s and CPU per request with nginx out of the way.

AJP has no nginx module: the AJP targets (rustgi-ajp against flup's AJP
server) sit behind one Apache 2.4 (mod_proxy_ajp, mpm_event) instead, on
TCP (flup's AJP server has no Unix socket), and Apache's CPU takes the
nginx columns. rustgi-loadgen speaks AJP as mod_proxy_ajp does: rustgi-ajp's
direct measure (and its --instructions count) is on a Unix socket, as the
other protocols' are; flup's AJP server, on TCP only, has none.

It prints the medians and the rustgi/uWSGI ratios with their targets, and
writes results.md (tables to paste into docs/benchmarks.md) and
results.json into the run directory. --instructions counts instead the
instructions per request under callgrind (instructions.py); --plots draws
the results as PNG charts (plots.py).
"""

import argparse
import dataclasses
import datetime
import json
import os
import platform
import random
import resource
import re
import shutil
import signal
import socket
import statistics
import subprocess
import threading
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
VENV = BENCH / ".venv"
sys.path.insert(0, str(BENCH))
import app  # noqa: E402  (the app the servers run: expected bodies come from it)
import instructions  # noqa: E402
import plots  # noqa: E402

UPLOAD_SIZE = 1 << 20
# The AJP secret the rustgi-ajp target and its Apache share (flup's AJP
# server refuses the ?secret attribute: its Apache sends none).
AJP_SECRET = "bench-secret"


# --- what is measured ---------------------------------------------------------

@dataclasses.dataclass
class Scenario:
    name: str
    path: str
    # Python threads per backend: uWSGI --threads, Granian --blocking-threads,
    # gunicorn --threads (its gthread worker); rustgi keeps its default (8)
    # and the *-t1 targets, --threads 1, skip a scenario that asks for more.
    threads: int
    expected: bytes  # the exact response body
    upload: bytes = b""  # POST body, if any
    direct: bool = True  # also measure with rustgi-loadgen
    nginx_alone: str | None = None  # how nginx serves it alone: "return" or "file"
    note: str = ""
    processes: int = 1  # worker processes per backend (--processes)
    only: tuple[str, ...] = ()  # if set, the only targets it runs on
    connections: int | None = None  # wrk's clients, if not -c
    keepalive: int | None = None  # idle kept upstream connections nginx caches, if not the target's

    def clients(self, args) -> int:
        return self.connections or args.connections


def scenarios() -> list[Scenario]:
    upload = random.Random(6).randbytes(UPLOAD_SIZE)
    big = app.CHUNK * app.BIG_CHUNKS
    cpu = app.cpu_work()
    return [
        Scenario("hello", "/hello", 1, app.HELLO, nginx_alone="return",
                 note="14-byte body"),
        # Many clients: nginx keeps up to 64 idle connections to a backend
        # whose protocol keeps them (FastCGI keep-conn, HTTP); the others
        # get a connection per request, up to 512 at once.
        Scenario("hello-c512", "/hello", 1, app.HELLO, direct=False, nginx_alone="return",
                 note="14-byte body, 512 clients, nginx keepalive 64",
                 connections=512, keepalive=64),
        Scenario("64k", "/64k", 1, app.CHUNK, nginx_alone="file", note="64 KiB body"),
        Scenario("8m", "/8m", 1, big, direct=False, nginx_alone="file",
                 note="8 MiB from a generator in 64 KiB chunks"),
        Scenario("upload", "/upload", 1, app.upload_answer(upload), upload=upload,
                 note="1 MiB POST read whole, answered with its Adler-32"),
        Scenario("slow", "/slow", 8, app.HELLO,
                 note="10 ms sleep, 8 threads (flup: its default pool)"),
        # Python-bound: one core per process is the most a process gets.
        Scenario("cpu-p1", "/cpu", 1, cpu, direct=False,
                 note="about 2 ms of pure-Python work, 1 worker process",
                 only=("rustgi-scgi", "uwsgi-scgi")),
        Scenario("cpu-p2", "/cpu", 1, cpu, direct=False,
                 note="the same, 2 worker processes", processes=2,
                 only=("rustgi-scgi", "uwsgi-scgi")),
    ]


@dataclasses.dataclass
class Target:
    name: str
    server: str  # rustgi, uwsgi, flup, granian, gunicorn, nginx, base
    proto: str  # scgi, fastcgi, fastcgi-keep, uwsgi (rustgi-loadgen's --proto); http; ajp
    default: bool = True  # measured unless --only says otherwise
    threads1: bool = False  # rustgi with --threads 1 instead of its default (8)
    unix: bool = False  # AJP: Apache reaches it on a Unix socket (`unix:PATH|ajp://`), not TCP

    @property
    def pass_proto(self) -> str:  # the nginx module: scgi, fastcgi, uwsgi, proxy
        return "proxy" if self.proto == "http" else self.proto.removesuffix("-keep")

    @property
    def kept(self) -> bool:
        """Whether nginx keeps its connections to this backend open."""
        return self.server != "nginx" and self.proto in ("fastcgi-keep", "http")

    @property
    def direct(self) -> bool:
        """Whether rustgi-loadgen can reach it: not HTTP, and AJP only on a
        Unix socket (rustgi's; flup's AJP server listens on TCP only)."""
        return self.proto != "http" and not (self.proto == "ajp" and self.server == "flup")

    @property
    def behind_apache(self) -> bool:
        """AJP: behind Apache's mod_proxy_ajp, on TCP (nginx has no AJP)."""
        return self.proto == "ajp"


# Grouped so that the servers compared on one protocol run one after the
# other: a burst of load from elsewhere on the machine then hits both.
TARGETS = [
    Target("rustgi-scgi", "rustgi", "scgi"),
    Target("rustgi-scgi-t1", "rustgi", "scgi", threads1=True),
    Target("uwsgi-scgi", "uwsgi", "scgi"),
    Target("flup-scgi", "flup", "scgi"),
    Target("rustgi-fastcgi", "rustgi", "fastcgi"),
    Target("rustgi-fastcgi-t1", "rustgi", "fastcgi", threads1=True),
    Target("uwsgi-fastcgi", "uwsgi", "fastcgi"),
    Target("flup-fastcgi", "flup", "fastcgi"),
    Target("rustgi-fastcgi-keep", "rustgi", "fastcgi-keep"),
    Target("rustgi-fastcgi-keep-t1", "rustgi", "fastcgi-keep", threads1=True),
    # uWSGI ignores FCGI_KEEP_CONN and closes every connection: nginx then
    # writes the next request into a closed socket, logs it, and retries it,
    # but a retried request can still fail (a 502). So by default rustgi's
    # keep-conn is compared with uWSGI's plain FastCGI, the best it offers.
    Target("uwsgi-fastcgi-keep", "uwsgi", "fastcgi-keep", default=False),
    Target("rustgi-uwsgi", "rustgi", "uwsgi"),
    Target("rustgi-uwsgi-t1", "rustgi", "uwsgi", threads1=True),
    Target("uwsgi-uwsgi", "uwsgi", "uwsgi"),
    # AJP, behind Apache (see the module comment): against flup's AJP server.
    Target("rustgi-ajp", "rustgi", "ajp"),
    # Apache 2.4.7+ reaches any proxy scheme over a Unix socket; flup's
    # AJP server cannot listen on one. Not in the default set.
    Target("rustgi-ajp-unix", "rustgi", "ajp", default=False, unix=True),
    Target("rustgi-ajp-unix-t1", "rustgi", "ajp", default=False, threads1=True, unix=True),
    Target("flup-ajp", "flup", "ajp"),
    # Anchors: WSGI servers that speak HTTP/1.1, behind nginx's proxy_pass.
    Target("granian-http", "granian", "http"),
    Target("gunicorn-http", "gunicorn", "http"),
    Target("nginx", "nginx", "http"),
    # --baseline-binary: another rustgi-gateway (an earlier commit, say),
    # measured in the same interleaved rounds with the headline's flags.
    Target("base-scgi", "base", "scgi", default=False),
    Target("base-fastcgi", "base", "fastcgi", default=False),
    Target("base-fastcgi-keep", "base", "fastcgi-keep", default=False),
    Target("base-uwsgi", "base", "uwsgi", default=False),
]


TARGETS_BY_NAME = {t.name: t for t in TARGETS}


def runs_on(t: Target, sc: Scenario) -> bool:
    """Whether a target is measured in a scenario."""
    if sc.only and t.name not in sc.only:
        return False
    if t.server == "nginx":
        return sc.nginx_alone is not None
    # rustgi's default is 8 threads: --threads 1 in a scenario that asks
    # for more would only show what one thread cannot do.
    return not (t.threads1 and sc.threads > 1)


# The goals of issue 6: (label, measure, how the ratio is taken, goal, holds if)
RATIO_GOALS = [
    ("CPU/req uWSGI ÷ rustgi", "cpu_us", "them/us", 2.0, ">="),
    ("direct req/s rustgi ÷ uWSGI", "direct_rps", "us/them", 1.5, ">="),
    ("req/s rustgi ÷ uWSGI", "rps", "us/them", 0.95, ">="),
    ("p99 rustgi ÷ uWSGI", "p99_ms", "us/them", 1.05, "<="),
    ("RSS rustgi ÷ uWSGI", "rss_mib", "us/them", 1.0, "<="),
    ("PSS rustgi ÷ uWSGI", "pss_mib", "us/them", 1.0, "<="),
]
FLUP_GOAL = 10.0

# The latency percentiles kept for the charts (rustgi-loadgen prints the same).
PERCENTILES = (1, 10, 25, 50, 75, 90, 99, 99.9)

UWSGI_LISTEN = 100  # uWSGI's default listen backlog
LISTEN_BACKLOG = 1024  # uWSGI's above that many clients (Granian's default)


# --- processes and /proc ------------------------------------------------------

def tree(pid: int) -> list[int]:
    """pid and all its descendants (through every thread's children list)."""
    pids, i = [pid], 0
    while i < len(pids):
        try:
            for task in os.listdir(f"/proc/{pids[i]}/task"):
                with open(f"/proc/{pids[i]}/task/{task}/children") as f:
                    pids.extend(int(c) for c in f.read().split())
        except OSError:
            pass
        i += 1
    return pids


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_times(pid: int, descendants_only: bool = False) -> tuple[float, float]:
    """(utime, stime) of the process tree in seconds (all threads, live and
    exited); without the root process itself if descendants_only (nginx's
    workers without their master)."""
    user = system = 0
    for p in tree(pid)[1 if descendants_only else 0:]:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        user += int(fields[11])
        system += int(fields[12])
    return user / CLK_TCK, system / CLK_TCK


def cpu_seconds(pid: int) -> float:
    """utime+stime of the process tree."""
    return sum(cpu_times(pid))


def machine_busy() -> float:
    """CPU seconds all cores spent busy (steal included) since boot."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, f.readline().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def children_cpu() -> float:
    """CPU seconds of our waited-for children (wrk, rustgi-loadgen)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


class Window:
    """Measures one load window: the backend's CPU (user and system apart),
    nginx's workers' CPU, and how much CPU the rest of the machine (other
    users of this noisy box) took meanwhile."""

    def __init__(self, backend_pid: int | None, nginx_pid: int):
        self.backend_pid = backend_pid
        self.nginx_pid = nginx_pid

    def _read(self) -> tuple[tuple[float, float], float, float]:
        backend = cpu_times(self.backend_pid) if self.backend_pid else (0.0, 0.0)
        return backend, sum(cpu_times(self.nginx_pid, descendants_only=True)), \
            cpu_seconds(self.nginx_pid)

    def __enter__(self):
        self.t0, self.machine0, self.kids0 = time.monotonic(), machine_busy(), children_cpu()
        self.start = self._read()
        return self

    def __exit__(self, *exc):
        (user, system), workers, nginx_all = self._read()
        (user0, system0), workers0, nginx_all0 = self.start
        self.wall = time.monotonic() - self.t0
        self.backend_user, self.backend_system = user - user0, system - system0
        self.backend_cpu = self.backend_user + self.backend_system
        self.nginx_cpu = workers - workers0
        ours = self.backend_cpu + nginx_all - nginx_all0 + children_cpu() - self.kids0
        self.others = max(0.0, machine_busy() - self.machine0 - ours) / (self.wall * os.cpu_count())


def peak_rss_mib(pid: int) -> float:
    """Sum of VmHWM over the process tree."""
    kib = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                kib += next((int(l.split()[1]) for l in f if l.startswith("VmHWM:")), 0)
        except OSError:
            continue
    return kib / 1024


def pss_mib(pid: int) -> float:
    """Sum of Pss over the process tree: memory shared between a master and
    its workers (copy-on-write, libraries) counted once, not once per
    process as a sum of RSS does."""
    kib = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                kib += next((int(l.split()[1]) for l in f if l.startswith("Pss:")), 0)
        except OSError:
            continue
    return kib / 1024


class PeakPss:
    """Samples `pss_mib` every 0.2 s in a thread; `peak` is the largest."""

    def __init__(self, pid: int | None):
        self.pid = pid
        self.peak = 0.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while True:
            self.peak = max(self.peak, pss_mib(self.pid))
            if self.stop.wait(0.2):
                return

    def __enter__(self):
        if self.pid:
            self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        if self.pid:
            self.thread.join()


class Procs:
    """Every process we start, so that all are stopped on any exit."""

    def __init__(self):
        self.live: list[subprocess.Popen] = []

    def start(self, argv, log: Path, pin: str | None = None,
              env: dict | None = None) -> subprocess.Popen:
        if pin is not None:
            argv = ["taskset", "-c", pin, *argv]  # taskset execs: the pid is the server's
        with open(log, "ab") as out:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                 cwd=REPO, start_new_session=True,
                                 env=None if env is None else {**os.environ, **env})
        self.live.append(p)
        return p

    def stop(self, p: subprocess.Popen, sig=signal.SIGTERM, wait=5.0):
        """Signals the process's group (each started one leads its own
        session, so that nginx's workers go with their master)."""
        if p.poll() is None:
            os.killpg(p.pid, sig)
            try:
                p.wait(wait)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(p.pid, signal.SIGKILL)  # anything left in the group
        except ProcessLookupError:
            pass
        p.wait()
        self.live.remove(p)

    def stop_all(self):
        for p in list(self.live):
            self.stop(p, signal.SIGTERM, wait=2.0)


def wait_for_socket(path: Path | tuple, proc: subprocess.Popen, log: Path, timeout=20.0):
    """Waits until `path` (a Unix socket, or a (host, port)) accepts."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}; see {log}:\n"
                               + log.read_text(errors="replace")[-2000:])
        try:
            family = socket.AF_INET if isinstance(path, tuple) else socket.AF_UNIX
            with socket.socket(family) as s:
                s.connect(path if isinstance(path, tuple) else str(path))
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"{path} not ready after {timeout} s; see {log}")


# --- the servers --------------------------------------------------------------

class Bench:
    def __init__(self, args, run: Path):
        self.args = args
        self.run = run
        self.procs = Procs()
        self.scenarios = {s.name: s for s in scenarios()}
        self.targets = {t.name: t for t in TARGETS}
        # nginx's upstream keepalive blocks: the targets' own (None), then
        # each scenario's; one nginx port per target and block.
        self.keepalives = [None, *sorted({s.keepalive for s in self.scenarios.values()
                                          if s.keepalive})]
        self.nginx = None
        self.apache = None

    def port(self, t: Target, sc: Scenario | None = None) -> int:
        """nginx's port for a target in a scenario (Apache's for AJP)."""
        if t.behind_apache:
            return self.apache_ports(t)[0]
        return self.block_port(t, sc.keepalive if sc else None)

    def apache_ports(self, t: Target) -> tuple[int, int]:
        """(Apache's port, the backend's) for an AJP target: after nginx's."""
        ajp = [x for x in TARGETS if x.behind_apache]
        first = self.args.port_base + len(self.keepalives) * len(TARGETS)
        return first + 2 * ajp.index(t), first + 2 * ajp.index(t) + 1

    def front_pid(self, t: Target) -> int:
        return self.apache.pid if t.behind_apache else self.nginx.pid

    def block_port(self, t: Target, block: int | None) -> int:
        """One block of ports per upstream keepalive setting: the targets'
        own (None), then each scenario's."""
        return self.args.port_base + self.keepalives.index(block) * len(TARGETS) + TARGETS.index(t)

    def keepalive(self, t: Target, block: int | None) -> int:
        """nginx's `keepalive` toward a kept backend: FastCGI keep-conn
        twice the clients (issue 6), HTTP as many as the clients (16, as
        issue 12 measured Granian), unless the scenario says."""
        if block is not None:
            return block
        return self.args.connections * (2 if t.proto == "fastcgi-keep" else 1)

    def sock(self, target: Target) -> Path:
        return self.run / f"{target.name}.sock"

    def backend_argv(self, t: Target, sc: Scenario, direct: bool = False) -> tuple[list[str], int]:
        """The command line, and the signal that stops it (`direct`: on
        its Unix socket for rustgi-loadgen, an AJP target too)."""
        sock = str(self.sock(t))
        if t.behind_apache and not direct and not t.unix:
            sock = f"127.0.0.1:{self.apache_ports(t)[1]}"
        appfile = str(BENCH / "app.py")
        if t.server in ("rustgi", "base"):
            binary = self.args.rustgi_binary if t.server == "rustgi" else self.args.baseline_binary
            # Its defaults (8 threads), as users run it; the -t1 rows one thread.
            argv = [binary, "--proto", t.pass_proto, "--socket", sock,
                    "--chmod", "666", "--app", appfile]
            if t.proto == "ajp":
                argv += ["--ajp-secret", AJP_SECRET]
            if t.threads1:
                argv += ["--threads", "1"]
            if sc.processes != 1:
                argv += ["--processes", str(sc.processes)]
            return argv, signal.SIGTERM
        if t.server == "uwsgi":
            flag = {"scgi": "--scgi-socket", "fastcgi": "--fastcgi-socket", "uwsgi": "--socket"}
            # A master and one worker, as rustgi runs as a daemon (and as
            # uWSGI is run in production: --master is what respawns).
            argv = [str(VENV / "bin" / "uwsgi"), flag[t.pass_proto], sock, "--chmod-socket=666",
                    "--wsgi-file", appfile, "--need-app", "--disable-logging",
                    "--master", "--processes", str(sc.processes)]
            if sc.threads > 1:
                argv += ["--threads", str(sc.threads)]
            if sc.clients(self.args) > UWSGI_LISTEN:
                # Its default backlog (100) would refuse nginx's connections.
                argv += ["--listen", str(LISTEN_BACKLOG)]
            return argv, signal.SIGINT  # SIGINT stops uWSGI's master and workers at once
        if t.server == "flup":
            kind = {"scgi": "scgi", "ajp": "ajp"}.get(t.proto, "fcgi")
            return [str(VENV / "bin" / "python"), str(BENCH / "flup_server.py"),
                    kind, sock], signal.SIGKILL
        if t.server == "granian":
            # One worker process and one Python thread (issue 12's setting),
            # HTTP/1.1 only; Granian's access log is off by default.
            return [str(VENV / "bin" / "granian"), "--interface", "wsgi", "--uds", sock,
                    "--uds-permissions", "0666", "--http", "1", "--no-ws",
                    "--workers", str(sc.processes), "--blocking-threads", str(sc.threads),
                    "--working-dir", str(BENCH),
                    "--log-level", "warning", "app:application"], signal.SIGINT
        if t.server == "gunicorn":
            # The sync worker (gunicorn's default): one request at a time,
            # a connection closed after each. With threads it becomes the
            # gthread worker. No access log unless asked.
            argv = [str(VENV / "bin" / "gunicorn"), "--bind", f"unix:{sock}",
                    "--workers", str(sc.processes), "--chdir", str(BENCH),
                    "--log-level", "warning"]
            if sc.threads > 1:
                argv += ["--threads", str(sc.threads)]
            return argv + ["app:application"], signal.SIGINT  # SIGINT: quick shutdown
        raise ValueError(t.server)

    def start_backend(self, t: Target, sc: Scenario, pin: str | None,
                      wrap: list[str] | None = None, env: dict | None = None,
                      timeout: float = 20.0, direct: bool = False):
        """Starts the backend (under `wrap`, e.g. valgrind) and waits until
        its socket accepts (`direct`: its Unix socket, for rustgi-loadgen)."""
        sock = self.sock(t)
        sock.unlink(missing_ok=True)
        if t.behind_apache and not direct and not t.unix:
            sock = ("127.0.0.1", self.apache_ports(t)[1])
        argv, sig = self.backend_argv(t, sc, direct)
        log = self.run / "logs" / f"{t.name}.log"
        p = self.procs.start((wrap or []) + argv, log, pin, env)
        wait_for_socket(sock, p, log, timeout)
        return p, sig

    # --- nginx ---------------------------------------------------------------

    def nginx_server(self, t: Target, block: int | None) -> tuple[str, str]:
        """(upstream, server) blocks of nginx.conf for a target, with the
        upstream keepalive of one block (see `block_port`)."""
        r = self.run
        port = self.block_port(t, block)
        upstream = ""
        if t.server == "nginx":
            body = app.HELLO.decode().replace("\n", "\\n")
            loc = (f'        location = /hello {{ default_type text/plain; return 200 "{body}"; }}\n'
                   f"        location = /64k {{ alias {r}/static/64k; }}\n"
                   f"        location = /8m {{ alias {r}/static/8m; }}\n")
        else:
            m = t.pass_proto
            dest, extra = f"unix:{self.sock(t)}", ""
            if t.kept:
                dest = f"{t.name}-{port}"
                upstream = (f"    upstream {dest} {{\n"
                            f"        server unix:{self.sock(t)};\n"
                            f"        keepalive {self.keepalive(t, block)};\n    }}\n")
            if t.proto == "fastcgi-keep":
                extra = "            fastcgi_keep_conn on;\n"
            if t.proto == "http":
                dest = f"http://{dest}"
                extra = ("            proxy_http_version 1.1;\n"
                         '            proxy_set_header Connection "";\n')
            loc = (f"        location / {{\n"
                   f"            include /etc/nginx/{m}_params;\n"
                   f"            {m}_pass {dest};\n{extra}"
                   f"            {m}_max_temp_file_size 0;\n"
                   f"        }}\n")
        return upstream, f"    server {{  # {t.name}\n        listen 127.0.0.1:{port};\n{loc}    }}\n"

    def nginx_conf(self) -> str:
        r = self.run
        blocks = [self.nginx_server(t, block) for block in self.keepalives for t in TARGETS
                  if not t.behind_apache]
        upstreams = [u for u, _ in blocks]
        servers = [sv for _, sv in blocks]
        return f"""# written by bench/bench.py
user root;
worker_processes 1;
daemon off;
pid {r}/nginx.pid;
error_log {r}/logs/nginx-error.log warn;
worker_rlimit_nofile 8192;  # 512 clients and as many upstream connections
events {{ worker_connections 4096; }}
http {{
    access_log off;  # the backends write no access log either
    client_body_temp_path {r}/tmp/body;
    fastcgi_temp_path {r}/tmp/fastcgi;
    scgi_temp_path {r}/tmp/scgi;
    uwsgi_temp_path {r}/tmp/uwsgi;
    proxy_temp_path {r}/tmp/proxy;
    keepalive_requests 1000000;
    client_max_body_size 2m;
    client_body_buffer_size 2m;  # keep the 1 MiB uploads in memory, not in temp files
    default_type application/octet-stream;
{"".join(upstreams)}{"".join(servers)}}}
"""

    def start_nginx(self):
        for i in range(len(self.keepalives) * len(TARGETS)):
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as nginx does
                try:
                    s.bind(("127.0.0.1", self.args.port_base + i))
                except OSError as e:
                    raise RuntimeError(f"port {self.args.port_base + i} is taken ({e}): "
                                       "pick others with --port-base")
        for d in ("tmp", "logs", "static"):
            (self.run / d).mkdir(exist_ok=True)
        (self.run / "static" / "64k").write_bytes(app.CHUNK)
        (self.run / "static" / "8m").write_bytes(app.CHUNK * app.BIG_CHUNKS)
        conf = self.run / "nginx.conf"
        conf.write_text(self.nginx_conf())
        self.nginx = self.procs.start(["nginx", "-p", str(self.run), "-c", str(conf)],
                                      self.run / "logs" / "nginx.log")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.nginx.poll() is not None:
                raise RuntimeError("nginx exited:\n" + (self.run / "logs" / "nginx.log").read_text())
            try:
                socket.create_connection(("127.0.0.1", self.port(self.targets["nginx"])),
                                         0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nginx did not listen")

    # --- Apache, for AJP ----------------------------------------------------------

    def apache_conf(self, targets: list[Target]) -> str:
        """One Apache (mpm_event, threads enough for the clients) with a
        virtual host per AJP target."""
        r = self.run / "apache"
        mods = "/usr/lib/apache2/modules"
        clients = max(self.args.connections, 64)
        hosts = []
        for t in targets:
            front, back = self.apache_ports(t)
            secret = f" secret={AJP_SECRET}" if t.server != "flup" else ""
            dest = f"unix:{self.sock(t)}|ajp://localhost/" if t.unix else f"ajp://127.0.0.1:{back}/"
            hosts.append(f"Listen 127.0.0.1:{front}\n<VirtualHost 127.0.0.1:{front}>\n"
                         f'    ProxyPass "/" "{dest}"{secret}\n</VirtualHost>\n')
        user = "User www-data\nGroup www-data\n" if os.geteuid() == 0 else ""
        return f"""# written by bench/bench.py
ServerRoot "{r}"
ServerName 127.0.0.1
PidFile "{r}/httpd.pid"
DefaultRuntimeDir "{r}"
Mutex file:{r} default
LoadModule mpm_event_module {mods}/mod_mpm_event.so
LoadModule authz_core_module {mods}/mod_authz_core.so
LoadModule proxy_module {mods}/mod_proxy.so
LoadModule proxy_ajp_module {mods}/mod_proxy_ajp.so
{user}ErrorLog "{self.run}/logs/apache-error.log"
LogLevel warn
KeepAlive On
MaxKeepAliveRequests 0
StartServers 1
ServerLimit 1
ThreadsPerChild {clients}
ThreadLimit {clients}
MaxRequestWorkers {clients}
MinSpareThreads 1
MaxSpareThreads {clients}
<Directory />
    Require all granted
</Directory>
{"".join(hosts)}"""

    def start_apache(self, targets: list[Target]):
        """Apache in front of the AJP targets of the run (none: not started)."""
        if not targets:
            return
        (self.run / "apache").mkdir(exist_ok=True)
        (self.run / "apache").chmod(0o755)
        conf = self.run / "apache" / "httpd.conf"
        conf.write_text(self.apache_conf(targets))
        self.apache = self.procs.start(["apache2", "-d", str(self.run / "apache"), "-f", str(conf),
                                        "-DFOREGROUND"], self.run / "logs" / "apache.log")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.apache.poll() is not None:
                raise RuntimeError("Apache exited:\n" + (self.run / "logs" / "apache.log").read_text())
            try:
                socket.create_connection(("127.0.0.1", self.port(targets[0])), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("Apache did not listen")

    def nginx_errors(self) -> int:
        try:
            return (self.run / "logs" / "nginx-error.log").read_text(errors="replace").count("[error]")
        except FileNotFoundError:
            return 0

    # --- the load -------------------------------------------------------------

    def files_for(self, sc: Scenario) -> tuple[Path, Path | None, Path]:
        """(expected body file, upload body file, wrk Lua script)."""
        expect = self.run / "data" / f"{sc.name}.expect"
        lua = self.run / "data" / f"{sc.name}.lua"
        upload = self.run / "data" / f"{sc.name}.upload" if sc.upload else None
        if not expect.exists():
            expect.parent.mkdir(exist_ok=True)
            expect.write_bytes(sc.expected)
            # The same browser-like headers rustgi-loadgen sends.
            script = ['wrk.headers["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) '
                      'Gecko/20100101 Firefox/128.0"',
                      'wrk.headers["Accept"] = "text/html,application/xhtml+xml,application/xml;'
                      'q=0.9,*/*;q=0.8"',
                      'wrk.headers["Accept-Language"] = "en-US,en;q=0.5"',
                      'wrk.headers["Accept-Encoding"] = "gzip, deflate, br"']
            if upload:
                upload.write_bytes(sc.upload)
                script += ['wrk.method = "POST"',
                           'wrk.headers["Content-Type"] = "application/octet-stream"',
                           f'local f = assert(io.open("{upload}", "rb"))',
                           'wrk.body = f:read("*a")', "f:close()"]
            # The latency distribution, for the charts (wrk's --latency
            # prints only 50, 75, 90 and 99).
            script += ["done = function(summary, latency, requests)",
                       "  for _, p in ipairs({" + ", ".join(f"{q:g}" for q in PERCENTILES) + "}) do",
                       '    io.write(string.format("percentile %g %d\\n", p, latency:percentile(p)))',
                       "  end",
                       '  io.write(string.format("percentile 100 %d\\n", latency.max))',
                       "end"]
            lua.write_text("\n".join(script) + "\n")
        return expect, upload, lua

    def check_via_nginx(self, t: Target, sc: Scenario):
        """One request through nginx, its body compared with the expected one."""
        url = f"http://127.0.0.1:{self.port(t, sc)}{sc.path}"
        req = urllib.request.Request(url, data=sc.upload or None,
                                     headers={"Content-Type": "application/octet-stream"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                status, body = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, body = e.code, e.read()
        except OSError as e:
            raise RuntimeError(f"{t.name} {sc.name}: via nginx: {e}")
        if status != 200 or body != sc.expected:
            raise RuntimeError(f"{t.name} {sc.name}: via nginx got {status} with "
                               f"{len(body)} bytes {body[:100]!r}, want {len(sc.expected)} bytes "
                               f"{sc.expected[:40]!r}")

    def wrk(self, t: Target, sc: Scenario, seconds: int) -> dict:
        _, _, lua = self.files_for(sc)
        url = f"http://127.0.0.1:{self.port(t, sc)}{sc.path}"
        argv = ["wrk", "-t1", f"-c{sc.clients(self.args)}", f"-d{seconds}s", "--latency",
                "--timeout", "10s", "-s", str(lua), url]
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
        return parse_wrk(out)

    def loadgen_flags(self, t: Target) -> list[str]:
        """What rustgi-loadgen needs besides the request: AJP's secret."""
        return ["--ajp-secret", AJP_SECRET] if t.proto == "ajp" else []

    def loadgen(self, t: Target, sc: Scenario, seconds: float) -> dict:
        expect, upload, _ = self.files_for(sc)
        argv = ["taskset", "-c", "1", self.args.loadgen_binary, "--proto", t.proto,
                "--socket", str(self.sock(t)), "-c", str(sc.clients(self.args)),
                "-d", str(seconds), "--warmup", "0", "--path", sc.path,
                "--expect-body-file", str(expect)]
        if upload:
            argv += ["--body-file", str(upload)]
        argv += self.loadgen_flags(t)
        p = subprocess.run(argv, capture_output=True, text=True)
        try:
            return json.loads(p.stdout)
        except json.JSONDecodeError:
            raise RuntimeError(f"rustgi-loadgen failed ({p.returncode}): {p.stdout}{p.stderr}")

    # --- one cell: a target on a scenario, once --------------------------------

    def measure(self, t: Target, sc: Scenario) -> dict:
        a = self.args
        res: dict = {"errors": 0, "error_notes": []}
        backend = None
        if t.server != "nginx":
            backend, sig = self.start_backend(t, sc, pin=None)
        try:
            self.check_via_nginx(t, sc)
            log_before = self.nginx_errors()
            self.wrk(t, sc, a.warmup_wrk)
            with Window(backend and backend.pid, self.front_pid(t)) as win, \
                    PeakPss(backend and backend.pid) as pss:
                w = self.wrk(t, sc, a.duration_wrk)
            if w["requests"] == 0:
                # (flup's AJP server stalls so at times): no figure to divide.
                raise RuntimeError(f"{t.name} {sc.name}: no request answered in "
                                   f"{a.duration_wrk} s")
            per_req = 1e6 / w["requests"]
            res.update(rps=w["rps"], p99_ms=w["p99_ms"], p50_ms=w["p50_ms"],
                       latency_ms=w["latency_ms"], wrk_requests=w["requests"],
                       nginx_cpu_us=win.nginx_cpu * per_req,
                       total_cpu_us=(win.nginx_cpu + win.backend_cpu) * per_req,
                       others=win.others)
            if w["errors"]:
                res["errors"] += w["errors"]
                res["error_notes"].append(f"wrk: {w['error_text']}")
            if backend:
                res["cpu_us"] = win.backend_cpu * per_req
                res["cpu_user_us"] = win.backend_user * per_req
                res["cpu_sys_us"] = win.backend_system * per_req
                res["rss_mib"] = peak_rss_mib(backend.pid)
                res["pss_mib"] = pss.peak
            # wrk leaves requests in flight when it stops: let nginx finish
            # them before the backend goes, or they show up as errors.
            time.sleep(0.25)
            # Errors nginx logged but recovered from (a kept upstream
            # connection the backend had closed is retried): the client saw
            # none, so they are reported, not counted as failures.
            res["nginx_log_errors"] = self.nginx_errors() - log_before
        finally:
            if backend:
                self.procs.stop(backend, sig)
        if backend and sc.direct and t.direct and not a.no_direct:
            backend, sig = self.start_backend(t, sc, pin="0", direct=True)
            try:
                self.loadgen(t, sc, a.warmup_direct)
                with Window(backend.pid, self.nginx.pid) as win:
                    g = self.loadgen(t, sc, a.duration_direct)
            finally:
                self.procs.stop(backend, sig)
            per_req = 1e6 / max(g["requests_total"], 1)
            res.update(direct_rps=g["rps"], direct_p99_ms=g["latency_us"]["p99"] / 1000,
                       direct_latency_ms={k.removeprefix("p").replace("max", "100"): v / 1000
                                          for k, v in g["latency_us"].items()},
                       direct_cpu_us=win.backend_cpu * per_req,
                       direct_cpu_user_us=win.backend_user * per_req,
                       direct_cpu_sys_us=win.backend_system * per_req,
                       backend_busy=win.backend_cpu / win.wall,
                       loadgen_busy=g["cpu_s"] / g["wall_s"],
                       loadgen_cpu_us=g["cpu_us_per_request"], direct_others=win.others)
            if g["errors"]:
                res["errors"] += g["errors"]
                res["error_notes"].append(f"rustgi-loadgen: {g['first_error']}")
        return res


def parse_wrk(out: str) -> dict:
    def duration_ms(text: str) -> float:
        m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
        value, unit = float(m.group(1)), m.group(2)
        return value * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]

    pct = dict(re.findall(r"^\s+(\d+)%\s+(\S+)\s*$", out, re.M))
    m = re.search(r"(\d+) requests in", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not (m and rps and "99" in pct):
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    errors, notes = 0, []
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        errors += int(non2xx.group(1))
        notes.append(non2xx.group(0))
    sock = re.search(r"Socket errors: (.*)", out)
    if sock:
        errors += sum(int(n) for n in re.findall(r"\d+", sock.group(1)))
        notes.append(sock.group(0))
    # Printed by the script's done(): percentile, microseconds.
    latency = {f"{float(q):g}": int(us) / 1000
               for q, us in re.findall(r"^percentile (\S+) (\d+)$", out, re.M)}
    return {"requests": int(m.group(1)), "rps": float(rps.group(1)),
            "p50_ms": duration_ms(pct["50"]), "p99_ms": duration_ms(pct["99"]),
            "latency_ms": latency, "errors": errors, "error_text": "; ".join(notes)}


# --- summary ------------------------------------------------------------------

# key, column title, format; the first table is behind nginx, the second direct.
NGINX_MEASURES = [
    ("rps", "req/s", "{:.0f}"),
    ("p99_ms", "p99 ms", "{:.2f}"),
    ("cpu_us", "backend CPU µs/req", "{:.1f}"),
    ("cpu_user_us", "user", "{:.1f}"),
    ("cpu_sys_us", "system", "{:.1f}"),
    ("nginx_cpu_us", "nginx CPU µs/req", "{:.1f}"),
    ("total_cpu_us", "nginx + backend µs/req", "{:.1f}"),
    ("rss_mib", "peak RSS MiB", "{:.1f}"),
    ("pss_mib", "peak PSS MiB", "{:.1f}"),
    ("others", "other processes' CPU", "{:.0%}"),
]
DIRECT_MEASURES = [
    ("direct_rps", "req/s", "{:.0f}"),
    ("direct_p99_ms", "p99 ms", "{:.2f}"),
    ("direct_cpu_us", "backend CPU µs/req", "{:.1f}"),
    ("direct_cpu_user_us", "user", "{:.1f}"),
    ("direct_cpu_sys_us", "system", "{:.1f}"),
    ("backend_busy", "backend core busy", "{:.0%}"),
    ("loadgen_busy", "loadgen core busy", "{:.0%}"),
    ("loadgen_cpu_us", "loadgen CPU µs/req", "{:.1f}"),
    ("direct_others", "other processes' CPU", "{:.0%}"),
]


def medians(cells: list[dict]) -> dict:
    out = {}
    for key, _, _ in NGINX_MEASURES + DIRECT_MEASURES:
        values = [c[key] for c in cells if key in c]
        if values:
            out[key] = statistics.median(values)
    for key in ("latency_ms", "direct_latency_ms"):  # percentile by percentile
        dists = [c[key] for c in cells if c.get(key)]
        if dists:
            out[key] = {q: statistics.median(d[q] for d in dists if q in d) for q in dists[0]}
    out["errors"] = sum(c["errors"] for c in cells)
    out["nginx_log_errors"] = sum(c.get("nginx_log_errors", 0) for c in cells)
    return out


def fmt(fmt_: str, value) -> str:
    return "–" if value is None else fmt_.format(value)


BUSY_MACHINE = 0.15  # other processes' share of all cores that marks a window


def disturbed(m: dict, direct: bool) -> bool:
    """Whether other processes took a noticeable share of the machine
    during this cell's (median) window."""
    return m.get("direct_others" if direct else "others", 0) > BUSY_MACHINE


def loadgen_bound(m: dict) -> bool:
    """Whether the load generator's CPU per request is close to the
    backend's: with one core each, it then limits the direct req/s."""
    return "loadgen_cpu_us" in m and m["loadgen_cpu_us"] > 0.8 * m["direct_cpu_us"]


BUSY_NOTE = (f"† other processes took over {BUSY_MACHINE:.0%} of the machine's CPU during "
             "the median window: the figure is less reliable (repeat, or add --rounds).")
AJP_NOTE = ("AJP rows: behind Apache 2.4's mod_proxy_ajp (mpm_event) on TCP (rustgi-ajp-unix: "
            "on a Unix socket), not nginx: the nginx columns are Apache's CPU; direct: rustgi-loadgen speaks AJP to rustgi on its "
            "Unix socket (flup's AJP server has none: no direct measure).")
LOADGEN_NOTE = ("‡ rustgi-loadgen spent over 0.8× the backend's CPU per request: with one core "
                "each, the load generator rather than the backend limits this req/s (a new "
                "connection per request costs the client's kernel about as much as the server's).")


def measure_table(med: dict, scs, tgs, measures, errors: bool) -> list[str]:
    lines = ["| target | scenario | " + " | ".join(t for _, t, _ in measures)
             + (" | errors | nginx error-log lines |" if errors else " |"),
             "|---|---|" + "---:|" * (len(measures) + 2 * errors)]
    for sc in scs:
        for tg in tgs:
            m = med.get((tg, sc))
            if m is None or not any(k in m for k, _, _ in measures):
                continue
            cells = [fmt(f, m.get(k)) for k, _, f in measures]
            direct = measures is DIRECT_MEASURES
            if direct and loadgen_bound(m):
                cells[0] += " ‡"
            if disturbed(m, direct):
                cells[0] += " †"
            lines.append(f"| {tg} | {sc} | " + " | ".join(cells)
                         + (f" | {m['errors']} | {m['nginx_log_errors']} |" if errors else " |"))
    return lines


def tables(med: dict, scs: list[str], tgs: list[str]) -> tuple[str, int, int]:
    """The markdown tables, and (goals held, goals checked)."""
    lines = (["Behind nginx (wrk; CPU and RSS of the backend's process tree):", ""]
             + measure_table(med, scs, tgs, NGINX_MEASURES, errors=True)
             + ["", "Direct (rustgi-loadgen on core 1 speaks the protocol to the backend "
                    "on core 0):", ""]
             + measure_table(med, scs, tgs, DIRECT_MEASURES, errors=False))
    held = checked = 0
    ratio_lines = ["| scenario | protocol | " + " | ".join(f"{l} (goal {op} {g})"
                                                          for l, _, _, g, op in RATIO_GOALS) + " |",
                   "|---|---|" + "---:|" * len(RATIO_GOALS)]
    flup_lines = [f"| scenario | protocol | CPU/req flup ÷ rustgi (goal >= {FLUP_GOAL:g}) |",
                  "|---|---|---:|"]
    for sc in scs:
        for proto, suffix in ((p, s) for p in ("scgi", "fastcgi", "fastcgi-keep", "uwsgi", "ajp")
                              for s in ("", "-t1", "-unix")):
            us = med.get((f"rustgi-{proto}{suffix}", sc))
            them = med.get((f"uwsgi-{proto}", sc))
            label = proto
            if them is None and proto == "fastcgi-keep":
                them = med.get(("uwsgi-fastcgi", sc))
                label = "fastcgi-keep (uWSGI: fastcgi)"
            if suffix == "-t1":
                label += ", rustgi --threads 1"
            if us and them:
                cells = []
                for _, key, how, goal, op in RATIO_GOALS:
                    if us.get(key) and them.get(key):
                        r = them[key] / us[key] if how == "them/us" else us[key] / them[key]
                        ok = r >= goal if op == ">=" else r <= goal
                        held += ok
                        checked += 1
                        direct = key.startswith("direct")
                        marks = ""
                        if direct and (loadgen_bound(us) or loadgen_bound(them)):
                            marks += " ‡"
                        if key not in ("rss_mib", "pss_mib") and (disturbed(us, direct) or disturbed(them, direct)):
                            marks += " †"
                        cells.append(f"{r:.2f} {'✓' if ok else '✗'}{marks}")
                    else:
                        cells.append("–")
                ratio_lines.append(f"| {sc} | {label} | " + " | ".join(cells) + " |")
            flup = med.get((f"flup-{proto}", sc))
            if suffix != "-t1" and us and flup and us.get("cpu_us") and flup.get("cpu_us"):
                r = flup["cpu_us"] / us["cpu_us"]
                ok = r >= FLUP_GOAL
                held += ok
                checked += 1
                where = ", rustgi on a Unix socket" if suffix == "-unix" else ""
                flup_lines.append(f"| {sc} | {proto}{where} | {r:.2f} {'✓' if ok else '✗'} |")
    md = ("\n".join(lines) + "\n\n" + LOADGEN_NOTE + "\n\n" + BUSY_NOTE
          + "\n\nrustgi ÷ uWSGI, same protocol and scenario:\n\n" + "\n".join(ratio_lines))
    if len(flup_lines) > 2:
        md += "\n\nflup ÷ rustgi:\n\n" + "\n".join(flup_lines)
    if any(TARGETS_BY_NAME[tg].behind_apache for tg in tgs):
        md += "\n\n" + AJP_NOTE
    return md + "\n" + paid_table(med, scs, tgs), held, checked


def uwsgi_reference(med: dict, tg: str, sc: str) -> tuple[str, dict | None]:
    """The uWSGI cell a target is compared with: uWSGI on the same protocol
    (its plain FastCGI for keep-conn unless uwsgi-fastcgi-keep ran), and
    uWSGI on its own protocol for the HTTP servers."""
    t = TARGETS_BY_NAME[tg]
    if t.proto == "http":
        name = "uwsgi-uwsgi"
    elif t.proto == "fastcgi-keep" and (f"uwsgi-{t.proto}", sc) not in med:
        name = "uwsgi-fastcgi"
    else:
        name = f"uwsgi-{t.proto}"
    return name, med.get((name, sc))


def paid_table(med: dict, scs: list[str], tgs: list[str]) -> str:
    """What a user pays per request (nginx + backend CPU), and req/s and
    p99, each against uWSGI's."""
    lines = ["| scenario | target | backend µs/req | nginx µs/req | nginx + backend µs/req "
             "| ÷ uWSGI | req/s ÷ uWSGI | p99 ÷ uWSGI | against |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for sc in scs:
        for tg in tgs:
            m = med.get((tg, sc))
            if not m or "total_cpu_us" not in m:
                continue
            ref_name, ref = uwsgi_reference(med, tg, sc)

            def ratio(key):
                if not ref or not ref.get(key) or key not in m or ref_name == tg:
                    return "–"
                return f"{m[key] / ref[key]:.2f}"
            lines.append(f"| {sc} | {tg} | {fmt('{:.1f}', m.get('cpu_us'))} "
                         f"| {m['nginx_cpu_us']:.1f} | {m['total_cpu_us']:.1f} "
                         f"| {ratio('total_cpu_us')} | {ratio('rps')} | {ratio('p99_ms')} "
                         f"| {ref_name if ref and ref_name != tg else '–'} |")
    if len(lines) == 2:
        return ""
    return ("\nWhat a request costs the machine, nginx + backend (HTTP servers "
            "against uWSGI on its own protocol):\n\n" + "\n".join(lines) + "\n")


THREADS_GOAL = 1.1


def thread_cost(results: dict, scs: list[str], tgs: list[str]) -> str:
    """rustgi's defaults (8 threads) against --threads 1, behind nginx:
    the median of the per-round ratios (the two run in the same round, so
    the machine's mood cancels), for backend CPU and p99 (issue 12's goal:
    within 1.1x)."""
    lines = []
    for sc in scs:
        for tg in tgs:
            eight, one = results.get((tg, sc)), results.get((f"{tg}-t1", sc))
            if TARGETS_BY_NAME[tg].server != "rustgi" or not eight or not one:
                continue
            cells = []
            for key in ("cpu_us", "p99_ms"):
                ratios = [a[key] / b[key] for a, b in zip(eight, one) if a.get(key) and b.get(key)]
                if not ratios:
                    cells.append("–")
                    continue
                r = statistics.median(ratios)
                cells.append(f"{r:.2f} {'✓' if r <= THREADS_GOAL else '✗'} "
                             f"({min(ratios):.2f}–{max(ratios):.2f})")
            lines.append(f"| {sc} | {tg} | " + " | ".join(cells) + " |")
    if not lines:
        return ""
    return ("\n\nrustgi's defaults (8 threads) ÷ `--threads 1`, behind nginx, median of "
            f"the per-round ratios (range):\n\n| scenario | target | backend CPU/req (goal <= {THREADS_GOAL:g}) "
            f"| p99 (goal <= {THREADS_GOAL:g}) |\n|---|---|---:|---:|\n" + "\n".join(lines) + "\n")


def scaling(med: dict, tgs: list[str]) -> str:
    """req/s with 2 worker processes ÷ with 1, on the Python-bound
    scenario (issue 7's goal for rustgi: >= 1.6 on 2 cores)."""
    lines = []
    for tg in tgs:
        one, two = med.get((tg, "cpu-p1")), med.get((tg, "cpu-p2"))
        if one and two and one.get("rps"):
            ratio = two["rps"] / one["rps"]
            mark = (" ✓" if ratio >= 1.6 else " ✗") if tg.startswith("rustgi") else ""
            lines.append(f"| {tg} | {one['rps']:.0f} | {two['rps']:.0f} | {ratio:.2f}{mark} |")
    if not lines:
        return ""
    return ("\n\n--processes 2 ÷ --processes 1 on cpu (about 2 ms of Python per request):\n\n"
            "| target | req/s, 1 process | req/s, 2 processes | ratio (goal for rustgi >= 1.6) |\n"
            "|---|---:|---:|---:|\n" + "\n".join(lines) + "\n")


def round_line(r: dict) -> str:
    out = f"nginx {r['rps']:7.0f}/s p99 {r['p99_ms']:6.2f} ms"
    if "cpu_us" in r:
        out += (f" {r['cpu_us']:6.1f} µs/req (user {r['cpu_user_us']:.1f})"
                f" {r['rss_mib']:5.1f} MiB (PSS {r['pss_mib']:5.1f})")
    out += f" nginx {r['nginx_cpu_us']:.1f} µs/req (others {r['others']:.0%})"
    if r.get("nginx_log_errors"):
        out += f" [{r['nginx_log_errors']} nginx error-log lines]"
    if "direct_rps" in r:
        out += (f" | direct {r['direct_rps']:6.0f}/s {r['direct_cpu_us']:6.1f} µs/req, busy "
                f"backend {r['backend_busy']:.0%} loadgen {r['loadgen_busy']:.0%} "
                f"({r['loadgen_cpu_us']:.1f} µs/req), others {r['direct_others']:.0%}")
    if r["errors"]:
        out += f"  ERRORS: {'; '.join(r['error_notes'])}"
    return out


def versions(args) -> dict:
    def out(argv):
        try:
            p = subprocess.run(argv, capture_output=True, text=True)
            return (p.stdout + p.stderr).strip().splitlines()[0]
        except (OSError, IndexError):
            return "?"
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), platform.processor())
    git = out(["git", "-C", str(REPO), "describe", "--always", "--dirty"])
    return {
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "machine": f"{os.cpu_count()} cores, {cpu}, {platform.system()} {platform.release()}",
        "rustgi": f"{args.rustgi_binary} (git {git})",
        **({"baseline": args.baseline_binary} if args.baseline_binary else {}),
        "uwsgi": out([str(VENV / "bin" / "uwsgi"), "--version"]),
        **{name: out([str(VENV / "bin" / "python"), "-c",
                      f"import importlib.metadata as m; print(m.version('{name}'))"])
           for name in ("flup", "granian", "gunicorn")},
        "python": out([str(VENV / "bin" / "python"), "--version"]),
        "nginx": out(["nginx", "-v"]),
        "wrk": out(["wrk", "-v"]),
    }


def count_instructions(bench, cells, info: dict, command: str) -> int:
    """--instructions: counts, prints and writes them; the exit status."""
    args, run = bench.args, bench.run
    (run / "logs").mkdir(exist_ok=True)
    started = time.monotonic()
    try:
        rows, failed = instructions.run(bench, cells, tree)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 1
    finally:
        bench.procs.stop_all()
    elapsed = time.monotonic() - started
    text = (f"{info['date']}, {info['machine']}; `{command}`; took {elapsed:.0f} s.\n"
            f"{info['rustgi']}; {info['uwsgi'] and 'uWSGI ' + info['uwsgi']}; "
            f"{info['python']}.\n\n" + instructions.table(rows))
    (run / "results.md").write_text(text)
    results = {"info": info, "command": command, "elapsed_s": elapsed, "instructions": rows}
    (run / "results.json").write_text(json.dumps(results, indent=1))
    print("\n" + text)
    print(f"written: {run / 'results.md'}, {run / 'results.json'}")
    if args.plots:
        for path in plots.draw(results, Path(args.plots)):
            print(f"written: {path}")
    return 1 if failed else 0


# --- main ---------------------------------------------------------------------

def main():
    all_scenarios = [s.name for s in scenarios()]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="targets: " + ", ".join(t.name + ("" if t.default else " (only with --only)")
                                                                for t in TARGETS)
                                 + "\nscenarios: " + ", ".join(all_scenarios))
    ap.add_argument("--short", action="store_true",
                    help="quick run: hello only (unless --scenarios), 2 s windows, 3 rounds")
    ap.add_argument("--only", help="comma-separated targets (default: all but "
                    "uwsgi-fastcgi-keep and base-*)")
    ap.add_argument("--scenarios", help="comma-separated scenarios (default: all; --short: hello)")
    ap.add_argument("--rounds", type=int, help="interleaved rounds (default 3)")
    ap.add_argument("--duration", type=int, help="seconds of each measured window "
                    "(default 4; --short 2)")
    ap.add_argument("-c", "--connections", type=int, default=16,
                    help="concurrent connections, wrk and rustgi-loadgen (default 16)")
    ap.add_argument("--no-direct", action="store_true", help="skip the direct measures")
    ap.add_argument("--rustgi-binary", default=str(REPO / "target/release/rustgi-gateway"),
                    help="the rustgi-gateway to measure (default: target/release's)")
    ap.add_argument("--loadgen-binary", default=str(REPO / "target/release/rustgi-loadgen"))
    ap.add_argument("--baseline-binary",
                    help="another rustgi-gateway to measure in the same rounds, as the "
                         "base-* targets (added to the default targets)")
    ap.add_argument("--run-dir", help="default: a new /tmp/rustgi-bench-*")
    ap.add_argument("--port-base", type=int, default=28480,
                    help="nginx listens on this port and the next ones, one per target "
                         "and upstream keepalive setting")
    ap.add_argument("--instructions", action="store_true",
                    help="instead of the load measures: instructions per request under "
                         f"callgrind, requests {instructions.N1 + 1}-{instructions.N2} sent "
                         "one at a time straight to the socket (default targets: rustgi's and "
                         "uWSGI's; scenarios: hello)")
    ap.add_argument("--plots", metavar="DIR",
                    help="also draw PNG charts of the results into DIR (CPU per request, "
                         "latency distributions; matplotlib)")
    ap.add_argument("--from", dest="from_json", metavar="RESULTS_JSON",
                    help="with --plots: draw the charts of an earlier run's results.json "
                         "and measure nothing")
    args = ap.parse_args()
    if args.from_json:
        if not args.plots:
            ap.error("--from needs --plots DIR")
        for path in plots.draw(json.loads(Path(args.from_json).read_text()), Path(args.plots)):
            print(f"written: {path}")
        return
    args.rounds = args.rounds or 3
    duration = args.duration or (2 if args.short else 4)
    args.duration_wrk = args.duration_direct = duration
    args.warmup_wrk, args.warmup_direct = 1, (0.5 if args.short else 1)
    scs = (args.scenarios or ("hello" if args.short or args.instructions
                              else ",".join(all_scenarios))).split(",")
    default_tgs = (instructions.default_targets(TARGETS) if args.instructions
                   else [t.name for t in TARGETS if t.default])
    tgs = args.only.split(",") if args.only else default_tgs
    if args.baseline_binary and not args.only:
        tgs += [t.name for t in TARGETS if t.server == "base"]
    for name, known in ((scs, all_scenarios), (tgs, [t.name for t in TARGETS])):
        bad = [n for n in name if n not in known]
        if bad:
            ap.error(f"unknown {', '.join(bad)}; choose from {', '.join(known)}")
    for binary in (args.rustgi_binary, args.loadgen_binary, args.baseline_binary):
        if binary and not os.access(binary, os.X_OK):
            ap.error(f"no {binary}: build it first (bench/run does)")
    args.rustgi_binary = str(Path(args.rustgi_binary).resolve())
    if args.baseline_binary:
        args.baseline_binary = str(Path(args.baseline_binary).resolve())
    if args.instructions:
        bad = [tg for tg in tgs if not TARGETS_BY_NAME[tg].direct]
        if bad:
            ap.error(f"--instructions: rustgi-loadgen cannot reach {', '.join(bad)} "
                     "(HTTP; flup's AJP on TCP)")
        if not shutil.which("valgrind"):
            ap.error("--instructions needs valgrind (bench/run installs it)")
    # 512 clients: wrk needs as many sockets, the servers as many again.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))

    if args.run_dir:
        run = Path(args.run_dir).resolve()
        run.mkdir(parents=True, exist_ok=True)
    else:
        run = Path(f"/tmp/rustgi-bench-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
        run.mkdir()
    run.chmod(0o755)  # nginx's workers must reach the sockets in it
    bench = Bench(args, run)
    info = versions(args)
    command = "bench/run " + " ".join(sys.argv[1:])
    print(f"run dir: {run}\n" + "".join(f"{k}: {v}\n" for k, v in info.items()), flush=True)

    cells = [(tg, sc) for sc in scs for tg in tgs
             if runs_on(bench.targets[tg], bench.scenarios[sc])]
    if args.instructions:
        sys.exit(count_instructions(bench, cells, info, command))
    results: dict = {cell: [] for cell in cells}
    started = time.monotonic()
    failed = False

    def on_signal(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_signal)
    try:
        bench.start_nginx()
        bench.start_apache([t for t in TARGETS
                            if t.behind_apache and any(tg == t.name for tg, _ in cells)])
        for rnd in range(1, args.rounds + 1):
            for tg, sc in cells:
                try:
                    r = bench.measure(bench.targets[tg], bench.scenarios[sc])
                except (RuntimeError, subprocess.CalledProcessError) as e:
                    print(f"round {rnd} {tg:22} {sc:10} FAILED: {e}", flush=True)
                    failed = True
                    continue
                results[(tg, sc)].append(r)
                failed |= r["errors"] > 0
                print(f"round {rnd} {tg:22} {sc:10} {round_line(r)}", flush=True)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        failed = True
    except RuntimeError as e:  # nginx could not start
        sys.exit(f"bench: {e}")
    finally:
        bench.procs.stop_all()
    elapsed = time.monotonic() - started

    med = {cell: medians(rs) for cell, rs in results.items() if rs}
    md, held, checked = tables(med, scs, tgs)
    head = (f"{info['date']}, {info['machine']}; `{command}`: {args.rounds} interleaved rounds, "
            f"{duration} s windows, {args.connections} connections, medians; took {elapsed:.0f} s.\n"
            f"{info['rustgi']}; {info['uwsgi'] and 'uWSGI ' + info['uwsgi']}; flup {info['flup']}; "
            f"Granian {info['granian']}; gunicorn {info['gunicorn']}; "
            f"{info['python']}; {info['nginx']}.\n\n")
    md += thread_cost(results, scs, tgs)
    md += scaling(med, tgs)
    text = head + md + f"\nGoals held: {held} of {checked}.\n"
    (run / "results.md").write_text(text)
    (run / "results.json").write_text(json.dumps({
        "info": info, "command": command, "elapsed_s": elapsed,
        "cells": [{"target": tg, "scenario": sc, "rounds": rs, "median": med.get((tg, sc))}
                  for (tg, sc), rs in results.items()],
    }, indent=1))
    print("\n" + text)
    print(f"written: {run / 'results.md'}, {run / 'results.json'}")
    if args.plots:
        for path in plots.draw(json.loads((run / "results.json").read_text()), Path(args.plots)):
            print(f"written: {path}")
    if failed:
        print("some measurements had errors (see above and the logs in "
              f"{run / 'logs'})", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
