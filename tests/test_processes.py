"""--processes: a master and its worker processes, behind a real nginx
with real client load.

- the master stays single-threaded; wsgi.multiprocess says whether there
  are several workers;
- a worker killed (SIGKILL, SIGSEGV, a real segfault) is logged and
  replaced, and only the requests it had in flight fail;
- SIGHUP (and --touch-reload) reload with no failed request while the load
  runs, also with --preload (the master re-executes itself); new code is
  served, broken new code leaves the old workers serving;
- SIGTERM lets 20 slow requests finish, then the master exits 0 and the
  socket file is gone;
- --max-requests, --reload-on-rss and --max-worker-lifetime replace
  workers without a failure;
- SIGTTIN/SIGTTOU add and remove a worker; workers die with the master.

The app (tests/apps/processes_app.py, wrapped in wsgiref.validate) answers
its pid and the VERSION of the file it imported; tests that reload copy it
into a scratch directory and rewrite VERSION.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import signal
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from harness import (
    APPS,
    http_request,
    scgi_exchange,
    scgi_head,
    scgi_params,
    scgi_request,
    wait_until,
)

APP = APPS / "processes_app.py"
APP_SOURCE = APP.read_text()
# Rewritten app files must be imported afresh, whatever their mtime.
ENV = {"PYTHONDONTWRITEBYTECODE": "1"}


def write_app(path: Path, version: str, broken: bool = False):
    """The test app with VERSION = `version`, written atomically (a worker
    importing it meanwhile sees the old file or the new one, whole)."""
    text = APP_SOURCE.replace('VERSION = "v0"', f'VERSION = "{version}"')
    assert text != APP_SOURCE or version == "v0"
    if broken:
        text += '\nraise RuntimeError("this version is broken on purpose")\n'
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def start(gateways, name, app=APP, *args, processes=2, threads=4, proto="scgi"):
    gw = gateways.start(
        name,
        ["--app", str(app), "--processes", str(processes), "--threads", str(threads), *args],
        env=ENV,
        proto=proto,
    )
    assert wait_until(lambda: len(gw.workers()) == processes, 15), gw.describe()
    # Ready: each has loaded the app and set up its signal handlers.
    assert gw.log.wait_for(rf"\b{processes} worker\(s\) ready", timeout=15), gw.describe()
    return gw


def answer(port: int, path: str = "/") -> dict:
    r = http_request(port, "GET", path, timeout=15)
    assert r.status == 200, (r.status, r.body[:300])
    return json.loads(r.body)


def reload_to(gw, app, version: str, port: int):
    """Writes `version` of the app, sends SIGHUP and waits until the new
    generation serves it (through `port`)."""
    write_app(app, version)
    mark = gw.log.mark()
    gw.send_signal(signal.SIGHUP)
    assert gw.log.wait_for(r"reloaded: generation \d+ is serving", since=mark, timeout=20), (
        gw.describe(mark)
    )
    assert wait_until(lambda: answer(port)["version"] == version, 5), gw.describe(mark)


def direct(gw, path: str = "/") -> dict:
    """A request straight to the gateway's socket (no nginx)."""
    path, _, query = path.partition("?")
    r = scgi_request(gw.socket, "GET", path, query=query, timeout=15)
    assert r.status == 200, (r.status, r.body[:300])
    return json.loads(r.body)


def threads_of(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


class Load:
    """`clients` threads sending GETs through nginx, one after another each,
    until `stop()` (or `total` requests, or `limit` seconds). Every request
    is recorded as (start, end, status or the exception, the app's answer)."""

    def __init__(self, port: int, clients: int = 4, path: str = "/", total: int | None = None,
                 limit: float = 60.0):
        self.port = port
        self.path = path
        self.total = total
        self.deadline = time.monotonic() + limit
        self.results: list[tuple[float, float, object, dict | None]] = []
        self.sent = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def start(self) -> "Load":
        for t in self.threads:
            t.start()
        return self

    def _run(self):
        while not self.stopping.is_set() and time.monotonic() < self.deadline:
            with self.lock:
                if self.total is not None and self.sent >= self.total:
                    return
                self.sent += 1
            began = time.monotonic()
            try:
                r = http_request(self.port, "GET", self.path, timeout=15)
                outcome = r.status
                body = json.loads(r.body) if r.status == 200 else None
            except Exception as e:  # a failed request is a result too
                outcome, body = repr(e), None
            with self.lock:
                self.results.append((began, time.monotonic(), outcome, body))

    def stop(self) -> list:
        self.stopping.set()
        return self.join()

    def join(self) -> list:
        for t in self.threads:
            t.join(timeout=30)
        assert not any(t.is_alive() for t in self.threads), "a client thread is stuck"
        return sorted(self.results, key=lambda r: r[0])


def failures(results) -> list:
    return [r for r in results if r[2] != 200]


# ---------------------------------------------------------------------------


def test_the_master_has_one_thread_and_multiprocess_is_set(gateways):
    gw = start(gateways, "p-threads", processes=2, threads=4)
    assert threads_of(gw.pid) == 1, os.listdir(f"/proc/{gw.pid}/task")
    workers = gw.workers()
    assert len(workers) == 2
    # The I/O thread + 4 Python threads, once each worker has started.
    assert wait_until(lambda: all(threads_of(pid) > 4 for pid in workers), 10), [
        threads_of(pid) for pid in workers
    ]
    got = direct(gw)
    assert got["pid"] in workers
    assert got["multiprocess"] is True and got["multithread"] is True
    assert threads_of(gw.pid) == 1, "the master started a thread while serving"

    one = start(gateways, "p-threads-one", processes=1, threads=1)
    got = direct(one)
    assert got["pid"] == one.workers()[0]
    assert got["multiprocess"] is False and got["multithread"] is False


def test_preloading_master_has_one_thread(gateways):
    gw = start(gateways, "p-preload-threads", APP, "--preload", processes=2)
    assert threads_of(gw.pid) == 1
    assert gw.log.lines_matching(r"preloaded in the master")
    assert direct(gw)["pid"] in gw.workers()


def test_kill_9_fails_only_the_requests_in_flight_and_a_new_worker_serves_within_a_second(
        gateways, private_nginx):
    gw = start(gateways, "p-kill9", processes=2, threads=4)
    front = private_nginx("p-kill9", gw)
    load = Load(front.port, clients=4).start()
    time.sleep(1.0)
    before = set(gw.workers())
    victim = sorted(before)[0]
    mark = gw.log.mark()
    killed_at = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    time.sleep(2.0)
    results = load.stop()

    failed = failures(results)
    print(f"{len(results)} requests, {len(failed)} failed: {failed}")
    assert len(results) > 100, "too little load to judge"
    # In flight when the worker died: begun before the kill (nginx needs
    # more than the few microseconds the kill takes to pass a new one on).
    late = [r for r in failed if r[0] > killed_at + 0.005]
    assert not late, f"requests begun after the kill failed: {late}"
    assert len(failed) <= 4, "more failures than requests could be in flight"
    served_by_new = [r for r in results if r[3] and r[3]["pid"] not in before]
    assert served_by_new, gw.describe(mark)
    first = min(r[1] for r in served_by_new)
    assert first - killed_at < 1.0, f"the new worker's first answer came {first - killed_at:.2f} s after the kill"
    assert gw.log.lines_matching(rf"worker {victim} died: killed by signal 9 \(SIGKILL", since=mark), (
        gw.describe(mark)
    )
    assert len(gw.workers()) == 2 and victim not in gw.workers()


@pytest.mark.parametrize(
    "preload, seconds",
    [(False, 20.0), (True, 12.0)],
    ids=["fork", "preload-reexec"],
)
def test_three_sighup_reloads_under_load_fail_no_request_and_serve_the_new_code(
        gateways, private_nginx, scratch, preload, seconds):
    name = "p-reload-preload" if preload else "p-reload"
    app = scratch / "reload_app.py"
    write_app(app, "v0")
    gw = start(gateways, name, app, *(["--preload"] if preload else []), processes=2, threads=4)
    front = private_nginx(name, gw)
    assert answer(front.port)["version"] == "v0"
    began = time.monotonic()
    load = Load(front.port, clients=4).start()
    gap = seconds / 4
    reloaded_at = []
    for n in (1, 2, 3):
        time.sleep(max(0.0, began + n * gap - time.monotonic()))
        reload_to(gw, app, f"v{n}", front.port)
        reloaded_at.append(time.monotonic())
    time.sleep(max(0.0, began + seconds - time.monotonic()))
    results = load.stop()

    failed = failures(results)
    versions = {}
    for r in results:
        if r[3]:
            versions[r[3]["version"]] = versions.get(r[3]["version"], 0) + 1
    print(f"{len(results)} requests in {seconds} s, {len(failed)} failed; versions served: {versions}")
    assert not failed, f"{len(failed)} of {len(results)} requests failed: {failed[:5]}\n{gw.describe()}"
    assert len(results) > 200, "too little load to judge"
    assert set(versions) == {"v0", "v1", "v2", "v3"}, versions
    # After the last reload only the new code answers (old workers may
    # still finish what they accepted just before).
    last = [r[3]["version"] for r in results if r[0] > reloaded_at[-1] + 0.5]
    assert last and set(last) == {"v3"}, set(last)
    assert gw.alive() and threads_of(gw.pid) == 1
    assert wait_until(lambda: len(gw.workers()) == 2, 10), gw.workers()
    if preload:
        assert len(gw.log.lines_matching(r"re-executing the master")) == 3


def test_reloads_with_fastcgi_kept_connections_fail_no_request(gateways, private_nginx, scratch):
    """nginx keeps FastCGI connections open between requests (upstream
    keepalive + fastcgi_keep_conn): an old worker closes them only while
    idle, and nginx sends the next request on a new connection."""
    app = scratch / "ka_app.py"
    write_app(app, "v0")
    gw = start(gateways, "p-reload-ka", app, processes=2, threads=4, proto="fastcgi")
    front = private_nginx("p-reload-ka", gw, keepalive=8, proto="fastcgi")
    load = Load(front.port, clients=4).start()
    for n in (1, 2):
        time.sleep(2.0)
        reload_to(gw, app, f"v{n}", front.port)
    time.sleep(1.0)
    results = load.stop()
    failed = failures(results)
    print(f"FastCGI keep-conn: {len(results)} requests, {len(failed)} failed")
    assert not failed, f"{len(failed)} of {len(results)} failed: {failed[:5]}\n{front.error_log.tail(20)}"
    assert len(results) > 100


def test_sigterm_lets_20_slow_requests_finish_then_exits_0_and_removes_the_socket(
        gateways, private_nginx, scratch):
    gw = start(gateways, "p-sigterm", processes=2, threads=20)
    front = private_nginx("p-sigterm", gw)
    arrived = scratch / "arrived.txt"

    def count():
        return len(arrived.read_text().splitlines()) if arrived.exists() else 0

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        slow = [
            pool.submit(http_request, front.port, "GET", f"/slow?seconds=2&path={arrived}", timeout=30)
            for _ in range(20)
        ]
        assert wait_until(lambda: count() == 20, 10), f"{count()} of 20 reached the app\n{gw.describe()}"
        mark = gw.log.mark()
        gw.send_signal(signal.SIGTERM)
        assert wait_until(lambda: not os.path.exists(gw.socket), 5), gw.describe(mark)
        responses = [f.result(timeout=30) for f in slow]
    assert [r.status for r in responses] == [200] * 20, gw.describe(mark)
    served_by = {json.loads(r.body)["pid"] for r in responses}
    print(f"the 20 slow requests were served by workers {sorted(served_by)}")
    assert gw.wait_exit(timeout=15) == 0, gw.describe(mark)
    assert not os.path.exists(gw.socket)
    assert gw.log.lines_matching(r"master: SIGTERM: stopping gracefully", since=mark)


def test_max_requests_replaces_workers_without_a_failure(gateways, private_nginx):
    # One worker: with several, the last ones alive hold up to 49 requests
    # each, and 500 requests could make only 8 retire.
    gw = start(gateways, "p-maxreq", APP, "--max-requests", "50", processes=1, threads=4)
    front = private_nginx("p-maxreq", gw)
    results = Load(front.port, clients=4, total=500).start().join()
    assert len(results) == 500
    failed = failures(results)
    retired = gw.log.lines_matching(r"worker \d+ is retiring; starting its replacement")
    pids = {r[3]["pid"] for r in results if r[3]}
    print(f"500 requests: {len(failed)} failed, {len(retired)} workers retired, {len(pids)} distinct workers")
    assert not failed, failed[:5]
    assert len(retired) >= 9, gw.describe()
    assert len(pids) >= 10
    assert gw.log.lines_matching(r"retiring: served 5\d requests \(--max-requests\)")


def test_max_requests_jitter_varies_the_limit(gateways):
    gw = start(gateways, "p-jitter", APP, "--max-requests", "5", "--max-requests-jitter", "20",
               processes=2, threads=1)
    for _ in range(60):
        direct(gw)
    limits = {int(n) for n in re_findall(gw.log.text(), r"retires after (\d+) requests")}
    assert limits and all(5 <= n <= 25 for n in limits), limits
    assert len(limits) > 1, f"every worker drew the same limit: {limits}"


def re_findall(text: str, pattern: str) -> list[str]:
    return re.findall(pattern, text)


def test_reload_on_rss_replaces_a_grown_worker(gateways):
    probe = start(gateways, "p-rss-probe", processes=1, threads=1)
    from harness import rss_kib

    base_mib = rss_kib(probe.workers()[0]) // 1024
    probe.terminate()
    limit = base_mib + 40
    gw = start(gateways, "p-rss", APP, "--reload-on-rss", str(limit), processes=1, threads=1)
    (first,) = gw.workers()
    assert direct(gw)["pid"] == first
    mark = gw.log.mark()
    assert direct(gw, "/grow?mib=80")["pid"] == first  # answered, then the worker retires
    assert gw.log.wait_for(rf"RSS \d+ MiB is above --reload-on-rss {limit} MiB", since=mark, timeout=5), (
        gw.describe(mark)
    )
    assert wait_until(lambda: direct(gw)["pid"] != first, 5)
    assert wait_until(lambda: gw.workers() and first not in gw.workers(), 10)


def respawns(port: int, cause: str) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    m = re.search(rf'^rustgi_worker_respawns_total\{{cause="{cause}"\}} (\d+)$', text, re.M)
    assert m, text
    return int(m.group(1))


def test_max_worker_lifetime_replaces_workers_under_load_without_a_failure(gateways, private_nginx):
    from harness import free_port

    port = free_port()
    # One worker: each replacement must be ready before the old one stops,
    # or requests would wait with no worker at all.
    gw = start(gateways, "p-lifetime", APP, "--max-worker-lifetime", "2",
               "--metrics", f"127.0.0.1:{port}", processes=1, threads=2)
    (first,) = gw.workers()
    front = private_nginx("p-lifetime", gw)
    load = Load(front.port, clients=3).start()
    replaced = r"worker \d+: its replacement is ready; telling it to stop \(--max-worker-lifetime\)"
    assert wait_until(lambda: len(gw.log.lines_matching(replaced)) >= 3, 30), gw.describe()
    results = load.stop()
    failed = failures(results)
    pids = [r[3]["pid"] for r in results if r[3]]
    print(f"{len(results)} requests: {len(failed)} failed, {len(set(pids))} distinct workers")
    assert not failed, failed[:5]
    assert len(results) == load.sent
    assert len(set(pids)) >= 3 and first in pids
    # Why, in the master's log and the retired worker's.
    lived = gw.log.lines_matching(r"worker (\d+) has lived \d+s \(--max-worker-lifetime\): starting its replacement")
    assert len(lived) >= 3, gw.describe()
    assert re.search(rf"worker {first} has lived [23]s \(--max-worker-lifetime\)", gw.log.text()), gw.describe()
    assert gw.log.lines_matching(r"replaced \(SIGUSR2\): finishing the requests in flight")
    # Counted by cause once the old workers have been reaped; no crash.
    assert wait_until(lambda: respawns(port, "max-worker-lifetime") >= 3, 10), gw.describe()
    assert respawns(port, "crash") == 0
    assert respawns(port, "max-requests") == 0


def test_sigttin_and_sigttou_change_the_worker_count(gateways):
    gw = start(gateways, "p-ttin", processes=2, threads=1)
    gw.send_signal(signal.SIGTTIN)
    assert wait_until(lambda: len(gw.workers()) == 3, 10), gw.describe()
    assert gw.log.wait_for(r"SIGTTIN: one worker more: 3")
    gw.send_signal(signal.SIGTTOU)
    assert wait_until(lambda: len(gw.workers()) == 2, 10), gw.describe()
    gw.send_signal(signal.SIGTTOU)
    assert wait_until(lambda: len(gw.workers()) == 1, 10), gw.describe()
    mark = gw.log.mark()
    gw.send_signal(signal.SIGTTOU)
    assert gw.log.wait_for(r"SIGTTOU: already down to one worker", since=mark)
    time.sleep(0.3)
    assert len(gw.workers()) == 1
    assert direct(gw)["pid"] == gw.workers()[0]
    assert gw.alive()


def test_a_segfault_is_logged_and_the_worker_respawned(gateways):
    gw = start(gateways, "p-segv", processes=2, threads=2)
    victim = gw.workers()[0]
    mark = gw.log.mark()
    os.kill(victim, signal.SIGSEGV)
    assert gw.log.wait_for(
        rf"worker {victim} died: killed by signal 11 \(SIGSEGV, a segmentation fault", since=mark
    ), gw.describe(mark)
    assert wait_until(lambda: len(gw.workers()) == 2 and victim not in gw.workers(), 5), gw.describe(mark)
    # A real fault in the app (NULL dereference through ctypes): the request
    # gets nothing, the worker is replaced, the next request is served.
    mark = gw.log.mark()
    got = scgi_exchange(gw.socket, scgi_head(scgi_params("GET", "/segfault")), timeout=10)
    assert got == b""
    assert gw.log.wait_for(r"died: killed by signal 11 \(SIGSEGV", since=mark), gw.describe(mark)
    assert wait_until(lambda: len(gw.workers()) == 2, 5)
    assert direct(gw)["pid"] in gw.workers()


def test_touch_reload(gateways, scratch):
    app = scratch / "touch_app.py"
    write_app(app, "v0")
    touch = scratch / "reload.touch"
    touch.write_text("")
    gw = start(gateways, "p-touch", app, "--touch-reload", str(touch), processes=1, threads=1)
    assert direct(gw)["version"] == "v0"
    write_app(app, "v1")
    time.sleep(1.5)
    assert direct(gw)["version"] == "v0", "reloaded without a touch"
    mark = gw.log.mark()
    future = time.time() + 10
    os.utime(touch, (future, future))
    assert wait_until(lambda: direct(gw)["version"] == "v1", 5), gw.describe(mark)
    assert gw.log.lines_matching(rf"--touch-reload {touch} changed", since=mark)


@pytest.mark.parametrize("preload", [False, True], ids=["fork", "preload-reexec"])
def test_a_reload_with_broken_code_keeps_the_old_workers_serving(gateways, scratch, preload):
    name = "p-broken-preload" if preload else "p-broken"
    app = scratch / "broken_app.py"
    write_app(app, "v0")
    gw = start(gateways, name, app, *(["--preload"] if preload else []), processes=2, threads=1)
    workers = set(gw.workers())
    write_app(app, "v1", broken=True)
    mark = gw.log.mark()
    gw.send_signal(signal.SIGHUP)
    assert gw.log.wait_for(r"reload failed", since=mark, timeout=15), gw.describe(mark)
    assert "broken on purpose" in gw.log.text(mark)
    for _ in range(10):
        assert direct(gw)["version"] == "v0"
    time.sleep(0.5)
    assert set(gw.workers()) == workers, "the old workers were stopped"
    assert gw.alive()
    # Fixed: the next reload serves it.
    write_app(app, "v2")
    mark = gw.log.mark()
    gw.send_signal(signal.SIGHUP)
    assert gw.log.wait_for(r"reloaded: generation \d+ is serving", since=mark, timeout=15), gw.describe(mark)
    assert wait_until(lambda: direct(gw)["version"] == "v2", 5)
    assert wait_until(lambda: not set(gw.workers()) & workers, 10)


def test_an_app_that_cannot_load_stops_the_master_instead_of_looping(gateways):
    gw = gateways.make("p-import", ["--chdir", str(APPS), "--app", "broken_import:application",
                                    "--processes", "3"], env=ENV)
    gw.spawn()
    code = gw.wait_exit(timeout=20)
    log = gw.output()
    assert code != 0, log
    assert "broken_import fails on purpose" in log and "Traceback" in log
    assert "could not load the application" in log
    assert log.count("started (generation 1)") <= 3, "the master kept starting workers"
    assert not os.path.exists(gw.socket)


def test_workers_stop_when_the_master_dies(gateways):
    gw = start(gateways, "p-orphans", processes=2, threads=1)
    workers = gw.workers()
    gw.proc.kill()
    gw.proc.wait()

    def gone():
        return not any(os.path.exists(f"/proc/{pid}") and child_state(pid) != "Z" for pid in workers)

    assert wait_until(gone, 10), f"workers {workers} outlived their master"


def child_state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"


def test_sigquit_stops_at_once(gateways, scratch):
    gw = start(gateways, "p-sigquit", processes=2, threads=2)
    arrived = scratch / "arrived.txt"
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow = pool.submit(scgi_exchange, gw.socket,
                           scgi_head(scgi_params("GET", "/slow", query=f"seconds=30&path={arrived}")), timeout=30)
        assert wait_until(arrived.exists, 10)
        began = time.monotonic()
        gw.send_signal(signal.SIGQUIT)
        assert gw.wait_exit(timeout=5) == 0
        assert time.monotonic() - began < 3
        assert slow.result(timeout=10) == b""
    assert not os.path.exists(gw.socket)


def test_timeout_answers_504_logs_the_stack_and_replaces_only_that_worker(gateways, private_nginx):
    # One worker with 4 threads: the stuck request shares it with the load.
    gw = start(gateways, "p-timeout", APP, "--timeout", "2", processes=1, threads=4)
    front = private_nginx("p-timeout", gw)
    (before,) = gw.workers()
    load = Load(front.port, clients=2).start()
    time.sleep(0.5)
    mark = gw.log.mark()
    began = time.monotonic()
    r = http_request(front.port, "GET", "/slow?seconds=60", timeout=30)
    elapsed = time.monotonic() - began
    assert (r.status, r.body) == (504, b"Gateway Timeout\n"), (r.status, r.body[:200], gw.describe(mark))
    assert 1.9 <= elapsed <= 4.0, f"the 504 came after {elapsed:.2f} s"
    logged = gw.log.wait_for(r"ERROR", r"GET /slow\?seconds=60", r"past --timeout 2s", r"answered 504",
                             since=mark, timeout=5)
    assert logged, gw.describe(mark)
    text = gw.log.text(mark)
    assert "processes_app.py" in text and "time.sleep" in text, "no Python stack in the log"
    # The worker retires; a new one serves, and the load never failed.
    assert wait_until(lambda: gw.workers() and before not in gw.workers(), 10), gw.describe(mark)
    time.sleep(0.5)
    results = load.stop()
    assert len(results) > 20, "too little load to judge"
    assert not failures(results), failures(results)[:5]
    after = answer(front.port)
    assert after["pid"] != before
    assert gw.log.lines_matching(r"timed out; exiting without waiting", since=mark), gw.describe(mark)


def test_a_sighup_storm_with_preload_counts_no_crash_and_backs_off_from_nothing(gateways, scratch):
    # Each reload re-executes the master, which imports the app (slowly here)
    # before it adopts the workers of the image before it. A storm of
    # SIGHUPs re-executes while the previous reload's old workers still
    # finish their slow requests, so that they exit 0 during an import: the
    # normal end of a worker told to stop, not a crash to replace or to back
    # off from.
    app = scratch / "storm_app.py"
    app.write_text(APP_SOURCE + "\ntime.sleep(1.0)  # a slow import\n")
    gw = start(gateways, "p-hup-storm", app, "--preload", processes=2, threads=2)
    mark = gw.log.mark()
    arrived = scratch / "storm-arrived.txt"
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        slow = [
            pool.submit(scgi_request, gw.socket, "GET", "/slow",
                        query=f"seconds=3&path={arrived}", timeout=60)
            for _ in range(4)
        ]
        assert wait_until(lambda: arrived.exists() and len(arrived.read_text().split()) == 4, 10), (
            gw.describe(mark)
        )
        reloads = 0
        while not all(f.done() for f in slow) or reloads < 3:
            hup = gw.log.mark()
            gw.send_signal(signal.SIGHUP)
            assert gw.log.wait_for(r"reloaded: generation \d+ is serving", since=hup, timeout=30), (
                gw.describe(mark)
            )
            reloads += 1
            assert reloads < 20, gw.describe(mark)
        assert [f.result().status for f in slow] == [200] * 4, gw.describe(mark)
    assert wait_until(lambda: len(gw.workers()) == 2, 15), gw.describe(mark)
    crashes = gw.log.lines_matching(r"\bdied\b|within a second of starting|waiting .* before starting",
                                    since=mark)
    assert not crashes, f"{reloads} reloads\n" + "\n".join(crashes) + "\n" + gw.describe(mark)
    assert gw.log.lines_matching(r"still finishing their requests", since=mark), gw.describe(mark)
    pids = {direct(gw)["pid"] for _ in range(20)}
    assert pids <= set(gw.workers()), gw.describe(mark)
    assert gw.terminate(timeout=30) == 0, gw.describe(mark)
