"""The app of tests/test_cgi_mode.py and tests/test_examples_apache.py: one
request per process (CGI) or many (the proxy and mod_fcgid examples).
`application` is wrapped in wsgiref.validate.validator, so every request
also checks PEP 3333. Routes on PATH_INFO:

- /print     writes to stdout three ways (print(), sys.stdout.write and
             os.write(1, ...)), each line carrying PRINTED-BY-THE-APP, then
             answers "printed, then answered\\n". In CGI mode none of it may
             reach the response.
- /fail      raises RuntimeError("boom from cgi_app") before start_response.
- /status/N  answers status N (with the JSON below).
- anything else answers JSON: every str value of the environ, the body it
  read (latin-1), wsgi.run_once / multithread / multiprocess, and the
  process: pid, ppid, its command line, what fd 0 is, and sys.version.

Only the standard library is used: rustgi runs it without a venv, and under
Apache as www-data.
"""

import json
import os
import socket
import stat
import sys
from wsgiref.validate import validator

PRINTED = "PRINTED-BY-THE-APP"


def read_body(environ):
    """CONTENT_LENGTH bytes, read in pieces with read(size) (the validator
    allows no other form)."""
    stream = environ["wsgi.input"]
    left = int(environ.get("CONTENT_LENGTH") or 0)
    parts = []
    while left > 0:
        data = stream.read(min(left, 65536))
        if not data:
            break
        parts.append(data)
        left -= len(data)
    return b"".join(parts)


def describe_fd0():
    """'socket (listening)', 'socket (connected)', 'fifo', 'file', 'char device', ..."""
    try:
        mode = os.fstat(0).st_mode
    except OSError as e:
        return f"closed ({e.strerror})"
    if stat.S_ISSOCK(mode):
        s = socket.socket(fileno=os.dup(0))
        try:
            listening = s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        finally:
            s.close()
        return "socket (listening)" if listening else "socket (connected)"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISCHR(mode):
        return "char device"
    return "file"


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def echo(environ, start_response, status="200 OK"):
    body = read_body(environ)
    data = json.dumps(
        {
            "environ": {k: v for k, v in environ.items() if isinstance(v, str)},
            "body": body.decode("latin-1"),
            "run_once": environ["wsgi.run_once"],
            "multithread": environ["wsgi.multithread"],
            "multiprocess": environ["wsgi.multiprocess"],
            "input_terminated": bool(environ.get("wsgi.input_terminated")),
            "pid": os.getpid(),
            "ppid": os.getppid(),
            "cmdline": cmdline(os.getpid()),
            "fd0": describe_fd0(),
            "python": sys.version,
        },
        sort_keys=True,
    ).encode("utf-8")
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def printing(environ, start_response):
    print(f"{PRINTED} via print()")
    sys.stdout.write(f"{PRINTED} via sys.stdout.write\n")
    sys.stdout.flush()
    os.write(1, f"{PRINTED} via os.write(1)\n".encode())
    data = b"printed, then answered\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
    return [data]


def cgi_app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/print":
        return printing(environ, start_response)
    if path == "/fail":
        raise RuntimeError("boom from cgi_app")
    parts = path.split("/")
    if len(parts) >= 2 and parts[-2] == "status" and parts[-1].isdigit():
        return echo(environ, start_response, f"{parts[-1]} Chosen")
    return echo(environ, start_response)


application = validator(cgi_app)
