"""The app of tests/soak: small answers the client can check byte for byte.

- /hello: 14 bytes;
- /bytes?n=N: N bytes of `BLOCK` repeated, with Content-Length, in blocks
  of 64 KiB (as an app streams a large answer, rather than building it whole);
- /upload: reads the whole body and answers "LENGTH SHA256";
- /slow?ms=M: sleeps M milliseconds, then answers "slept M".

Only the standard library.
"""

import hashlib
import time
from urllib.parse import parse_qs

HELLO = b"Hello, soak!\r\n"
BLOCK = bytes(range(256)) * 64  # 16 KiB
PIECE = BLOCK * 4  # 64 KiB


def answer(start_response, body, content_type="text/plain"):
    start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    if path.endswith("/hello"):
        return answer(start_response, HELLO)
    if path.endswith("/bytes"):
        n = int(query.get("n", "65536"))
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(n))])
        return (PIECE[: min(len(PIECE), n - at)] for at in range(0, n, len(PIECE)))
    if path.endswith("/upload"):
        stream = environ["wsgi.input"]
        left = int(environ.get("CONTENT_LENGTH") or 0)
        digest = hashlib.sha256()
        while left > 0:
            chunk = stream.read(min(left, 65536))
            if not chunk:
                break
            digest.update(chunk)
            left -= len(chunk)
        total = int(environ.get("CONTENT_LENGTH") or 0) - left
        return answer(start_response, f"{total} {digest.hexdigest()}".encode())
    if path.endswith("/slow"):
        ms = int(query.get("ms", "1000"))
        time.sleep(ms / 1000)
        return answer(start_response, f"slept {ms}".encode())
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"no such route\n"]
