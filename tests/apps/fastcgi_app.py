"""WSGI apps for tests/test_fastcgi_raw.py. Every app is wrapped in
wsgiref.validate.validator, so each request also checks PEP 3333.

`application` picks the app by the FastCGI role (FCGI_ROLE in the environ):
AUTHORIZER -> `authorizer`, FILTER -> `filter_app`, RESPONDER -> the route
named by PATH_INFO:

- /hello                 "hello"
- /tag?tag=T&secs=S      sleeps S seconds, then "tag:T"
- /environ               the environ's str values as JSON
- /echo                  the request body
- /stream?path=P&interval=I&blocks=N
                         yields "block i\\n" every I seconds; the iterable's
                         close() writes "closed after K blocks" to P
- /read-blocked?path=P   writes "reading" to P, reads the whole body, then
                         appends "read N" or "OSError: ..." to P
- /errors?n=N            writes N lines to wsgi.errors, answers "errors sent"
- /slow-sha?delay=D&chunk=C
                         reads the body C bytes at a time, sleeping D seconds
                         between reads; answers "sha256=HEX len=N"

Marker files are named by the test (?path=...). Standard library only (and conformance.py next to it).
"""

import hashlib
import json
import time
from wsgiref.validate import validator

from conformance import content_length, query, text  # the module's directory is on sys.path


def environ_strings(environ):
    return {k: v for k, v in environ.items() if isinstance(v, str)}


def read_all(stream, chunk=65536):
    """Reads a wsgi.input-like stream to its end with read(size) only
    (the validator allows no other form)."""
    parts = []
    while True:
        data = stream.read(chunk)
        if not data:
            return b"".join(parts)
        parts.append(data)


def append(path, line):
    with open(path, "a") as f:
        f.write(line + "\n")


# ---------------------------------------------------------------------------
# RESPONDER routes


@validator
def hello(environ, start_response):
    return text(start_response, "hello")


@validator
def tag(environ, start_response):
    q = query(environ)
    time.sleep(float(q.get("secs", 0)))
    return text(start_response, "tag:" + q.get("tag", ""))


@validator
def dump_environ(environ, start_response):
    data = json.dumps(environ_strings(environ), sort_keys=True)
    return text(start_response, data, headers=[("X-Kind", "environ")])


@validator
def echo(environ, start_response):
    body = environ["wsgi.input"].read(content_length(environ))
    return text(start_response, body)


class SlowBlocks:
    """Yields a block every `interval` seconds; close() leaves a marker."""

    def __init__(self, path, interval, blocks):
        self.path = path
        self.interval = interval
        self.blocks = blocks
        self.sent = 0

    def __iter__(self):
        for i in range(self.blocks):
            if i:
                time.sleep(self.interval)
            self.sent = i + 1
            yield f"block {i}\n".encode()

    def close(self):
        append(self.path, f"closed after {self.sent} blocks")


@validator
def stream(environ, start_response):
    q = query(environ)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return SlowBlocks(q["path"], float(q.get("interval", 0.2)), int(q.get("blocks", 100)))


@validator
def read_blocked(environ, start_response):
    path = query(environ)["path"]
    append(path, "reading")
    try:
        data = environ["wsgi.input"].read(content_length(environ))
        append(path, f"read {len(data)}")
    except OSError as e:
        append(path, f"OSError: {e}")
    return text(start_response, "done reading")


@validator
def errors(environ, start_response):
    n = int(query(environ).get("n", 3))
    err = environ["wsgi.errors"]
    for i in range(n):
        err.write(f"err line {i}\n")
    err.flush()
    return text(start_response, "errors sent")


@validator
def slow_sha(environ, start_response):
    q = query(environ)
    delay = float(q.get("delay", 0.05))
    chunk = int(q.get("chunk", 65536))
    h = hashlib.sha256()
    total = 0
    while True:
        data = environ["wsgi.input"].read(chunk)
        if not data:
            break
        h.update(data)
        total += len(data)
        time.sleep(delay)
    return text(start_response, f"sha256={h.hexdigest()} len={total}")


@validator
def not_found(environ, start_response):
    return text(start_response, "no route " + environ.get("PATH_INFO", ""), "404 Not Found")


ROUTES = {
    "/hello": hello,
    "/tag": tag,
    "/environ": dump_environ,
    "/echo": echo,
    "/stream": stream,
    "/read-blocked": read_blocked,
    "/errors": errors,
    "/slow-sha": slow_sha,
}


# ---------------------------------------------------------------------------
# AUTHORIZER and FILTER


@validator
def authorizer(environ, start_response):
    """200 with Variable-USER for `Authorization: Bearer alice`, else 403.
    The 200 body is the environ as JSON."""
    if environ.get("HTTP_AUTHORIZATION") == "Bearer alice":
        data = json.dumps(environ_strings(environ), sort_keys=True)
        return text(start_response, data, headers=[("Variable-USER", "alice")])
    return text(start_response, "denied", "403 Forbidden")


@validator
def filter_app(environ, start_response):
    """Reads STDIN (wsgi.input) and the DATA stream (fastcgi.data);
    answers their sizes and checksums as JSON."""
    stdin = environ["wsgi.input"].read(content_length(environ))
    data = read_all(environ["fastcgi.data"])
    answer = {
        "stdin": stdin.decode("latin-1"),
        "data_len": len(data),
        "data_sha256": hashlib.sha256(data).hexdigest(),
        "FCGI_ROLE": environ.get("FCGI_ROLE"),
        "FCGI_DATA_LENGTH": environ.get("FCGI_DATA_LENGTH"),
        "FCGI_DATA_LAST_MOD": environ.get("FCGI_DATA_LAST_MOD"),
    }
    return text(start_response, json.dumps(answer))


def application(environ, start_response):
    role = environ.get("FCGI_ROLE")
    if role == "AUTHORIZER":
        app = authorizer
    elif role == "FILTER":
        app = filter_app
    else:
        app = ROUTES.get(environ.get("PATH_INFO", ""), not_found)
    return app(environ, start_response)
