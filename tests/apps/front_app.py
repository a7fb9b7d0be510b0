"""Apps for tests/test_fastcgi_apache_lighttpd.py, each wrapped in
wsgiref.validate.validator so that every request also checks PEP 3333.

- `application`: answers the request as JSON: every str value of the environ
  (CGI variables, HTTP_*, wsgi.url_scheme), the body it read and
  wsgi.input_terminated. With CONTENT_LENGTH it reads exactly that many
  bytes; without one it reads until b'' (wsgi.input_terminated).
  A path ending in /status/NNN answers that status instead (with the JSON).
- `authorizer`: a FastCGI AUTHORIZER written as an ordinary WSGI app. It
  allows (200, `Variable-USER: alice` plus `Variable-AUTHZ_ROLE` and
  `Variable-AUTHZ_PATH` naming the role and PATH_INFO it saw) when the
  request has `X-Token: good`, its PATH_INFO has no `/deny-all` segment and,
  in Apache's authz phase (FCGI_APACHE_ROLE=AUTHORIZER), REMOTE_USER is
  alice, and its `X-Deny-Phase` header (if any) does not name the role it
  runs in (FCGI_APACHE_ROLE, else FCGI_ROLE). Otherwise it answers 403 with the body `denied by the authorizer`.

Only the standard library is used.
"""

import json
from wsgiref.validate import validator

DENIED = b"denied by the authorizer\n"


def _read_body(environ):
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH", "")
    if length:
        n = int(length)
        chunks = []
        while n > 0:
            chunk = stream.read(min(n, 65536))
            if not chunk:
                break
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)
    if environ.get("wsgi.input_terminated"):
        chunks = []
        while True:
            chunk = stream.read(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    return b""


def echo_app(environ, start_response):
    body = _read_body(environ)
    status = "200 OK"
    parts = environ.get("PATH_INFO", "").split("/")
    if len(parts) >= 2 and parts[-2] == "status" and parts[-1].isdigit():
        status = f"{parts[-1]} Chosen"
    data = json.dumps(
        {
            "environ": {k: v for k, v in environ.items() if isinstance(v, str)},
            "body": body.decode("latin-1"),
            "input_terminated": bool(environ.get("wsgi.input_terminated")),
            "multithread": environ["wsgi.multithread"],
        },
        sort_keys=True,
    ).encode("utf-8")
    start_response(
        status,
        [("Content-Type", "application/json"), ("Content-Length", str(len(data)))],
    )
    return [data]


def authorizer_app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    apache_role = environ.get("FCGI_APACHE_ROLE", "")
    role = apache_role or environ.get("FCGI_ROLE", "")
    allowed = (
        environ.get("HTTP_X_TOKEN") == "good"
        and "deny-all" not in path.split("/")
        and (apache_role != "AUTHORIZER" or environ.get("REMOTE_USER") == "alice")
        and environ.get("HTTP_X_DENY_PHASE") != role
    )
    if allowed:
        start_response(
            "200 OK",
            [
                ("Content-Type", "text/plain"),
                ("Content-Length", "0"),
                ("Variable-USER", "alice"),
                ("Variable-AUTHZ_ROLE", role),
                ("Variable-AUTHZ_PATH", path),
            ],
        )
        return [b""]
    start_response(
        "403 Forbidden",
        [("Content-Type", "text/plain"), ("Content-Length", str(len(DENIED)))],
    )
    return [DENIED]


application = validator(echo_app)
authorizer = validator(authorizer_app)
