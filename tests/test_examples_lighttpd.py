"""The lighttpd examples (examples/lighttpd-*.conf), used as written: only
their placeholders are replaced (the site's `$SERVER["socket"] == ":8080"`,
the daemon's socket /run/rustgi/app.sock, the spawned gateways' socket
/run/lighttpd/rustgi.sock, the binary /usr/local/bin/rustgi-gateway and the
app /srv/app/app.py), each asserted to occur as often as expected, so a
changed example fails here instead of testing something else.

Each rendered example is included the way Debian's lighttpd.conf includes
conf-enabled/*.conf, from a copy of that very file (/etc/lighttpd/lighttpd.conf
as shipped, with its paths and port moved into the test's directories): so
lighttpd runs as www-data, with Debian's modules and options around the
example, and the example must load its own module. The app is
tests/apps/example_app.py (validator-wrapped), copied to the rendered
/srv/app/app.py.

- lighttpd-fastcgi.conf, lighttpd-scgi.conf, lighttpd-uwsgi.conf: the gateway
  is a daemon started with the command line the example's comment gives
  (`#   rustgi-gateway ...`); GET, POST with a body, a form and the
  Authorization header reach the app, whose PATH_INFO is the request path.
- lighttpd-spawn-fastcgi.conf, lighttpd-spawn-scgi.conf: lighttpd starts
  the gateways itself (bin-path, max-procs 2, no --socket and no --proto):
  two rustgi-gateway processes, children of lighttpd, each serving the
  listening socket lighttpd made for it; requests are answered over FastCGI
  and over SCGI respectively, by both; stopping lighttpd stops them.
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
import shutil
import threading
from pathlib import Path

import pytest
import requests

from frontservers import (
    CommandLineGateway,
    Lighttpd,
    StrayProcesses,
    answer,
    check_echo_requests,
    latin1_path,
    listening_unix_sockets,
    process_gone,
    socket_inodes,
)
import rendering
from harness import REPO, child_pids, free_port, wait_until

EXAMPLES = REPO / "examples"
DEBIAN_CONF = Path("/etc/lighttpd/lighttpd.conf")
DEBIAN_FASTCGI_CONF = Path("/etc/lighttpd/conf-available/10-fastcgi.conf")

# Placeholders of the examples, replaced by the tests.
SITE = '$SERVER["socket"] == ":8080"'
SOCKET = "/run/rustgi/app.sock"  # the daemon's socket
SPAWN_SOCKET = "/run/lighttpd/rustgi.sock"  # the socket lighttpd makes for bin-path
APP_FILE = "/srv/app/app.py"
BINARY = "/usr/local/bin/rustgi-gateway"

AS_ROOT = os.geteuid() == 0
WWW_DATA = "www-data"


def render(path: Path, replacements: dict[str, tuple[str, int]]) -> str:
    """The example rendered; no placeholder (nor the port) may be left
    outside comments."""
    return rendering.render(path, replacements, ("8080", SOCKET, SPAWN_SOCKET, "/srv/app", BINARY),
                            comments_too=False)


def give_to_www_data(path: Path, mode: int = 0o750):
    """Debian's tmpfiles.d gives lighttpd's own directories to www-data, 0750."""
    os.chmod(path, mode)
    if AS_ROOT:
        shutil.chown(path, WWW_DATA, WWW_DATA)


# ---------------------------------------------------------------------------
# lighttpd with Debian's lighttpd.conf around one rendered example


class DebianLighttpd(Lighttpd):
    """lighttpd running a copy of Debian's /etc/lighttpd/lighttpd.conf in
    which only paths and the port are changed, and whose `include
    "/etc/lighttpd/conf-enabled/*.conf"` includes `includes` (stock
    conf-available files) and the rendered example instead. `self.port` is
    the example's site (its `$SERVER["socket"]`); lighttpd's own
    `server.port` is another free port. As root it runs as www-data, as on
    Debian: its error log and upload directory belong to www-data."""

    kind = "lighttpd"

    def __init__(self, binary, run_dir, log_dir, name, example: Path, replacements: dict,
                 includes=()):
        super().__init__(binary, run_dir, log_dir, name, body="", modules=())
        self.main_port = free_port()
        self.example = example
        self.includes = [Path(p) for p in includes]
        self.uploads = self.dir / "uploads"
        self.uploads.mkdir(exist_ok=True)
        give_to_www_data(self.uploads)
        give_to_www_data(self.log_dir, 0o755)
        self.site = self.dir / ("50-" + example.name)
        self.site.write_text(render(example, {
            SITE: (f'$SERVER["socket"] == "127.0.0.1:{self.port}"', 1),
            **replacements,
        }))

    def start(self, timeout: float = 20.0):
        self.marks = (self.stderr_log.mark(), self.error_log.mark())
        return super().start(timeout)

    def output(self) -> str:
        """What lighttpd and the gateways it started wrote to its stderr
        and error log since `start()` (rustgi logs to its stderr)."""
        return self.stderr_log.text(self.marks[0]) + self.error_log.text(self.marks[1])

    def config(self) -> str:
        text = DEBIAN_CONF.read_text()

        def swap(pattern: str, new: str):
            nonlocal text
            found = re.findall(pattern, text, re.M)
            assert len(found) == 1, f"{DEBIAN_CONF}: expected one line matching {pattern!r}, got {found}"
            text = re.sub(pattern, lambda _: new, text, flags=re.M)

        swap(r'^server\.document-root\s*=.*$', f'server.document-root = "{self.docroot}"')
        swap(r'^server\.upload-dirs\s*=.*$', f'server.upload-dirs = ( "{self.uploads}" )')
        swap(r'^server\.errorlog\s*=.*$', f'server.errorlog = "{self.error_log.path}"')
        swap(r'^server\.pid-file\s*=.*$', f'server.pid-file = "{self.dir}/lighttpd.pid"')
        swap(r'^server\.port\s*=\s*80\s*$', f'server.port = {self.main_port}\nserver.bind = "127.0.0.1"')
        # it would listen on [::]:port of every interface
        swap(r'^include_shell "/usr/share/lighttpd/use-ipv6\.pl.*$', "# (use-ipv6.pl left out)")
        includes = "\n".join(f'include "{p}"' for p in self.includes + [self.site])
        swap(r'^include "/etc/lighttpd/conf-enabled/\*\.conf"$', includes)
        if not AS_ROOT:
            swap(r'^server\.username\s*=.*$', "")
            swap(r'^server\.groupname\s*=.*$', "")
        return text


# ---------------------------------------------------------------------------
# /proc


def children_running(parent: int, exe: Path) -> list[int]:
    """Live processes whose parent is `parent` and whose executable is `exe`."""

    def runs_exe(pid: int) -> bool:
        try:
            return os.path.realpath(f"/proc/{pid}/exe") == os.path.realpath(exe)
        except (FileNotFoundError, PermissionError):
            return False

    return [pid for pid in child_pids(parent) if runs_exe(pid)]


def uid_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Uid:"):
                return int(line.split()[1])
    raise AssertionError(f"no Uid line for {pid}")


# ---------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="session")
def debian_lighttpd(lighttpd_binary) -> str:
    """lighttpd, with Debian's stock config that the examples build on."""
    if not DEBIAN_CONF.exists():
        pytest.fail(f"{DEBIAN_CONF} (Debian's stock lighttpd.conf) is missing: reinstall lighttpd")
    return lighttpd_binary


def start_lighttpd(procs, binary, log_dir, site_dir, example: str, replacements: dict,
                   includes=()) -> DebianLighttpd:
    name = site_dir.name + "-lighttpd"
    server = DebianLighttpd(binary, site_dir / "lighttpd", log_dir / name, name,
                            EXAMPLES / example, replacements, includes)
    procs.add(server)
    return server.start()


PATHS = ["/", "/a", "/a/b/c", "/a/b/", "/caf%C3%A9", "/x%20y/z.txt", "/deep/er/file.py/more"]


def check_requests(server, *things, s: requests.Session | None = None) -> list[dict]:
    """GET with a query, a binary POST of 300,000 bytes, a form, the
    Authorization header, PATH_INFO for PATHS; returns every answer."""
    s = s or requests.Session()
    answers = check_echo_requests(server, *things, s=s)
    software = answers[0]["environ"]["SERVER_SOFTWARE"]
    assert software.startswith("lighttpd/"), software
    for path in PATHS:
        got = answer(s.get(server.url(path)), server, *things)
        answers.append(got)
        assert (got["environ"]["SCRIPT_NAME"], got["environ"]["PATH_INFO"]) == ("", latin1_path(path)), (
            path, got["environ"])
    assert s.get(server.url("/x/status/418")).status_code == 418
    return answers


# ---------------------------------------------------------------------------
# 1. lighttpd in front of a rustgi daemon: FastCGI, SCGI, uwsgi


DAEMON_EXAMPLES = {
    # example: (--proto of its command line, what only that protocol's
    # requests carry: {environ key: value or None for "absent"}, extra
    # stock conf-available files enabled next to it)
    "lighttpd-fastcgi.conf": ("fastcgi", {"FCGI_ROLE": "RESPONDER", "SCGI": None}, [DEBIAN_FASTCGI_CONF]),
    "lighttpd-scgi.conf": ("scgi", {"SCGI": "1", "FCGI_ROLE": None}, []),
    "lighttpd-uwsgi.conf": ("uwsgi", {"SCGI": None, "FCGI_ROLE": None}, []),
}


@pytest.mark.parametrize("example", list(DAEMON_EXAMPLES))
def test_daemon_example_get_post_and_path_info(example, procs, debian_lighttpd, gateway_bin, log_dir,
                                               site_dir, app_file):
    proto, markers, includes = DAEMON_EXAMPLES[example]
    text = (EXAMPLES / example).read_text()
    line = rendering.gateway_command(text)
    assert line.count(SOCKET) == 1 and line.count(APP_FILE) == 1, line
    argv = shlex.split(line)
    assert argv[argv.index("--proto") + 1] == proto, line

    sock_dir = site_dir / "run-rustgi"  # /run/rustgi
    sock_dir.mkdir(mode=0o755)
    sock = str(sock_dir / "app.sock")
    argv = shlex.split(line.replace(SOCKET, sock).replace(APP_FILE, str(app_file)))
    name = site_dir.name + "-gw"
    gw = procs.add(CommandLineGateway(name, argv, sock, log_dir / f"{name}.log", gateway_bin)).start()

    # Debian's 10-fastcgi.conf enabled too: the example loads mod_fastcgi again
    server = start_lighttpd(procs, debian_lighttpd, log_dir, site_dir, example,
                            {SOCKET: (sock, 1)}, includes)
    answers = check_requests(server, gw)
    for got in answers:
        assert got["ppid"] == gw.pid, "answered by another process than a worker of the example's gateway"
        for key, value in markers.items():
            assert got["environ"].get(key) == value, (key, got["environ"])
    assert answers[0]["run_once"] is False and answers[0]["multithread"] is True
    assert not server.error_log.lines_matching(r"\((gw_backend|mod_fastcgi|mod_scgi)\.c"), server.logs()
    if AS_ROOT:
        # lighttpd talked to the socket as www-data: the comment's --chmod 666 is needed
        assert oct(os.stat(sock).st_mode & 0o777) == "0o666"
        assert pwd.getpwuid(uid_of(server.proc.pid)).pw_name == WWW_DATA


# ---------------------------------------------------------------------------
# 2. lighttpd starts the gateways itself (bin-path)


SPAWN_EXAMPLES = {
    # example: environ entries only that protocol's requests carry
    "lighttpd-spawn-fastcgi.conf": {"FCGI_ROLE": "RESPONDER", "SCGI": None},
    "lighttpd-spawn-scgi.conf": {"SCGI": "1", "FCGI_ROLE": None},
}


@pytest.mark.parametrize("example", list(SPAWN_EXAMPLES))
def test_spawn_example_lighttpd_starts_serves_and_stops_the_gateways(
        example, procs, debian_lighttpd, gateway_bin, log_dir, site_dir, app_file):
    markers = SPAWN_EXAMPLES[example]
    procs.add(StrayProcesses(str(app_file)))
    sock_dir = site_dir / "run-lighttpd"  # Debian's /run/lighttpd: www-data's, 0750
    sock_dir.mkdir()
    give_to_www_data(sock_dir)
    sock = str(sock_dir / "rustgi.sock")
    server = start_lighttpd(procs, debian_lighttpd, log_dir, site_dir, example, {
        SPAWN_SOCKET: (sock, 1),
        BINARY: (str(gateway_bin), 1),
        APP_FILE: (str(app_file), 1),
    })
    bin_path = re.search(r'"bin-path" => "([^"]*)"', server.site.read_text()).group(1)
    assert "--socket" not in bin_path and "--proto" not in bin_path, bin_path

    # Two gateways, children of lighttpd, started with the bin-path command line
    def two_gateways():
        found = children_running(server.proc.pid, gateway_bin)
        return found if len(found) == 2 else None

    gws = wait_until(two_gateways, 10)
    assert gws, (f"expected 2 rustgi-gateway children of lighttpd {server.proc.pid}, found "
                 f"{children_running(server.proc.pid, gateway_bin)}\n{server.logs()}")
    started = wait_until(
        lambda: len(re.findall(r"listening on an inherited unix socket", server.output())) == 2, 30)
    assert started, "no start-up line from both gateways:\n" + server.logs()
    listening = listening_unix_sockets()
    held = {}
    for pid in gws:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            assert f.read().split(b"\0")[:-1] == [a.encode() for a in shlex.split(bin_path)]
        # the listening socket lighttpd made for it (path-0, path-1), which
        # lighttpd put on its fd 0; rustgi moved it off fd 0 and put /dev/null there
        # (besides the master's own status socket, @rustgi-gateway/PID/status,
        # which `rustgi-gateway status --pidfile` asks)
        theirs = {fd: listening[ino] for fd, ino in socket_inodes(pid).items()
                  if ino in listening and not listening[ino].startswith("@rustgi-gateway/")}
        assert len(theirs) == 1, f"gateway {pid} listens on {theirs}"
        held[pid] = next(iter(theirs.values()))
        assert os.readlink(f"/proc/{pid}/fd/0") == "/dev/null"
        if AS_ROOT:
            assert pwd.getpwuid(uid_of(pid)).pw_name == WWW_DATA, "not started as lighttpd's user"
    assert sorted(held.values()) == [sock + "-0", sock + "-1"], held

    # Requests: answered by those gateways, over the example's protocol
    answers = check_requests(server)
    for got in answers:
        # a worker of one of the gateways lighttpd started
        assert got["ppid"] in gws, (got["ppid"], gws)
        for key, value in markers.items():
            assert got["environ"].get(key) == value, (key, got["environ"])
    # concurrent requests: lighttpd spreads them over both gateways
    seen, errors = [], []

    def slow(i):
        try:
            r = requests.get(server.url(f"/sleep/0.5?{i}"), timeout=20)
            seen.append(answer(r, server)["ppid"])  # the gateway (master) that served it
        except Exception as e:  # reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=slow, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert len(seen) == 6 and set(seen) <= set(gws), (seen, gws)
    print(f"{example}: gateways {gws} on {held}; concurrent requests answered by {sorted(set(seen))}")
    assert set(seen) == set(gws), f"max-procs 2, but only {set(seen)} of {gws} answered"

    # Stopping lighttpd stops them (SIGTERM: rustgi stops gracefully)
    server.stop()
    left = [p for p in gws if not wait_until(lambda p=p: process_gone(p), 15)]
    assert not left, f"gateways {left} outlived lighttpd"
    assert len(re.findall(r"rustgi_supervisor::master: stopped", server.output())) == 2, server.logs()
    assert not os.path.exists(sock + "-0") and not os.path.exists(sock + "-1"), "lighttpd's sockets left"
