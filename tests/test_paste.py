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

from harness import REPO

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
    from harness import scgi_request
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
