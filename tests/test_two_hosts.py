"""More than one machine (issue 15, item 6): nginx balancing over two rustgi
hosts with examples/nginx-two-hosts.conf, used as written (only its
addresses and port replaced). Each host is a network namespace on a
bridge (tests/hosts.py); each gateway serves FastCGI on TCP with
`--allow-from` the front's address, with two worker processes.

Under load (client threads through nginx, GETs and POSTs alternating, each
outcome counted):
- a deploy by SIGHUP on one host loses nothing;
- a rolling restart (SIGTERM, which drains, then a new start) of one host
  after the other loses nothing;
- SIGKILL to one host's whole gateway (its process group: the master and
  its workers, as a crash or an OOM kill of its cgroup) loses at most the
  requests in flight there, and only POSTs: nginx retries a GET on the
  other host (`fastcgi_next_upstream error timeout`, its default) but not
  a POST it has sent (nginx >= 1.9.13 never retries a non-idempotent
  request once sent, unless `non_idempotent` is added); and nginx fails
  over: the requests after the kill are all served by the other host;
- SIGKILL to the master alone is not a crash of the host: its workers get
  SIGTERM (PR_SET_PDEATHSIG) and drain, and none is left serving.

See README, "More than one host", and bench/two_hosts.py for the figures
with nginx's default max_fails.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from harness import wait_until
from hosts import PROCESSES, FrontNginx, HostGateways, Lan, Load

@pytest.fixture(scope="module")
def lan():
    if os.geteuid() != 0:
        pytest.fail("network namespaces need root: run the suite as root (tests/run)")
    made = Lan(2)
    yield made
    problems = made.close()
    assert not problems, problems


@pytest.fixture(scope="module")
def front(nginx_binary, run_dir, log_dir, lan):
    own_dir = run_dir / "nginx-two-hosts"
    own_dir.mkdir(mode=0o755, exist_ok=True)
    server = FrontNginx(nginx_binary, own_dir, log_dir / "nginx-two-hosts", lan).start()
    yield server
    server.stop()


@pytest.fixture
def hosts(lan, gateway_bin, log_dir, scratch):
    made = HostGateways(lan, gateway_bin, log_dir, scratch)
    try:
        for host in lan.hosts:
            made.start(host.name)
        yield made
    finally:
        problems = made.stop_all()
    assert not problems, problems


def explain(tally, hosts, front, origin: float | None = None) -> str:
    """The tally, its failures (with their start and end relative to
    `origin` when given: the moment a host went), the gateways' logs and
    nginx's."""
    lines = [tally.summary()]
    for o in tally.failed()[:10]:
        when = "" if origin is None else f", {o.start - origin:+.3f} s to {o.end - origin:+.3f} s from the host's end"
        lines.append(f"  {o.method} status {o.status} error {o.error} ({o.end - o.start:.3f} s{when})")
    return "\n".join(lines) + f"\n{hosts.describe()}\nnginx: {front.error_log.tail(15)}"


def wait_served(load, host: str, after: float, what: str, version: str | None = None):
    """Waits until a request started after `after` was served by `host`."""

    def seen():
        return any(version is None or o.version == version for o in load.tally.served_by(host, after))

    assert wait_until(seen, 30), f"{what}: no request reached host {host}: {load.tally.summary()}"


def test_a_deploy_by_sighup_on_one_host_loses_nothing(front, hosts):
    a = hosts.gateways["a"]
    with Load(front.port) as load:
        load.wait_requests(200)
        mark = a.log.mark()
        hosts.version_files["a"].write_text("v2\n")
        began = time.monotonic()
        a.send_signal(signal.SIGHUP)
        assert a.log.wait_for(r"reloaded: generation \d+ is serving", since=mark, timeout=30), a.describe(mark)
        wait_served(load, "a", began, "after the reload", version="v2")
        load.wait_requests(200)
    tally = load.tally
    print(f"SIGHUP on host a: {tally.summary()}")
    assert not tally.failed(), explain(tally, hosts, front)
    assert tally.served_by("b", began), "host b served nothing during the deploy"


def test_a_rolling_restart_loses_nothing(front, hosts):
    with Load(front.port) as load:
        load.wait_requests(200)
        for name, gw in hosts.gateways.items():
            mark = gw.log.mark()
            gw.send_signal(signal.SIGTERM)
            assert gw.wait_exit(timeout=40) == 0, gw.describe(mark)
            # While it is down, the other host serves everything.
            load.wait_requests(100)
            hosts.start(name)
            wait_served(load, name, time.monotonic(), "after its restart")
        load.wait_requests(200)
    tally = load.tally
    print(f"rolling restart of hosts a and b: {tally.summary()}")
    assert not tally.failed(), explain(tally, hosts, front)


def assert_lost_at_most_in_flight_posts(tally, before: float, gone: float, clients: int, hosts, front):
    """Every failure was a POST in flight while host b went (begun before
    `gone`, ended after `before`), answered 502; at most one per client,
    since each has one request in flight at a time. nginx retries a GET
    on the other host, never a POST it has sent. Then it fails over:
    everything that began after `gone` was served, by host a."""
    failed = tally.failed()
    in_flight = [o for o in tally.outcomes if o.start <= gone and o.end >= before]
    assert all(o in in_flight for o in failed), explain(tally, hosts, front, gone)
    assert len(failed) <= clients, explain(tally, hosts, front, gone)
    assert all(o.method == "POST" and o.status == 502 for o in failed), explain(tally, hosts, front, gone)
    after = [o for o in tally.outcomes if o.start > gone]
    assert after and all(o.ok and o.host == "a" for o in after), explain(tally, hosts, front, gone)


def workers_gone(workers: list[int]) -> bool:
    return all(not os.path.exists(f"/proc/{pid}") or _zombie(pid) for pid in workers)


def test_kill_9_of_one_host_loses_at_most_its_in_flight_posts(front, hosts):
    # The host's gateway is its process group: the master and its workers.
    b = hosts.gateways["b"]
    with Load(front.port, ms=20) as load:
        load.wait_requests(200)
        before = time.monotonic()
        workers = b.kill_hard()
        assert len(workers) == PROCESSES, workers
        # The kill returns once the master is reaped; a worker may take a
        # few more milliseconds to exit, and serves (or loses) what nginx
        # sends it until then. Host b is gone when its workers are.
        assert wait_until(lambda: workers_gone(workers), 10, interval=0.002), \
            f"workers of host b outlived the kill: {workers}"
        gone = time.monotonic()
        load.wait_requests(300)
    print(f"kill -9 of host b's gateway: {load.tally.summary()}")
    assert_lost_at_most_in_flight_posts(load.tally, before, gone, load.clients, hosts, front)


def test_kill_9_of_the_master_alone_stops_its_workers(front, hosts):
    # Each worker gets SIGTERM when its master dies, and drains: no
    # worker is left serving without a master to replace it.
    b = hosts.gateways["b"]
    with Load(front.port, ms=20) as load:
        load.wait_requests(200)
        workers = b.workers()
        before = time.monotonic()
        b.proc.send_signal(signal.SIGKILL)
        assert wait_until(lambda: workers_gone(workers), 30, interval=0.002), \
            f"workers of host b outlived their master: {workers}\n{b.describe()}"
        gone = time.monotonic()
        load.wait_requests(300)
    print(f"kill -9 of host b's master alone: {load.tally.summary()}")
    assert_lost_at_most_in_flight_posts(load.tally, before, gone, load.clients, hosts, front)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True
