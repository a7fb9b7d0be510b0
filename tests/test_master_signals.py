"""The master's signals at their edges (issue 14, item 5: a signal never
kills the master or a worker silently), against the real binary:

- a SIGUSR1 the master forwards to a worker it has just forked reaches the
  worker while SIGUSR1 is still blocked (the master's mask is inherited);
  the worker must not die of it when it lifts the mask;
- real-time signals (SIGRTMIN..SIGRTMAX), which no one gives a meaning to,
  are logged and ignored like the other meaningless ones.
"""

from __future__ import annotations

import signal
import time

from harness import APPS, scgi_request, wait_until

APP = str(APPS / "processes_app.py")


def start(gateways, name, *args, processes=1, threads=1):
    gw = gateways.start(
        name,
        ["--app", APP, "--processes", str(processes), "--threads", str(threads), *args],
        proto="scgi",
    )
    assert gw.log.wait_for(rf"\b{processes} worker\(s\) ready", timeout=20), gw.describe()
    return gw


def test_sigusr1_right_after_a_fork_does_not_kill_the_new_worker(gateways):
    gw = start(gateways, "sig-usr1-fork")
    first = gw.log.mark()
    for _ in range(40):
        # SIGTTIN forks a worker; a SIGUSR1 behind it is forwarded to every
        # worker, the one just forked among them. Several, a little apart,
        # so that one lands while the new worker is still starting.
        gw.send_signal(signal.SIGTTIN)
        for pause in (0, 0.0002, 0.0005, 0.001, 0.002, 0.005):
            time.sleep(pause)
            gw.send_signal(signal.SIGUSR1)
        if not wait_until(lambda: len(gw.workers()) == 2, 10):
            break
        gw.send_signal(signal.SIGTTOU)
        if not wait_until(lambda: len(gw.workers()) == 1, 10):
            break
    time.sleep(0.5)
    assert not gw.log.lines_matching(r"killed by signal 10|died while starting", since=first), gw.describe(first)
    assert gw.alive(), gw.describe(first)
    assert wait_until(lambda: len(gw.workers()) == 1, 20), gw.describe(first)
    assert scgi_request(gw.socket, path="/").status == 200


def test_real_time_signals_and_sent_faults_are_logged_and_ignored(gateways):
    gw = start(gateways, "sig-rt", processes=2)
    workers = sorted(gw.workers())
    mark = gw.log.mark()
    gw.send_signal(signal.SIGRTMIN + 3)
    assert gw.log.wait_for(r"SIGRTMIN\+3 received: it means nothing to rustgi-gateway; ignored", since=mark, timeout=10), gw.describe(mark)
    gw.send_signal(signal.SIGRTMAX)
    assert gw.log.wait_for(rf"SIGRTMIN\+{signal.SIGRTMAX - signal.SIGRTMIN} received", since=mark, timeout=10), gw.describe(mark)
    # Those three are faults when the master causes them (it dies of them,
    # as any program does); sent with kill(1), they mean nothing.
    for sig in (signal.SIGABRT, signal.SIGTRAP, signal.SIGSYS):
        gw.send_signal(sig)
        assert gw.log.wait_for(rf"signal {int(sig)} \(SIG\w+.*\) sent by another process: it means nothing", since=mark, timeout=10), gw.describe(mark)
    time.sleep(0.3)
    assert gw.alive(), gw.describe(mark)
    assert sorted(gw.workers()) == workers
    assert scgi_request(gw.socket, path="/").status == 200
    assert gw.terminate() == 0
