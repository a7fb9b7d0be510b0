"""The demo application rustgi serves when no --app is given.

GET shows the WSGI environ; POST echoes the request body back.
"""


def application(environ, start_response):
    if environ["REQUEST_METHOD"] == "POST":
        body = environ["wsgi.input"].read()
        content_type = environ.get("CONTENT_TYPE") or "application/octet-stream"
        start_response("200 OK", [("Content-Type", content_type),
                                  ("Content-Length", str(len(body)))])
        return [body]
    lines = ["rustgi demo app: this is the WSGI environ of your request.",
             "Start rustgi-gateway with --app MODULE:CALLABLE to serve yours.", ""]
    for key in sorted(environ):
        lines.append(f"{key} = {environ[key]!r}")
    body = ("\n".join(lines) + "\n").encode("utf-8")
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8"),
                              ("Content-Length", str(len(body)))])
    return [body]
