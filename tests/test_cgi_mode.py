"""rustgi-gateway as a CGI program, run directly: the request in the process
environment (RFC 3875) and on stdin, the response on stdout, one request per
process. And how it decides to be one when no --proto is given (README, "How
rustgi starts"): FCGI_FORCE_CGI=Y first, then a listening socket on fd 0
(served, not CGI), then GATEWAY_INTERFACE, else a clear error.

The app is tests/apps/cgi_app.py (validator-wrapped). Each run gets a
minimal environment of our own (no inherited GATEWAY_INTERFACE, PYTHONPATH
or the like), so what decides the mode is what the test gives.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import threading

import pytest

from harness import APPS, parse_cgi_response, scgi_request

APP = str(APPS / "cgi_app.py")
PRINTED = "PRINTED-BY-THE-APP"  # what tests/apps/cgi_app.py prints on /print


def base_env() -> dict:
    """What every run gets besides the CGI variables."""
    return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "NO_COLOR": "1"}


def cgi_env(method: str = "GET", path_info: str = "/hello", *, script_name: str = "/app.cgi",
            query: str = "", body: bytes = b"", content_type: str = "", extra=None) -> dict:
    """The meta-variables a web server sets for a CGI script (RFC 3875 §4.1),
    as Apache names them."""
    env = base_env()
    env.update({
        "GATEWAY_INTERFACE": "CGI/1.1",
        "SERVER_SOFTWARE": "test-harness",
        "SERVER_NAME": "cgi.example",
        "SERVER_PORT": "8080",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": script_name,
        "PATH_INFO": path_info,
        "QUERY_STRING": query,
        "REQUEST_URI": script_name + path_info + ("?" + query if query else ""),
        "REMOTE_ADDR": "192.0.2.7",
        "REMOTE_PORT": "41000",
        "HTTP_HOST": "cgi.example:8080",
        "HTTP_X_TEST": "yes",
    })
    if body or method == "POST":
        env["CONTENT_LENGTH"] = str(len(body))
    if content_type:
        env["CONTENT_TYPE"] = content_type
    env.update(extra or {})
    return env


def run_cgi(env: dict, body: bytes = b"", *, args=("--app", APP), gateway_bin=None, stdin=None,
            stdout=subprocess.PIPE, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """Runs the gateway once; stdin gets `body` (through a pipe) unless
    `stdin` is given (a file descriptor)."""
    argv = [str(gateway_bin)] + list(args)
    return subprocess.run(
        argv,
        env=env,
        input=None if stdin is not None else body,
        stdin=stdin,
        stdout=stdout,
        stderr=subprocess.PIPE,
        timeout=timeout,
    )


def describe(p: subprocess.CompletedProcess) -> str:
    out = p.stdout[:600] if isinstance(p.stdout, bytes) else p.stdout
    return f"exit {p.returncode}\n--- stdout:\n{out!r}\n--- stderr:\n{p.stderr.decode('utf-8', 'replace')[-3000:]}"


def answer_of(raw: bytes, context: str = "") -> dict:
    resp = parse_cgi_response(raw)
    assert resp.status == 200, f"{resp.status}: {resp.body[:300]!r}\n{context}"
    assert resp.header("Content-Type") == "application/json", resp.headers
    assert int(resp.header("Content-Length")) == len(resp.body), resp.headers
    return json.loads(resp.body)


# ---------------------------------------------------------------------------
# serving a request


def test_get(gateway_bin):
    p = run_cgi(cgi_env("GET", "/hello/w%C3%B6rld", query="a=1&b=%C3%A9"), gateway_bin=gateway_bin)
    assert p.returncode == 0, describe(p)
    assert p.stdout.startswith(b"Status: 200 OK\r\n"), describe(p)
    got = answer_of(p.stdout, describe(p))
    env = got["environ"]
    assert env["REQUEST_METHOD"] == "GET"
    assert env["QUERY_STRING"] == "a=1&b=%C3%A9"
    # taken as the server sent them: the script's URL and the rest
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/app.cgi", "/hello/w%C3%B6rld")
    assert env["GATEWAY_INTERFACE"] == "CGI/1.1"
    assert env["HTTP_X_TEST"] == "yes" and env["REMOTE_ADDR"] == "192.0.2.7"
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("cgi.example", "8080")
    assert got["run_once"] is True
    assert got["multithread"] is False and got["multiprocess"] is True
    assert got["body"] == ""


def test_paths_at_the_servers_root(gateway_bin):
    """ScriptAlias / /srv/app/app.cgi/: SCRIPT_NAME "" and PATH_INFO the path."""
    p = run_cgi(cgi_env("GET", "/a/b", script_name=""), gateway_bin=gateway_bin)
    assert p.returncode == 0, describe(p)
    env = answer_of(p.stdout, describe(p))["environ"]
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("", "/a/b")


@pytest.mark.parametrize("size", [0, 11, 3 * 1024 * 1024 + 5])
def test_post_with_body(gateway_bin, size):
    # 3 MiB + 5: over --spool-memory (1 MiB), so part of it is spooled to a file
    body = (bytes(range(256)) * (size // 256 + 1))[:size]
    p = run_cgi(cgi_env("POST", "/upload", body=body, content_type="application/octet-stream"), body,
                gateway_bin=gateway_bin)
    assert p.returncode == 0, describe(p)
    got = answer_of(p.stdout, describe(p))
    assert got["environ"]["CONTENT_LENGTH"] == str(size)
    assert got["environ"]["CONTENT_TYPE"] == "application/octet-stream"
    assert got["body"].encode("latin-1") == body


def test_body_beyond_content_length_is_not_read(gateway_bin):
    """The server may leave more on stdin than CONTENT_LENGTH (RFC 3875
    §4.2: the script must not read past it)."""
    p = run_cgi(cgi_env("POST", "/upload", body=b"exactly"), b"exactly" + b"-and-more",
                gateway_bin=gateway_bin)
    assert p.returncode == 0, describe(p)
    assert answer_of(p.stdout, describe(p))["body"] == "exactly"


@pytest.mark.parametrize("value", ["12x", "-1", " 7", "0x10", "99999999999999999999999"])
def test_a_bad_content_length_is_a_400_without_the_app(gateway_bin, value):
    """CGI mode takes CONTENT_LENGTH as every protocol does: digits only.
    Anything else is the web server's error; the app never sees a body of
    unknown length (it used to read garbage as 0)."""
    env = cgi_env("POST", "/upload", body=b"x" * 12)
    env["CONTENT_LENGTH"] = value
    p = run_cgi(env, b"x" * 12, gateway_bin=gateway_bin)
    assert p.returncode == 0, describe(p)
    resp = parse_cgi_response(p.stdout)
    assert resp.status == 400, describe(p)
    assert resp.body == b"Bad Request\n"
    assert b"CONTENT_LENGTH" in p.stderr and b"answering 400" in p.stderr, describe(p)


def test_print_does_not_reach_the_response(gateway_bin):
    """print(), sys.stdout.write and os.write(1, ...) go to stderr (the web
    server's error log); stdout holds the response and nothing else."""
    p = run_cgi(cgi_env("GET", "/print"), gateway_bin=gateway_bin)
    assert p.returncode == 0, describe(p)
    assert PRINTED.encode() not in p.stdout, describe(p)
    resp = parse_cgi_response(p.stdout)
    assert resp.status == 200
    assert resp.body == b"printed, then answered\n"
    assert p.stdout == (
        b"Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 23\r\n\r\n"
        b"printed, then answered\n"
    ), describe(p)
    err = p.stderr.decode()
    # print() and sys.stdout go to the log (stderr), tagged with the request;
    # a write to fd 1 goes to stderr as it is.
    for how in ("print()", "sys.stdout.write"):
        assert re.search(rf"INFO app\.stdout: {PRINTED} via {re.escape(how)} request=#\S+ GET \S*/print\n", err), describe(p)
    assert f"{PRINTED} via os.write(1)\n" in err, describe(p)


def test_app_status_passes_through(gateway_bin):
    p = run_cgi(cgi_env("GET", "/x/status/404"), gateway_bin=gateway_bin)
    assert p.returncode == 0, describe(p)
    assert parse_cgi_response(p.stdout).status == 404, describe(p)


def test_app_error_is_a_500_and_exit_code_0(gateway_bin):
    p = run_cgi(cgi_env("GET", "/fail"), gateway_bin=gateway_bin)
    assert p.returncode == 0, "a response was written: exit 0\n" + describe(p)
    resp = parse_cgi_response(p.stdout)
    assert resp.status == 500, describe(p)
    assert b"boom" not in p.stdout and b"Traceback" not in p.stdout, describe(p)
    err = p.stderr.decode()
    assert "Traceback (most recent call last)" in err, describe(p)
    assert "RuntimeError: boom from cgi_app" in err, describe(p)


def test_no_response_written_is_a_nonzero_exit(gateway_bin):
    """stdout is a pipe nobody reads (its read end closed): the response
    cannot be written, and the exit code says so (an exit, not a death by
    SIGPIPE)."""
    r, w = os.pipe()
    os.close(r)
    try:
        p = run_cgi(cgi_env("GET", "/hello"), gateway_bin=gateway_bin, stdout=w)
    finally:
        os.close(w)
    assert p.returncode > 0, f"exit {p.returncode}\n{p.stderr.decode()[-2000:]}"
    assert p.stderr.strip(), "no word on stderr about the failed write"


def test_import_error_is_a_nonzero_exit_with_nothing_on_stdout(gateway_bin):
    p = run_cgi(cgi_env("GET", "/hello"), args=("--app", str(APPS / "broken_import.py")),
                gateway_bin=gateway_bin)
    assert p.returncode != 0, describe(p)
    assert p.stdout == b"", describe(p)
    assert "broken_import" in p.stderr.decode(), describe(p)


# ---------------------------------------------------------------------------
# how the mode is chosen


def listening_socket(run_dir, name: str) -> socket.socket:
    path = run_dir / f"{name}-{os.getpid()}.sock"
    if path.exists():
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(4)
    return sock


def test_force_cgi_wins_over_a_listening_socket_on_fd0(gateway_bin, run_dir):
    """FCGI_FORCE_CGI=Y (as flup honours it): CGI even though fd 0 is a
    listening socket, which would otherwise be served."""
    sock = listening_socket(run_dir, "force-cgi")
    path = sock.getsockname()
    try:
        p = run_cgi(cgi_env("GET", "/forced", extra={"FCGI_FORCE_CGI": "Y"}), gateway_bin=gateway_bin,
                    stdin=sock.fileno(), timeout=30)
        assert p.returncode == 0, describe(p)
        got = answer_of(p.stdout, describe(p))
        assert got["run_once"] is True and got["environ"]["PATH_INFO"] == "/forced"
        assert "listening on" not in p.stderr.decode(), describe(p)
    finally:
        sock.close()
        os.unlink(path)


def test_force_cgi_without_gateway_interface(gateway_bin):
    """FCGI_FORCE_CGI=y alone (any case) is enough, GATEWAY_INTERFACE or not."""
    env = cgi_env("GET", "/forced", extra={"FCGI_FORCE_CGI": "y"})
    del env["GATEWAY_INTERFACE"]
    p = run_cgi(env, gateway_bin=gateway_bin, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, describe(p)
    assert answer_of(p.stdout, describe(p))["run_once"] is True


def test_listening_socket_on_fd0_is_served_even_with_gateway_interface(gateway_bin, run_dir):
    """Spawned by a web server that also sets GATEWAY_INTERFACE (mod_fcgid
    passes the request's variables on): the socket on fd 0 wins, and is
    served (here with SCGI, told apart by its first byte)."""
    sock = listening_socket(run_dir, "fd0-wins")
    path = sock.getsockname()
    env = cgi_env("GET", "/ignored")
    env["RUST_LOG"] = "info"
    proc = subprocess.Popen([str(gateway_bin), "--app", APP], env=env, stdin=sock.fileno(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    sock.close()
    try:
        r = scgi_request(path, "GET", "/via-socket", timeout=30)
        assert r.status == 200, r
        got = json.loads(r.body)
        assert got["run_once"] is False and got["environ"]["PATH_INFO"] == "/via-socket"
        assert got["environ"]["SCGI"] == "1"
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
        os.unlink(path)
    assert proc.returncode == 0, err.decode()[-2000:]


@pytest.mark.parametrize("method,body", [("GET", b""), ("POST", b"body through a connected socket\n" * 1000)])
def test_gateway_interface_with_a_connected_socket_on_fd0_is_cgi(gateway_bin, method, body):
    """mod_cgid's case: fd 0 and fd 1 are one end of a *connected* Unix
    socket (to the cgid daemon). The classic getpeername() test takes that
    for FastCGI; GATEWAY_INTERFACE must make it CGI."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    env = cgi_env(method, "/cgid", body=body, content_type="text/plain" if body else "")
    proc = subprocess.Popen([str(gateway_bin), "--app", APP], env=env, stdin=theirs.fileno(),
                            stdout=theirs.fileno(), stderr=subprocess.PIPE)
    theirs.close()
    received = []
    err = []
    reader = threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True)
    reader.start()
    try:
        ours.settimeout(30)
        ours.sendall(body)  # and keep the socket open, as mod_cgid does
        while True:
            chunk = ours.recv(65536)
            if not chunk:
                break
            received.append(chunk)
        code = proc.wait(timeout=30)
    finally:
        ours.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(10)
    raw = b"".join(received)
    stderr = (err[0] if err else b"").decode("utf-8", "replace")
    assert code == 0, f"exit {code}\n{stderr[-2000:]}"
    got = answer_of(raw, stderr[-2000:])
    assert got["run_once"] is True, got
    assert got["fd0"] == "socket (connected)"
    assert got["body"].encode("latin-1") == body
    assert got["environ"]["REQUEST_METHOD"] == method


@pytest.mark.parametrize("stdin", ["pipe", "devnull", "connected-socket"])
def test_no_gateway_interface_and_no_listening_socket_is_a_clear_error(gateway_bin, stdin):
    env = cgi_env("GET", "/hello")
    del env["GATEWAY_INTERFACE"]
    pair = socket.socketpair() if stdin == "connected-socket" else None
    try:
        if stdin == "pipe":
            p = run_cgi(env, b"", gateway_bin=gateway_bin, timeout=30)
        elif stdin == "devnull":
            p = run_cgi(env, gateway_bin=gateway_bin, stdin=subprocess.DEVNULL, timeout=30)
        else:
            p = run_cgi(env, gateway_bin=gateway_bin, stdin=pair[0].fileno(), timeout=30)
    finally:
        for s in pair or ():
            s.close()
    assert p.returncode != 0, describe(p)
    assert p.stdout == b"", describe(p)
    err = p.stderr.decode()
    assert "--socket" in err, describe(p)
    assert "GATEWAY_INTERFACE" in err, describe(p)
    assert "Traceback" not in err and "panicked" not in err, describe(p)


def test_proto_cgi_explicitly(gateway_bin):
    """--proto cgi needs no GATEWAY_INTERFACE; REQUEST_METHOD and the
    rest that a hand-written environment leaves out get defaults."""
    env = base_env()
    env.update({"REQUEST_METHOD": "POST", "PATH_INFO": "/explicit", "CONTENT_LENGTH": "5"})
    p = run_cgi(env, b"hello", args=("--proto", "cgi", "--app", APP), gateway_bin=gateway_bin)
    assert p.returncode == 0, describe(p)
    got = answer_of(p.stdout, describe(p))
    assert got["run_once"] is True
    assert got["body"] == "hello"
    assert got["environ"]["PATH_INFO"] == "/explicit"
    for key in ("SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL", "QUERY_STRING", "SCRIPT_NAME"):
        assert key in got["environ"], key


def test_proto_cgi_wins_over_a_listening_socket_on_fd0(gateway_bin, run_dir):
    sock = listening_socket(run_dir, "proto-cgi")
    path = sock.getsockname()
    try:
        env = cgi_env("GET", "/explicit")
        p = run_cgi(env, args=("--proto", "cgi", "--app", APP), gateway_bin=gateway_bin,
                    stdin=sock.fileno(), timeout=30)
    finally:
        sock.close()
        os.unlink(path)
    assert p.returncode == 0, describe(p)
    assert answer_of(p.stdout, describe(p))["run_once"] is True
