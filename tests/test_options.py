"""Gateway flags seen from outside: --mount, --threads, --venv (and the
venvs it refuses), the built-in demo app (no --app), a TCP --socket."""

import json
import os
import re
import sys
from pathlib import Path

import requests

from harness import free_port, scgi_request


def test_mount_splits_script_name_and_path_info(nginx, mount_gateway):
    r = requests.get(nginx.url("/app/some/where?dump=environ"), timeout=10)
    assert r.status_code == 200, mount_gateway.describe()
    env = r.json()
    assert env["SCRIPT_NAME"] == "/app"
    assert env["PATH_INFO"] == "/some/where"
    assert env["QUERY_STRING"] == "dump=environ"


def test_mount_routes_on_the_rest_of_the_path(nginx, mount_gateway):
    r = requests.get(nginx.url("/app/hello"), timeout=10)
    assert (r.status_code, r.text) == (200, "hello"), mount_gateway.describe()


def test_mount_root_itself(nginx, mount_gateway):
    r = requests.get(nginx.url("/app/?dump=environ"), timeout=10)
    assert r.status_code == 200, mount_gateway.describe()
    env = r.json()
    assert env["SCRIPT_NAME"] + env["PATH_INFO"] == "/app/"
    assert env["SCRIPT_NAME"] == "/app"


def test_env_flag_sets_the_process_environment(nginx, mount_gateway):
    r = requests.get(nginx.url("/app/osenv?name=RUSTGI_TEST_ENV"), timeout=10)
    assert (r.status_code, r.text) == (200, "set by --env"), mount_gateway.describe()


def test_flask_app_from_the_venv(nginx, flask_gateway, venv_dir):
    r = requests.get(nginx.url("/flask/hello"), timeout=10)
    assert (r.status_code, r.text) == (200, "hello from flask\n"), flask_gateway.describe()

    r = requests.post(nginx.url("/flask/json"), json={"a": [1, 2, "three"]}, timeout=10)
    assert r.status_code == 200, flask_gateway.describe()
    data = r.json()
    assert data["received"] == {"a": [1, 2, "three"]}
    assert data["path"] == "/flask/json"
    assert data["script_root"] == ""
    # --venv: sys.prefix inside the gateway is the venv.
    assert data["prefix"] == str(venv_dir)


def environ_lines(text: str) -> dict:
    """`KEY = value` lines as a dict; a value may be shown bare or as a repr."""
    found = {}
    for line in text.splitlines():
        key, sep, value = line.partition(" = ")
        if sep and key.replace("_", "").replace(".", "").isalnum():
            found[key] = value[1:-1] if len(value) >= 2 and value[0] == value[-1] == "'" else value
    return found


def test_demo_app_get_lists_the_environ(nginx, demo_gateway):
    r = requests.get(nginx.url("/demo/some/path?q=1"), timeout=10)
    assert r.status_code == 200, demo_gateway.describe()
    assert r.headers["Content-Type"].startswith("text/plain")
    assert "rustgi" in r.text.splitlines()[0].lower()
    env = environ_lines(r.text)
    assert env.get("REQUEST_METHOD") == "GET", r.text
    assert env.get("PATH_INFO") == "/demo/some/path"
    assert env.get("QUERY_STRING") == "q=1"
    assert env.get("SCRIPT_NAME") == ""


def test_demo_app_echoes_post(nginx, demo_gateway):
    body = b"echo me \x00\xff" * 1000
    r = requests.post(nginx.url("/demo/echo"), data=body, timeout=10)
    assert r.status_code == 200, demo_gateway.describe()
    assert r.content == body


def test_demo_app_answers_text_plain_whatever_the_request_says(nginx, demo_gateway):
    # An echo in the client's own text/html would be a page that runs the
    # client's script on this site.
    page = b"<script>alert(document.cookie)</script>"
    r = requests.post(nginx.url("/demo/echo"), data=page, headers={"Content-Type": "text/html"},
                      timeout=10)
    assert r.status_code == 200, demo_gateway.describe()
    assert r.headers["Content-Type"].startswith("text/plain"), r.headers
    assert r.headers.get("X-Content-Type-Options") == "nosniff", r.headers
    assert r.content == page


def test_demo_app_does_not_show_authorization_or_cookie_values(nginx, demo_gateway):
    secrets = {"Authorization": "Basic c2VjcmV0LXVzZXI6aHVudGVyMg==", "Cookie": "session=s3cr3t-value"}
    r = requests.get(nginx.url("/demo/env"), headers=secrets, timeout=10)
    assert r.status_code == 200, demo_gateway.describe()
    assert r.headers["Content-Type"].startswith("text/plain")
    assert "c2VjcmV0LXVzZXI6aHVudGVyMg" not in r.text and "s3cr3t-value" not in r.text, r.text
    env = environ_lines(r.text)
    assert env.get("HTTP_AUTHORIZATION") == "(hidden)" and env.get("HTTP_COOKIE") == "(hidden)", r.text
    assert env.get("HTTP_HOST"), "other headers are still shown"


def test_tcp_socket(gateways):
    address = f"127.0.0.1:{free_port()}"
    gw = gateways.start("tcp", ["--app", "tests/apps/conformance.py"], socket=address)
    try:
        r = scgi_request(address, "GET", "/hello")
        assert (r.status, r.body) == (200, b"hello"), gw.describe()
        r = scgi_request(address, "POST", "/echo", b"over tcp")
        assert (r.status, r.body) == (200, b"over tcp"), gw.describe()
        r = scgi_request(address, "GET", "/x", query="dump=environ")
        assert json.loads(r.body)["PATH_INFO"] == "/x"
    finally:
        assert gw.terminate() == 0


# --venv made by another Python, or not a venv at all: refused before listening.

EMBEDDED = f"{sys.version_info.major}.{sys.version_info.minor}"  # the suite's venv comes from it


def fake_venv(path: Path, version: str | None) -> Path:
    """A directory that looks like a venv: bin/python (this Python) and,
    unless `version` is None, a pyvenv.cfg saying it was made by `version`."""
    (path / "bin").mkdir(parents=True)
    (path / "bin" / "python").symlink_to(sys.executable)
    if version is not None:
        (path / "pyvenv.cfg").write_text(
            f"home = {Path(sys.base_prefix) / 'bin'}\ninclude-system-site-packages = false\n"
            f"version = {version}\n"
        )
    return path


def refused_venv_message(gateways, name: str, venv: Path) -> str:
    gw = gateways.make(name, ["--venv", str(venv), "--app", "tests/apps/conformance.py"])
    gw.spawn()
    code = gw.wait_exit(timeout=30)
    log = gw.output()
    assert code != 0, log
    assert "listening on" not in log, log
    assert not os.path.exists(gw.socket), "a socket was left behind"
    return log


def test_venv_of_another_python_version_is_refused(gateways, run_dir):
    venv = fake_venv(run_dir / "venv-3.9", "3.9.1")
    log = refused_venv_message(gateways, "venv-3.9", venv)
    embedded = re.compile(rf"\b{re.escape(EMBEDDED)}\b")
    named = [line for line in log.splitlines() if "3.9.1" in line and embedded.search(line)]
    assert named, f"no line names both 3.9.1 and {EMBEDDED}:\n{log}"
    assert str(venv) in named[0]


def test_fake_venv_of_the_right_version_is_accepted(gateways, run_dir):
    # The same fake venv with the embedded version starts: what the test
    # above sees is the version check, not a broken fake.
    venv = fake_venv(run_dir / f"venv-{EMBEDDED}", f"{EMBEDDED}.0")
    gw = gateways.start("venv-same", ["--venv", str(venv), "--app", "tests/apps/conformance.py"])
    try:
        prefix = rf"\(prefix {re.escape(str(venv))}\)"
        assert gw.log.lines_matching(r"\bPython\b", prefix, since=gw.output_start), gw.describe()
        r = scgi_request(gw.socket, "GET", "/hello")
        assert (r.status, r.body) == (200, b"hello"), gw.describe()
    finally:
        assert gw.terminate() == 0


def test_venv_without_pyvenv_cfg_is_refused(gateways, run_dir):
    venv = fake_venv(run_dir / "not-a-venv", None)
    log = refused_venv_message(gateways, "venv-none", venv)
    assert "not a virtualenv" in log, log
    assert str(venv) in log
