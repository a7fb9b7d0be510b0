"""The README's nginx example (examples/nginx-scgi.conf), used as written:
only its port and socket path are replaced, and it is included in a minimal
nginx.conf the way Debian's includes sites-enabled/. The demo app (no --app)
must answer through it."""

import os
import re

import pytest

from harness import REPO, MiB, Nginx, http_request

EXAMPLE = REPO / "examples" / "nginx-scgi.conf"
EXAMPLE_LISTEN = "listen 8080;"
EXAMPLE_UPSTREAM = "scgi_pass unix:/run/rustgi/app.sock;"


def render_example(text: str, port: int, socket_path: str) -> str:
    """The example with its port and socket path replaced; each must occur
    exactly once, so a changed example fails here instead of testing
    something else."""
    for needle in (EXAMPLE_LISTEN, EXAMPLE_UPSTREAM):
        assert text.count(needle) == 1, f"{EXAMPLE} should contain {needle!r} once"
    return text.replace(EXAMPLE_LISTEN, f"listen 127.0.0.1:{port};").replace(
        EXAMPLE_UPSTREAM, f"scgi_pass unix:{socket_path};"
    )


class ExampleNginx(Nginx):
    """nginx whose only server is the rendered example, included from an
    http {} block with nothing else in it but paths (and `user root;`)."""

    def __init__(self, binary, run_dir, log_dir, socket_path):
        super().__init__(binary, run_dir, log_dir, locations=[])
        self.site = self.run_dir / "sites-enabled" / "nginx-scgi.conf"
        self.site.parent.mkdir(exist_ok=True)
        self.site.write_text(render_example(EXAMPLE.read_text(), self.port, socket_path))
        # `include scgi_params;` is relative to the directory of nginx.conf,
        # as /etc/nginx is for Debian's: link the stock file there.
        params = self.run_dir / "scgi_params"
        if not params.exists():
            params.symlink_to("/etc/nginx/scgi_params")

    def config(self) -> str:
        r = self.run_dir
        user = "user root;" if os.geteuid() == 0 else ""
        return f"""
daemon off;
{user}
worker_processes 1;
pid {r}/nginx.pid;
error_log {self.error_log.path} info;
events {{ worker_connections 64; }}
http {{
    access_log {self.log_dir}/nginx-access.log;
    client_body_temp_path {r}/client_body;
    proxy_temp_path {r}/proxy;
    fastcgi_temp_path {r}/fastcgi;
    uwsgi_temp_path {r}/uwsgi;
    scgi_temp_path {r}/scgi;
    include {self.site};
}}
"""


@pytest.fixture
def example_nginx(nginx_binary, gateways, run_dir, log_dir):
    gw = gateways.start("example", ["--threads", "2"])  # no --app: the demo
    own_dir = run_dir / "nginx-example"
    own_dir.mkdir(mode=0o755, exist_ok=True)
    server = ExampleNginx(nginx_binary, own_dir, log_dir / "nginx-example", gw.socket)
    server.start()
    yield server, gw
    server.stop()
    assert gw.terminate() == 0


def test_example_config_serves_the_demo_app(example_nginx):
    server, gw = example_nginx
    r = http_request(server.port, "GET", "/")
    assert r.status == 200, (server.error_log.tail(10), gw.describe())
    text = r.body.decode()
    assert text.startswith("rustgi demo app"), text[:200]
    assert re.search(r"^PATH_INFO = '/'$", text, re.M), text
    assert re.search(r"^SCGI = '1'$", text, re.M), "not Debian's scgi_params?\n" + text


def test_example_config_takes_a_body_over_nginx_default_limit(example_nginx):
    # The example's client_max_body_size 100m: 2 MiB (over nginx's default
    # 1m) reaches the demo app, which echoes it.
    server, gw = example_nginx
    body = os.urandom(2 * MiB)
    r = http_request(server.port, "POST", "/upload", body=body, timeout=30)
    assert r.status == 200, (server.error_log.tail(10), gw.describe())
    assert r.body == body


def test_readme_shows_the_example_as_it_is_in_examples():
    # The README's snippet is what users copy: it must be the tested file
    # (without the file's leading comment lines).
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```nginx\n(.*?)```", readme, re.S)
    assert len(blocks) == 1, f"expected one nginx block in README.md, found {len(blocks)}"
    example = "".join(line for line in EXAMPLE.read_text().splitlines(True) if not line.startswith("#"))
    assert blocks[0] == example
