"""The conformance app of the integration suite.

`application` routes on PATH_INFO:
- paths under /raw/ go to `raw_app`, which is NOT wrapped in
  wsgiref.validate.validator (the validator forbids read() without a size and
  replaces the input's own iterator with readline());
- everything else goes to `checked_app` = validator(conformance_app), so
  every one of those requests also checks PEP 3333 (routes that break the
  rules on purpose, for the gateway to refuse, are under /raw/ when the
  validator would refuse them first).

Any path with ?dump=environ answers the environ as JSON.

A leading /unbuffered, /par or /mem (nginx locations that share this app) is
stripped before routing. Paths that write marker files take the file's path
in the query string (?path=...), so the test decides where they go.

Only the standard library is used: the gateway runs this without a venv.
"""

import atexit
import hashlib
import io
import json
import os
import sys
import threading
import time
from urllib.parse import parse_qs
from wsgiref.validate import validator

ROUTE_PREFIXES = ("/unbuffered", "/par", "/mem")


def route_of(environ):
    path = environ.get("PATH_INFO", "")
    for prefix in ROUTE_PREFIXES:
        if path == prefix or path.startswith(prefix + "/"):
            return path[len(prefix):] or "/"
    return path


def query(environ):
    return {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


def content_length(environ):
    return int(environ.get("CONTENT_LENGTH") or 0)


def text(start_response, body, status="200 OK", headers=()):
    data = body.encode("utf-8") if isinstance(body, str) else body
    start_response(
        status,
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(data)))]
        + list(headers),
    )
    return [data]


def as_json(start_response, value, status="200 OK"):
    data = json.dumps(value).encode("utf-8")
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def pattern_block(index, size):
    """Block `index` of a generated body: the index as 8 big-endian bytes,
    repeated (same as tests/harness.py)."""
    unit = index.to_bytes(8, "big")
    return (unit * (size // 8 + 1))[:size]


def append_line(path, line):
    with open(path, "a") as f:
        f.write(line + "\n")


# ---------------------------------------------------------------------------
# the validated app


READ_SIZES = (1, 7, 4096, 65536, 100_000, 262_144)


def read_until_error(stream, length):
    """Reads up to `length` bytes, stopping at b'' or an OSError; returns
    (how many bytes came, the OSError or None)."""
    got = 0
    try:
        while got < length:
            piece = stream.read(length - got)
            if not piece:
                break
            got += len(piece)
    except OSError as e:
        return got, e
    return got, None


def read_exactly_in_pieces(stream, length, sizes=READ_SIZES):
    """Reads `length` bytes with read(size) calls of varying sizes; yields pieces."""
    left = length
    i = 0
    while left > 0:
        piece = stream.read(min(sizes[i % len(sizes)], left))
        i += 1
        if not piece:
            raise OSError(f"wsgi.input ended {left} bytes early")
        left -= len(piece)
        yield piece


def environ_snapshot(environ):
    """The environ as JSON: str values as they are, other values as type names
    (plus a few wsgi.* values that are plain data)."""
    out = {}
    for key, value in environ.items():
        if isinstance(value, str):
            out[key] = value
        elif key in ("wsgi.version",):
            out[key] = list(value)
        elif isinstance(value, bool):
            out[key] = value
        else:
            out[key] = "<%s>" % type(value).__name__
    return out


class EndlessBody:
    """An endless (capped at two minutes) slow response body whose close()
    writes a marker file."""

    def __init__(self, marker):
        self.marker = marker
        self.sent = 0
        self.started = time.time()
        self.block = b"e" * 65536

    def __iter__(self):
        return self

    def __next__(self):
        if time.time() - self.started > 120:
            raise StopIteration
        time.sleep(0.01)
        self.sent += 1
        return self.block

    def close(self):
        exhausted = time.time() - self.started > 120
        append_line(self.marker, f"closed after {self.sent} blocks exhausted={exhausted}")


class ClosingRecorder:
    """Wraps a response iterable (here a wsgi.file_wrapper); close() closes
    it, then records in `marker` whether `file` is closed."""

    def __init__(self, iterable, file, marker):
        self.iterable = iterable
        self.file = file
        self.marker = marker

    def __iter__(self):
        return iter(self.iterable)

    def close(self):
        self.iterable.close()
        append_line(self.marker, f"closed={self.file.closed}")


class RecordingFile(io.FileIO):
    """A file whose close() writes a marker line."""

    def __init__(self, path, marker):
        super().__init__(path, "rb")
        self.marker = marker

    def close(self):
        if not self.closed:
            append_line(self.marker, "file closed")
        super().close()


THREAD_LOCAL = threading.local()

PARALLEL = {"active": 0, "peak": 0}
PARALLEL_LOCK = threading.Lock()


def parallel(environ, start_response):
    """Counts concurrently active requests; sleeps until the recorded peak
    reaches ?target= (default 40) or ?timeout= seconds (default 10) pass."""
    q = query(environ)
    target = int(q.get("target", 40))
    deadline = time.monotonic() + float(q.get("timeout", 10))
    with PARALLEL_LOCK:
        PARALLEL["active"] += 1
        PARALLEL["peak"] = max(PARALLEL["peak"], PARALLEL["active"])
    try:
        while time.monotonic() < deadline:
            with PARALLEL_LOCK:
                if PARALLEL["peak"] >= target:
                    break
            time.sleep(0.01)
    finally:
        with PARALLEL_LOCK:
            PARALLEL["active"] -= 1
            peak = PARALLEL["peak"]
    return text(start_response, str(peak))


def conformance_app(environ, start_response):
    route = route_of(environ)
    q = query(environ)
    stream = environ["wsgi.input"]

    if q.get("dump") == "environ":  # any path: show what the app saw
        return as_json(start_response, environ_snapshot(environ))

    if route == "/osenv":  # the process environment (--env)
        return text(start_response, os.environ.get(q.get("name", ""), "<unset>"))

    if route == "/hello":
        return text(start_response, "hello")

    if route == "/environ":
        return as_json(start_response, environ_snapshot(environ))

    if route == "/echo":
        body = b"".join(read_exactly_in_pieces(stream, content_length(environ)))
        ctype = environ.get("CONTENT_TYPE") or "application/octet-stream"
        start_response("200 OK", [("Content-Type", ctype), ("Content-Length", str(len(body)))])
        return [body]

    if route == "/sha256":
        # Reads the body in pieces of varying sizes, then checks that reading
        # past the end gives b''.
        h = hashlib.sha256()
        n = 0
        for piece in read_exactly_in_pieces(stream, content_length(environ)):
            h.update(piece)
            n += len(piece)
        past_end = stream.read(10)
        return text(start_response, f"{h.hexdigest()} {n} past_end={len(past_end)}")

    if route == "/generate":
        total = int(q.get("bytes", 0))
        chunk = int(q.get("chunk", 65536))

        def body():
            index, left = 0, total
            while left > 0:
                n = min(chunk, left)
                yield pattern_block(index, n)
                left -= n
                index += 1

        start_response(
            "200 OK",
            [("Content-Type", "application/octet-stream"), ("Content-Length", str(total))],
        )
        return body()

    if route == "/no-read":
        return text(start_response, f"ignored {content_length(environ)} bytes")

    if route == "/write-before-read":
        # Yields ?first= bytes (default 4 MiB) before it reads the body, then
        # reads all of it and yields its checksum.
        first = int(q.get("first", 4 * 1024 * 1024))
        length = content_length(environ)

        def body():
            left = first
            while left > 0:
                n = min(65536, left)
                yield b"x" * n
                left -= n
            h = hashlib.sha256()
            got = 0
            for piece in read_exactly_in_pieces(stream, length):
                h.update(piece)
                got += len(piece)
            yield f"\nsha256={h.hexdigest()} len={got}\n".encode()

        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return body()

    if route == "/readline":
        # readline(n) until b'', through the validator's wrapper.
        size = int(q.get("n", 5))
        lines = []
        while True:
            line = stream.readline(size)
            if not line:
                break
            lines.append(line.decode("latin-1"))
        return as_json(start_response, lines)

    if route == "/first-read":
        # Records when the first read returned, then reads the rest.
        length = content_length(environ)
        first = stream.read(min(4096, length))
        append_line(q["path"], f"{time.time():.6f} {len(first)}")
        rest = b"".join(read_exactly_in_pieces(stream, length - len(first)))
        return text(start_response, f"first={len(first)} total={len(first) + len(rest)}")

    if route == "/short-body":
        # For a request whose body ends early: reads until CONTENT_LENGTH,
        # b'' or an error, and records which came.
        length = content_length(environ)
        got, error = read_until_error(stream, length)
        if error is not None:
            append_line(q["path"], f"OSError after {got} bytes: {error}")
            raise error
        append_line(q["path"], f"no error: {got} of {length} bytes, then b''")
        return text(start_response, "read everything")

    if route == "/raise-before-body":
        raise RuntimeError(q.get("message", "raised before the body"))

    if route == "/endless":
        start_response(
            "200 OK",
            [("Content-Type", "application/octet-stream"), ("X-Accel-Buffering", "no")],
        )
        return EndlessBody(q["path"])

    if route == "/cookies":
        start_response(
            "200 OK",
            [
                ("Content-Type", "text/plain"),
                ("Set-Cookie", "first=1; Path=/"),
                ("Set-Cookie", "second=2; Path=/; HttpOnly"),
                ("Set-Cookie", "third=3; Max-Age=60"),
                ("Content-Length", "7"),
            ],
        )
        return [b"cookies"]

    if route == "/no-content":
        start_response("204 No Content", [])
        return []

    if route == "/errors":
        errors = environ["wsgi.errors"]
        errors.write(q.get("message", "wsgi.errors line") + "\n")
        errors.flush()
        return text(start_response, "logged")

    if route == "/parallel":
        return parallel(environ, start_response)

    if route == "/peak":
        with PARALLEL_LOCK:
            return text(start_response, str(PARALLEL["peak"]))

    if route == "/slow":
        # Writes "started" to ?path= (if given), sleeps ?seconds=, then
        # answers ?bytes= of pattern in 16 KiB blocks.
        if "path" in q:
            append_line(q["path"], "started")
        time.sleep(float(q.get("seconds", 1.5)))
        total = int(q.get("bytes", 65536))
        blocks = [pattern_block(i, min(16384, total - i * 16384)) for i in range((total + 16383) // 16384)]
        start_response(
            "200 OK",
            [("Content-Type", "application/octet-stream"), ("Content-Length", str(total))],
        )
        return blocks

    if route == "/read-or-report":
        # Reads CONTENT_LENGTH bytes; an OSError from wsgi.input is answered
        # (200) instead of raised.
        length = content_length(environ)
        got, error = read_until_error(stream, length)
        if error is not None:
            return text(start_response, f"read failed: {error}")
        return text(start_response, f"read {got} of {length} bytes")

    if route == "/write-then-iterate":
        # Part of the body through write(), the rest as the returned iterable.
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written 1, ")
        write(b"written 2, ")
        return iter([b"iterated 3, ", b"iterated 4"])

    if route == "/exc-info-before-body":
        # start_response, an error before any body, then start_response
        # again with exc_info and an error page of our own.
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise ValueError("failed before the body")
        except ValueError:
            page = b"custom error page"
            start_response(
                "500 Internal Server Error",
                [("Content-Type", "text/plain"), ("Content-Length", str(len(page)))],
                sys.exc_info(),
            )
            return [page]

    if route == "/exc-info-after-body":
        # One non-empty block goes out (so the head does), then, after
        # ?pause= seconds, an error: start_response with exc_info must
        # re-raise it (PEP 3333).
        message = q.get("message", "failed after the body started")
        pause = float(q.get("pause", 0))

        def body():
            yield b"first block"
            time.sleep(pause)
            try:
                raise ValueError(message)
            except ValueError:
                start_response(
                    "500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info()
                )
            yield b"start_response did not raise"

        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "100")])
        return body()

    if route == "/start-response-twice":
        start_response("200 OK", [("Content-Type", "text/plain")])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"second start_response was accepted"]

    if route == "/empty-then-raise":
        message = q.get("message", "raised after an empty block")

        def body():
            yield b""
            raise RuntimeError(message)

        start_response("200 OK", [("Content-Type", "text/plain")])
        return body()

    if route == "/hop-by-hop":
        name = q.get("name", "Connection")
        start_response("200 OK", [("Content-Type", "text/plain"), (name, q.get("value", "close"))])
        return [b"hop-by-hop header was accepted"]

    if route == "/crlf-header":
        # wsgiref.validate refuses this value itself (see /raw/crlf-header).
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Crlf", "ok\r\nX-Evil: injected")])
        return [b"CRLF header was accepted"]

    if route == "/content-length-short":
        # Declares 5 bytes, yields 10 (in one block, or ?pieces=3 blocks).
        pieces = [b"0123456789"] if q.get("pieces", "1") == "1" else [b"012", b"3456789", b"tail"]
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return iter(pieces) if len(pieces) > 1 else pieces

    if route == "/file-wrapper":
        # ?file= through wsgi.file_wrapper; ?marker= gets "closed=<f.closed>"
        # once the gateway has called close().
        f = open(q["file"], "rb")
        wrapped = environ["wsgi.file_wrapper"](f, 8192)
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return ClosingRecorder(wrapped, f, q["marker"])

    if route == "/thread-local":
        # How many requests this Python thread has served (a threading.local).
        THREAD_LOCAL.count = getattr(THREAD_LOCAL, "count", 0) + 1
        return as_json(
            start_response, {"thread": threading.get_ident(), "count": THREAD_LOCAL.count}
        )

    if route == "/status":
        # Answers the status line ?status= (e.g. "299 Custom") as given.
        status = q.get("status", "200 OK")
        return text(start_response, f"status {status}", status=status)

    if route == "/big-header":
        # A header X-Big of ?size= bytes.
        return text(start_response, "big", headers=[("X-Big", "v" * int(q["size"]))])

    if route == "/tick-while-reading":
        # A thread reads the body whole while the response yields "tick\n"
        # every ?every= seconds (up to ?secs=), then the body's length or
        # the error its read raised.
        every, secs = float(q.get("every", 0.2)), float(q.get("secs", 20))
        done = []

        def read():
            try:
                done.append(f"len={len(stream.read(content_length(environ)))}")
            except Exception as e:  # noqa: BLE001 - reported to the client
                done.append(f"error={type(e).__name__}")

        reader = threading.Thread(target=read, daemon=True)
        reader.start()

        def body():
            until = time.monotonic() + secs
            while not done and time.monotonic() < until:
                yield b"tick\n"
                time.sleep(every)
            reader.join(1)
            yield (done[0] if done else "still reading").encode()

        start_response("200 OK", [("Content-Type", "text/plain")])
        return body()

    if route == "/cookie-sum":
        # len(HTTP_COOKIE) and its sha256 (of its latin-1 bytes).
        cookie = environ.get("HTTP_COOKIE", "")
        digest = hashlib.sha256(cookie.encode("latin-1")).hexdigest()
        return text(start_response, f"{len(cookie)} {digest}")

    if route == "/lockstep":
        # Streams ?blocks= blocks ("block N\n"), each flushed on its own.
        # Before block N+1 it waits (up to 10 s) until the client has
        # written N+1 lines to ?path=, i.e. acknowledged block N: a client
        # that sees every block proves the response was streamed, not
        # buffered, whatever the timing. A missed ack ends the body with
        # "no ack for block N".
        blocks = int(q.get("blocks", 3))
        ack_path = q["path"]

        def acked():
            try:
                with open(ack_path) as f:
                    return len(f.readlines())
            except FileNotFoundError:
                return 0

        def body():
            for i in range(blocks):
                if i:
                    deadline = time.monotonic() + 10
                    while acked() < i and time.monotonic() < deadline:
                        time.sleep(0.01)
                    if acked() < i:
                        yield f"no ack for block {i - 1}\n".encode()
                        return
                yield f"block {i}\n".encode()

        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Accel-Buffering", "no")])
        return body()

    return text(start_response, f"no route for {route!r}", status="404 Not Found")


checked_app = validator(conformance_app)


# ---------------------------------------------------------------------------
# the unvalidated app (/raw/...)


def raw_app(environ, start_response):
    route = environ["PATH_INFO"][len("/raw"):]
    stream = environ["wsgi.input"]

    if route == "/read-all":
        # read() with no size: the whole body at once.
        body = stream.read()
        again = stream.read()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"{hashlib.sha256(body).hexdigest()} {len(body)} again={len(again)}".encode()]

    if route == "/readlines":
        lines = stream.readlines()
        return as_json(start_response, [line.decode("latin-1") for line in lines])

    if route == "/iterate":
        lines = [line.decode("latin-1") for line in stream]
        return as_json(start_response, lines)

    if route == "/crlf-header":
        # A CRLF in a header value, with no validator in the way: the
        # gateway itself must refuse it.
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Crlf", "ok\r\nX-Evil: injected")])
        return [b"CRLF header was accepted"]

    if route == "/content-length-short":
        # As the validated route, but the gateway sees the list itself
        # (a one-block list takes a path of its own there).
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return [b"0123456789"]

    if route == "/yield-str":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return ["a str, not bytes"]

    if route == "/file-wrapper":
        # The gateway's own wsgi.file_wrapper object as the result; the
        # file's close() writes to ?marker=.
        q = query(environ)
        f = RecordingFile(q["file"], q["marker"])
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](f, 8192)

    return text(start_response, f"no raw route for {route!r}", status="404 Not Found")


def application(environ, start_response):
    if environ.get("PATH_INFO", "").startswith("/raw/"):
        return raw_app(environ, start_response)
    return checked_app(environ, start_response)


SHUTDOWN_LOG = os.environ.get("RUSTGI_TEST_SHUTDOWN_LOG")
if SHUTDOWN_LOG:
    # For the graceful-stop tests: what must still run when the gateway
    # stops. A non-daemon thread started at import (the interpreter waits
    # for it at exit), and an atexit handler (after it).
    def _linger():
        time.sleep(float(os.environ.get("RUSTGI_TEST_LINGER", "2.5")))
        append_line(SHUTDOWN_LOG, "non-daemon thread finished")

    threading.Thread(target=_linger, name="linger").start()
    atexit.register(append_line, SHUTDOWN_LOG, "atexit handler ran")


if __name__ == "__main__":
    print("this module is a WSGI app for rustgi's tests", file=sys.stderr)
