"""libfcgi's `cgi-fcgi -bind -connect SOCKET` (Debian: libfcgi-bin) against
the FastCGI gateway: the classic CGI-to-FastCGI bridge, also the usual
health-check tool. It sends its whole environment as PARAMS, its stdin as
STDIN (CONTENT_LENGTH bytes), writes STDOUT to its stdout and STDERR to its
stderr, and exits with END_REQUEST's appStatus (or an errno when the
connection fails)."""

import hashlib
import json
import os
import socket
import struct
import subprocess
import time
import uuid

from harness import parse_cgi_response


def cgi_env(method, path, query="", body=None, content_type=None):
    """The CGI variables a web server would set for `method path?query`."""
    env = {
        "GATEWAY_INTERFACE": "CGI/1.1",
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "REQUEST_URI": path + ("?" + query if query else ""),
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_SOFTWARE": "cgi-fcgi-test",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "localhost",
    }
    if body is not None:
        env["CONTENT_LENGTH"] = str(len(body))
    if content_type is not None:
        env["CONTENT_TYPE"] = content_type
    return env


def run_cgi_fcgi(binary, socket_path, env, body=b""):
    """Runs cgi-fcgi with exactly `env` as its environment (= the PARAMS)."""
    return subprocess.run(
        [binary, "-bind", "-connect", socket_path],
        input=body, env=env, capture_output=True, timeout=30,
    )


def test_get(cgi_fcgi, fcgi_gateway):
    done = run_cgi_fcgi(cgi_fcgi, fcgi_gateway.socket, cgi_env("GET", "/hello"))
    response = parse_cgi_response(done.stdout)
    assert response.status == 200, (done, fcgi_gateway.describe())
    assert response.body == b"hello"
    assert response.header("Content-Type").startswith("text/plain")
    assert response.header("Content-Length") == "5"


def test_post_with_a_body(cgi_fcgi, fcgi_gateway):
    body = os.urandom(100_000)  # cgi-fcgi sends it in ~8 KiB STDIN records
    done = run_cgi_fcgi(
        cgi_fcgi, fcgi_gateway.socket, cgi_env("POST", "/echo", body=body, content_type="application/x-test"),
        body,
    )
    assert done.returncode == 0, (done.returncode, done.stderr, fcgi_gateway.describe())
    response = parse_cgi_response(done.stdout)
    assert response.status == 200, fcgi_gateway.describe()
    assert response.header("Content-Type") == "application/x-test"
    assert response.header("Content-Length") == str(len(body))
    assert response.body == body


def test_post_checksum(cgi_fcgi, fcgi_gateway):
    body = os.urandom(1024 * 1024 + 3)
    done = run_cgi_fcgi(
        cgi_fcgi, fcgi_gateway.socket, cgi_env("POST", "/sha256", body=body), body
    )
    assert done.returncode == 0, (done.returncode, done.stderr, fcgi_gateway.describe())
    response = parse_cgi_response(done.stdout)
    assert response.status == 200
    assert response.body.decode() == f"{hashlib.sha256(body).hexdigest()} {len(body)} past_end=0"


def test_environ_from_cgi_variables(cgi_fcgi, fcgi_gateway):
    # A CGI server sends SCRIPT_NAME and PATH_INFO: they are kept as sent.
    env = cgi_env("GET", "/environ", query="a=1&b=%20")
    env["SCRIPT_NAME"] = ""
    done = run_cgi_fcgi(cgi_fcgi, fcgi_gateway.socket, env)
    response = parse_cgi_response(done.stdout)
    assert response.status == 200, (done, fcgi_gateway.describe())
    seen = json.loads(response.body)
    assert (seen["SCRIPT_NAME"], seen["PATH_INFO"]) == ("", "/environ")
    assert seen["QUERY_STRING"] == "a=1&b=%20"
    assert seen["REQUEST_METHOD"] == "GET"
    assert seen["SERVER_SOFTWARE"] == "cgi-fcgi-test"
    assert seen["wsgi.input_terminated"] is True


def test_404_and_500_statuses(cgi_fcgi, fcgi_gateway):
    done = run_cgi_fcgi(cgi_fcgi, fcgi_gateway.socket, cgi_env("GET", "/nowhere"))
    response = parse_cgi_response(done.stdout)
    assert (response.status, response.body) == (404, b"no route for '/nowhere'")
    message = f"cgi-fcgi-boom-{uuid.uuid4().hex}"
    done = run_cgi_fcgi(
        cgi_fcgi, fcgi_gateway.socket, cgi_env("GET", "/raise-before-body", query=f"message={message}")
    )
    response = parse_cgi_response(done.stdout)
    assert response.status == 500
    assert message.encode() not in response.body
    assert fcgi_gateway.log.wait_for(message), fcgi_gateway.describe()


def test_wsgi_errors_arrive_as_fcgi_stderr(cgi_fcgi, fcgi_gateway):
    message = f"cgi-fcgi-errors-{uuid.uuid4().hex}"
    done = run_cgi_fcgi(
        cgi_fcgi, fcgi_gateway.socket, cgi_env("GET", "/errors", query=f"message={message}")
    )
    response = parse_cgi_response(done.stdout)
    assert (response.status, response.body) == (200, b"logged"), fcgi_gateway.describe()
    assert message.encode() in done.stderr, done.stderr


def test_exit_status_of_repeated_gets(cgi_fcgi, fcgi_gateway):
    # cgi-fcgi exits with END_REQUEST's appStatus (0), or with errno when a
    # read or write on the connection fails. It sends a GET's (empty) STDIN
    # end only after it has read the response: the gateway must not close
    # the connection before that, or the write fails with EPIPE (exit 32),
    # which a health check reads as "down".
    results = []
    for i in range(100):
        done = run_cgi_fcgi(cgi_fcgi, fcgi_gateway.socket, cgi_env("GET", "/hello"))
        results.append((done.returncode, parse_cgi_response(done.stdout).body))
    bodies = {body for _, body in results}
    assert bodies == {b"hello"}, bodies
    codes = [code for code, _ in results]
    failed = [code for code in codes if code != 0]
    assert not failed, f"{len(failed)} of 100 GETs exited non-zero: {sorted(set(failed))}"


def _record(rtype: int, content: bytes, request_id: int = 1) -> bytes:
    """One FastCGI record (spec 1.0, section 3.3), padded to 8 bytes."""
    padding = -len(content) % 8
    return struct.pack(">BBHHBx", 1, rtype, request_id, len(content), padding) + content + bytes(padding)


def _pair(name: bytes, value: bytes) -> bytes:
    assert len(name) < 128 and len(value) < 128
    return bytes([len(name), len(value)]) + name + value


def test_stdin_end_sent_after_the_response_like_cgi_fcgi(fcgi_gateway):
    # What cgi-fcgi does for a GET, without its timing: BEGIN_REQUEST (no
    # KEEP_CONN), PARAMS, read the whole response up to END_REQUEST, and
    # only then the empty STDIN record that ends the request's input. The
    # gateway must still be reading then (the request's STDIN has not
    # ended): the write must not fail with EPIPE / ECONNRESET.
    params = b"".join(_pair(k.encode(), v.encode()) for k, v in cgi_env("GET", "/hello").items())
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(fcgi_gateway.socket)
        sock.sendall(
            _record(1, struct.pack(">HB5x", 1, 0)) + _record(4, params) + _record(4, b"")
        )
        data = b""
        while b"\x01\x03\x00\x01" not in data:  # END_REQUEST for request 1
            chunk = sock.recv(65536)
            assert chunk, f"connection closed before END_REQUEST: {data!r}"
            data += chunk
        assert b"hello" in data
        time.sleep(0.2)  # cgi-fcgi is slower than this when the machine is busy
        try:
            sock.sendall(_record(5, b""))
        except OSError as e:
            raise AssertionError(
                f"the gateway closed the connection before the request's STDIN ended: "
                f"writing the empty STDIN record failed with {e!r}"
            )
