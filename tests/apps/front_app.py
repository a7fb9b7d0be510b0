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

from wsgiref.validate import validator

from echo import answer_json, chosen_status

DENIED = b"denied by the authorizer\n"


def echo_app(environ, start_response):
    return answer_json(
        environ, start_response, chosen_status(environ.get("PATH_INFO", "")), unsized=True,
        input_terminated=bool(environ.get("wsgi.input_terminated")),
        multithread=environ["wsgi.multithread"],
    )


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
