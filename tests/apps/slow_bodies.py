"""The app of tests/test_slow_bodies.py: every call is counted (a line in
the file named by ?calls=), so that a test can tell whether a request ran.

- /upload reads its whole body; an OSError from the read is answered and
  written to ?record= (the test reads what the app saw);
- /sleep?secs=N keeps its thread busy for N seconds;
- anything else answers "hello".

Only the standard library is used.
"""

import time
from urllib.parse import parse_qs


def append(path, line):
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


def application(environ, start_response):
    q = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    path = environ.get("PATH_INFO", "")
    append(q.get("calls"), path)
    if path == "/sleep":
        time.sleep(float(q.get("secs", "1")))
        body = b"slept"
    elif path == "/upload":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        try:
            data = environ["wsgi.input"].read(length)
            body = f"read {len(data)}".encode()
        except OSError as e:
            append(q.get("record"), f"OSError: {e}")
            body = f"OSError: {e}".encode()
    else:
        body = b"hello"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
