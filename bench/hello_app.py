"""The small app bench/cgi-startup serves: the same file for rustgi-gateway
(--app bench/hello_app.py) and for wsgiref's CGIHandler. Standard library
only, nothing imported beyond what a minimal WSGI app needs."""


def application(environ, start_response):
    body = b"Hello from " + environ.get("PATH_INFO", "/").encode("latin-1") + b"\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
