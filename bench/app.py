"""The WSGI app every server runs in bench/run (rustgi, uWSGI, flup): one
route per scenario, chosen by PATH_INFO. Standard library only.

nginx's stock params differ per protocol: uwsgi_params sends PATH_INFO,
fastcgi_params sends the whole path as SCRIPT_NAME and no PATH_INFO, and
scgi_params sends neither. rustgi rebuilds PATH_INFO from what it gets;
uWSGI and flup pass on what arrives. So the route is PATH_INFO, else
SCRIPT_NAME, else the path of REQUEST_URI: the same app code runs
everywhere, and bench.py checks each server answers every route.
"""

import time
import zlib

HELLO = b"Hello, World!\n"
# 64 KiB that no off-by-one or reordering can leave intact.
CHUNK = bytes((i * 7 + i // 256) % 251 for i in range(64 * 1024))
BIG_CHUNKS = 128  # /8m: 128 chunks of 64 KiB = 8 MiB
SLOW_SECONDS = 0.010
CPU_ROUNDS = 18000  # /cpu: about 2 ms of pure-Python work on this machine


def upload_answer(body: bytes) -> bytes:
    """What /upload answers for a body: its length and Adler-32."""
    return b"%d %08x\n" % (len(body), zlib.adler32(body))


def cpu_work(rounds: int = CPU_ROUNDS) -> bytes:
    acc = 0
    for i in range(rounds):
        acc = (acc * 31 + i * i) % 1000003
        acc ^= len(str(acc))
    return b"cpu %d\n" % acc


def _text(start_response, body, status="200 OK"):
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def _hello(environ, start_response):
    return _text(start_response, HELLO)


def _64k(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(len(CHUNK)))])
    return [CHUNK]


def _8m(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(len(CHUNK) * BIG_CHUNKS))])
    return (CHUNK for _ in range(BIG_CHUNKS))


def _upload(environ, start_response):
    length = int(environ.get("CONTENT_LENGTH") or 0)
    stream = environ["wsgi.input"]
    parts = []
    left = length
    while left > 0:  # never read past CONTENT_LENGTH (flup's SCGI input blocks there)
        part = stream.read(min(left, 65536))
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return _text(start_response, upload_answer(b"".join(parts)))


def _slow(environ, start_response):
    time.sleep(SLOW_SECONDS)
    return _text(start_response, HELLO)


def _cpu(environ, start_response):
    return _text(start_response, cpu_work())


ROUTES = {
    "/hello": _hello,
    "/64k": _64k,
    "/8m": _8m,
    "/upload": _upload,
    "/slow": _slow,
    "/cpu": _cpu,
}


def application(environ, start_response):
    path = environ.get("PATH_INFO") or environ.get("SCRIPT_NAME") \
        or environ.get("REQUEST_URI", "").partition("?")[0]
    handler = ROUTES.get(path)
    if handler is None:
        return _text(start_response, b"no route %r\n" % path.encode("latin-1"), "404 Not Found")
    return handler(environ, start_response)
