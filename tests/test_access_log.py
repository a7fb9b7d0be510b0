"""The access log (issue 14): every format against the real binary, escaping
that keeps forged input from breaking or forging lines, the 1 KiB cut,
lines for requests that time out, fail, are aborted or lose their client,
request ids (trusted header, generated), the slow-request log, and
logrotate's copytruncate and create (SIGUSR1 to the master, passed on to the workers)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from fcgi_client import FcgiConnection, abort_request, responder_params
from harness import APPS, REPO, Location, Nginx, scgi_head, scgi_params, scgi_request, wait_until
from plugins.base import _STARTED

CONFORMANCE = str((APPS / "conformance.py").relative_to(REPO))
FASTCGI_APP = str((APPS / "fastcgi_app.py").relative_to(REPO))

# A request id as generated: 8 base-32 characters, a dash, a number.
GENERATED_ID = re.compile(r"^[0-9a-z]{8}-\d+$")

# Quotes, a newline, control bytes, a forged JSON object, invalid UTF-8 and
# valid non-ASCII: what a client can put in a path or a header.
FORGED = b'/x"}\n{"forged":1,\\\x01\x1b[31m\x7f\xff\xc3(\xe9t\xc3\xa9'


def json_text(raw: bytes) -> str:
    """What the access log's JSON decodes to for raw bytes: valid UTF-8 as
    is, each byte of invalid UTF-8 as the character of its value."""
    return raw.decode("utf-8", errors="surrogateescape").translate(
        {0xDC00 + b: chr(b) for b in range(0x80, 0x100)}
    )


def lines_of(path: Path, count: int, timeout: float = 10.0) -> list[str]:
    """The first `count` lines of the log, once it has them (the writer
    batches: a line comes within about 100 ms)."""
    wait_until(lambda: path.exists() and path.read_bytes().count(b"\n") >= count, timeout)
    return path.read_bytes().decode().splitlines()


def records(path: Path, count: int) -> list[dict]:
    return [json.loads(line) for line in lines_of(path, count)]


def line_for(path: Path, request_id: str, timeout: float = 10.0) -> dict:
    """The JSON line of the request with this id, once written."""
    def find():
        for line in path.read_bytes().splitlines() if path.exists() else []:
            record = json.loads(line)
            if record["request_id"] == request_id:
                return record
        return None
    found = wait_until(find, timeout)
    assert found, f"no line for {request_id} in {path}"
    return found


def start(gateways, run_dir, name, *args, proto="scgi", app=CONFORMANCE):
    log = run_dir / f"{name}-access.log"
    if log.exists():
        log.unlink()
    gw = gateways.start(name, ["--app", app, "--threads", "4", "--access-log", str(log), *args],
                        proto=proto)
    return gw, log


@pytest.fixture(scope="module")
def json_gateway(gateways, run_dir):
    return start(gateways, run_dir, "access-json", "--access-log-format", "json",
                 "--request-id-header", "X-Request-Id")


def test_json_lines_have_every_field(json_gateway):
    gw, log = json_gateway
    r = scgi_request(gw.socket, "GET", "/hello", query="a=1",
                     extra=[("HTTP_USER_AGENT", "pytest/1"), ("HTTP_REFERER", "http://r/")])
    r2 = scgi_request(gw.socket, "GET", "/environ", extra=[("HTTP_X_REQUEST_ID", "fields-1")])
    assert line_for(log, "fields-1")["bytes"] == len(r2.body)
    assert r.status == 200
    # Its id was generated: found by its query.
    line = wait_until(lambda: next((json.loads(raw) for raw in log.read_bytes().splitlines()
                                    if json.loads(raw)["query"] == "a=1"), None), 10)
    assert line["method"] == "GET" and line["path"] == "/hello" and line["query"] == "a=1"
    assert line["status"] == 200 and line["bytes"] == 5 and line["request_bytes"] == 0
    assert line["front"] == "scgi" and line["ended"] == "complete"
    assert line["remote"] == "127.0.0.1" and line["protocol"] == "HTTP/1.1"
    assert line["user_agent"] == "pytest/1" and line["referer"] == "http://r/"
    assert line["pid"] in gw.workers()
    assert line["duration_us"] >= line["ttfb_us"] >= 0
    assert GENERATED_ID.match(line["request_id"]), line
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", line["time"]), line


def test_forged_input_stays_valid_json(json_gateway):
    gw, log = json_gateway
    # Raw SCGI: the bytes go to the gateway exactly as written.
    params = scgi_params("GET", "/hello", extra=[("HTTP_USER_AGENT", FORGED), ("HTTP_REFERER", b"\x08\r\n\x1f"),
                                                     ("HTTP_X_REQUEST_ID", "forged-1")])
    params = [(k, FORGED if k == b"REQUEST_URI" else v) for k, v in params]
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(gw.socket)
        s.sendall(scgi_head(params))
        s.settimeout(10)
        while s.recv(65536):
            pass
    line = line_for(log, "forged-1")
    # Every line parses (line_for loads them all); none is forged.
    assert not any(b'"forged":1' in raw for raw in log.read_bytes().splitlines())
    assert line["path"] == json_text(FORGED)
    assert line["user_agent"] == json_text(FORGED)
    assert line["referer"] == "\x08\r\n\x1f"
    assert "forged" not in line


def test_a_huge_header_is_cut_at_1_kib(json_gateway):
    gw, log = json_gateway
    agent = "A" * 5000
    extra = [("HTTP_USER_AGENT", agent), ("HTTP_X_REQUEST_ID", "huge-1")]
    assert scgi_request(gw.socket, "GET", "/hello", extra=extra).status == 200
    line = line_for(log, "huge-1")
    assert line["user_agent"] == "A" * 1024 + "...[cut, bytes: 5000]"


def test_request_id_from_the_trusted_header(json_gateway):
    gw, log = json_gateway
    cases = [("abc-123_XYZ", "abc-123_XYZ"), ("has space", None), ("x" * 129, None), ("x" * 128, "x" * 128)]
    for sent, expected in cases:
        r = scgi_request(gw.socket, "GET", "/environ", extra=[("HTTP_X_REQUEST_ID", sent)])
        seen = json.loads(r.body)["RUSTGI_REQUEST_ID"]
        if expected is None:
            assert GENERATED_ID.match(seen), (sent, seen)
        else:
            assert seen == expected
        # The access log has the id the application saw.
        assert line_for(log, seen)["path"] == "/environ"


def test_an_app_error_gets_its_line_and_wsgi_errors_show_the_id(json_gateway):
    gw, log = json_gateway
    mark = gw.log.mark()
    r = scgi_request(gw.socket, "GET", "/raise-before-body", extra=[("HTTP_X_REQUEST_ID", "err-req-1")])
    assert r.status == 500
    r = scgi_request(gw.socket, "GET", "/errors", query="message=note-from-app",
                     extra=[("HTTP_X_REQUEST_ID", "err-req-2")])
    assert r.status == 200
    failed, logged = line_for(log, "err-req-1"), line_for(log, "err-req-2")
    assert (failed["status"], failed["ended"], failed["request_id"]) == (500, "app-error", "err-req-1")
    assert (logged["status"], logged["ended"]) == (200, "complete")
    assert gw.log.wait_for("raised before the body", "#err-req-1", since=mark), gw.describe(mark)
    assert gw.log.wait_for("err-req-2", "note-from-app", since=mark), gw.describe(mark)


def test_a_client_gone_gets_its_line(json_gateway):
    gw, log = json_gateway
    # 8 MiB the client never reads: the connection closes under the writes.
    head = scgi_head(scgi_params("GET", "/slow", query="seconds=0.3&bytes=8388608",
                                 extra=[("HTTP_X_REQUEST_ID", "gone-1")]))
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(gw.socket)
        s.sendall(head)
        s.recv(1)
    line = line_for(log, "gone-1")
    assert line["ended"] == "client-gone", line
    assert line["bytes"] < 8388608


@pytest.mark.parametrize("spec,expected", [
    ("combined", r'^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] '
                 r'"GET /hello\?a=1 HTTP/1\.1" 200 5 "-" "ua \\"q\\" \\x0a"$'),
    ("logfmt", r'^time=\S+Z request_id=[0-9a-z]{8}-\d+ remote=127\.0\.0\.1 method=GET path=/hello '
               r'query="a=1" protocol=HTTP/1\.1 status=200 bytes=5 request_bytes=0 duration_us=\d+ '
               r'ttfb_us=\d+ pid=\d+ front=scgi ended=complete referer="" user_agent="ua \\"q\\" \\n"$'),
    ("{method} {uri} {status} {front} {ended} [{request_header:user-agent}] {response_header:Content-Type} {{x}}",
     r'^GET /hello\?a=1 200 scgi complete \[ua \\"q\\" \\x0a\] text/plain; charset=utf-8 \{x\}$'),
])
def test_each_format(gateways, run_dir, spec, expected):
    name = "access-" + re.sub(r"[^a-z]", "", spec)[:12]
    gw, log = start(gateways, run_dir, name, "--access-log-format", spec)
    try:
        r = scgi_request(gw.socket, "GET", "/hello", query="a=1", extra=[("HTTP_USER_AGENT", 'ua "q" \n')])
        assert r.status == 200
        [line] = lines_of(log, 1)
        assert re.match(expected, line), line
    finally:
        gw.terminate()


def test_an_unknown_template_field_is_refused_at_start(gateway_bin, run_dir):
    p = subprocess.run(
        [str(gateway_bin), "--proto", "scgi", "--socket", str(run_dir / "never.sock"), "--app", CONFORMANCE,
         "--access-log", "-", "--access-log-format", "{remote} {colour}"],
        capture_output=True, timeout=30, text=True,
    )
    assert p.returncode != 0
    assert "unknown field {colour}" in p.stderr, p.stderr
    assert "known fields: time, time_clf, request_id" in p.stderr and "response_header:NAME" in p.stderr
    assert not (run_dir / "never.sock").exists()


def test_a_timeout_gets_its_line_and_the_slow_log_its_stack(gateways, run_dir):
    gw, log = start(gateways, run_dir, "access-timeout", "--access-log-format", "json",
                    "--timeout", "1.5", "--slow-request-log", "0.3", "--request-id-header", "X-Request-Id")
    try:
        mark = gw.log.mark()
        r = scgi_request(gw.socket, "GET", "/slow", query="seconds=5",
                         extra=[("HTTP_X_REQUEST_ID", "too-slow-1")], timeout=20)
        assert r.status == 504
        lines = records(log, 1)
        assert len(lines) == 1, lines
        [line] = lines
        assert (line["status"], line["ended"], line["request_id"]) == (504, "timeout", "too-slow-1"), line
        assert gw.log.wait_for(r"past --slow-request-log", "too-slow-1", since=mark), gw.describe(mark)
        # The stack follows the line: the app's frame, in its sleep.
        text = gw.log.text(mark)
        after = text[text.index("past --slow-request-log"):]
        assert "conformance.py" in after and "time.sleep" in after, gw.describe(mark)
        assert text.count("past --slow-request-log") == 1, "logged once"
    finally:
        gw.terminate()


def test_a_fastcgi_abort_gets_its_line(gateways, run_dir):
    gw, log = start(gateways, run_dir, "access-fcgi", "--access-log-format", "json", proto="fastcgi",
                    app=FASTCGI_APP)
    try:
        marker = run_dir / "access-abort-marker.txt"
        params = responder_params("GET", "/stream", query=f"path={marker}&interval=0.2&blocks=100")
        with FcgiConnection(gw.socket) as conn:
            conn.request(1, params)
            conn.read_until(lambda: b"block 1\n" in conn.reply(1).stdout, 5, "two streamed blocks")
            conn.send(abort_request(1))
            conn.read_end(1, timeout=5)
        [line] = records(log, 1)
        assert (line["front"], line["ended"], line["status"]) == ("fastcgi", "aborted", 200), line
    finally:
        gw.terminate()


def test_logrotate_copytruncate_and_create(gateways, run_dir):
    gw, log = start(gateways, run_dir, "access-rotate", "--access-log-format", "{request_header:X-N}",
                    "--processes", "2")
    try:
        def send(n):
            assert scgi_request(gw.socket, "GET", "/hello", extra=[("HTTP_X_N", str(n))]).status == 200

        send(1)
        assert lines_of(log, 1) == ["1"]
        # copytruncate: the file is copied, then truncated in place; O_APPEND
        # writes go on at its new start, leaving no hole of NULs.
        os.truncate(log, 0)
        send(2)
        wait_until(lambda: log.read_bytes() == b"2\n", 10)
        # create: moved away, then SIGUSR1 to the master (logrotate's
        # postrotate with the pidfile), which passes it on to its workers.
        rotated = log.with_suffix(".log.1")
        log.rename(rotated)
        workers = gw.workers()
        assert len(workers) == 2
        mark = gw.log.mark()
        gw.send_signal(signal.SIGUSR1)
        wait_until(lambda: len(gw.log.lines_matching("SIGUSR1: reopening", since=mark)) == 2, 10)
        for n in range(3, 9):  # enough for both workers to serve some
            send(n)
        wait_until(lambda: log.exists() and log.read_bytes().count(b"\n") == 6, 10)
        assert sorted(log.read_text().split()) == [str(n) for n in range(3, 9)]
        assert rotated.read_bytes() == b"2\n"
        assert sorted(gw.workers()) == sorted(workers), "SIGUSR1 must not kill a worker"
    finally:
        gw.terminate()


def test_cgi_mode_writes_its_line(gateway_bin, run_dir):
    log = run_dir / "access-cgi.log"
    env = {"PATH": os.environ["PATH"], "GATEWAY_INTERFACE": "CGI/1.1", "REQUEST_METHOD": "GET",
           "SCRIPT_NAME": "/app.cgi", "PATH_INFO": "/hello", "QUERY_STRING": "", "SERVER_PROTOCOL": "HTTP/1.1",
           "SERVER_NAME": "cgi.example", "SERVER_PORT": "80", "REMOTE_ADDR": "10.1.2.3",
           "REQUEST_URI": "/app.cgi/hello"}
    p = subprocess.run([str(gateway_bin), "--app", str(APPS / "cgi_app.py"), "--access-log", str(log),
                        "--access-log-format", "json"], env=env, input=b"", capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    [line] = records(log, 1)
    assert (line["front"], line["remote"], line["path"], line["ended"]) == ("cgi", "10.1.2.3", "/app.cgi/hello", "complete")


NGINX_PROTOCOLS = ["scgi", "uwsgi", "fastcgi", "fastcgi-kept"]
LANES = ["python", "io"]


@pytest.fixture(scope="module")
def nginx_lanes(gateways, nginx_binary, run_dir, log_dir):
    """A gateway per lane (--proto auto, json access log) behind one nginx
    server per protocol."""
    gws, servers, upstreams = {}, {}, []
    path_info = "fastcgi_param PATH_INFO $uri;"
    for lane in LANES:
        log = run_dir / f"access-nginx-{lane}.log"
        gw = gateways.start(f"access-nginx-{lane}",
                            ["--app", CONFORMANCE, "--threads", "4", "--access-log", str(log),
                             "--access-log-format", "json", "--request-id-header", "X-Request-Id"],
                            proto="auto", env={"RUSTGI_LANE": lane})
        gws[lane] = (gw, log)
        upstream = "unix:" + gw.socket
        servers |= {
            f"scgi-{lane}": [Location("/", upstream)],
            f"uwsgi-{lane}": [Location("/", upstream, proto="uwsgi")],
            f"fastcgi-{lane}": [Location("/", upstream, proto="fastcgi", params=path_info)],
            f"fastcgi-kept-{lane}": [Location("/", f"kept_{lane}", proto="fastcgi", keep_conn=True,
                                              params=path_info)],
        }
        upstreams.append(f"    upstream kept_{lane} {{ server {upstream}; keepalive 4; }}")
    own_dir = run_dir / "nginx-access"
    own_dir.mkdir(mode=0o755, exist_ok=True)
    server = Nginx(nginx_binary, own_dir, log_dir / "nginx-access", [], servers=servers,
                   upstreams="\n".join(upstreams))
    _STARTED.append(server)
    server.start()
    yield server, gws
    server.stop()


@pytest.mark.parametrize("lane", LANES)
@pytest.mark.parametrize("proto", NGINX_PROTOCOLS)
def test_behind_nginx_every_protocol_and_lane(nginx_lanes, proto, lane):
    server, gws = nginx_lanes
    gw, log = gws[lane]
    rid = f"nginx-{proto}-{lane}"
    p = subprocess.run(
        ["curl", "-sS", "--max-time", "8", "-o", "/dev/null", "-w", "%{http_code}",
         "-H", f"X-Request-Id: {rid}", "-A", "curl-access-test",
         server.url("/hello?x=1", server=f"{proto}-{lane}")],
        capture_output=True, text=True, timeout=30,
    )
    assert p.stdout == "200", p.stderr
    line = line_for(log, rid)
    front = "fastcgi" if proto.startswith("fastcgi") else proto
    assert (line["front"], line["status"], line["path"], line["query"]) == (front, 200, "/hello", "x=1"), line
    assert (line["ended"], line["bytes"], line["user_agent"]) == ("complete", 5, "curl-access-test"), line
    # Each request once.
    assert sum(json.loads(raw)["request_id"] == rid for raw in log.read_bytes().splitlines()) == 1
