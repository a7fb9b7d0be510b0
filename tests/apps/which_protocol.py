"""A validator-wrapped app that says which protocol carried the request
(for test_auto_and_allow.py, where one `--proto auto` socket takes FastCGI,
SCGI and uwsgi at once).

Every request is answered with JSON: the protocol as the environ shows it
(`fastcgi` when FCGI_ROLE is set, `scgi` when SCGI is '1', `uwsgi` when
neither is: nginx's stock uwsgi_params send neither), the raw FCGI_ROLE and
SCGI values, the method, PATH_INFO, QUERY_STRING, and the sha256 and length
of the body, read with read(size) in pieces of varying sizes.

Only the standard library (and conformance.py next to it) is used: the
gateway runs this without a venv.
"""

import hashlib
import json
from wsgiref.validate import validator

from conformance import content_length, read_exactly_in_pieces  # the module's directory is on sys.path

READ_SIZES = (1, 7, 4096, 65536, 100_000)


def protocol_of(environ):
    role = environ.get("FCGI_ROLE")
    scgi = environ.get("SCGI")
    if role is not None and scgi is None:
        return "fastcgi"
    if scgi == "1" and role is None:
        return "scgi"
    if role is None and scgi is None:
        return "uwsgi"
    return f"confused: FCGI_ROLE={role!r} SCGI={scgi!r}"


def body_digest(environ):
    stream = environ["wsgi.input"]
    h = hashlib.sha256()
    n = 0
    for piece in read_exactly_in_pieces(stream, content_length(environ), READ_SIZES):
        h.update(piece)
        n += len(piece)
    past_end = stream.read(10)
    return h.hexdigest(), n, len(past_end)


def which_protocol(environ, start_response):
    sha, n, past_end = body_digest(environ)
    data = json.dumps({
        "protocol": protocol_of(environ),
        "FCGI_ROLE": environ.get("FCGI_ROLE"),
        "SCGI": environ.get("SCGI"),
        "method": environ["REQUEST_METHOD"],
        "path": environ.get("PATH_INFO", ""),
        "query": environ.get("QUERY_STRING", ""),
        "sha256": sha,
        "length": n,
        "past_end": past_end,
    }).encode("utf-8")
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


application = validator(which_protocol)
