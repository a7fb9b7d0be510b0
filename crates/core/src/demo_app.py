"""The demo application rustgi serves when no --app is given.

GET shows the WSGI environ; POST echoes the request body back. Every
answer is text/plain: echoed as the client's own Content-Type (text/html),
a body would be a page that runs the client's script on this site. The
values of Authorization and Cookie are not shown, only that they came.
"""

HIDDEN = {"HTTP_AUTHORIZATION", "HTTP_COOKIE", "HTTP_PROXY_AUTHORIZATION"}


def application(environ, start_response):
    headers = [("Content-Type", "text/plain; charset=utf-8"),
               ("X-Content-Type-Options", "nosniff")]
    if environ["REQUEST_METHOD"] == "POST":
        body = environ["wsgi.input"].read()
        start_response("200 OK", headers + [("Content-Length", str(len(body)))])
        return [body]
    lines = ["rustgi demo app: this is the WSGI environ of your request.",
             "Start rustgi-gateway with --app MODULE:CALLABLE to serve yours.", ""]
    for key in sorted(environ):
        value = "(hidden)" if key in HIDDEN else repr(environ[key])
        lines.append(f"{key} = {value}")
    body = ("\n".join(lines) + "\n").encode("utf-8")
    start_response("200 OK", headers + [("Content-Length", str(len(body)))])
    return [body]
