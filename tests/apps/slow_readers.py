"""Large responses for clients that do not read them (tests/test_slow_readers.py).

Every shape is 8 MiB of the same bytes: block i of 64 KiB is the byte
(i % 251) repeated, so that a client can check order and completeness.
`/bytes` returns one module-level bytes object that every response shares;
`/fresh` the same bytes as an object made for each request.
`?closed=PATH` makes the response's close() write PATH (the test sees that
close() ran, once: the file is created exclusively).
"""

import os
import tempfile
from urllib.parse import parse_qs

BLOCK = 64 * 1024
BLOCKS = 128
BLOCK_LIST = [bytes([i % 251]) * BLOCK for i in range(BLOCKS)]
WHOLE = b"".join(BLOCK_LIST)

_fd, FILE = tempfile.mkstemp(prefix="rustgi-slow-readers-")
with os.fdopen(_fd, "wb") as f:
    f.write(WHOLE)


class Recorded:
    """An iterable whose close() leaves a mark."""

    def __init__(self, blocks, path):
        self.blocks = blocks
        self.path = path

    def __iter__(self):
        return iter(self.blocks)

    def close(self):
        if self.path:
            with open(self.path, "x") as f:
                f.write("closed\n")


def generate():
    for block in BLOCK_LIST:
        yield block


def application(environ, start_response):
    path = environ["PATH_INFO"]
    query = parse_qs(environ.get("QUERY_STRING", ""))
    closed = query.get("closed", [None])[0]
    if path == "/hello":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return [b"hello"]
    headers = [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(WHOLE)))]
    if path == "/bytes":
        start_response("200 OK", headers)
        return [WHOLE]
    if path == "/fresh":
        start_response("200 OK", headers)
        return [b"".join(BLOCK_LIST)]
    if path == "/list":
        start_response("200 OK", headers)
        return Recorded(BLOCK_LIST, closed) if closed else list(BLOCK_LIST)
    if path == "/generator":
        start_response("200 OK", headers)
        return Recorded(generate(), closed)
    if path == "/file":
        start_response("200 OK", headers)
        return environ["wsgi.file_wrapper"](open(FILE, "rb"), BLOCK)
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]
