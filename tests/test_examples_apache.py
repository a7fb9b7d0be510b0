"""The Apache examples (examples/apache-*.conf, examples/app.cgi), used as
written: only their placeholders are replaced (port 8080, the socket
/run/rustgi/app.sock, the app directory /srv/app, and in app.cgi the binary
/usr/local/bin/rustgi-gateway), each asserted to occur as often as expected,
so a changed example fails here instead of testing something else.

Each rendered example is included from an httpd.conf that has nothing of its
own but paths, logs, mpm_event and authz_core, and Debian's `<Directory />
Require all denied`: the example's own LoadModule lines load everything else
it uses. The proxy examples' gateway is started with the command line their
comment gives. The app is tests/apps/cgi_app.py (validator-wrapped), copied
to the rendered /srv/app/app.py.

- mod_proxy_fcgi, mod_proxy_scgi, mod_proxy_uwsgi: GET, POST and the
  Authorization header reach the app.
- mod_proxy_ajp: the same under the example's /app prefix (SCRIPT_NAME from
  --mount), with the example's secret; the connection is kept.
- mod_fcgid: Apache itself starts the wrapper (no --socket: a listening
  socket on fd 0), which serves several requests (a 1 MiB body included),
  sends print() and tracebacks to Apache's error log, and is stopped by
  Apache at shutdown.
- mod_cgid: rustgi runs as a CGI program (a new process per request, fd 0 a
  *connected* Unix socket, GATEWAY_INTERFACE set, wsgi.run_once True);
  print() lands in Apache's error log, not in the response; an exception is a
  500 with its traceback in the error log.

Apache's workers and the programs it starts run as www-data: everything the
examples point at lives under the run dir (mode 0755).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from frontservers import (
    APACHE_MODULES,
    Apache,
    CommandLineGateway,
    _pids_with_arg,
    answer,
    check_echo_requests,
    proc_stat,
    process_gone,
)
import rendering
from harness import APPS, REPO, unix_connections, wait_until
from plugins.fronts import install_app

EXAMPLES = REPO / "examples"
APP_SOURCE = APPS / "cgi_app.py"
PRINTED = "PRINTED-BY-THE-APP"  # what tests/apps/cgi_app.py prints on /print

# Placeholders of the examples, replaced by the test.
PORT_LISTEN = "Listen 8080"
PORT_VHOST = "<VirtualHost *:8080>"
SOCKET = "/run/rustgi/app.sock"
APP_DIR = "/srv/app"
BINARY = "/usr/local/bin/rustgi-gateway"


def render(path: Path, replacements: dict[str, tuple[str, int]]) -> str:
    """The example rendered; neither a placeholder nor the port may be left,
    comments included."""
    return rendering.render(path, replacements, ("8080", SOCKET, APP_DIR + "/", BINARY))


# ---------------------------------------------------------------------------
# Apache around one rendered example


class ExampleApache(Apache):
    """Apache whose httpd.conf includes one rendered example and loads only
    mpm_event and authz_core itself (the example's LoadModule lines do the
    rest). No Listen of its own: the example's `Listen 8080` becomes the
    free port. `globals` are extra server-wide lines (mod_fcgid's state
    directory, ...)."""

    BASE_MODULES = ["mpm_event", "authz_core"]

    def __init__(self, binary, run_dir, log_dir, name, example: Path, replacements: dict,
                 globals_: str = "", modules=()):
        super().__init__(binary, run_dir, log_dir, name, body="", modules=modules)
        self.prefork = "mpm_prefork" in modules
        if self.prefork:
            self.modules = [m for m in self.modules if m != "mpm_event"]
        self.example = example
        self.globals = globals_
        self.site = self.dir / example.name
        self.site.write_text(
            render(example, {
                PORT_LISTEN: (f"Listen 127.0.0.1:{self.port}", 1),
                PORT_VHOST: (f"<VirtualHost 127.0.0.1:{self.port}>", 1),
                **replacements,
            })
        )

    def config(self) -> str:
        # No Listen: the example's `Listen 8080`, rendered, is the port.
        return f"""{self.preamble(listen=False)}
KeepAlive On
StartServers 1
{"MaxRequestWorkers 8" if self.prefork else "ServerLimit 2" + chr(10) + "ThreadsPerChild 16" + chr(10) + "MaxRequestWorkers 32"}
# as Debian's apache2.conf: nothing is served unless a site allows it
<Directory />
    Options FollowSymLinks
    AllowOverride None
    Require all denied
</Directory>
{self.globals}
Include "{self.site}"
"""


# ---------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="session")
def mod_fcgid():
    path = APACHE_MODULES / "mod_fcgid.so"
    if not path.exists():
        pytest.fail(f"{path} is missing: run the suite through tests/run, which installs libapache2-mod-fcgid")
    return path


@pytest.fixture
def app_dir(site_dir, gateway_bin) -> Path:
    """The rendered /srv/app: the test app as app.py and examples/app.cgi
    (pointing at our binary and this directory), readable by www-data."""
    d = site_dir / "srv-app"
    d.mkdir(mode=0o755)
    install_app(APP_SOURCE, d / "app.py")
    wrapper = d / "app.cgi"
    wrapper.write_text(render(EXAMPLES / "app.cgi", {BINARY: (str(gateway_bin), 1), APP_DIR: (str(d), 1)}))
    os.chmod(wrapper, 0o755)
    return d


def start_apache(procs, apache_binary, log_dir, site_dir, example: str, replacements: dict,
                 globals_: str = "", modules=()) -> ExampleApache:
    name = site_dir.name + "-apache"
    server = ExampleApache(apache_binary, site_dir / "apache", log_dir / name, name,
                           EXAMPLES / example, replacements, globals_, modules)
    procs.add(server)
    return server.start()


def start_example_gateway(procs, gateway_bin, log_dir, example: str, socket_path: str,
                          app_dir: Path) -> CommandLineGateway:
    text = (EXAMPLES / example).read_text()
    line = rendering.gateway_command(text)
    assert line.count(SOCKET) == 1 and line.count(APP_DIR + "/app.py") == 1, line
    argv = shlex.split(line.replace(SOCKET, socket_path).replace(APP_DIR, str(app_dir)))
    name = Path(socket_path).parent.name + "-gw"
    gw = CommandLineGateway(name, argv, socket_path, log_dir / f"{name}.log", gateway_bin)
    procs.add(gw)
    return gw.start()


def check_get_post_authorization(server, *things, s: requests.Session | None = None) -> dict:
    """GET with a query, a binary POST of 300,000 bytes, a form and an
    Authorization header, each seen by the app; returns the GET's answer."""
    return check_echo_requests(server, *things, s=s)[0]


def ancestors(pid: int) -> list[int]:
    out = []
    while pid > 1:
        try:
            pid = int(proc_stat(pid)[1])
        except (FileNotFoundError, ValueError):
            break
        out.append(pid)
    return out


# ---------------------------------------------------------------------------
# 1. mod_proxy_fcgi, mod_proxy_scgi, mod_proxy_uwsgi


PROXY_EXAMPLES = {
    # example: (environ entry only that protocol's request carries, or None)
    "apache-proxy-fcgi.conf": ("FCGI_ROLE", "RESPONDER"),
    "apache-proxy-scgi.conf": ("SCGI", "1"),
    "apache-proxy-uwsgi.conf": None,
}


@pytest.mark.parametrize("example", list(PROXY_EXAMPLES))
def test_proxy_example_get_post_and_authorization(example, procs, apache_binary, gateway_bin, log_dir,
                                                  site_dir, app_dir):
    sock = str(site_dir / "app.sock")
    gw = start_example_gateway(procs, gateway_bin, log_dir, example, sock, app_dir)
    server = start_apache(procs, apache_binary, log_dir, site_dir, example, {
        SOCKET: (sock, 1),  # the ProxyPass line (and the gateway command in the comment)
        APP_DIR: (str(app_dir), 0),  # only in the gateway command's --app, in the comment
    })
    s = requests.Session()
    got = check_get_post_authorization(server, gw, s=s)
    assert got["run_once"] is False and got["multithread"] is True
    assert got["ppid"] == gw.pid, "answered by another process than a worker of the example's gateway"
    marker = PROXY_EXAMPLES[example]
    if marker:
        assert got["environ"].get(marker[0]) == marker[1], got["environ"]
    if example == "apache-proxy-fcgi.conf":
        # enablereuse=on: Apache keeps its FastCGI connection after a request
        for _ in range(3):
            answer(s.get(server.url("/again")), server, gw)
        kept = wait_until(lambda: unix_connections(sock), 2.0)
        assert kept, "no FastCGI connection stays open: enablereuse=on not in effect?"


def test_proxy_ajp_example_under_its_prefix_with_its_secret(procs, apache_binary, gateway_bin, log_dir,
                                                           site_dir, app_dir):
    example = "apache-proxy-ajp.conf"
    sock = str(site_dir / "app.sock")
    gw = start_example_gateway(procs, gateway_bin, log_dir, example, sock, app_dir)
    server = start_apache(procs, apache_binary, log_dir, site_dir, example, {
        SOCKET: (sock, 1),
        APP_DIR: (str(app_dir), 0),
    })
    s = requests.Session()
    got = check_echo_requests(server, gw, prefix="/app", script_name="/app", s=s)[0]
    assert got["ppid"] == gw.pid
    assert got["environ"]["wsgi.url_scheme"] == "http"
    kept = wait_until(lambda: unix_connections(sock), 2.0)
    assert kept, "no AJP connection stays open after the requests"


# ---------------------------------------------------------------------------
# 2. mod_fcgid starts the gateway itself


@pytest.fixture
def fcgid_apache(procs, apache_binary, log_dir, site_dir, app_dir, mod_fcgid):
    state = site_dir / "fcgid"
    state.mkdir(mode=0o755)
    if os.geteuid() == 0:
        shutil.chown(state, "www-data", "www-data")
    globals_ = f"""
# mod_fcgid's sockets and process table (Debian keeps them in /var/lib/apache2/fcgid)
FcgidIPCDir "{state}/sock"
FcgidProcessTableFile "{state}/shm"
"""
    return start_apache(procs, apache_binary, log_dir, site_dir, "apache-fcgid.conf", {
        APP_DIR: (str(app_dir), 2),  # ScriptAlias and <Directory>
    }, globals_)


def test_fcgid_spawns_the_gateway_which_serves_and_is_stopped_by_apache(fcgid_apache, app_dir, gateway_bin):
    server = fcgid_apache
    log_mark = server.error_log.mark()
    got = check_get_post_authorization(server)
    pids = {got["pid"]}

    # Started by Apache with the wrapper's command line: no --socket, no
    # --proto; it serves the listening socket mod_fcgid put on its fd 0 (and
    # then moves it off fd 0: the app finds /dev/null there). The app runs
    # in a worker, whose title replaced the command line.
    assert re.fullmatch(rf"rustgi-gateway: worker \d+ \[{re.escape(str(app_dir / 'app.py'))}:application\]",
                        " ".join(got["cmdline"])), got["cmdline"]
    assert server.error_log.wait_for(r"listening on an inherited unix socket", since=log_mark, timeout=5), (
        "rustgi's start-up line is not in Apache's error log:\n" + server.logs()
    )
    apache_pids = set(_pids_with_arg(str(server.config_path)))
    assert apache_pids & set(ancestors(got["pid"])), (
        f"gateway {got['pid']} (ancestors {ancestors(got['pid'])}) not started by Apache {apache_pids}"
    )
    # FastCGI, mounted at /, one request per process at a time, kept
    assert got["environ"]["FCGI_ROLE"] == "RESPONDER"
    assert got["run_once"] is False

    # More requests, one after another: answered, by a kept gateway
    s = requests.Session()
    for i in range(5):
        again = answer(s.get(server.url(f"/more/{i}")), server)
        assert again["environ"]["PATH_INFO"] == f"/more/{i}"
        pids.add(again["pid"])
    # a 1 MiB body: over mod_fcgid's default FcgidMaxRequestLen (128 KiB),
    # under the example's 100 MiB
    big = os.urandom(1 << 20)
    posted = answer(s.post(server.url("/big"), data=big), server)
    assert posted["body"].encode("latin-1") == big
    pids.add(posted["pid"])
    # print() and an exception: the response is clean, the text and the
    # traceback land in Apache's error log
    r = s.get(server.url("/print"))
    assert (r.status_code, r.content) == (200, b"printed, then answered\n"), (r.status_code, r.text[:300])
    assert server.error_log.wait_for(re.escape(f"{PRINTED} via os.write(1)"), since=log_mark, timeout=5), (
        server.error_log.tail(20, since=log_mark)
    )
    r = s.get(server.url("/fail"))
    assert r.status_code == 500 and "boom" not in r.text, (r.status_code, r.text[:300])
    assert server.error_log.wait_for(r"RuntimeError: boom from cgi_app", since=log_mark, timeout=5), (
        server.error_log.tail(30, since=log_mark)
    )
    answer(s.get(server.url("/after-the-error")), server)
    print(f"mod_fcgid gateways: {sorted(pids)}; Python {got['python'].split()[0]}")
    assert len(pids) <= 4, f"more gateways than FcgidMaxProcessesPerClass 4: {pids}"

    # Apache stops its gateways when it stops
    alive = [p for p in pids if not process_gone(p)]
    assert alive, "the gateways exited before Apache stopped"
    server.stop()
    left = [p for p in pids if not wait_until(lambda p=p: process_gone(p), 15)]
    assert not left, f"gateways {left} outlived Apache"
    # and it was a clean stop (SIGTERM, requests drained), not a kill
    assert server.error_log.wait_for(r"rustgi_supervisor::master: stopped$", since=log_mark, timeout=5), (
        server.error_log.tail(20, since=log_mark)
    )
    tail = server.error_log.text(log_mark)
    print("Apache's error log after stop:\n" + "\n".join(tail.splitlines()[-8:]))


# ---------------------------------------------------------------------------
# 3. mod_cgid runs the gateway as a CGI program


@pytest.fixture
def cgid_apache(procs, apache_binary, log_dir, site_dir, app_dir):
    return start_apache(procs, apache_binary, log_dir, site_dir, "apache-cgid.conf", {
        APP_DIR: (str(app_dir), 2),  # ScriptAlias and <Directory>
    })


def test_cgid_runs_rustgi_as_a_cgi_program(cgid_apache, app_dir, gateway_bin):
    server = cgid_apache
    got = check_get_post_authorization(server)
    env = got["environ"]
    assert env["GATEWAY_INTERFACE"] == "CGI/1.1"
    assert got["run_once"] is True and got["multithread"] is False and got["multiprocess"] is True
    # detected, not told: the wrapper gives neither --proto nor --socket, and
    # fd 0 is mod_cgid's *connected* Unix socket
    assert got["cmdline"] == [str(gateway_bin), "--app", str(app_dir / "app.py")], got["cmdline"]
    assert got["fd0"] == "socket (connected)", got
    # a process per request
    other = answer(requests.get(server.url("/second")), server)
    assert other["pid"] != got["pid"]
    assert other["environ"]["PATH_INFO"] == "/second"
    r = requests.get(server.url("/x/status/418"))
    assert r.status_code == 418, (r.status_code, r.text[:300])
    print(f"under mod_cgid: Python {got['python'].split()[0]}")


def test_cgid_isindex_query_does_not_reach_the_command_line(cgid_apache, app_dir, gateway_bin):
    """A query without '=' is passed to CGI programs as arguments; the
    wrapper must not hand them to rustgi (here: `--socket` would change
    what it does)."""
    server = cgid_apache
    got = answer(requests.get(server.url("/hello?--socket+%2Ftmp%2Fx")), server)
    assert got["environ"]["QUERY_STRING"] == "--socket+%2Ftmp%2Fx"
    assert got["cmdline"] == [str(gateway_bin), "--app", str(app_dir / "app.py")], got["cmdline"]


def test_cgid_print_goes_to_the_error_log_not_the_response(cgid_apache):
    server = cgid_apache
    mark = server.error_log.mark()
    r = requests.get(server.url("/print"))
    assert r.status_code == 200, (r.status_code, r.text[:300], server.logs())
    assert r.content == b"printed, then answered\n"
    assert r.headers["Content-Type"] == "text/plain"
    for how in ("print()", "sys.stdout.write", "os.write(1)"):
        assert server.error_log.wait_for(re.escape(f"{PRINTED} via {how}"), since=mark, timeout=5), (
            f"{how}'s output is not in Apache's error log:\n{server.error_log.tail(20, since=mark)}"
        )


def test_cgid_app_exception_is_500_with_the_traceback_in_the_error_log(cgid_apache):
    server = cgid_apache
    mark = server.error_log.mark()
    r = requests.get(server.url("/fail"))
    assert r.status_code == 500, (r.status_code, r.text[:300])
    assert "boom" not in r.text and "Traceback" not in r.text, r.text
    assert server.error_log.wait_for(r"Traceback \(most recent call last\)", since=mark, timeout=5), (
        server.error_log.tail(30, since=mark)
    )
    assert server.error_log.wait_for(r"RuntimeError: boom from cgi_app", since=mark, timeout=5), (
        server.error_log.tail(30, since=mark)
    )
    # exit code 0 (a response was written): mod_cgid says nothing about the
    # script failing, and the next request is served as usual
    assert not server.error_log.lines_matching(r"Premature end of script headers|End of script output before headers", since=mark)
    assert answer(requests.get(server.url("/after")), server)["environ"]["PATH_INFO"] == "/after"


def test_cgid_example_works_with_prefork_and_mod_cgi(procs, apache_binary, log_dir, site_dir, app_dir):
    """The example says it works unchanged under mpm_prefork with mod_cgi
    (Debian's `a2enmod cgi` there): then it must not load mod_cgid too.
    Under mod_cgi fd 0 is a pipe."""
    server = start_apache(procs, apache_binary, log_dir, site_dir, "apache-cgid.conf", {
        APP_DIR: (str(app_dir), 2),
    }, modules=["mpm_prefork", "cgi"])
    got = check_get_post_authorization(server)
    assert got["run_once"] is True and got["fd0"] == "fifo", got
    mark = server.error_log.mark()
    r = requests.get(server.url("/print"))
    assert (r.status_code, r.content) == (200, b"printed, then answered\n"), (r.status_code, r.text[:300])
    assert server.error_log.wait_for(re.escape(f"{PRINTED} via print()"), since=mark, timeout=5)
    loaded = subprocess.run([apache_binary, "-d", str(server.dir), "-f", str(server.config_path), "-M"],
                            capture_output=True, text=True, timeout=30).stdout
    assert "cgi_module" in loaded and "cgid_module" not in loaded, loaded
