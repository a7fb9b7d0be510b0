"""Logs a person can read (issue 14, item 3): what the application writes
to wsgi.errors stays one entry per thing it wrote, print() is tagged with
its request, the daemon's log as JSON or in a file, and process titles."""

import ast
import json
import os
import re
import signal
import subprocess

from harness import process_title, scgi_exchange, scgi_head, scgi_params, scgi_request, wait_until, parse_cgi_response

APP = "tests/apps/logs_app.py"
# A log line of ours starts so (the text format); an entry's other lines
# are indented.
LINE_START = re.compile(r"^\d{4}-\d\d-\d\dT\S+\s+[A-Z]+ ", re.M)


def entries(text: str) -> list[str]:
    """The log's entries: each line of ours with its indented lines."""
    starts = [m.start() for m in LINE_START.finditer(text)] + [len(text)]
    return [text[a:b].rstrip("\n") for a, b in zip(starts, starts[1:])]


def wsgi_errors_entries(gateways, name: str, path: str) -> list[str]:
    """The wsgi.errors entries a request to `path` logs."""
    gw = gateways.start(name, ["--app", APP, "--threads", "2"])
    mark = gw.log.mark()
    assert scgi_request(gw.socket, "GET", path).status == 200
    assert gw.log.wait_for(r"ValueError: deep failure", since=mark), gw.describe(mark)
    return [e for e in entries(gw.log.text(since=mark)) if "wsgi.errors" in e]


def test_a_traceback_printed_to_wsgi_errors_is_one_entry(gateways):
    mine = wsgi_errors_entries(gateways, "streams-tb", "/print-exc")
    assert len(mine) == 1, mine
    entry = mine[0]
    assert re.match(r".* WARN wsgi\.errors: Traceback \(most recent call last\):\n", entry), entry
    # Every frame inside it, indented; the tag once, at the end.
    assert entry.count('File "') == 5, entry
    assert all(line.startswith("  ") for line in entry.splitlines()[1:]), entry
    assert re.search(r"\n  ValueError: deep failure request=#\S+ GET /print-exc$", entry), entry
    assert entry.count("request=") == 1, entry


def test_logging_to_wsgi_errors_is_one_entry_per_record(gateways):
    mine = wsgi_errors_entries(gateways, "streams-logging", "/logging")
    assert len(mine) == 2, mine
    assert re.search(r"WARN wsgi\.errors: WARNING logs_app\.\d+: first record request=#\S+ GET /logging$", mine[0]), mine
    second = mine[1].splitlines()
    assert re.search(r"WARN wsgi\.errors: ERROR logs_app\.\d+: second record, with its traceback$", second[0]), second
    assert second[1] == "  Traceback (most recent call last):", second
    assert re.fullmatch(r"  ValueError: deep failure request=#\S+ GET /logging", second[-1]), second


def test_print_is_logged_with_its_request(gateways):
    gw = gateways.start("streams-print", ["--app", APP, "--threads", "2"])
    # At import: no request.
    assert gw.log.lines_matching(r"INFO .*app\.stdout: printed at import$"), gw.describe()
    mark = gw.log.mark()
    assert scgi_request(gw.socket, "GET", "/print", query="q=1").status == 200
    assert gw.log.wait_for(r"left open", since=mark), gw.describe(mark)
    text = gw.log.text(since=mark)
    tag = r"request=#\S+ GET /print\?q=1$"
    assert re.search(r"INFO app\.stdout: hello from print q=1 " + tag, text, re.M), text
    assert re.search(r"WARN app\.stderr: to stderr " + tag, text, re.M), text
    # Line-buffered: two writes make one line; an unfinished line is logged
    # as the request ends.
    assert re.search(r"INFO app\.stdout: partial line " + tag, text, re.M), text
    assert re.search(r"INFO app\.stdout: left open " + tag, text, re.M), text
    # A thread of the application's own runs no request.
    mark = gw.log.mark()
    assert scgi_request(gw.socket, "GET", "/thread").status == 200
    found = gw.log.wait_for(r"app\.stdout: from a thread of the app", since=mark)
    assert found and "request=" not in found[0], found


def test_what_the_app_sees_of_sys_stdout(gateways):
    gw = gateways.start("streams-facts", ["--app", APP, "--threads", "2"])
    r = scgi_request(gw.socket, "GET", "/stream-facts")
    assert r.status == 200
    facts = ast.literal_eval(r.body.decode())
    assert facts == {"write": 0, "count": 6, "isatty": False, "encoding": "utf-8", "fileno": 1,
                     "textio": True, "stderr_fileno": 2}, facts
    # A subprocess given sys.stdout writes to the real fd 1 (here: the log
    # file the harness gave the gateway), around the log.
    mark = gw.log.mark()
    assert scgi_request(gw.socket, "GET", "/subprocess").status == 200
    assert gw.log.wait_for(r"^from the child$", since=mark), gw.describe(mark)


def forged_request(gw):
    """A request whose URI carries what would forge a JSON line (SCGI
    cannot carry a NUL)."""
    forged = b'/x"}\n{"level":"ERROR","message":"FORGED"}\x1b[2J\x01\x7f\xff\xfe'
    replaced = {b"REQUEST_URI": b"/print?" + forged, b"QUERY_STRING": forged}
    pairs = [(k, replaced.get(k, v)) for k, v in scgi_params("GET", "/print", query="x")]
    return parse_cgi_response(scgi_exchange(gw.socket, scgi_head(pairs)))


def test_json_log_lines_parse_and_forged_input_stays_in_its_field(gateways):
    gw = gateways.start("streams-json", ["--app", APP, "--threads", "2", "--log-format", "json"])
    mark = gw.log.mark()
    assert forged_request(gw).status == 200
    r = scgi_request(gw.socket, "GET", "/print-exc")
    assert r.status == 200
    assert gw.log.wait_for(r"deep failure", since=mark), gw.describe(mark)
    assert gw.terminate() == 0
    raw = open(gw.log.path, "rb").read()[gw.output_start:]
    assert not [b for b in raw if (b < 0x20 and b != 0x0A) or b == 0x7F], raw[-2000:]
    objects = [json.loads(line) for line in raw.decode("utf-8").splitlines() if line.strip()]
    for obj in objects:
        assert set(obj) - {"request"} == {"time", "level", "target", "message", "fields"}, obj
        assert obj["level"] in ("INFO", "WARN", "ERROR", "DEBUG"), obj
        assert obj["message"] != "FORGED", obj
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+Z", obj["time"]), obj
    printed = [o for o in objects if o["target"] == "app.stdout" and "request" in o]
    assert printed, objects
    # The URI as the text log shows it (controls escaped, U+FFFD for bad
    # UTF-8), then JSON-escaped: the same string once parsed.
    assert printed[0]["request"].startswith('#'), printed[0]
    assert printed[0]["request"].endswith(
        ' GET /print?/x"}\\n{"level":"ERROR","message":"FORGED"}\\x1b[2J\\x01\\x7f\ufffd\ufffd'), printed[0]
    # What the app printed (the query, as latin-1 in the environ): two
    # lines, each its own object, controls and all once parsed.
    assert printed[0]["message"] == 'hello from print /x"}', printed
    assert printed[1]["message"] == '{"level":"ERROR","message":"FORGED"}\x1b[2J\x01\x7f\xff\xfe', printed
    # A traceback is one object; the worker's own lines carry its pid.
    tb = [o for o in objects if o["target"] == "wsgi.errors"]
    assert len(tb) == 1 and tb[0]["message"].startswith("Traceback (most recent call last):\n"), tb
    assert tb[0]["message"].endswith("\nValueError: deep failure"), tb
    assert any(o["target"] == "rustgi_serve" and isinstance(o["fields"].get("pid"), int)
               for o in objects), objects


def test_log_file_gets_the_daemons_log(gateways, scratch):
    path = scratch / "daemon.log"
    gw = gateways.start("streams-file", ["--app", APP, "--threads", "2", "--log-file", str(path)])
    assert scgi_request(gw.socket, "GET", "/print", query="f=1").status == 200
    assert wait_until(lambda: "left open" in path.read_text(), 5), path.read_text()
    assert gw.terminate() == 0
    text = path.read_text()
    assert re.search(r"INFO rustgi_supervisor::master: master \d+:", text), text
    assert re.search(r"listening on unix:", text), text
    assert re.search(r"app\.stdout: hello from print f=1 request=#\S+ GET /print\?f=1$", text, re.M), text
    assert re.search(r"INFO rustgi_supervisor::master: stopped$", text, re.M), text
    # Nothing of it on stderr.
    assert "listening on" not in gw.output() and "hello from print" not in gw.output(), gw.output()


def test_logrotate_create_with_sigusr1_to_the_master(gateways, scratch):
    """logrotate's `create`: the log file is moved away and the master gets
    SIGUSR1; the master and its workers write to a new file at the path."""
    path = scratch / "daemon.log"
    gw = gateways.start("streams-rotate", ["--app", APP, "--threads", "2", "--processes", "2",
                                           "--log-file", str(path)])
    assert wait_until(lambda: len(re.findall(r"listening on unix:", path.read_text())) == 2, 10), path.read_text()
    workers = gw.workers()
    rotated = scratch / "daemon.log.1"
    path.rename(rotated)
    gw.send_signal(signal.SIGUSR1)
    # Each worker says so in the new file, and the master too.
    assert wait_until(lambda: path.exists()
                      and len(re.findall(r"SIGUSR1: reopening the log files$", path.read_text(), re.M)) == 2, 10), \
        (path.read_text() if path.exists() else "no new file", rotated.read_text())
    assert wait_until(lambda: "rustgi_supervisor" in path.read_text(), 10), path.read_text()
    assert scgi_request(gw.socket, "GET", "/print", query="f=2").status == 200
    assert wait_until(lambda: "hello from print f=2" in path.read_text(), 5), path.read_text()
    assert "hello from print f=2" not in rotated.read_text()
    assert sorted(gw.workers()) == sorted(workers), "SIGUSR1 must not kill a worker"
    assert gw.terminate() == 0
    assert re.search(r"INFO rustgi_supervisor::master: stopped$", path.read_text(), re.M), path.read_text()


def test_an_unwritable_log_file_is_refused_at_start(gateways, scratch):
    gw = gateways.make("streams-badfile", ["--app", APP, "--log-file", str(scratch / "no" / "such.log")])
    gw.spawn()
    assert gw.wait_exit() == 2
    assert re.search(r"--log-file .*no/such\.log: No such file or directory", gw.output()), gw.output()


def ps(field: str, pid: int) -> str:
    return subprocess.run(["ps", "-o", f"{field}=", "-p", str(pid)], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_master_and_workers_show_their_titles(gateways):
    gw = gateways.start("streams-titles", ["--app", APP, "--processes", "2"])
    assert wait_until(lambda: len(gw.workers()) == 2, 10), gw.describe()
    app = f"[{APP}:application]"
    assert ps("args", gw.pid) == f"rustgi-gateway: master {app}"
    assert ps("comm", gw.pid) == "rustgi-master"
    workers = sorted(ps("args", pid) for pid in gw.workers())
    assert workers == [f"rustgi-gateway: worker 1 {app}", f"rustgi-gateway: worker 2 {app}"], workers
    assert [ps("comm", pid) for pid in gw.workers()] == ["rustgi-worker"] * 2
    assert process_title(gw.pid) == f"rustgi-gateway: master {app}"
    # A replaced worker takes the number that became free.
    victim = next(pid for pid in gw.workers() if ps("args", pid).startswith("rustgi-gateway: worker 1 "))
    mark = gw.log.mark()
    os.kill(victim, signal.SIGKILL)
    assert gw.log.wait_for(r"worker \d+ ready", since=mark, timeout=15), gw.describe(mark)
    assert wait_until(lambda: len(gw.workers()) == 2 and victim not in gw.workers(), 10)
    workers = sorted(ps("args", pid) for pid in gw.workers())
    assert workers == [f"rustgi-gateway: worker 1 {app}", f"rustgi-gateway: worker 2 {app}"], workers


def test_why_the_app_did_not_load_is_in_the_log_file(gateways, scratch):
    path = scratch / "daemon.log"
    gw = gateways.make("streams-file-broken", ["--app", "tests/apps/broken_import.py", "--log-file", str(path)])
    gw.spawn()
    assert gw.wait_exit() != 0
    text = path.read_text()
    # The master's line with the worker's traceback (handed over on its
    # status pipe), and why it stopped.
    assert re.search(r"ERROR .*worker \d+ could not load the application \(exited with code 4\):\n"
                     r"  could not load the application .*broken_import", text), text
    assert "broken_import fails on purpose" in text and "Traceback" in text, text
    assert re.search(r"worker \d+ could not load the application; stopping", text), text
    assert "rustgi-gateway: " in gw.output(), gw.output()
