"""Stopping with requests in the listen queue (issue 13, item 3).

With `--threads 2` and 20 concurrent 1 s requests, 2 run and 18 wait in
the kernel's listen queue when SIGTERM comes. Closing the listener would
reset those 18 (nginx answers 502); instead the stop refuses new
connections where the socket allows it (the socket file goes, a Unix
listener is shut down for reading), the workers serve what waits, and only
then close. TCP cannot refuse new connections and keep its queue: the
workers accept until it stays empty a moment. What does not fit in
--graceful-timeout is dropped, and counted in the log.

Requests go straight to the socket (SCGI, raw sockets), over Unix and TCP,
with one worker and with two, and once behind nginx. See
docs/reliability.md, "Stopping with requests in the listen queue".
"""

from __future__ import annotations

import concurrent.futures
import json
import re
import signal
import socket
import subprocess

import pytest

from harness import APPS, free_port, http_request, parse_cgi_response, scgi_head, scgi_params, wait_until

APP = APPS / "processes_app.py"
QUEUED = 20
THREADS = 2


def address_of(gw):
    if gw.socket.startswith("/"):
        return socket.AF_UNIX, gw.socket
    host, port = gw.socket.rsplit(":", 1)
    return socket.AF_INET, (host, int(port))


def send_slow(gw, arrived, seconds: float = 1.0) -> socket.socket:
    """Connects and sends a whole SCGI request for /slow; the response is
    read later (`read_all`)."""
    family, address = address_of(gw)
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(60)
    s.connect(address)
    s.sendall(scgi_head(scgi_params("GET", "/slow", query=f"seconds={seconds}&path={arrived}")))
    return s


def read_all(s: socket.socket) -> bytes | str:
    """What the gateway sent until it closed, or the error that ended it."""
    data = b""
    try:
        with s:
            while chunk := s.recv(65536):
                data += chunk
    except OSError as e:
        return f"{type(e).__name__} after {len(data)} bytes"
    return data


def whole(answer) -> bool:
    """A whole 200 response from the app: its JSON body, Content-Length long."""
    if not isinstance(answer, bytes) or not answer:
        return False
    try:
        r = parse_cgi_response(answer)
    except AssertionError:  # no whole head
        return False
    length = dict((k.lower(), v) for k, v in r.headers).get("content-length")
    return r.status == 200 and length == str(len(r.body)) and "pid" in json.loads(r.body)


def arrived_count(arrived) -> int:
    return len(arrived.read_text().split()) if arrived.exists() else 0


def connections_at(path: str) -> int:
    """Connections made to the Unix socket at `path`: those waiting in its
    listen queue (the listener's Recv-Q in `ss`) and those accepted."""
    out = subprocess.run(["ss", "-xanH", "src", path], capture_output=True, text=True).stdout
    total = 0
    for line in out.splitlines():
        fields = line.split()
        total += int(fields[2]) if fields[1] == "LISTEN" else 1
    return total


def drained_counts(gw, mark) -> list[int]:
    lines = gw.log.lines_matching(r"stopping: \d+ connection\(s\)", since=mark)
    return [int(re.search(r"stopping: (\d+) connection", line).group(1)) for line in lines]


def start(gateways, name, tcp: bool, processes: int, graceful: int):
    socket_arg = f"127.0.0.1:{free_port()}" if tcp else None
    gw = gateways.make(
        name,
        ["--app", str(APP), "--threads", str(THREADS), "--processes", str(processes),
         "--graceful-timeout", str(graceful)],
        socket=socket_arg,
        env={"PYTHONDONTWRITEBYTECODE": "1"},
    ).start()
    assert gw.log.wait_for(rf"\b{processes} worker\(s\) ready", timeout=15), gw.describe()
    return gw


def queue_and_stop(gw, arrived, processes: int):
    """Sends the 20 requests, waits until the threads run the first ones
    (the rest wait in the listen queue), sends SIGTERM; returns the log
    mark and the sockets."""
    mark = gw.log.mark()
    # The threads first, so that the others find none idle to accept them.
    running = THREADS * processes
    sockets = [send_slow(gw, arrived) for _ in range(running)]
    assert wait_until(lambda: arrived_count(arrived) >= running, 10), gw.describe(mark)
    sockets += [send_slow(gw, arrived) for _ in range(QUEUED - running)]
    assert arrived_count(arrived) < QUEUED
    gw.send_signal(signal.SIGTERM)
    return mark, sockets


@pytest.mark.parametrize("processes", [1, 2], ids=["1-process", "2-processes"])
@pytest.mark.parametrize("tcp", [False, True], ids=["unix", "tcp"])
def test_sigterm_serves_every_request_waiting_in_the_listen_queue(gateways, scratch, tcp, processes):
    name = f"drain-{'tcp' if tcp else 'unix'}-{processes}"
    gw = start(gateways, name, tcp, processes, graceful=30)
    arrived = scratch / "arrived.txt"
    mark, sockets = queue_and_stop(gw, arrived, processes)
    assert gw.log.wait_for(r"SIGTERM: stopping gracefully", since=mark, timeout=10), gw.describe(mark)

    # A request that comes after the stop began is refused (Unix), or, on
    # TCP, which cannot refuse and keep its queue, dropped (a socket
    # filter drops its SYN; it is refused once the listener closes), or
    # served if it came before the filter: never accepted and then dropped.
    family, address = address_of(gw)
    late = socket.socket(family, socket.SOCK_STREAM)
    late.settimeout(3 if tcp else 60)
    try:
        late.connect(address)
    except (FileNotFoundError, ConnectionRefusedError, TimeoutError):
        late.close()
        late = None
    if late is None:
        late_answer = None
    else:
        assert tcp, f"a Unix connect after the stop succeeded\n{gw.describe(mark)}"
        late.sendall(scgi_head(scgi_params("GET", "/slow", query=f"seconds=0&path={arrived}")))
        late_answer = read_all(late)

    with concurrent.futures.ThreadPoolExecutor(QUEUED) as pool:
        answers = list(pool.map(read_all, sockets))
    served = [a for a in answers if whole(a)]
    failed = [a if isinstance(a, str) else a[:80] for a in answers if not whole(a)]
    assert len(served) == QUEUED, f"{len(served)} of {QUEUED} served; {failed}\n{gw.describe(mark)}"
    if late_answer is not None:
        assert whole(late_answer), f"the late request: {late_answer!r}\n{gw.describe(mark)}"
    assert gw.wait_exit(timeout=45) == 0, gw.describe(mark)

    # Each worker says how many it took from the queue after the stop; the
    # master says none was left.
    counts = drained_counts(gw, mark)
    assert len(counts) == processes, gw.describe(mark)
    assert 0 < sum(counts) <= QUEUED + 1, gw.describe(mark)
    assert gw.log.lines_matching(r"no connection was left in the listen queue", since=mark), gw.describe(mark)
    assert not gw.log.lines_matching(r"dropped", since=mark), gw.describe(mark)
    print(f"{name}: {len(served)} of {QUEUED} served; taken from the queue after SIGTERM: {counts}")


def test_what_does_not_fit_in_the_graceful_timeout_is_dropped_and_counted(gateways, scratch):
    # 20 requests of 1 s on 2 threads need 10 s; --graceful-timeout 3 gives
    # half of it to accepting, the rest to finishing what was accepted.
    gw = start(gateways, "drain-short", tcp=False, processes=1, graceful=3)
    arrived = scratch / "arrived.txt"
    mark, sockets = queue_and_stop(gw, arrived, 1)
    with concurrent.futures.ThreadPoolExecutor(QUEUED) as pool:
        answers = list(pool.map(read_all, sockets))
    assert gw.wait_exit(timeout=20) == 0, gw.describe(mark)
    served = sum(1 for a in answers if whole(a))
    # Those left in the queue are dropped by the master; those accepted but
    # not finished by the deadline (none, unless a connection was accepted
    # before the stop with its request still on the way) are cut.
    lines = gw.log.lines_matching(r"\d+ connection\(s\) still waiting in the listen queue were dropped",
                                  since=mark)
    assert lines, f"{served} served, {QUEUED - served} not; no line says so\n{gw.describe(mark)}"
    dropped = int(re.search(r"(\d+) connection\(s\) still waiting", lines[0]).group(1))
    cut = sum(int(re.search(r"(\d+) request\(s\) still running", line).group(1))
              for line in gw.log.lines_matching(r"\d+ request\(s\) still running after", since=mark))
    assert served + dropped + cut == QUEUED, f"{served} + {dropped} + {cut}\n{gw.describe(mark)}"
    assert 0 < dropped < QUEUED, gw.describe(mark)
    print(f"--graceful-timeout 3: {served} served, {dropped} dropped, {cut} cut, all counted")


def test_behind_nginx_a_stop_under_load_answers_no_502(gateways, private_nginx, scratch):
    gw = start(gateways, "drain-nginx", tcp=False, processes=1, graceful=30)
    # The last request waits 10 s for a thread: more than this suite's nginx
    # waits for a response by default.
    front = private_nginx("drain-nginx", gw, extra="scgi_read_timeout 60s;")
    arrived = scratch / "arrived.txt"
    with concurrent.futures.ThreadPoolExecutor(QUEUED) as pool:
        pending = [
            pool.submit(http_request, front.port, "GET", f"/slow?seconds=1&path={arrived}", timeout=60)
            for _ in range(QUEUED)
        ]
        assert wait_until(lambda: arrived_count(arrived) >= THREADS, 10), gw.describe()
        # Every request of nginx's is at the gateway: running or queued.
        assert wait_until(lambda: connections_at(gw.socket) >= QUEUED, 10), connections_at(gw.socket)
        mark = gw.log.mark()
        gw.send_signal(signal.SIGTERM)
        statuses = [f.result(timeout=60).status for f in pending]
    assert statuses == [200] * QUEUED, f"{statuses.count(502)} answered 502\n{gw.describe(mark)}"
    assert gw.wait_exit(timeout=45) == 0, gw.describe(mark)
    # nginx's requests after the stop find no socket: 502 at once, as before.
    assert http_request(front.port, "GET", "/", timeout=10).status == 502
