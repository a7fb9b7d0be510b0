"""The status page test's app: at any path, sleeps ?sleep= seconds, then
answers the status ?status= (a number) with ?bytes= bytes of body. Its
slow requests are the busy threads the page shows, its statuses the
classes it counts."""

import time
from http import HTTPStatus
from urllib.parse import parse_qs


def application(environ, start_response):
    q = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    time.sleep(float(q.get("sleep", 0)))
    code = int(q.get("status", 200))
    body = b"x" * int(q.get("bytes", 100))
    start_response(
        f"{code} {HTTPStatus(code).phrase}",
        [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))],
    )
    return [body]
