"""The app of tests/test_uwsgi_raw.py: tests/apps/conformance.py plus two
routes for uwsgi's chunked request bodies, wrapped in
wsgiref.validate.validator.

- `/body`: reads the body (exactly CONTENT_LENGTH bytes when that is set,
  else read(65536) until b'') and answers JSON: its sha256 and length,
  wsgi.input_terminated, CONTENT_LENGTH and HTTP_TRANSFER_ENCODING as the
  app saw them. When a read raises OSError, the error goes to the file named
  by ?path= ("OSError after N bytes: ...") and is raised again.
- every other path goes to conformance.application (validated there).

Only the standard library is used.
"""

import hashlib
import json
from urllib.parse import parse_qs
from wsgiref.validate import validator

import conformance  # the module's directory is on sys.path (--app FILE.py)


def _read_body(environ):
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH", "")
    h = hashlib.sha256()
    got = 0
    if length:
        left = int(length)
        while left > 0:
            piece = stream.read(min(left, 65536))
            if not piece:
                break
            h.update(piece)
            got += len(piece)
            left -= len(piece)
    else:
        while True:
            piece = stream.read(65536)
            if not piece:
                break
            h.update(piece)
            got += len(piece)
    return h.hexdigest(), got


def body_app(environ, start_response):
    q = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    try:
        digest, got = _read_body(environ)
    except OSError as e:
        if "path" in q:
            with open(q["path"], "a") as f:
                f.write(f"OSError: {e}\n")
        raise
    data = json.dumps({
        "sha256": digest,
        "len": got,
        "input_terminated": environ.get("wsgi.input_terminated"),
        "CONTENT_LENGTH": environ.get("CONTENT_LENGTH"),
        "HTTP_TRANSFER_ENCODING": environ.get("HTTP_TRANSFER_ENCODING"),
    }).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


checked_body_app = validator(body_app)


def application(environ, start_response):
    if environ.get("PATH_INFO") == "/body":
        return checked_body_app(environ, start_response)
    return conformance.application(environ, start_response)
