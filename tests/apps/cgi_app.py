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

Only the standard library is used (and echo.py, copied along): rustgi runs it without a venv, and under
Apache as www-data.
"""

import os
import socket
import stat
import sys
from wsgiref.validate import validator

from echo import answer_json, chosen_status, process

PRINTED = "PRINTED-BY-THE-APP"


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


def echo(environ, start_response, status="200 OK"):
    return answer_json(
        environ, start_response, status,
        run_once=environ["wsgi.run_once"],
        multithread=environ["wsgi.multithread"],
        multiprocess=environ["wsgi.multiprocess"],
        input_terminated=bool(environ.get("wsgi.input_terminated")),
        fd0=describe_fd0(),
        python=sys.version,
        **process(),
    )


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
    return echo(environ, start_response, chosen_status(path))


application = validator(cgi_app)
