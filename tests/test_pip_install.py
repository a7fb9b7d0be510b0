"""`pip install .` (issue 15, item 1): into a fresh venv, the checkout
builds with maturin against that venv's Python, puts `rustgi-gateway` in
its bin/, and that program serves the venv's own packages with no --venv:
a Flask app, with Flask installed in that venv only, behind nginx.

One test, because the build is a release build (minutes on 2 cores). It
reuses what it can: the venv is made afresh at the same path each time
and cargo's target directory stays (target/pip-install/), so a second run
rebuilds only what changed. pip fetches maturin as the build dependency
(pyproject.toml), as it does for a user.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import requests

from harness import REPO, Location, Nginx, can_connect_unix, scgi_request, stop_process, wait_until
from plugins.base import _STARTED

WORK = REPO / "target" / "pip-install"

FLASK_APP = """\
import sys

import flask
from flask import Flask, jsonify

app = Flask(__name__)


@app.get("/where")
def where():
    return jsonify(prefix=sys.prefix, executable=sys.executable, flask=flask.__file__)
"""

PLAIN_APP = """\
import json
import sys


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({"prefix": sys.prefix}).encode()]
"""


def run(cmd, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    assert p.returncode == 0, f"{cmd} exited {p.returncode}:\n{p.stdout[-6000:]}\n{p.stderr[-6000:]}"
    return p


def fresh_venv(path: Path) -> Path:
    """`python3 -m venv` of the Python the suite runs on (its base, not
    .venv-test), at `path`, emptied first."""
    shutil.rmtree(path, ignore_errors=True)
    base = Path(sys.base_prefix) / "bin" / "python3"
    run([base, "-m", "venv", path])
    return path


def serve(binary: Path, socket: Path, app: Path, log: Path, callable: str = "application") -> subprocess.Popen:
    """The installed program, as a user starts it: no --venv."""
    socket.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYO3_PYTHON")}
    out = open(log, "ab")
    proc = subprocess.Popen([binary, "--socket", socket, "--chmod", "666", "--app", f"{app}:{callable}"],
                            stdout=out, stderr=out, stdin=subprocess.DEVNULL, env=env,
                            cwd=app.parent)
    out.close()
    if not wait_until(lambda: proc.poll() is not None or can_connect_unix(socket), 30):
        stop_process(proc)
        raise AssertionError(f"{binary} is not listening after 30 s:\n{log.read_text()[-4000:]}")
    assert proc.poll() is None, f"{binary} exited {proc.returncode}:\n{log.read_text()[-4000:]}"
    return proc


def test_pip_install_into_a_fresh_venv_serves_its_flask_app_behind_nginx(nginx_binary, run_dir, log_dir):
    WORK.mkdir(parents=True, exist_ok=True)
    venv = fresh_venv(WORK / "venv")
    pip_log = log_dir / "pip-install.log"
    run([venv / "bin" / "pip", "install", "-q", "--disable-pip-version-check", "flask"])
    env = dict(os.environ, CARGO_TARGET_DIR=str(WORK / "cargo"))
    for key in ("PYO3_PYTHON", "VIRTUAL_ENV"):  # as a user's shell: maturin picks the venv's
        env.pop(key, None)
    p = run([venv / "bin" / "pip", "install", "-v", "--disable-pip-version-check", REPO], env=env)
    pip_log.write_text(p.stdout + p.stderr)
    binary = venv / "bin" / "rustgi-gateway"
    assert binary.is_file() and os.access(binary, os.X_OK), f"no {binary}; see {pip_log}"

    # Built against this venv's Python: --version names its installation.
    version = run([binary, "--version"]).stdout
    assert f"Python {sys.version.split()[0]}" in version, version
    assert f"built against the Python at {sys.base_prefix}" in version, version
    assert "not the one" not in version, version

    site = run_dir / "pip-site"
    site.mkdir(mode=0o755, exist_ok=True)
    app = site / "flask_site.py"
    app.write_text(FLASK_APP)
    socket = site / "app.sock"
    gw_log = log_dir / "pip-gateway.log"
    gw = serve(binary, socket, app, gw_log, "app")
    own_dir = run_dir / "nginx-pip"
    own_dir.mkdir(mode=0o755, exist_ok=True)
    nginx = Nginx(nginx_binary, own_dir, log_dir / "nginx-pip", [Location("/", f"unix:{socket}")])
    _STARTED.append(nginx)
    try:
        nginx.start()
        r = requests.get(nginx.url("/where"), timeout=10)
        assert r.status_code == 200, (r.status_code, r.text, gw_log.read_text()[-4000:])
        where = r.json()
        # The venv's own Flask (the gateway's test venv has one too).
        assert where["prefix"] == str(venv), where
        assert where["flask"].startswith(str(venv / "lib")), where
        assert where["executable"] == str(venv / "bin" / "python"), where
        assert f"serving the venv {venv}" in gw_log.read_text(), gw_log.read_text()[-4000:]
    finally:
        nginx.stop()
        assert stop_process(gw) == 0, gw_log.read_text()[-4000:]

    # The rule, not the path recorded at build time: the same program in
    # another venv's bin/ (a wheel built elsewhere) serves that venv.
    other = fresh_venv(WORK / "other-venv")
    shutil.copy2(binary, other / "bin" / "rustgi-gateway")
    plain = site / "plain_site.py"
    plain.write_text(PLAIN_APP)
    gw = serve(other / "bin" / "rustgi-gateway", socket, plain, gw_log)
    try:
        r = scgi_request(str(socket), "GET", "/")
        assert r.status == 200, (r.status, r.body, gw_log.read_text()[-4000:])
        assert r.body == f'{{"prefix": "{other}"}}'.encode(), r.body
    finally:
        assert stop_process(gw) == 0, gw_log.read_text()[-4000:]
