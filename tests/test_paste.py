"""PasteDeploy: `--paste production.ini` serves a real Pyramid site (Pyramid
and PasteDeploy from PyPI, in .venv-test) with its pipeline of a filter
and the app, and applies the ini's logging sections first, as pserve and
gunicorn --paste do. The site is installed as a distribution (pip install
--target), so that `use = egg:pyramid_site` finds its entry points."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import requests

import ajp_client as ajp
from harness import REPO, Gateway, free_port, scgi_request

SITE = REPO / "fixtures" / "pyramid_site"


@pytest.fixture(scope="module")
def installed_site(venv_dir, run_dir):
    """fixtures/pyramid_site built and installed into a directory of its own
    (a copy is built: the build leaves files beside its sources)."""
    source = run_dir / "pyramid_site-src"
    shutil.copytree(SITE, source, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    target = run_dir / "pyramid_site-installed"
    subprocess.run(
        [str(venv_dir / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
         "--no-deps", "--no-build-isolation", "--no-index", "--target", str(target), str(source)],
        check=True, capture_output=True,
    )
    return source, target


def test_pyramid_production_ini(gateways, private_nginx, installed_site, venv_dir):
    source, target = installed_site
    ini = source / "production.ini"
    gw = gateways.start("paste", ["--venv", str(venv_dir), "--pythonpath", str(target),
                                  "--paste", str(ini), "--threads", "2"], proto="uwsgi")
    front = private_nginx("paste", gw, proto="uwsgi")
    mark = gw.log.mark()
    r = requests.get(front.url("/hello"), timeout=10)
    assert r.status_code == 200, gw.describe()
    # The app, with `%(here)s` the ini's directory, as PasteDeploy defines it.
    assert r.text == f"hello from pyramid (here={source})\n"
    # The filter of [pipeline:main] ran around it.
    assert r.headers["X-Pipeline"] == "tagger ran"
    # The ini's [logger_pyramid_site] (level INFO, to the console handler on
    # sys.stderr) was applied before the app was built, and works in requests.
    out = gw.output()
    assert gw.log.lines_matching(r"\[pyramid_site:\d+\]\[MainThread\] pyramid_site app built"), out
    assert gw.log.wait_for(r"INFO  \[pyramid_site:\d+\].* hello view served /hello", since=mark), out
    assert f"--paste: loaded {ini}#main with paste.deploy.loadapp" in out


def test_paste_names_an_app_of_the_file(gateways, installed_site, venv_dir):
    """`#site` is the bare [app:site], without the pipeline's filter."""
    source, target = installed_site
    gw = gateways.start("paste-name", ["--venv", str(venv_dir), "--pythonpath", str(target),
                                       "--paste", f"{source / 'production.ini'}#site"])
    r = scgi_request(gw.socket, path="/hello")
    assert r.status == 200, gw.describe()
    assert "X-Pipeline" not in dict(r.headers)


def test_paste_and_app_exclude_each_other(gateway_bin):
    r = subprocess.run([str(gateway_bin), "--paste", "x.ini", "--app", "x:y"],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "--paste" in r.stderr and "cannot be used with" in r.stderr


def test_paste_without_pastedeploy_says_so(gateways):
    """The Python rustgi was built with has no PasteDeploy (no --venv)."""
    gw = gateways.make("paste-missing", ["--paste", str(SITE / "production.ini")])
    gw.spawn()
    assert gw.wait_exit(30) != 0
    assert "--paste needs PasteDeploy in the application's Python" in gw.output(), gw.describe()


class OwnAddressGateway(Gateway):
    """A gateway whose protocol and address come from its --paste file."""

    @property
    def command(self) -> list[str]:
        return [str(self.binary), *self.args]


def test_flup_ajp_thread_asks_for_a_secret_then_serves_ajp(gateway_bin, installed_site, venv_dir, scratch,
                                                          log_dir):
    """flup's AJP server had no secret; rustgi's AJP needs one (or
    --ajp-secret-optional): the start says so, naming the ini line, and
    with RUSTGI_AJP_SECRET the site is served over AJP at its port."""
    source, target = installed_site
    port = free_port()
    ini = scratch / "production-ajp.ini"
    ini.write_text((source / "production.ini").read_text().replace("%(here)s", str(source))
                   + f"\n[server:main]\nuse = egg:flup#ajp_thread\nhost = 127.0.0.1\nport = {port}\n")
    args = ["--venv", str(venv_dir), "--pythonpath", str(target), "--paste", str(ini), "--threads", "2"]
    r = subprocess.run([str(gateway_bin), *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert f"proto = ajp ({ini}:" in r.stderr and "flup's AJP server took no secret" in r.stderr, r.stderr
    assert "--ajp-secret SECRET" in r.stderr and "--ajp-secret-optional" in r.stderr
    gw = OwnAddressGateway("paste-ajp", f"127.0.0.1:{port}", args, log_dir / "paste-ajp.log",
                           env={"RUSTGI_AJP_SECRET": "flup-had-none"}, binary=gateway_bin)
    try:
        gw.start()
        with ajp.Connection(("127.0.0.1", port)) as c:
            got = c.request("GET", "/hello", secret="flup-had-none")
        assert got.status == 200, gw.describe()
        assert got.body.startswith(b"hello from pyramid"), got.body
    finally:
        gw.terminate()


def test_a_relative_paste_is_read_inside_chdir(gateways, installed_site, venv_dir):
    """The [server:main] reading and the app loader take the same file: a
    relative --paste is inside --chdir (here started from the repository)."""
    source, target = installed_site
    (source / "relative.ini").write_text((source / "production.ini").read_text()
                                         + "\n[server:main]\nuse = egg:flup#scgi_thread\nmaxThreads = 3\n")
    gw = gateways.start("paste-relative", ["--venv", str(venv_dir), "--pythonpath", str(target),
                                           "--chdir", str(source), "--paste", "relative.ini"])
    r = scgi_request(gw.socket, path="/hello")
    assert (r.status, r.body) == (200, f"hello from pyramid (here={source})\n".encode()), gw.describe()
    assert f"--paste: loaded {source}/relative.ini#main" in gw.output(), gw.output()
    # maxThreads of its [server:main] was read too.
    assert "threads: 3" in gw.output() or "3 thread" in gw.output(), gw.output()
