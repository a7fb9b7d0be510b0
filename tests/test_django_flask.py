"""Deploying Django and Flask behind nginx as the README's "Deploying
Django and Flask" says, on a non-default port (every nginx of the suite
listens on one):

- Django (from PyPI, in .venv-test) over FastCGI, through the README's
  examples/nginx-django.conf as written: an admin login with CSRF
  as a browser sends it (Origin: http://host:port), which needs
  `fastcgi_param HTTP_HOST $http_host;` after Debian's stock params (they
  send `$host`, without the port: the same login then fails with 403);
  static files collected by `collectstatic` and served by nginx through
  `location /static/ { alias ...; }`; a 500 whose traceback reaches
  rustgi's log through the site's LOGGING (DEBUG = False).
- Flask over uwsgi: absolute URLs keep the port, and behind a TLS load
  balancer take https from X-Forwarded-Proto only when the balancer's
  address is in --forwarded-allow-from.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess

import pytest
import requests

from harness import APPS, REPO, Location, Nginx
from test_example_config import EXAMPLES, ExampleNginx

SITE = REPO / "fixtures" / "django_site"
PASSWORD = "rustgi-s3cret-pass"


@pytest.fixture(scope="module")
def django_env(venv_dir, run_dir) -> dict:
    """The site's database and static root in the run directory; migrated,
    collected, and with a superuser `admin`."""
    env = dict(os.environ, DJANGO_DB=str(run_dir / "django.sqlite3"),
               DJANGO_STATIC_ROOT=str(run_dir / "django-static"),
               DJANGO_SUPERUSER_PASSWORD=PASSWORD, PYTHONDONTWRITEBYTECODE="1")
    manage = [str(venv_dir / "bin" / "python"), "manage.py"]
    for command in (["migrate", "-v0"], ["collectstatic", "--noinput", "-v0"],
                    ["createsuperuser", "--noinput", "--username", "admin",
                     "--email", "admin@example.com"]):
        subprocess.run(manage + command, cwd=SITE, env=env, check=True, capture_output=True)
    return env


@pytest.fixture(scope="module")
def django_gateway(gateways, django_env, venv_dir):
    args = ["--venv", str(venv_dir), "--chdir", str(SITE), "--app", "mysite.wsgi",
            "--threads", "4"]
    for name in ("DJANGO_DB", "DJANGO_STATIC_ROOT"):
        args += ["--env", f"{name}={django_env[name]}"]
    gw = gateways.start("django", args, proto="fastcgi")
    yield gw
    gw.terminate()


class DjangoNginx(ExampleNginx):
    """examples/nginx-django.conf as written (only its port, socket and
    alias replaced), included from an http {} block that includes
    mime.types as Debian's nginx.conf does; with `stock=True`, without its
    HTTP_HOST line: Debian's stock params alone."""

    def __init__(self, binary, run_dir, log_dir, socket_path, static_root, stock=False):
        super().__init__(binary, run_dir, log_dir, socket_path, DJANGO_EXAMPLE)
        text = self.site.read_text()
        assert text.count(EXAMPLE_ALIAS) == 1 and text.count(HOST_LINE) == 1
        text = text.replace(EXAMPLE_ALIAS, f"alias {static_root}/;")
        if stock:
            text = text.replace(HOST_LINE, "")
        self.site.write_text(text)

    def config(self) -> str:
        return super().config().replace(
            f"    include {self.site};", f"    include /etc/nginx/mime.types;\n    include {self.site};")


DJANGO_EXAMPLE = next(e for e in EXAMPLES if e.path.name == "nginx-django.conf")
EXAMPLE_ALIAS = "alias /srv/mysite/static/;"
HOST_LINE = "fastcgi_param HTTP_HOST $http_host;"


@pytest.fixture(scope="module")
def django_nginx(nginx_binary, run_dir, log_dir, django_gateway, django_env):
    """The README's example; `.stock`: the same without the HTTP_HOST line."""
    fronts = []
    for stock in (False, True):
        name = "nginx-django-stock" if stock else "nginx-django"
        own = run_dir / name
        own.mkdir(mode=0o755, exist_ok=True)
        fronts.append(DjangoNginx(nginx_binary, own, log_dir / name, django_gateway.socket,
                                  django_env["DJANGO_STATIC_ROOT"], stock=stock).start())
    front, front.stock = fronts
    yield front
    for f in fronts:
        f.stop()


def admin_login(base: str) -> tuple[requests.Response, requests.Session]:
    """Logs in as a browser does: the form's CSRF token and cookie, and the
    Origin and Referer of the page."""
    session = requests.Session()
    page = session.get(f"{base}/admin/login/?next=/admin/", timeout=10)
    assert page.status_code == 200, page.text[:500]
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    r = session.post(
        f"{base}/admin/login/?next=/admin/",
        data={"csrfmiddlewaretoken": token, "username": "admin", "password": PASSWORD,
              "next": "/admin/"},
        headers={"Origin": base, "Referer": f"{base}/admin/login/?next=/admin/"},
        allow_redirects=False, timeout=10,
    )
    return r, session


def test_django_admin_login_with_csrf_on_a_non_default_port(django_nginx, django_gateway):
    base = f"http://127.0.0.1:{django_nginx.port}"
    r, session = admin_login(base)
    assert (r.status_code, r.headers.get("Location")) == (302, "/admin/"), django_gateway.describe()
    admin = session.get(base + r.headers["Location"], timeout=10)
    assert admin.status_code == 200
    assert "Site administration" in admin.text
    # build_absolute_uri() keeps the port too.
    hello = session.get(f"{base}/hello/", timeout=10)
    assert hello.text == f"hello from django at {base}/hello/\n"


def test_django_csrf_fails_with_the_stock_host_param(django_nginx):
    """The control: Debian's `HTTP_HOST $host` drops the port, and Django
    refuses the browser's Origin."""
    base = f"http://127.0.0.1:{django_nginx.stock.port}"
    r, _ = admin_login(base)
    assert r.status_code == 403
    assert "CSRF" in r.text


def test_django_static_files_come_from_nginx(django_nginx, django_gateway, django_env):
    mark = django_gateway.log.mark()
    css = django_nginx.url("/static/mysite/site.css")
    r = requests.get(css, timeout=10)
    assert r.status_code == 200
    assert r.text == (SITE / "mysite" / "static" / "mysite" / "site.css").read_text()
    # collectstatic gathered the admin's files too: the admin is styled.
    r = requests.get(django_nginx.url("/static/admin/css/base.css"), timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"] == "text/css"
    # Not one request reached the gateway.
    assert "/static/" not in django_gateway.log.text(since=mark)


def test_django_500_traceback_in_rustgis_log(django_nginx, django_gateway):
    mark = django_gateway.log.mark()
    nginx_mark = django_nginx.error_log.mark()
    r = requests.get(django_nginx.url("/broken/"), timeout=10)
    assert r.status_code == 500
    assert "Traceback" not in r.text  # DEBUG = False: nothing leaks to the browser
    lines = django_gateway.log.wait_for(r"ERROR django\.request: Internal Server Error: /broken/",
                                        since=mark)
    assert lines, django_gateway.describe(since=mark)
    logged = django_gateway.log.text(since=mark)
    assert "Traceback (most recent call last)" in logged
    assert "RuntimeError: the broken view broke, as the test asked" in logged
    # Over FastCGI, wsgi.errors also reaches nginx's error log (FCGI_STDERR).
    assert django_nginx.error_log.wait_for("FastCGI sent in stderr.*Internal Server Error: /broken/",
                                           since=nginx_mark)


# --------------------------------------------------------------------------
# Flask

FLASK_APP = str(APPS / "flask_site.py") + ":app"


@pytest.fixture(scope="module")
def flask_sites(gateways, nginx_binary, run_dir, log_dir, venv_dir):
    """Two gateways of the Flask site behind one nginx (uwsgi, with
    `uwsgi_param HTTP_HOST $http_host;`): `trusting` believes
    X-Forwarded-Proto from 127.0.0.1 (where the test, playing the load
    balancer, connects to nginx from), `other` only from 192.0.2.0/24."""
    common = ["--venv", str(venv_dir), "--app", FLASK_APP, "--threads", "2"]
    trusting = gateways.start("flask-lb", common + [
        "--trusted-proxy-header", "X-Forwarded-Proto", "--forwarded-allow-from", "127.0.0.1"],
        proto="uwsgi")
    other = gateways.start("flask-lb-other", common + [
        "--trusted-proxy-header", "X-Forwarded-Proto", "--forwarded-allow-from", "192.0.2.0/24",
        "--forwarded-allow-from", "::1"], proto="uwsgi")
    own = run_dir / "nginx-flask"
    own.mkdir(mode=0o755, exist_ok=True)
    host = "uwsgi_param HTTP_HOST $http_host;"
    front = Nginx(nginx_binary, own, log_dir / "nginx-flask",
                  [Location("/", "unix:" + trusting.socket, proto="uwsgi", params=host)],
                  servers={"other": [Location("/", "unix:" + other.socket, proto="uwsgi",
                                              params=host)]})
    front.start()
    yield front
    front.stop()
    trusting.terminate()
    other.terminate()


def test_flask_through_nginx_keeps_the_port(flask_sites):
    r = requests.get(flask_sites.url("/where"), timeout=10)
    assert r.status_code == 200
    assert r.json() == {"url": f"http://127.0.0.1:{flask_sites.port}/where", "scheme": "http",
                        "secure": False, "host": f"127.0.0.1:{flask_sites.port}"}


def test_flask_behind_a_trusted_tls_balancer_is_https(flask_sites):
    r = requests.get(flask_sites.url("/where"), headers={"X-Forwarded-Proto": "https"}, timeout=10)
    assert r.status_code == 200
    assert r.json()["url"] == f"https://127.0.0.1:{flask_sites.port}/where"
    assert r.json()["secure"] is True


def test_a_clients_own_x_forwarded_proto_line_loses_to_the_balancers(flask_sites):
    """The client sends `X-Forwarded-Proto: https`; the balancer appends
    its own line, `http`. nginx 1.22 passes the two lines as two uwsgi
    parameters, and the balancer's, the last, is the one believed."""
    conn = http.client.HTTPConnection("127.0.0.1", flask_sites.port, timeout=10)
    try:
        conn.putrequest("GET", "/where")
        conn.putheader("X-Forwarded-Proto", "https")
        conn.putheader("X-Forwarded-Proto", "http")
        conn.endheaders()
        r = conn.getresponse()
        assert r.status == 200
        where = json.loads(r.read())
    finally:
        conn.close()
    assert where["url"] == f"http://127.0.0.1:{flask_sites.port}/where"
    assert where["secure"] is False


def test_x_forwarded_proto_from_elsewhere_changes_nothing(flask_sites):
    port = flask_sites.server_port("other")
    r = requests.get(flask_sites.url("/where", server="other"),
                     headers={"X-Forwarded-Proto": "https"}, timeout=10)
    assert r.status_code == 200
    assert r.json()["url"] == f"http://127.0.0.1:{port}/where"
    assert r.json()["secure"] is False


def test_trusted_proxy_header_needs_its_networks(gateway_bin):
    r = subprocess.run([str(gateway_bin), "--trusted-proxy-header", "X-Forwarded-Proto"],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "--forwarded-allow-from" in r.stderr


# --------------------------------------------------------------------------
# What Apache and lighttpd send as HTTP_HOST (the README's table): the
# browser's Host header, port included, with no configuration.

FRONT_APP = str(APPS / "front_app.py")


def test_apache_sends_the_host_header_with_its_port(per_test_gateway, apache):
    gw = per_test_gateway("host", ["--app", FRONT_APP], proto="fastcgi")
    server = apache("host", f'ProxyPass "/" "unix:{gw.socket}|fcgi://app1/"\n')
    from frontservers import env_of
    env = env_of(requests.get(server.url("/x"), timeout=10), server, gw)
    assert env["HTTP_HOST"] == server.base_url.removeprefix("http://")


def test_lighttpd_sends_the_host_header_with_its_port(per_test_gateway, lighttpd):
    gw = per_test_gateway("host", ["--app", FRONT_APP], proto="fastcgi")
    server = lighttpd("host", 'fastcgi.server = ("/" => (("socket" => "%s", '
                              '"check-local" => "disable")))\n' % gw.socket)
    from frontservers import env_of
    env = env_of(requests.get(server.url("/x"), timeout=10), server, gw)
    assert env["HTTP_HOST"] == server.base_url.removeprefix("http://")
