"""What the echo apps share (cgi_app.py, example_app.py, front_app.py):
reading the body and answering, as JSON, what the app saw. A test that
renders one of those apps elsewhere copies this module next to it (the
app's directory is on sys.path).

Only the standard library is used.
"""

import json
import os


def read_body(environ, unsized=False):
    """The request body: CONTENT_LENGTH bytes read with read(size) (the
    validator allows no other form). Without CONTENT_LENGTH, nothing; or,
    with `unsized` and wsgi.input_terminated, until b''."""
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH", "")
    unsized = unsized and environ.get("wsgi.input_terminated")
    left = int(length) if length else -1 if unsized else 0
    parts = []
    while left != 0:
        data = stream.read(65536 if left < 0 else min(left, 65536))
        if not data:
            break
        parts.append(data)
        left -= len(data) if left > 0 else 0
    return b"".join(parts)


def chosen_status(path):
    """`N Chosen` for a path ending in /status/N, else `200 OK`."""
    parts = path.split("/")
    if len(parts) >= 2 and parts[-2] == "status" and parts[-1].isdigit():
        return f"{parts[-1]} Chosen"
    return "200 OK"


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def process():
    """The process serving the request: pid, ppid and command line."""
    return {"pid": os.getpid(), "ppid": os.getppid(), "cmdline": cmdline(os.getpid())}


def answer_json(environ, start_response, status="200 OK", *, unsized=False, **more):
    """Answers every str value of the environ and the body it read (latin-1,
    see read_body), with `more` fields, as JSON."""
    body = read_body(environ, unsized)
    data = json.dumps(
        {
            "environ": {k: v for k, v in environ.items() if isinstance(v, str)},
            "body": body.decode("latin-1"),
            **more,
        },
        sort_keys=True,
    ).encode("utf-8")
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]
