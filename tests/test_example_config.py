"""The README's nginx examples (examples/nginx-*.conf), used as written:
only their port and socket path are replaced, and each is included in a
minimal nginx.conf the way Debian's includes sites-enabled/. The demo app
(no --app) must answer through each."""

import os
import re

import pytest

from harness import REPO, MiB, Nginx, http_request, nginx_preamble

EXAMPLE_LISTEN = "listen 8080;"
EXAMPLE_SOCKET = "unix:/run/rustgi/app.sock;"


class Example:
    """One example file: its protocol and the stock params file it includes."""

    def __init__(self, name: str, proto: str, params: str, marker: str):
        self.path = REPO / "examples" / name
        self.proto = proto
        self.params = params
        # An environ line only that protocol's stock params produce.
        self.marker = marker

    def __repr__(self):
        return self.path.name


EXAMPLES = [
    Example("nginx-scgi.conf", "scgi", "scgi_params", r"^SCGI = '1'$"),
    Example("nginx-fastcgi.conf", "fastcgi", "fastcgi_params", r"^FCGI_ROLE = 'RESPONDER'$"),
    Example("nginx-uwsgi.conf", "uwsgi", "uwsgi_params", r"^REQUEST_SCHEME = 'http'$"),
    # The README's "Deploying Django and Flask"; test_django_flask.py serves
    # a Django site through it.
    Example("nginx-django.conf", "fastcgi", "fastcgi_params", r"^FCGI_ROLE = 'RESPONDER'$"),
]


def render_example(example: Example, port: int, socket_path: str) -> str:
    """The example with its port and socket path replaced; each must occur
    exactly once, so a changed example fails here instead of testing
    something else."""
    text = example.path.read_text()
    for needle in (EXAMPLE_LISTEN, EXAMPLE_SOCKET):
        assert text.count(needle) == 1, f"{example.path} should contain {needle!r} once"
    return text.replace(EXAMPLE_LISTEN, f"listen 127.0.0.1:{port};").replace(
        EXAMPLE_SOCKET, f"unix:{socket_path};"
    )


class ExampleNginx(Nginx):
    """nginx whose only server is the rendered example, included from an
    http {} block with nothing else in it but paths (and `user root;`)."""

    def __init__(self, binary, run_dir, log_dir, socket_path, example: Example):
        super().__init__(binary, run_dir, log_dir, locations=[])
        self.site = self.run_dir / "sites-enabled" / example.path.name
        self.site.parent.mkdir(exist_ok=True)
        self.site.write_text(render_example(example, self.port, socket_path))
        # `include scgi_params;` is relative to the directory of nginx.conf,
        # as /etc/nginx is for Debian's: link the stock file there.
        params = self.run_dir / example.params
        if not params.exists():
            params.symlink_to(f"/etc/nginx/{example.params}")

    def config(self) -> str:
        return f"""{nginx_preamble(self.run_dir, self.error_log.path, self.log_dir, connections=64)}
    include {self.site};
}}
"""


@pytest.fixture(params=EXAMPLES, ids=repr)
def example(request):
    return request.param


@pytest.fixture
def example_nginx(nginx_binary, gateways, run_dir, log_dir, example):
    name = f"example-{example.proto}"
    gw = gateways.start(name, ["--threads", "2"], proto=example.proto)  # no --app: the demo
    own_dir = run_dir / f"nginx-{name}"
    own_dir.mkdir(mode=0o755, exist_ok=True)
    server = ExampleNginx(nginx_binary, own_dir, log_dir / f"nginx-{name}", gw.socket, example)
    server.start()
    yield server, gw
    server.stop()
    assert gw.terminate() == 0


def test_example_config_serves_the_demo_app(example_nginx, example):
    server, gw = example_nginx
    r = http_request(server.port, "GET", "/")
    assert r.status == 200, (server.error_log.tail(10), gw.describe())
    text = r.body.decode()
    assert text.startswith("rustgi demo app"), text[:200]
    assert re.search(r"^PATH_INFO = '/'$", text, re.M), text
    assert re.search(example.marker, text, re.M), f"not Debian's {example.params}?\n" + text


def test_example_config_takes_a_body_over_nginx_default_limit(example_nginx):
    # The example's client_max_body_size 100m: 2 MiB (over nginx's default
    # 1m) reaches the demo app, which echoes it.
    server, gw = example_nginx
    body = os.urandom(2 * MiB)
    r = http_request(server.port, "POST", "/upload", body=body, timeout=30)
    assert r.status == 200, (server.error_log.tail(10), gw.describe())
    assert r.body == body


# Tested by tests/test_two_hosts.py.
TWO_HOSTS = REPO / "examples" / "nginx-two-hosts.conf"


def test_readme_shows_the_examples_as_they_are_in_examples():
    # The README's snippets are what users copy: each must be a tested file
    # (without the file's leading comment lines), and each file is shown.
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```nginx\n(.*?)```", readme, re.S)
    expected = [
        "".join(line for line in path.read_text().splitlines(True) if not line.startswith("#"))
        for path in [e.path for e in EXAMPLES] + [TWO_HOSTS]
    ]
    assert sorted(blocks) == sorted(expected)
