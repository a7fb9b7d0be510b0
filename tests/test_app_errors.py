"""Response heads and bodies the application gets wrong (issue 13, item 7):
a Content-Length that is not digits, a head over 64 KiB, a body shorter
than its Content-Length. Two gateways (--proto auto, one per lane:
RUSTGI_LANE=python and io) run tests/apps/app_errors.py; an nginx of this
module's own reaches each over SCGI, uwsgi and FastCGI (with and without
kept connections), server `PROTO-LANE`."""

import subprocess

import pytest

from harness import Location, Nginx, http_request, scgi_request
from plugins.base import _STARTED

APP = "tests/apps/app_errors.py"
PROTOCOLS = ["scgi", "uwsgi", "fastcgi", "fastcgi-kept"]
LANES = ["python", "io"]


@pytest.fixture(scope="module")
def lane_gateways(gateways):
    return {
        lane: gateways.start(f"app-errors-{lane}", ["--app", APP, "--threads", "4"], proto="auto",
                             env={"RUSTGI_LANE": lane})
        for lane in LANES
    }


@pytest.fixture(scope="module")
def errors_gateway(lane_gateways):
    return lane_gateways["python"]


@pytest.fixture(scope="module")
def errors_nginx(nginx_binary, lane_gateways, run_dir, log_dir):
    own_dir = run_dir / "nginx-app-errors"
    own_dir.mkdir(mode=0o755, exist_ok=True)
    servers, upstreams = {}, []
    path_info = "fastcgi_param PATH_INFO $uri;"
    for lane, gw in lane_gateways.items():
        upstream = "unix:" + gw.socket
        servers |= {
            f"scgi-{lane}": [Location("/", upstream)],
            f"uwsgi-{lane}": [Location("/", upstream, proto="uwsgi")],
            f"fastcgi-{lane}": [Location("/", upstream, proto="fastcgi", params=path_info)],
            f"fastcgi-kept-{lane}": [Location("/", f"kept_{lane}", proto="fastcgi", keep_conn=True,
                                              params=path_info)],
        }
        upstreams.append(f"    upstream kept_{lane} {{ server {upstream}; keepalive 4; }}")
    server = Nginx(nginx_binary, own_dir, log_dir / "nginx-app-errors", [], servers=servers,
                   upstreams="\n".join(upstreams))
    _STARTED.append(server)
    server.start()
    yield server
    server.stop()


def curl(url: str, *args: str) -> subprocess.CompletedProcess:
    """curl with a --max-time below nginx's 10 s upstream read timeout: a
    client left hanging by nginx shows as exit 28 (timed out)."""
    return subprocess.run(
        ["curl", "-sS", "--max-time", "8", "-o", "/dev/null",
         "-w", "%{http_code} %{size_download}", *args, url],
        capture_output=True, text=True, timeout=30,
    )


@pytest.mark.parametrize("value", ["abc", "-5"])
def test_a_content_length_that_is_not_digits_is_a_500_direct(errors_gateway, value):
    gw = errors_gateway
    mark = gw.log.mark()
    r = scgi_request(gw.socket, "GET", "/content-length", query=value)
    assert r.status == 500, (r.status, r.body, gw.describe(mark))
    assert gw.log.wait_for(r"ERROR", rf'Content-Length "{value}" is not a number', since=mark), \
        gw.describe(mark)


@pytest.mark.parametrize("proto", PROTOCOLS)
@pytest.mark.parametrize("value", ["abc", "-5"])
def test_a_content_length_that_is_not_digits_is_a_500_behind_nginx(
        errors_gateway, errors_nginx, proto, value):
    gw = errors_gateway
    mark = gw.log.mark()
    r = http_request(errors_nginx.server_port(f"{proto}-python"), "GET", f"/content-length?{value}",
                     timeout=15)
    assert r.status == 500, (r.status, r.body, gw.describe(mark))
    assert gw.log.wait_for(rf'Content-Length "{value}" is not a number', since=mark), gw.describe(mark)


@pytest.mark.parametrize("path", ["/long-reason", "/many-headers"])
def test_a_head_over_64_kib_is_a_500(errors_gateway, errors_nginx, path):
    gw = errors_gateway
    mark = gw.log.mark()
    r = scgi_request(gw.socket, "GET", path)
    assert r.status == 500, (r.status, r.body[:200], gw.describe(mark))
    r = http_request(errors_nginx.server_port("scgi-python"), "GET", path, timeout=15)
    assert r.status == 500, (r.status, r.body[:200], gw.describe(mark))
    lines = gw.log.wait_for(r"the response head \(status and headers\) is \d+ bytes, over the limit of 65536",
                            since=mark)
    assert lines, gw.describe(mark)
    assert all(len(line) < 2000 for line in gw.log.text(since=mark).splitlines()), \
        "the log quotes the whole head"


@pytest.mark.parametrize("lane", LANES)
@pytest.mark.parametrize("proto", PROTOCOLS)
@pytest.mark.parametrize("path", ["/short", "/short?list", "/fail-after-head"])
def test_a_short_body_reaches_the_client_truncated_at_once(lane_gateways, errors_nginx, proto, lane, path):
    gw = lane_gateways[lane]
    mark = gw.log.mark()
    done = curl(errors_nginx.url(path, server=f"{proto}-{lane}"))
    # 18: "transfer closed with outstanding read data remaining". 28 would
    # be --max-time: nginx left its client waiting for the missing bytes.
    assert done.returncode == 18, (done.returncode, done.stdout, done.stderr, gw.describe(mark))
    assert done.stdout == "200 10", done.stdout
    if path.startswith("/short"):
        said = gw.log.wait_for(r"WARN", r"body ended after 10 of its Content-Length 100 bytes", since=mark)
    else:
        said = gw.log.wait_for(r"ERROR", r"failing after the head went out", since=mark)
    assert said, gw.describe(mark)
    assert gw.alive()


@pytest.mark.parametrize("lane", LANES)
@pytest.mark.parametrize("proto", PROTOCOLS)
def test_head_requests_and_a_whole_body_are_not_truncations(lane_gateways, errors_nginx, proto, lane):
    gw = lane_gateways[lane]
    mark = gw.log.mark()
    done = curl(errors_nginx.url("/head", server=f"{proto}-{lane}"), "-I")
    assert done.returncode == 0 and done.stdout.startswith("200"), (done, gw.describe(mark))
    done = curl(errors_nginx.url("/fine", server=f"{proto}-{lane}"))
    assert (done.returncode, done.stdout) == (0, "200 3"), (done, gw.describe(mark))
    assert not gw.log.lines_matching(r"body ended after", since=mark), gw.describe(mark)
