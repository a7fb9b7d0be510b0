"""The gateway's log under hostile input (issue 13, item 8): request fields
with control characters cannot forge a log line or reach a terminal, and a
peer that floods the gateway with malformed messages gets a bounded number
of lines plus a summary of what was suppressed."""

import re
import socket
import threading

import pytest

from harness import parse_cgi_response, scgi_exchange, scgi_head, scgi_params, scgi_request

APP = "tests/apps/app_errors.py"
# What a client would put in a URI to forge a line of ours.
FORGED = "1999-01-01T00:00:00.000000Z  INFO rustgi_serve: FORGED"
FORGED_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\S+\s+INFO rustgi_serve: FORGED", re.M)
# As many of a kind as the gateway logs per peer in each 10 s window.
LIMIT = 10


def raw_controls(data: bytes) -> list[tuple[int, int]]:
    """(offset, byte) of every control byte that is not a line's end."""
    return [(i, b) for i, b in enumerate(data) if (b < 0x20 and b != 0x0A) or b == 0x7F]


@pytest.mark.parametrize("lane", ["python", "io"])
def test_control_characters_in_request_fields_never_reach_the_log_raw(gateways, lane):
    # RUSTGI_LANE=python also logs each request's URI (the lane's own line).
    gw = gateways.start(f"logs-{lane}", ["--app", APP, "--threads", "2"], env={"RUSTGI_LANE": lane})
    mark = gw.log.mark()
    query = "x\n" + FORGED + "\x1b[2J\x1b]0;owned\x07\x7f\r"
    r = scgi_request(gw.socket, "GET", "/log-and-fail", query=query)
    assert r.status == 500, gw.describe(mark)
    method = "GET\n" + FORGED + "\x1b[31m"
    r = scgi_request(gw.socket, method, "/log-and-fail")
    assert r.status == 500, gw.describe(mark)
    # A protocol error quoting the bad value.
    bad = scgi_head([(b"CONTENT_LENGTH", b"1\n" + FORGED.encode() + b"\x1b[2J"), (b"SCGI", b"1")])
    assert scgi_exchange(gw.socket, bad) == b""
    assert gw.log.wait_for(r"bad scgi request", since=mark), gw.describe(mark)
    assert len(gw.log.lines_matching(r"ERROR", r"application error", since=mark)) == 2, gw.describe(mark)

    with open(gw.log.path, "rb") as f:
        f.seek(mark)
        logged = f.read()
    assert not raw_controls(logged), (raw_controls(logged)[:10], logged[-3000:])
    text = logged.decode("utf-8")
    assert not FORGED_LINE.search(text), text[-3000:]
    # The values are there, escaped, on the request's own line.
    tagged = [line for line in text.splitlines() if "request=#" in line and "\\n1999-01-01" in line]
    assert any("/log-and-fail?x\\n1999-01-01" in line and "\\x1b[2J" in line for line in tagged), text
    assert any("GET\\n1999-01-01" in line and "\\x1b[31m" in line for line in tagged), text
    assert any("bad scgi request" in line and "'\\n' (0x0a)" in line for line in text.splitlines()), text
    # A traceback keeps its lines, each after the first indented.
    assert re.search(r"application error:\n  Traceback \(most recent call last\):\n", text), text
    assert r.status == 500 and gw.alive()


@pytest.mark.parametrize("lane", ["python", "io"])
def test_a_client_that_goes_away_during_its_upload_is_no_application_error(gateways, lane):
    # Found by tests/soak: every aborted upload logged an ERROR with a
    # traceback, as if the application had failed.
    gw = gateways.start(f"logs-upload-{lane}", ["--app", APP, "--buffer-body", "1024"], env={"RUSTGI_LANE": lane})
    mark = gw.log.mark()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(gw.socket))
    sock.sendall(scgi_head(scgi_params("POST", "/read-body", body_len=1_000_000)) + b"x" * 100_000)
    assert gw.log.wait_for(r"reading the body", since=mark), gw.describe(mark)
    sock.close()
    assert gw.log.wait_for(r"the application stopped on its request body", since=mark), gw.describe(mark)
    assert not gw.log.lines_matching(r"application error", since=mark), gw.describe(mark)
    assert not gw.log.lines_matching(r"Traceback", since=mark), gw.describe(mark)
    # A later request is answered as ever.
    assert scgi_request(gw.socket, "GET", "/").status == 200
    assert gw.alive()


MALFORMED = {
    # kind in the log -> a message of that kind
    "unrecognised protocol": b"xx",
    "bad request head": b"3:a\0b,",
    "bad FastCGI input": b"\x01\x09\x00\x01\x00\x08\x00\x00garbage!",
    "incomplete head": b"5:ab",
}


def send_malformed(path: str, message: bytes, count: int):
    for _ in range(count):
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(path)
            try:
                s.sendall(message)
                s.shutdown(socket.SHUT_WR)
                while s.recv(4096):
                    pass
            except (BrokenPipeError, ConnectionResetError):
                pass


def test_a_flood_of_malformed_messages_gives_a_bounded_log_and_a_summary(gateways):
    gw = gateways.start("logs-flood", ["--threads", "2"], proto="auto")
    mark = gw.log.mark()
    each = 2500  # 10,000 in all, from one peer (the Unix socket's)
    senders = [threading.Thread(target=send_malformed, args=(gw.socket, message, each))
               for message in MALFORMED.values()]
    for t in senders:
        t.start()
    for t in senders:
        t.join(timeout=300)
    # A good request among them is served and logs nothing.
    assert scgi_request(gw.socket, "GET", "/").status == 200
    assert gw.terminate() == 0  # the summaries of open windows are written as the worker stops
    text = gw.log.text(since=mark)
    lines = text.splitlines()
    summaries = {}
    for line in lines:
        m = re.search(r"suppressed (\d+) similar warnings \(([^)]+)\) from unix", line)
        if m:
            summaries[m[2]] = summaries.get(m[2], 0) + int(m[1])
    warned = [line for line in lines if " WARN " in line and "suppressed" not in line]
    assert len(lines) < 200, f"{len(lines)} lines for 10,000 malformed messages"
    for kind in MALFORMED:
        assert kind in summaries, (kind, summaries, text[-3000:])
    # Every message is accounted for: logged, or counted in a summary.
    logged = len([line for line in warned if "peer=unix" in line])
    assert logged + sum(summaries.values()) == 4 * each, (logged, summaries)
    # The limit holds per kind (a window is 10 s; the flood may span a few).
    assert logged <= len(MALFORMED) * LIMIT * 4, logged


def test_bad_input_warnings_0_logs_every_one(gateways):
    gw = gateways.start("logs-all", ["--threads", "2", "--bad-input-warnings", "0"], proto="auto")
    mark = gw.log.mark()
    send_malformed(gw.socket, MALFORMED["unrecognised protocol"], 50)
    assert gw.terminate() == 0
    text = gw.log.text(since=mark)
    assert text.count("unrecognised protocol: first bytes") == 50, text[-2000:]
    assert "suppressed" not in text
