"""The app of tests/test_two_hosts.py: every answer says which host served
it (`RUSTGI_TEST_HOST`, set with --env) and which deploy it runs (the
first line of the file `RUSTGI_TEST_VERSION_FILE` names, read once at
import: a reload that imports afresh shows the new one).

- GET /?ms=N: sleeps N milliseconds (so that requests are in flight at a
  host when it stops or dies), then answers;
- POST /: answers the length and SHA-256 of the body it read.

Only the standard library; wrapped in wsgiref.validate.validator.
"""

import hashlib
import json
import os
import time
from urllib.parse import parse_qs
from wsgiref.validate import validator

HOST = os.environ["RUSTGI_TEST_HOST"]
with open(os.environ["RUSTGI_TEST_VERSION_FILE"]) as f:
    VERSION = f.readline().strip()


def app(environ, start_response):
    query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    answer = {"host": HOST, "version": VERSION, "pid": os.getpid()}
    if environ["REQUEST_METHOD"] == "POST":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        answer.update(length=len(body), sha256=hashlib.sha256(body).hexdigest())
    time.sleep(int(query.get("ms", "0")) / 1000)
    body = json.dumps(answer).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


application = validator(app)
