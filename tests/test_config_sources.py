"""Settings from elsewhere than flags, seen from outside: --config (TOML),
RUSTGI_<FLAG> variables, --uwsgi-ini and `rustgi-gateway convert`, the
aliases uWSGI and gunicorn users type, and the tip for an unknown flag.
The uWSGI file is fixtures/config/uwsgi.ini, served behind nginx."""

import json
import os
import re
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import requests

from harness import (APPS, REPO, Gateway, Location, Nginx, can_connect_tcp, can_connect_unix, free_port,
                     scgi_request, wait_until)

FIXTURE = REPO / "fixtures" / "config" / "uwsgi.ini"
APPS_FROM_FIXTURE = f"{FIXTURE.parent}/../../tests/apps"


def run(gateway_bin, *args, env=None, cwd=None):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("RUSTGI_") or k == "RUSTGI_BIN"}
    full_env.update(env or {})
    return subprocess.run([str(gateway_bin), *args], capture_output=True, text=True, env=full_env,
                          cwd=cwd or REPO, timeout=60)


def settings(printed: str) -> dict:
    """--print-config's text as a dict, defaults included (they are the
    commented `# key = value  (default)` lines)."""
    lines = []
    for line in printed.splitlines():
        default = re.fullmatch(r"# (\S+ = .*)  \(default\)", line)
        if default:
            lines.append(default.group(1))
        elif not line.startswith("#"):
            lines.append(line)
    return tomllib.loads("\n".join(lines))


def printed(gateway_bin, *args, env=None) -> dict:
    r = run(gateway_bin, *args, "--print-config", env=env)
    assert r.returncode == 0, r.stderr
    return settings(r.stdout)


@pytest.fixture
def site_env(run_dir, venv_dir):
    return {
        "SITE_RUN": str(run_dir),
        "SITE_VENV": str(venv_dir),
        "SITE_STATS_PORT": str(free_port()),
    }


def equivalent_flags(site_env) -> list[str]:
    run_dir = site_env["SITE_RUN"]
    return [
        "--proto", "uwsgi", "--socket", f"{run_dir}/uwsgi-ini.sock", "--chmod", "666",
        "--app", "conformance:application", "--chdir", APPS_FROM_FIXTURE,
        "--pythonpath", APPS_FROM_FIXTURE, "--venv", site_env["SITE_VENV"],
        "--processes", "2", "--threads", "4",
        "--max-header-size", "32768", "--buffer-body", "8192", "--max-requests", "1000",
        "--reload-on-rss", "512", "--max-worker-lifetime", "3600", "--max-worker-lifetime-jitter", "30",
        "--timeout", "30", "--touch-reload", f"{run_dir}/uwsgi-ini.reload",
        "--env", "DJANGO_SETTINGS_MODULE=site.settings", "--env", "SITE_NAME=from-uwsgi",
        "--log-file", f"{run_dir}/uwsgi-ini.log",
        "--metrics", f"127.0.0.1:{site_env['SITE_STATS_PORT']}",
    ]


def test_uwsgi_ini_is_the_same_as_its_flags(gateway_bin, site_env):
    from_ini = printed(gateway_bin, "--uwsgi-ini", str(FIXTURE), env=site_env)
    from_flags = printed(gateway_bin, *equivalent_flags(site_env))
    assert from_ini == from_flags
    assert from_ini["timeout"] == 30 and from_ini["preload"] is False


def test_convert_prints_a_config_that_reads_the_same(gateway_bin, site_env, scratch):
    r = run(gateway_bin, "convert", str(FIXTURE), env=site_env)
    assert r.returncode == 0, r.stderr
    assert "# WARNING: " in r.stdout and "location /static/ { alias " in r.stdout, r.stdout
    assert "max-worker-lifetime" in r.stdout, r.stdout
    toml_file = scratch / "site.toml"
    toml_file.write_text(r.stdout)
    assert printed(gateway_bin, "--config", str(toml_file)) == printed(
        gateway_bin, "--uwsgi-ini", str(FIXTURE), env=site_env)
    # And --print-config's own output reads back the same.
    again = run(gateway_bin, "--config", str(toml_file), "--print-config")
    (scratch / "again.toml").write_text(again.stdout)
    assert printed(gateway_bin, "--config", str(scratch / "again.toml")) == settings(again.stdout)


def test_flags_over_environment_over_files(gateway_bin, site_env, scratch):
    toml_file = scratch / "rustgi.toml"
    toml_file.write_text("threads = 3\nmax_requests = 50\nprocesses = 2\n")
    got = printed(gateway_bin, "--uwsgi-ini", str(FIXTURE), "--config", str(toml_file), "--processes", "3",
                  env={**site_env, "RUSTGI_MAX_REQUESTS": "70"})
    assert (got["threads"], got["max-requests"], got["processes"]) == (3, 70, 3)
    # The project's own RUSTGI_ names are no settings, and no typos.
    got = printed(gateway_bin, env={"RUSTGI_LANE": "io", "RUSTGI_REQUEST_ID": "x", "RUSTGI_KEEP_RUN": "1"})
    assert got["threads"] == 8


def test_unknown_keys_and_variables_name_the_closest(gateway_bin, scratch):
    toml_file = scratch / "rustgi.toml"
    toml_file.write_text("threads = 2\nmax-request = 5\n")
    r = run(gateway_bin, "--config", str(toml_file))
    assert r.returncode == 2
    assert f"{toml_file}:2: unknown key `max-request`; did you mean `max-requests`?" in r.stderr, r.stderr
    r = run(gateway_bin, env={"RUSTGI_MAX_REQUEST": "5"})
    assert r.returncode == 2
    assert "RUSTGI_MAX_REQUEST: not a rustgi setting; did you mean RUSTGI_MAX_REQUESTS?" in r.stderr


@pytest.mark.parametrize("typed, tip", [
    ("--modul", "did you mean --module (that is --app)?"),
    ("--harakri", "did you mean --harakiri (that is --timeout)?"),
    ("--max-request", "did you mean --max-requests?"),
    ("--chmod-socket", "uWSGI's --chmod-socket is --chmod here"),
    ("--uid", "uWSGI's --uid is --user here"),
    ("--socket-mode", None),
    ("--mastr-fifo", None),
])
def test_the_tip_for_an_unknown_flag(gateway_bin, typed, tip):
    r = run(gateway_bin, typed, "x")
    assert r.returncode == 2
    assert f"unexpected argument '{typed}'" in r.stderr, r.stderr
    if tip is None:
        assert "tip:" not in r.stderr, r.stderr
    else:
        assert f"tip: {tip}" in r.stderr, r.stderr
    for other_meaning in ("--mount", "--user", "--chown"):
        assert f"tip: did you mean {other_meaning}?" not in r.stderr


def test_aliases_users_type(gateway_bin):
    got = printed(gateway_bin, "--workers", "2", "--harakiri", "9", "--module", "m:app", "--virtualenv", "/v",
                  "--bind", "127.0.0.1:9", "--master")
    assert (got["processes"], got["timeout"], got["app"], got["venv"], got["socket"]) == (
        2, 9, "m:app", "/v", "127.0.0.1:9")


class IniGateway(Gateway):
    """A gateway whose socket and protocol come from its ini file."""

    @property
    def command(self) -> list[str]:
        return [str(self.binary), *self.args]


def test_served_from_the_ini_behind_nginx(gateway_bin, nginx_binary, site_env, run_dir, log_dir):
    run_path = Path(site_env["SITE_RUN"])
    (run_path / "uwsgi-ini.reload").touch()
    socket = run_path / "uwsgi-ini.sock"
    gw = IniGateway("uwsgi-ini", str(socket), ["--uwsgi-ini", str(FIXTURE)], log_dir / "uwsgi-ini.log",
                    env=site_env, binary=gateway_bin)
    log_file = run_path / "uwsgi-ini.log"
    try:
        try:
            gw.start()
        except AssertionError as e:
            raise AssertionError(f"{e}\n{log_file.read_text() if log_file.exists() else ''}")
        own_dir = run_dir / "nginx-uwsgi-ini"
        own_dir.mkdir(mode=0o755, exist_ok=True)
        server = Nginx(nginx_binary, own_dir, log_dir / "nginx-uwsgi-ini",
                       [Location("/", f"unix:{socket}", proto="uwsgi")])
        server.start()
        try:
            r = requests.get(server.url("/osenv?name=SITE_NAME"), timeout=10)
            assert (r.status_code, r.text) == (200, "from-uwsgi"), log_file.read_text()
            r = requests.get(server.url("/environ"), timeout=10)
            assert r.status_code == 200
            assert r.json()["wsgi.multiprocess"] is True
        finally:
            server.stop()
        # stats = … is --metrics.
        metrics = requests.get(f"http://127.0.0.1:{site_env['SITE_STATS_PORT']}/metrics", timeout=10)
        assert metrics.status_code == 200 and "rustgi_" in metrics.text
        log = log_file.read_text()
        assert re.search(r"WARN.*static-map.*location /static/ \{ alias .*/static/; \}", log), log
        assert not re.search(r"WARN.*max-worker-lifetime", log), log
        assert re.search(r"INFO.*max-worker-lifetime-jitter: each worker lives its own share", log), log
        assert re.search(r"INFO.*\(master\): not needed", log), log
        # disable-logging: no access log.
        assert "GET /osenv" not in log
    finally:
        gw.terminate()
    assert not can_connect_unix(socket)


# ---------------------------------------------------------------------------
# What the reviewer of issue 15 found: each test fails on the code before
# its fix.

def test_a_settings_error_on_a_preload_reload_keeps_the_old_workers(gateways, scratch):
    """A --preload reload re-executes rustgi, which reads --config again:
    a file broken meanwhile fails the reload, as a broken app does, instead
    of taking the server down."""
    conf = scratch / "reload.toml"
    conf.write_text("threads = 2\n")
    gw = gateways.start("cfg-preload-reload", ["--config", str(conf), "--preload", "--processes", "2",
                                               "--app", str(APPS / "processes_app.py")])
    assert wait_until(lambda: len(gw.workers()) == 2, 15), gw.describe()
    assert gw.log.wait_for(r"\b2 worker\(s\) ready", timeout=15), gw.describe()
    workers = set(gw.workers())
    conf.write_text("threads = 2\nmax-request = 5\n")
    mark = gw.log.mark()
    gw.send_signal(signal.SIGHUP)
    assert gw.log.wait_for(r"reload failed", since=mark, timeout=15), gw.describe(mark)
    assert f"{conf}:2: unknown key `max-request`; did you mean `max-requests`?" in gw.log.text(mark)
    for _ in range(5):
        assert scgi_request(gw.socket, "GET", "/", timeout=10).status == 200
    assert gw.alive() and set(gw.workers()) == workers, gw.describe(mark)
    # Mended, the next reload goes through.
    conf.write_text("threads = 2\n")
    mark = gw.log.mark()
    gw.send_signal(signal.SIGHUP)
    assert gw.log.wait_for(r"reloaded: generation \d+ is serving", since=mark, timeout=20), gw.describe(mark)
    assert wait_until(lambda: not set(gw.workers()) & workers, 10), gw.describe(mark)
    assert scgi_request(gw.socket, "GET", "/", timeout=10).status == 200


def test_a_chdir_gone_on_a_preload_reload_keeps_the_old_workers(gateways, scratch):
    """The re-executed master enters --chdir again: a directory gone (a
    deploy that swapped it away) fails the reload, checked before the
    re-exec, instead of taking the server down."""
    site = scratch / "site"
    site.mkdir()
    gw = gateways.start("chdir-preload-reload", ["--chdir", str(site), "--preload", "--processes", "2",
                                                 "--app", str(APPS / "processes_app.py")])
    assert wait_until(lambda: len(gw.workers()) == 2, 15), gw.describe()
    assert gw.log.wait_for(r"\b2 worker\(s\) ready", timeout=15), gw.describe()
    workers = set(gw.workers())
    site.rename(scratch / "site.old")
    mark = gw.log.mark()
    gw.send_signal(signal.SIGHUP)
    assert gw.log.wait_for(r"reload failed", since=mark, timeout=15), gw.describe(mark)
    assert f"--chdir {site}: No such file or directory" in gw.log.text(mark), gw.describe(mark)
    for _ in range(5):
        assert scgi_request(gw.socket, "GET", "/", timeout=10).status == 200
    assert gw.alive() and set(gw.workers()) == workers, gw.describe(mark)
    # Back in place, the next reload goes through.
    (scratch / "site.old").rename(site)
    mark = gw.log.mark()
    gw.send_signal(signal.SIGHUP)
    assert gw.log.wait_for(r"reloaded: generation \d+ is serving", since=mark, timeout=20), gw.describe(mark)
    assert wait_until(lambda: not set(gw.workers()) & workers, 10), gw.describe(mark)
    assert scgi_request(gw.socket, "GET", "/", timeout=10).status == 200


def test_the_trusted_proxy_pair_from_any_source(gateway_bin, scratch):
    both = {"RUSTGI_TRUSTED_PROXY_HEADER": "X-Forwarded-Proto", "RUSTGI_FORWARDED_ALLOW_FROM": "10.0.0.0/8"}
    got = printed(gateway_bin, env=both)
    assert (got["trusted-proxy-header"], got["forwarded-allow-from"]) == ("X-Forwarded-Proto", ["10.0.0.0/8"])
    conf = scratch / "proxy.toml"
    conf.write_text('forwarded-allow-from = ["192.0.2.0/24"]\n')
    got = printed(gateway_bin, "--config", str(conf), "--trusted-proxy-header", "X-Forwarded-Proto")
    assert got["forwarded-allow-from"] == ["192.0.2.0/24"]
    # One without the other is refused, wherever it was set, whole.
    conf.write_text('trusted-proxy-header = "X-Forwarded-Proto"\n')
    r = run(gateway_bin, "--config", str(conf), "--print-config")
    assert r.returncode == 2
    assert (f"trusted-proxy-header ({conf}:1) needs --forwarded-allow-from too "
            "(the balancers whose header is believed)") in r.stderr, r.stderr
    r = run(gateway_bin, "--forwarded-allow-from", "10.0.0.1")
    assert r.returncode == 2 and "--forwarded-allow-from needs --trusted-proxy-header" in r.stderr, r.stderr
    # A bad value in a file: clap's whole message, not its first line.
    conf.write_text('forwarded-allow-from = ["not an address"]\ntrusted-proxy-header = "X-Forwarded-Proto"\n')
    r = run(gateway_bin, "--config", str(conf), "--print-config")
    assert r.returncode == 2 and f"{conf}:1: invalid value 'not an address'" in r.stderr, r.stderr
    assert "required arguments" not in r.stderr


def test_exclusive_settings_across_sources(gateway_bin, scratch):
    conf = scratch / "both.toml"
    conf.write_text('app = "x:y"\npaste = "site.ini"\n')
    r = run(gateway_bin, "--config", str(conf), "--print-config")
    assert r.returncode == 2
    assert f"paste ({conf}:2) cannot be used with app ({conf}:1)" in r.stderr, r.stderr
    # A higher source's setting hides the lower one it excludes.
    conf.write_text("ajp-secret-optional = true\n")
    got = printed(gateway_bin, "--config", str(conf), env={"RUSTGI_AJP_SECRET": "s3"})
    assert (got["ajp-secret"], got["ajp-secret-optional"]) == ("s3", False)
    got = printed(gateway_bin, "--config", str(conf), "--ajp-secret-optional=false", env={"RUSTGI_AJP_SECRET": "s3"})
    assert got["ajp-secret"] == "s3"
    r = run(gateway_bin, "--ajp-secret", "s", "--ajp-secret-optional")
    assert r.returncode == 2 and "--ajp-secret-optional cannot be used with --ajp-secret" in r.stderr, r.stderr


def flup_ini(path: Path, use: str, port: int) -> Path:
    path.write_text(f"[app:main]\nuse = egg:nothing\n\n[server:main]\nuse = {use}\nhost = 127.0.0.1\nport = {port}\n")
    return path


def test_a_hidden_paste_is_not_read(gateway_bin, scratch):
    conf = scratch / "paste.toml"
    conf.write_text(f'paste = "{scratch}/missing.ini"\n')
    got = printed(gateway_bin, "--app", "x:y", "--config", str(conf))
    assert got["app"] == "x:y" and "paste" not in got
    flup_ini(scratch / "s.ini", "egg:flup#scgi_thread", 4321)
    conf.write_text(f'paste = "{scratch}/s.ini"\n')
    got = printed(gateway_bin, "--config", str(conf), env={"RUSTGI_APP": "x:y"})
    assert "paste" not in got and "proto" not in got and "socket" not in got, got


def test_a_relative_paste_is_inside_chdir(gateway_bin, scratch):
    site = scratch / "site"
    site.mkdir()
    flup_ini(site / "site.ini", "egg:flup#scgi_thread", 4322)
    got = printed(gateway_bin, "--chdir", str(site), "--paste", "site.ini")
    assert (got["proto"], got["socket"]) == ("scgi", "127.0.0.1:4322")


def test_uwsgi_options_that_stopped_the_start(gateway_bin, scratch):
    ini = scratch / "offs.ini"
    ini.write_text("[uwsgi]\nmodule = app\nchmod = 664\nharakiri = 0\nreload-on-rss = 0\nmax-requests = 0\n"
                   "reload-mercy = 0\nstats = :9191\n")
    got = printed(gateway_bin, "--uwsgi-ini", str(ini))
    assert got["chmod"] == 664 and got["metrics"] == "0.0.0.0:9191"
    assert "timeout" not in got and "reload-on-rss" not in got
    assert (got["max-requests"], got["graceful-timeout"]) == (0, 30)
    ini.write_text("[uwsgi]\nC = 666\n")
    assert printed(gateway_bin, "--uwsgi-ini", str(ini))["chmod"] == 666


def test_metrics_every_address_and_a_relative_path(gateways, scratch):
    port = free_port()
    gw = gateways.start("cfg-metrics-port", ["--metrics", f":{port}"])
    assert wait_until(lambda: can_connect_tcp("127.0.0.1", port), 10), gw.describe()
    assert "rustgi_" in requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    gw.terminate()
    ini = scratch / "stats.ini"
    ini.write_text(f"[uwsgi]\nchdir = {scratch}\nstats = stats.sock\n")
    gw = gateways.start("cfg-metrics-path", ["--uwsgi-ini", str(ini)])
    assert wait_until(lambda: can_connect_unix(scratch / "stats.sock"), 10), gw.describe()
    gw.terminate()


def test_a_flag_turns_off_a_switch_a_file_turned_on(gateway_bin, scratch):
    conf = scratch / "on.toml"
    conf.write_text("preload = true\n")
    assert printed(gateway_bin, "--config", str(conf), "--preload=false")["preload"] is False
    assert printed(gateway_bin, "--preload")["preload"] is True
    ini = scratch / "preloads.ini"
    ini.write_text("[uwsgi]\nmodule = app\n")
    assert printed(gateway_bin, "--uwsgi-ini", str(ini), "--preload=no")["preload"] is False


def test_a_list_variable_with_spaces_is_a_toml_array(gateway_bin):
    got = printed(gateway_bin, env={"RUSTGI_ENV": '["GREETING=hello world", "B=2"]',
                                    "RUSTGI_ALLOW_FROM": "127.0.0.1 ::1"})
    assert got["env"] == ["GREETING=hello world", "B=2"]
    assert got["allow-from"] == ["127.0.0.1", "::1"]
    r = run(gateway_bin, "--print-config", env={"RUSTGI_ENV": "GREETING=hello world"})
    assert r.returncode == 2 and "TOML array" in r.stderr, r.stderr


def test_gunicorns_short_flags(gateway_bin, scratch):
    got = printed(gateway_bin, "-w", "3", "-b", "unix:/run/app.sock")
    assert (got["processes"], got["socket"]) == (3, "unix:/run/app.sock")
    # Settings are named by long names only: no `w` or `b` key.
    r = run(gateway_bin, "-w", "2", "--print-config")
    assert not re.search(r"^#? ?[wb] = ", r.stdout, re.M), r.stdout
    assert printed(gateway_bin, env={"RUSTGI_W": "2", "RUSTGI_B": "/x.sock"})["processes"] == 1
    toml_file = scratch / "short.toml"
    toml_file.write_text("w = 2\n")
    r = run(gateway_bin, "--config", str(toml_file))
    assert r.returncode == 2 and "unknown key `w`" in r.stderr, r.stderr
    # uWSGI's -b is its buffer size: a bare number is not made a socket file.
    r = run(gateway_bin, "-b", "32768", "--print-config")
    assert r.returncode == 2 and "write :32768 for every address" in r.stderr, r.stderr


def test_short_flags_serve_on_a_unix_socket(gateway_bin, scratch, log_dir):
    socket = scratch / "short.sock"
    gw = IniGateway("short-flags", str(socket),
                    ["--proto", "scgi", "-b", f"unix:{socket}", "-w", "2", "--app", str(APPS / "processes_app.py")],
                    log_dir / "short-flags.log", binary=gateway_bin)
    try:
        gw.start()
        assert gw.log.wait_for(r"\b2 worker\(s\) ready", timeout=15), gw.describe()
        r = scgi_request(str(socket), "GET", "/")
        assert r.status == 200, r.body[:300]
        assert json.loads(r.body)["multiprocess"] is True
    finally:
        gw.terminate()
    assert not can_connect_unix(str(socket))
