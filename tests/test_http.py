"""Requests through nginx (stock scgi_params) to the validator-wrapped
conformance app: methods, status codes, headers and the environ."""

import http.client
import json
import uuid

import requests

from harness import http_request


def get_environ(nginx, path="/environ", **kw) -> dict:
    r = http_request(nginx.port, kw.pop("method", "GET"), path, **kw)
    assert r.status == 200, r.body[:500]
    return json.loads(r.body)


def test_get(nginx, main_gateway):
    r = requests.get(nginx.url("/hello"), timeout=10)
    assert r.status_code == 200, main_gateway.describe()
    assert r.text == "hello"
    assert r.headers["Content-Type"].startswith("text/plain")


def test_post_echo(nginx, main_gateway):
    body = bytes(range(256)) * 64 + b"\r\n\0tail"
    r = requests.post(
        nginx.url("/echo"), data=body, headers={"Content-Type": "application/x-test"}, timeout=10
    )
    assert r.status_code == 200, main_gateway.describe()
    assert r.content == body
    assert r.headers["Content-Type"] == "application/x-test"


def test_post_empty_body(nginx, main_gateway):
    r = requests.post(nginx.url("/echo"), data=b"", timeout=10)
    assert r.status_code == 200, main_gateway.describe()
    assert r.content == b""


def test_unknown_route_is_the_apps_404(nginx, main_gateway):
    r = requests.get(nginx.url("/no/such/route"), timeout=10)
    assert r.status_code == 404
    assert "no route" in r.text


def test_environ_basics(nginx, main_gateway):
    env = get_environ(nginx, "/environ?x=1&y=two%20words")
    assert env["REQUEST_METHOD"] == "GET"
    assert env["SCRIPT_NAME"] == ""
    assert env["PATH_INFO"] == "/environ"
    assert env["QUERY_STRING"] == "x=1&y=two%20words"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.input_terminated"] is True
    assert env["wsgi.version"] == [1, 0]
    assert env["SERVER_NAME"] == "localhost"
    assert env["SERVER_PORT"] == str(nginx.port)


def test_content_type_and_length_not_duplicated_as_http_keys(nginx, main_gateway):
    env = get_environ(
        nginx, method="POST", body=b"a=1", headers=[("Content-Type", "application/x-www-form-urlencoded")]
    )
    assert env["CONTENT_TYPE"] == "application/x-www-form-urlencoded"
    assert env["CONTENT_LENGTH"] == "3"
    assert "HTTP_CONTENT_TYPE" not in env
    assert "HTTP_CONTENT_LENGTH" not in env


def test_repeated_headers_are_merged(nginx, main_gateway):
    env = get_environ(
        nginx,
        headers=[("Cookie", "a=1"), ("X-Multi", "one"), ("Cookie", "b=2"), ("X-Multi", "two")],
    )
    assert env["HTTP_COOKIE"] == "a=1; b=2"
    assert env["HTTP_X_MULTI"] == "one, two"


def test_percent_encoded_utf8_path_is_latin1_bytes_as_str(nginx, main_gateway):
    # nginx decodes /caf%C3%A9 to the bytes "/caf\xc3\xa9" (DOCUMENT_URI);
    # PEP 3333 wants those bytes decoded as latin-1.
    env = get_environ(nginx, "/caf%C3%A9?dump=environ")
    assert env["PATH_INFO"] == "/caf\xc3\xa9"
    assert env["SCRIPT_NAME"] == ""
    assert env["REQUEST_URI"] == "/caf%C3%A9?dump=environ"


def test_several_set_cookie_headers_all_arrive(nginx, main_gateway):
    r = http_request(nginx.port, "GET", "/cookies")
    assert r.status == 200
    assert r.header_all("Set-Cookie") == [
        "first=1; Path=/",
        "second=2; Path=/; HttpOnly",
        "third=3; Max-Age=60",
    ]
    assert r.body == b"cookies"


def test_head_has_headers_and_no_body(nginx, main_gateway):
    conn = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=10)
    try:
        head = http_request(nginx.port, "HEAD", "/hello", conn=conn)
        assert head.status == 200
        assert head.header("Content-Type").startswith("text/plain")
        assert head.body == b""
        # Same connection: stray body bytes would corrupt this response.
        after = http_request(nginx.port, "GET", "/hello", conn=conn)
        assert (after.status, after.body) == (200, b"hello")
    finally:
        conn.close()


def test_204_has_no_body(nginx, main_gateway):
    conn = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=10)
    try:
        r = http_request(nginx.port, "GET", "/no-content", conn=conn)
        assert r.status == 204
        assert r.body == b""
        assert r.header("Content-Type") is None
        after = http_request(nginx.port, "GET", "/hello", conn=conn)
        assert (after.status, after.body) == (200, b"hello")
    finally:
        conn.close()


def test_exception_before_body_gives_500_and_traceback(nginx, main_gateway):
    message = f"boom-{uuid.uuid4().hex}"
    mark = main_gateway.log.mark()
    r = requests.get(nginx.url(f"/raise-before-body?message={message}"), timeout=10)
    assert r.status_code == 500
    assert message not in r.text  # tracebacks go to the log, not to the client
    assert main_gateway.log.wait_for("Traceback", since=mark), main_gateway.describe(mark)
    assert main_gateway.log.wait_for(message, since=mark), main_gateway.describe(mark)
    assert main_gateway.alive()
    after = requests.get(nginx.url("/hello"), timeout=10)
    assert (after.status_code, after.text) == (200, "hello")


def test_wsgi_errors_reach_the_gateway_log(nginx, main_gateway):
    message = f"wsgi-errors-{uuid.uuid4().hex}"
    mark = main_gateway.log.mark()
    r = requests.get(nginx.url(f"/errors?message={message}"), timeout=10)
    assert r.status_code == 200
    assert main_gateway.log.wait_for(message, since=mark), main_gateway.describe(mark)
