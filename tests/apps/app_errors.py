"""Applications that get their response head or body wrong, one per path,
for tests/test_app_errors.py and tests/test_logs.py."""

import sys


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    query = environ.get("QUERY_STRING", "")
    if path == "/content-length":
        # ?abc, ?-5: the value as the application sends it.
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", query)])
        return [b"body"]
    if path == "/long-reason":
        start_response("200 " + "x" * 100_000, [("Content-Type", "text/plain")])
        return [b"body"]
    if path == "/many-headers":
        start_response("200 OK", [(f"X-Header-{i}", "y") for i in range(20_000)])
        return [b"body"]
    if path == "/short":
        # Declares 100 bytes, sends 10: in one block (?list) or two.
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "100")])
        if query == "list":
            return [b"0123456789"]
        return iter([b"01234", b"56789"])
    if path == "/fail-after-head":
        # An error once the head is out: the response is cut as well.
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "100")])
        return fail_after(b"0123456789")
    if path == "/head":
        # A HEAD answer declares the length of a body it does not send.
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "100")])
        return [b""]
    if path == "/log-and-fail":
        # Request data in wsgi.errors and in a traceback.
        uri = environ.get("REQUEST_URI", "")
        print("the app saw " + uri, file=environ["wsgi.errors"])
        raise ValueError("bad uri " + uri)
    if path == "/read-body":
        # Reads its whole body and does not catch wsgi.input's OSError.
        stream = environ["wsgi.input"]
        print("reading the body", file=environ["wsgi.errors"])
        environ["wsgi.errors"].flush()
        left = int(environ.get("CONTENT_LENGTH") or 0)
        while left > 0:
            data = stream.read(min(left, 65536))
            if not data:
                break
            left -= len(data)
    body = b"ok\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def fail_after(block):
    yield block
    raise RuntimeError("failing after the head went out")
