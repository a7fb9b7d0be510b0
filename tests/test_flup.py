"""Coming from flup: an unchanged `dispatch.fcgi` that ends in
`WSGIServer(application).run()` is served by `rustgi-gateway --app
dispatch.fcgi` behind nginx, with no flup installed and with a real flup
1.0.3 (from PyPI, in .venv-test) beside the application. The same script
under the real flup, as the web server once ran it, answers the same."""

from __future__ import annotations

import os
import socket
import subprocess
from dataclasses import dataclass

import pytest
import requests

from harness import REPO, LogFile, stop_process, wait_until

DISPATCH = REPO / "fixtures" / "flup" / "dispatch.fcgi"


def test_flup_script_without_flup_installed(gateways, private_nginx):
    gw = gateways.start("flup-none", ["--app", str(DISPATCH), "--threads", "2"], proto="fastcgi")
    front = private_nginx("flup-none", gw, proto="fastcgi")
    r = requests.get(front.url("/sign"), timeout=10)
    assert r.status_code == 200, gw.describe()
    assert r.text.splitlines()[:2] == ["guestbook at /sign", "flup: no real flup"], r.text
    out = gw.output()
    assert "flup.server.fcgi.WSGIServer(...).run() handed the application to rustgi-gateway" in out
    assert "the script spoke FastCGI" in out


def test_flup_script_beside_a_real_flup(gateways, private_nginx, venv_dir):
    import flup  # installed in .venv-test by tests/run

    gw = gateways.start("flup-real", ["--venv", str(venv_dir), "--app", str(DISPATCH),
                                      "--threads", "2"], proto="fastcgi")
    front = private_nginx("flup-real", gw, proto="fastcgi")
    r = requests.get(front.url("/sign"), timeout=10)
    assert r.status_code == 200, gw.describe()
    # The application imported flup beside it: the real package, whose
    # server module alone is rustgi's.
    assert r.text.splitlines()[:2] == ["guestbook at /sign", f"flup: {flup.__file__}"], r.text


@dataclass
class Spawned:
    """What private_nginx needs of a backend: its socket."""
    socket: str


def test_the_same_script_under_real_flup_answers_the_same(gateways, private_nginx, venv_dir,
                                                          run_dir, log_dir):
    """The script is a real flup script: run by .venv-test's python with a
    listening socket on fd 0 (as mod_fcgid or spawn-fcgi started it), flup
    itself serves it; rustgi's answer through the same nginx is the same."""
    path = str(run_dir / "flup-itself.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    os.chmod(path, 0o666)
    listener.listen(16)
    log = LogFile(log_dir / "flup-itself.log")
    with open(log.path, "ab") as out:
        flup_proc = subprocess.Popen([str(venv_dir / "bin" / "python"), str(DISPATCH)],
                                     stdin=listener.fileno(), stdout=out, stderr=out)
    listener.close()
    try:
        front = private_nginx("flup-itself", Spawned(path), proto="fastcgi")
        r = wait_until(lambda: _get(front.url("/sign")), timeout=15)
        assert r is not None and r.status_code == 200, log.tail()
        by_flup = r.text
    finally:
        stop_process(flup_proc)
    gw = gateways.start("flup-same", ["--venv", str(venv_dir), "--app", str(DISPATCH)],
                        proto="fastcgi")
    front = private_nginx("flup-same", gw, proto="fastcgi")
    r = requests.get(front.url("/sign"), timeout=10)
    assert (r.status_code, r.text) == (200, by_flup), gw.describe()


def _get(url):
    try:
        return requests.get(url, timeout=5)
    except requests.RequestException:
        return None


SCRIPT_WITH_OPTIONS = """\
import sys
from flup.server.scgi_fork import WSGIServer

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [("site=%s\\n" % environ.get("SITE")).encode()]

try:
    WSGIServer(app, environ={"SITE": "from flup's environ="}, bindAddress=("127.0.0.1", 4000),
               umask=0o002, maxChildren=5, maxRequests=100, scriptName="/blog",
               allowedServers=["127.0.0.1"], debug=True, frobnicate=1).run()
except Exception:
    print("run() raised an Exception")
print("the script went on after run()")
"""


def test_flup_arguments_are_logged_with_what_they_became(gateways, scratch):
    script = scratch / "site.fcgi"
    script.write_text(SCRIPT_WITH_OPTIONS)
    gw = gateways.start("flup-options", ["--app", str(script), "--threads", "1"])
    from harness import scgi_request
    r = scgi_request(gw.socket, path="/")
    assert (r.status, r.body) == (200, b"site=from flup's environ=\n"), gw.describe()
    out = gw.output()
    for line in [
        "flup.server.scgi_fork.WSGIServer environ={'SITE': \"from flup's environ=\"}: added to every request's environ",
        "bindAddress=('127.0.0.1', 4000): not opened by the script: rustgi listens where its own flags say; --socket 127.0.0.1:4000 is the equivalent",
        "umask=0o002: not applied: rustgi sets the socket's mode with --chmod 775",
        "maxChildren=5: not applied: --processes 5 is the equivalent",
        "maxRequests=100: not applied: --max-requests 100 is the equivalent",
        "scriptName='/blog': not applied: --mount /blog is the equivalent",
        "allowedServers=['127.0.0.1']: not applied: --allow-from 127.0.0.1 is the equivalent",
        "debug=True: flup sent tracebacks to the browser",
        "frobnicate=1: unknown to rustgi; ignored",
        "flup.server.scgi_fork: the script spoke SCGI",
    ]:
        assert line in out, f"{line!r} not logged:\n{out}"
    assert "run() raised an Exception" not in out
    assert "the script went on after run()" not in out


def test_a_script_that_never_calls_run_is_named(gateways, scratch):
    script = scratch / "nothing.fcgi"
    script.write_text("x = 1\n")
    gw = gateways.make("flup-nothing", ["--app", str(script)])
    gw.spawn()
    assert gw.wait_exit(30) != 0
    assert "ran to its end without calling flup's WSGIServer(app).run()" in gw.output(), gw.describe()


@pytest.mark.parametrize("module", ["fcgi", "fcgi_fork", "fcgi_single", "scgi", "scgi_fork",
                                    "ajp", "ajp_fork", "cgi"])
def test_every_flup_server_module_hands_over(gateways, scratch, module):
    script = scratch / f"{module}.fcgi"
    script.write_text(
        f"from flup.server.{module} import WSGIServer\n"
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        f"    return [b'{module}']\n"
        "WSGIServer(app).run()\n"
    )
    gw = gateways.start(f"flup-{module}", ["--app", str(script), "--threads", "1"])
    from harness import scgi_request
    r = scgi_request(gw.socket, path="/")
    assert (r.status, r.body) == (200, module.encode()), gw.describe()
    gw.terminate()


def test_a_module_that_calls_run_as_it_is_imported(gateways, scratch):
    """`--app site.py` whose run() has no __main__ guard: the import ends
    there and the handed application is served."""
    (scratch / "unguarded.py").write_text(
        "from flup.server.fcgi import WSGIServer\n"
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [b'unguarded']\n"
        "WSGIServer(app).run()\n"
        "raise SystemExit('the import went on after run()')\n"
    )
    gw = gateways.start("flup-unguarded", ["--app", str(scratch / "unguarded.py"), "--threads", "1"])
    from harness import scgi_request
    r = scgi_request(gw.socket, path="/")
    assert (r.status, r.body) == (200, b"unguarded"), gw.describe()
    assert "unguarded: flup.server.fcgi.WSGIServer(...).run() handed the application" in gw.output()
