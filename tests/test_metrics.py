"""--metrics, the status command and the master's signals (issue 14, items 4
and 5), against the real binary:

- /metrics is valid for `promtool check metrics` and a real Prometheus
  (Debian's package) scrapes it; its values move as requests of each
  protocol are served (one gateway with --proto auto takes all three);
- a slow request shows as a busy thread (/metrics, /status.json and
  `rustgi-gateway status`), and the endpoint answers while every thread is
  busy; stopped workers (SIGSTOP) let the listen queue grow, and the
  backlog gauge shows it;
- a killed worker's counts stay in the totals, the respawn is counted and
  its in-flight request is logged by the master;
- 404 and 405; an address that cannot be bound is refused at start;
- SIGUSR1, SIGUSR2 and meaningless signals no longer kill the master (they
  did: exit 138/140, socket file and pidfile left behind); a worker's
  SIGUSR2 still means "replaced: drain".
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request

import pytest

import uwsgi_client
from fcgi_client import FcgiConnection, responder_params
from harness import APPS, free_port, scgi_request, wait_until

APP = str(APPS / "processes_app.py")


def start(gateways, name, *args, processes=1, threads=2, metrics=True, env=None):
    port = free_port()
    extra = ["--metrics", f"127.0.0.1:{port}"] if metrics else []
    gw = gateways.start(
        name,
        ["--app", APP, "--processes", str(processes), "--threads", str(threads), *extra, *args],
        proto="auto",
        env=env,
    )
    assert gw.log.wait_for(rf"\b{processes} worker\(s\) ready", timeout=20), gw.describe()
    gw.metrics_port = port
    return gw


def get(gw, path, method="GET"):
    req = urllib.request.Request(f"http://127.0.0.1:{gw.metrics_port}{path}", method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def metrics(gw) -> str:
    status, text = get(gw, "/metrics")
    assert status == 200, text
    return text


def value(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {series} in\n{text}")


def requests_of(text, protocol, klass="2xx", ended="complete"):
    return value(text, f'rustgi_requests_total{{protocol="{protocol}",class="{klass}",ended="{ended}"}}')


def fastcgi_get(gw, path="/", query=""):
    with FcgiConnection(gw.socket) as conn:
        conn.request(1, responder_params("GET", path, query=query), keep_conn=False)
        reply = conn.read_end(1, 10)
    assert b"200 OK" in reply.stdout, reply.stdout[:200]


def slow_in_background(gw, seconds, extra=()):
    """An SCGI /slow request on a thread of its own; join it to wait. Its
    answer (or the exception that replaced it) lands in `t.outcome`."""
    def run():
        try:
            t.outcome = scgi_request(gw.socket, path="/slow", query=f"seconds={seconds}", extra=extra,
                                     timeout=seconds + 20)
        except (AssertionError, OSError) as e:
            t.outcome = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_values_move_with_each_protocol_and_promtool_accepts_them(gateways, tmp_path):
    gw = start(gateways, "metrics-protocols", processes=2)
    before = metrics(gw)
    for p in ("scgi", "uwsgi", "fastcgi"):
        assert requests_of(before, p) == 0
    for _ in range(3):
        assert scgi_request(gw.socket, path="/").status == 200
    r = scgi_request(gw.socket, "POST", path="/", body=b"x" * 1000)
    assert r.status == 200
    for _ in range(2):
        assert uwsgi_client.request(gw.socket, path="/").status == 200
    fastcgi_get(gw)
    # The counters are written as each request ends, the answer may come
    # just before: wait for them rather than race.
    assert wait_until(lambda: value(metrics(gw), "rustgi_request_duration_seconds_count") == 7, 10), metrics(gw)
    text = metrics(gw)
    assert requests_of(text, "scgi") == 4
    assert requests_of(text, "uwsgi") == 2
    assert requests_of(text, "fastcgi") == 1
    assert value(text, 'rustgi_request_duration_seconds_bucket{le="+Inf"}') == 7
    assert value(text, "rustgi_request_body_bytes_total") == 1000
    assert value(text, "rustgi_response_bytes_total") > 7 * 50
    assert value(text, "rustgi_workers") == 2
    assert value(text, "rustgi_threads") == 4
    assert sum(value(text, f'rustgi_worker_requests_total{{worker="{w}"}}') for w in (1, 2)) == 7
    assert value(text, 'rustgi_worker_resident_memory_bytes{worker="1"}') > 1 << 20
    assert re.search(r'^rustgi_build_info\{version="[^"]+",python="3\.\d+\.\d+"\} 1$', text, re.M), text
    assert value(text, "rustgi_listen_backlog_limit") > 0
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: run the suite through tests/run, which installs it"
    checked = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True)
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()


def test_a_real_prometheus_scrapes_every_metric(gateways, tmp_path):
    binary = shutil.which("prometheus")
    assert binary, "prometheus is missing: run the suite through tests/run, which installs it"
    gw = start(gateways, "metrics-prometheus")
    assert scgi_request(gw.socket, path="/").status == 200
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n  - job_name: rustgi\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{gw.metrics_port}']\n"
    )
    log = open(tmp_path / "prometheus.log", "wb")
    prom = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=log,
    )
    try:
        def query(q):
            url = f"http://127.0.0.1:{port}/api/v1/query?query={urllib.parse.quote(q)}"
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:
                    return json.load(resp)["data"]["result"]
            except OSError:
                return []

        assert wait_until(lambda: query('up{job="rustgi"} == 1'), 60), (tmp_path / "prometheus.log").read_text()[-3000:]
        assert wait_until(lambda: query('rustgi_requests_total{protocol="scgi",class="2xx",ended="complete"} == 1'), 30)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/label/__name__/values", timeout=5) as resp:
            names = set(json.load(resp)["data"])
        ours = {line.split()[2] for line in metrics(gw).splitlines() if line.startswith("# TYPE ")}
        for name in ours:
            if name == "rustgi_request_duration_seconds":
                name += "_bucket"
            assert name in names, (name, sorted(n for n in names if n.startswith("rustgi")))
        # What scrapes say about the scrape itself: no sample was rejected.
        assert query('scrape_samples_post_metric_relabeling{job="rustgi"} > 100')
    finally:
        prom.terminate()
        prom.wait(timeout=30)
        log.close()


def test_a_slow_request_shows_busy_and_the_endpoint_answers_while_every_thread_is(gateways, tmp_path):
    pidfile = tmp_path / "gw.pid"
    gw = start(gateways, "metrics-busy", "--pidfile", str(pidfile), processes=1, threads=1)
    slow = slow_in_background(gw, 4)
    assert wait_until(lambda: value(metrics(gw), "rustgi_threads_busy") == 1, 10), metrics(gw)
    text = metrics(gw)
    assert value(text, 'rustgi_worker_threads{worker="1",state="busy"}') == 1
    assert value(text, 'rustgi_worker_threads{worker="1",state="idle"}') == 0
    status = json.loads(get(gw, "/status.json")[1])
    (worker,) = status["workers"]
    (thread,) = worker["threads"]
    assert thread["busy"] and thread["method"] == "GET" and thread["path"] == "/slow", status
    assert worker["pid"] == gw.workers()[0]
    assert status["totals"]["requests"] == 0
    # The status command, both ways; the --pidfile way needs no --metrics.
    for how in (["--pidfile", str(pidfile)], ["--metrics", f"127.0.0.1:{gw.metrics_port}"]):
        out = subprocess.run([str(gw.binary), "status", *how], capture_output=True, text=True, timeout=10)
        assert out.returncode == 0, out.stderr
        assert re.search(rf"^worker 1 pid {worker['pid']}: age [\d.]+\w+, 0 requests, RSS [\d.]+ MiB, 1 of 1 threads busy$",
                         out.stdout, re.M), out.stdout
        assert re.search(r"^  thread 0: GET /slow\?seconds=4 for [\d.]+m?s$", out.stdout, re.M), out.stdout
    slow.join(30)
    assert wait_until(lambda: value(metrics(gw), "rustgi_threads_busy") == 0, 10)
    assert value(metrics(gw), "rustgi_request_duration_seconds_count") == 1


def test_status_by_pidfile_works_without_metrics(gateways, tmp_path):
    pidfile = tmp_path / "gw.pid"
    gw = start(gateways, "metrics-none", "--pidfile", str(pidfile), metrics=False)
    out = subprocess.run([str(gw.binary), "status", "--pidfile", str(pidfile)], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stderr
    assert "1 of 1 workers" in out.stdout, out.stdout
    out = subprocess.run([str(gw.binary), "status", "--pidfile", str(pidfile), "--json"], capture_output=True, text=True, timeout=10)
    assert json.loads(out.stdout)["workers"][0]["pid"] == gw.workers()[0]
    # A pidfile naming no master: said, exit 1.
    other = tmp_path / "other.pid"
    other.write_text("999999\n")
    out = subprocess.run([str(gw.binary), "status", "--pidfile", str(other)], capture_output=True, text=True, timeout=10)
    assert out.returncode == 1 and "could not ask master 999999" in out.stderr, out.stderr


def all_threads_stopped(pid: int) -> bool:
    """kill(SIGSTOP) returns before every thread of `pid` has stopped: one
    still running could accept a connection."""
    states = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = open(f"/proc/{pid}/task/{task}/stat").read()
        except FileNotFoundError:
            continue
        states.append(stat.rsplit(")", 1)[1].split()[0])
    return bool(states) and all(state in ("T", "t") for state in states)


def test_stopped_workers_let_the_backlog_grow(gateways):
    gw = start(gateways, "metrics-backlog", processes=1)
    # The harness' readiness connection may still sit in the queue.
    assert wait_until(lambda: value(metrics(gw), "rustgi_listen_backlog_depth") == 0, 10), metrics(gw)
    (worker,) = gw.workers()
    os.kill(worker, signal.SIGSTOP)
    assert wait_until(lambda: all_threads_stopped(worker), 10), "the worker's threads did not all stop"
    waiting = []
    try:
        for _ in range(5):
            s = socket.socket(socket.AF_UNIX)
            s.connect(gw.socket)
            waiting.append(s)
        assert value(metrics(gw), "rustgi_listen_backlog_depth") == 5
    finally:
        os.kill(worker, signal.SIGCONT)
        for s in waiting:
            s.close()
    assert wait_until(lambda: value(metrics(gw), "rustgi_listen_backlog_depth") == 0, 10)


def test_a_killed_workers_counts_stay_and_its_request_is_logged(gateways, tmp_path):
    access_log = tmp_path / "access.json"
    gw = start(gateways, "metrics-kill", "--access-log", str(access_log), "--access-log-format", "json",
               "--request-id-header", "X-Request-Id", processes=1, threads=2)
    for _ in range(5):
        assert scgi_request(gw.socket, path="/", query="n=1").status == 200
    assert wait_until(lambda: value(metrics(gw), "rustgi_request_duration_seconds_count") == 5, 10)
    # The worker writes its lines every 100 ms: a SIGKILL loses what it
    # had not written yet, so wait for them.
    assert wait_until(lambda: len(access_log.read_bytes().splitlines()) == 5, 10)
    slow = slow_in_background(gw, 30, extra=[("HTTP_X_REQUEST_ID", "the-doomed-one")])
    assert wait_until(lambda: value(metrics(gw), "rustgi_threads_busy") == 1, 10)
    (worker,) = gw.workers()
    mark = gw.log.mark()
    os.kill(worker, signal.SIGKILL)
    assert gw.log.wait_for(r"\b1 worker\(s\) ready|worker \d+ ready", timeout=20, since=mark), gw.describe()
    text = metrics(gw)
    assert requests_of(text, "scgi") == 5, text
    assert value(text, 'rustgi_worker_respawns_total{cause="crash"}') == 1
    assert value(text, "rustgi_workers") == 1
    assert gw.log.lines_matching(rf"worker 1 \(pid {worker}\) killed by signal 9 .* while running request the-doomed-one GET /slow\?seconds=30", since=mark), gw.describe()
    slow.join(30)
    assert isinstance(slow.outcome, AssertionError), "its client got no answer"
    # Its access-log line, written by the master from what the worker put
    # on the board when the request began.
    lines = [json.loads(raw) for raw in access_log.read_bytes().splitlines()]
    killed = [line for line in lines if line["ended"] == "killed"]
    assert len(killed) == 1, lines
    assert killed[0]["request_id"] == "the-doomed-one", killed
    assert (killed[0]["method"], killed[0]["path"], killed[0]["query"]) == ("GET", "/slow", "seconds=30"), killed
    assert killed[0]["pid"] == worker and killed[0]["status"] is None, killed
    assert sum(line["ended"] == "complete" for line in lines) == 5, lines


def test_totals_and_counters_cross_a_preload_reload(gateways):
    """--preload reloads re-execute the master: the scoreboard's memfd is
    handed over, so the totals and the counters go on."""
    gw = start(gateways, "metrics-preload", "--preload", processes=2)
    for _ in range(4):
        assert scgi_request(gw.socket, path="/").status == 200
    assert wait_until(lambda: value(metrics(gw), "rustgi_request_duration_seconds_count") == 4, 10)
    old = set(gw.workers())
    mark = gw.log.mark()
    gw.send_signal(signal.SIGHUP)
    assert gw.log.wait_for(r"reloaded: generation", timeout=30, since=mark), gw.describe()
    assert wait_until(lambda: not (set(gw.workers()) & old) and len(gw.workers()) == 2, 30), gw.describe()
    assert scgi_request(gw.socket, path="/").status == 200
    assert wait_until(lambda: value(metrics(gw), "rustgi_request_duration_seconds_count") == 5, 10), metrics(gw)
    text = metrics(gw)
    assert value(text, "rustgi_reloads_total") == 1
    assert value(text, 'rustgi_worker_respawns_total{cause="crash"}') == 0
    assert value(text, "rustgi_workers") == 2


def test_only_the_pages_and_only_get(gateways):
    gw = start(gateways, "metrics-404")
    assert get(gw, "/nope")[0] == 404
    assert get(gw, "/metrics", method="POST")[0] == 405
    assert get(gw, "/metrics", method="DELETE")[0] == 405
    status, html = get(gw, "/")
    assert status == 200 and "<html" in html.lower() or "<!doctype html" in html.lower()
    assert get(gw, "/status.json")[0] == 200


def test_a_unix_socket_metrics_path(gateways, run_dir):
    path = run_dir / "metrics-unix.sock"
    gw = gateways.start("metrics-unix", ["--app", APP, "--metrics", str(path)], proto="auto")
    out = subprocess.run(["curl", "-sS", "--unix-socket", str(path), "http://x/metrics"], capture_output=True, text=True, timeout=10)
    assert "rustgi_workers 1" in out.stdout, out.stderr
    assert gw.terminate() == 0
    assert not path.exists(), "the metrics socket file is removed at exit"


@pytest.mark.parametrize("addr, why", [("192.0.2.1:9", "Cannot assign requested address"), ("no-such-host.invalid:9", "")])
def test_an_address_that_cannot_be_bound_is_refused_at_start(gateways, addr, why):
    gw = gateways.make(f"metrics-refused-{addr.split(':')[0]}", ["--app", APP, "--metrics", addr], proto="auto")
    gw.spawn()
    assert gw.wait_exit(20) != 0
    assert f"--metrics {addr}:" in gw.output() and why in gw.output(), gw.output()


def test_a_port_in_use_is_refused_at_start(gateways):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        gw = gateways.make("metrics-in-use", ["--app", APP, "--metrics", f"127.0.0.1:{port}"], proto="auto")
        gw.spawn()
        assert gw.wait_exit(20) != 0
        assert "Address already in use" in gw.output(), gw.output()


def test_signals_mean_what_operators_expect(gateways, tmp_path):
    pidfile = tmp_path / "gw.pid"
    gw = start(gateways, "metrics-signals", "--pidfile", str(pidfile), processes=2)
    (w1, w2) = gw.workers()
    mark = gw.log.mark()
    gw.send_signal(signal.SIGUSR1)
    assert gw.log.wait_for(r"SIGUSR1: reopening the log files \(and telling 2 worker", timeout=10, since=mark), gw.describe()
    gw.send_signal(signal.SIGUSR2)
    assert gw.log.wait_for(r"SIGUSR2: live status:", timeout=10, since=mark), gw.describe()
    assert gw.log.wait_for(rf"worker \d pid {w1}: age", timeout=10, since=mark), gw.describe()
    for sig in (signal.SIGALRM, signal.SIGVTALRM, signal.SIGPROF, signal.SIGPWR, signal.SIGIO, signal.SIGPIPE):
        gw.send_signal(sig)
    assert gw.log.wait_for(r"SIGIO received: it means nothing to rustgi-gateway; ignored", timeout=10, since=mark)
    assert gw.log.wait_for(r"SIGALRM received: it means nothing", timeout=10, since=mark)
    time.sleep(0.5)
    assert gw.alive(), gw.describe()
    # The workers lived through SIGUSR1 (forwarded to them), and serve.
    assert sorted(gw.workers()) == sorted([w1, w2])
    assert scgi_request(gw.socket, path="/").status == 200
    # A worker's SIGUSR2 still means "replaced: finish and go".
    os.kill(w1, signal.SIGUSR2)
    assert gw.log.wait_for(rf"worker\{{pid={w1}\}}.*replaced \(SIGUSR2\)", timeout=10, since=mark), gw.describe()
    assert wait_until(lambda: w1 not in gw.workers() and len(gw.workers()) == 2, 20), gw.describe()
    assert gw.terminate() == 0
    assert not os.path.exists(gw.socket), "socket file left behind"
    assert not pidfile.exists(), "pidfile left behind"


def test_systemd_status_line_shows_the_load(gateways, run_dir):
    address = str(run_dir / "metrics-notify.notify")
    if os.path.exists(address):
        os.unlink(address)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(address)
        gw = gateways.start("metrics-notify", ["--app", APP, "--threads", "3"], proto="auto",
                            env={"NOTIFY_SOCKET": address})
        assert scgi_request(gw.socket, path="/").status == 200
        notify.settimeout(1.0)
        deadline = time.monotonic() + 20
        seen = []
        while time.monotonic() < deadline:
            try:
                seen.append(notify.recv(4096).decode())
            except socket.timeout:
                continue
            if re.search(r"^STATUS=1 of 1 workers, 0/3 threads busy, 1 requests on unix:", seen[-1], re.M):
                break
        else:
            raise AssertionError(f"no load in STATUS= within 20 s: {seen}")


def test_an_idle_connection_is_closed_past_its_deadline(gateways):
    """Nothing else happens on the endpoint: the master still closes it
    (it only did when another endpoint socket was ready, and polled with a
    1 ms timeout meanwhile)."""
    gw = start(gateways, "metrics-idle")
    with socket.create_connection(("127.0.0.1", gw.metrics_port)) as idle:
        idle.settimeout(15)
        assert idle.recv(1) == b"", "closed by the master, no answer"


def test_idle_connections_do_not_lock_scrapes_out(gateways):
    gw = start(gateways, "metrics-slowloris")
    idle = [socket.create_connection(("127.0.0.1", gw.metrics_port)) for _ in range(40)]
    try:
        for s in idle[:5]:
            s.sendall(b"GET /metrics HTTP/1.1\r\n")  # never finished
        for _ in range(3):
            assert "rustgi_workers 1" in metrics(gw)
    finally:
        for s in idle:
            s.close()


def board_fd_flags(pid: int) -> int:
    """The flags (fdinfo) of the scoreboard's memfd in process `pid`."""
    for fd in os.listdir(f"/proc/{pid}/fd"):
        if "rustgi-scoreboard" in os.readlink(f"/proc/{pid}/fd/{fd}"):
            info = open(f"/proc/{pid}/fdinfo/{fd}").read()
            return int(re.search(r"^flags:\s+(\d+)", info, re.M).group(1), 8)
    raise AssertionError(f"no scoreboard memfd in {pid}")


def test_the_board_stays_close_on_exec_across_a_preload_reload(gateways):
    gw = start(gateways, "metrics-board-cloexec", "--preload", processes=1)
    assert board_fd_flags(gw.pid) & os.O_CLOEXEC
    mark = gw.log.mark()
    gw.send_signal(signal.SIGHUP)
    assert gw.log.wait_for(r"reloaded: generation", timeout=30, since=mark), gw.describe()
    assert board_fd_flags(gw.pid) & os.O_CLOEXEC, "the app's subprocesses would inherit the board"


def test_a_board_fd_in_the_environment_is_ignored_at_a_first_start(gateways):
    """RUSTGI_BOARD_FD only means something after our own re-exec: at any
    other start the number is someone else's descriptor (here fd 0), which
    the master must neither take nor close."""
    gw = start(gateways, "metrics-board-env", env={"RUSTGI_BOARD_FD": "0"})
    assert os.path.exists(f"/proc/{gw.pid}/fd/0"), "the master closed fd 0"
    assert not gw.log.lines_matching(r"scoreboard .* unusable|is no scoreboard"), gw.describe()
    assert "rustgi_workers 1" in metrics(gw)


def test_status_refuses_a_status_socket_held_by_another_process(gateways, tmp_path):
    """Anyone can bind an abstract name first: `status --pidfile` checks
    that the socket's peer is the pid the pidfile names."""
    decoy = subprocess.Popen(["sleep", "60"])
    try:
        with socket.socket(socket.AF_UNIX) as squatter:
            squatter.bind(f"\0rustgi-gateway/{decoy.pid}/status")
            squatter.listen()

            def answer():
                try:
                    conn, _ = squatter.accept()
                    with conn:
                        conn.recv(4096)
                        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged")
                except OSError:
                    pass  # the status command left without asking

            threading.Thread(target=answer, daemon=True).start()
            pidfile = tmp_path / "decoy.pid"
            pidfile.write_text(f"{decoy.pid}\n")
            binary = gateways.make("metrics-decoy", ["--app", APP]).binary
            out = subprocess.run([str(binary), "status", "--pidfile", str(pidfile)], capture_output=True, text=True, timeout=20)
            assert out.returncode != 0 and "forged" not in out.stdout, out
            assert "not by the master" in out.stderr, out.stderr
    finally:
        decoy.kill()
        decoy.wait()


def test_status_gives_up_on_a_metrics_address_that_never_answers(gateways):
    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen()  # the kernel accepts; nobody answers
        port = mute.getsockname()[1]
        binary = gateways.make("metrics-mute", ["--app", APP]).binary
        out = subprocess.run([str(binary), "status", "--metrics", f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=30)
        assert out.returncode != 0, out


def test_a_killed_workers_line_keeps_a_long_request_id_and_marks_what_the_board_cut(gateways, tmp_path):
    access_log = tmp_path / "access.json"
    gw = start(gateways, "metrics-kill-cut", "--access-log", str(access_log), "--access-log-format", "json",
               "--request-id-header", "X-Request-Id", processes=1, threads=1)
    request_id = "r" * 128  # the longest trusted id
    query = "seconds=30&pad=" + "q" * 200  # longer than the board's 128 bytes

    def run():
        try:
            scgi_request(gw.socket, path="/slow", query=query, extra=[("HTTP_X_REQUEST_ID", request_id)], timeout=50)
        except (AssertionError, OSError):
            pass

    slow = threading.Thread(target=run, daemon=True)
    slow.start()
    assert wait_until(lambda: value(metrics(gw), "rustgi_threads_busy") == 1, 10)
    (worker,) = gw.workers()
    mark = gw.log.mark()
    os.kill(worker, signal.SIGKILL)
    assert gw.log.wait_for(r"worker \d+ ready", timeout=20, since=mark), gw.describe()
    assert wait_until(lambda: access_log.exists() and access_log.read_bytes().strip(), 10)
    (killed,) = [json.loads(raw) for raw in access_log.read_bytes().splitlines()]
    assert killed["ended"] == "killed", killed
    assert killed["request_id"] == request_id, killed
    assert killed["query"] == query[:128] + "...[cut]", killed
    slow.join(30)
