"""rustgi-gateway --proto fastcgi behind real Apache httpd (mod_proxy_fcgi,
mod_authnz_fcgi) and lighttpd (mod_fastcgi, responder and authorizer).

Each test starts its own gateways and front servers (tests/frontservers.py)
and stops them all in its teardown, whatever happened; the teardown fails
the test if anything is left running. The apps are tests/apps/front_app.py
(validator-wrapped): `application` echoes the environ as JSON,
`authorizer` allows `X-Token: good`.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
import requests

from frontservers import (
    FcgiCapture,
    check_chunked_upload,
    check_echo_requests,
    check_path_info_is_the_request_path,
    env_of,
    explain,
)
from harness import APPS

FRONT_APP = str(APPS / "front_app.py")
ECHO = ["--app", FRONT_APP]
AUTHORIZER = ["--app", FRONT_APP + ":authorizer"]


# ---------------------------------------------------------------------------
# 1. Apache mod_proxy_fcgi


@pytest.fixture
def apache_fcgi(per_test_gateway, apache):
    gw = per_test_gateway("echo", ECHO + ["--threads", "8"], proto="fastcgi")
    server = apache(
        "proxy",
        f"""
ProxyPass "/" "unix:{gw.socket}|fcgi://app1/" enablereuse=on
<Location "/">
    CGIPassAuth On
</Location>
""",
    )
    return server, gw


def test_apache_get_post_and_authorization(apache_fcgi):
    server, gw = apache_fcgi
    s = requests.Session()
    got, *_ = check_echo_requests(server, gw, s=s)
    assert got["environ"]["FCGI_ROLE"] == "RESPONDER"
    # Apache de-chunks a chunked upload for FastCGI
    check_chunked_upload(server, [b"first,", b"second,", b"x" * 70000, b"last"], gw, s=s)
    # an app status passes through
    assert s.get(server.url("/x/status/418")).status_code == 418


def test_apache_path_info_is_the_request_path(apache_fcgi):
    """mod_proxy_fcgi sends SCRIPT_NAME = the whole decoded path and no
    PATH_INFO; an app mounted at / must still see PATH_INFO = the path."""
    server, gw = apache_fcgi
    check_path_info_is_the_request_path(server, gw)


def test_apache_10000_requests_without_5xx(apache_fcgi):
    """enablereuse=on: Apache keeps FastCGI connections (FCGI_KEEP_CONN) and
    reuses them; not one of 10,000 requests may fail."""
    server, gw = apache_fcgi
    total, threads, budget = 10_000, 4, 240.0
    per_thread = total // threads
    statuses: Counter = Counter()
    wrong: list = []
    errors: list = []
    lock = threading.Lock()
    deadline = time.monotonic() + budget

    def worker(t: int):
        s = requests.Session()
        local: Counter = Counter()
        try:
            for i in range(per_thread):
                if time.monotonic() > deadline:
                    break
                path = f"/load/{t}/{i}"
                r = s.get(server.url(path), timeout=20)
                local[r.status_code] += 1
                if r.status_code == 200 and r.json()["environ"]["PATH_INFO"] != path:
                    with lock:
                        wrong.append((path, r.json()["environ"]["PATH_INFO"]))
        except Exception as e:  # a connection error counts as a failure
            with lock:
                errors.append(repr(e))
        finally:
            with lock:
                statuses.update(local)

    started = time.monotonic()
    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join(budget + 30)
    elapsed = time.monotonic() - started
    print(f"Apache mod_proxy_fcgi enablereuse=on: {sum(statuses.values())} requests in "
          f"{elapsed:.1f}s, statuses {dict(statuses)}")
    fivexx = {k: v for k, v in statuses.items() if k >= 500}
    assert not errors, f"client errors: {errors[:5]}\n{explain(server, gw)}"
    assert not fivexx, f"5xx answers: {fivexx}\n{explain(server, gw)}"
    assert not wrong, f"responses for the wrong request: {wrong[:5]}"
    assert statuses == Counter({200: total}), f"not all served within {budget}s: {dict(statuses)}"
    assert not server.error_log.lines_matching(r"proxy_fcgi:error|proxy:error"), server.error_log.tail(20)


# ---------------------------------------------------------------------------
# 2. lighttpd mod_fastcgi


def lighttpd_fastcgi(socket_path: str, routes: list[tuple[str, bool]]) -> str:
    """fastcgi.server with one entry per (prefix, fix-root-scriptname)."""
    entries = []
    for prefix, fix_root in routes:
        fix = ', "fix-root-scriptname" => "enable"' if fix_root else ""
        entries.append(
            f'    "{prefix}" => (("socket" => "{socket_path}", "check-local" => "disable"{fix}))'
        )
    return "fastcgi.server = (\n" + ",\n".join(entries) + "\n)\n"


def test_lighttpd_get_post_and_path_info(per_test_gateway, lighttpd):
    gw = per_test_gateway("echo", ECHO + ["--threads", "4"], proto="fastcgi")
    server = lighttpd("root", lighttpd_fastcgi(gw.socket, [("/", True)]))
    s = requests.Session()
    got, *_ = check_echo_requests(server, gw, s=s)
    assert got["environ"]["SERVER_SOFTWARE"].startswith("lighttpd")
    assert got["environ"]["FCGI_ROLE"] == "RESPONDER"
    check_chunked_upload(server, [b"one,", b"two,", b"z" * 50000], gw, s=s)
    check_path_info_is_the_request_path(server, gw, s=s)


PREFIX_ROUTES = [("/pre/", False), ("/pre2", False), ("/", False)]
PREFIX_PATHS = [
    "/", "/a", "/a/b/c", "/a/b/", "/caf%C3%A9/x",
    "/pre/", "/pre/x", "/pre/x/y/z",
    "/pre2", "/pre2/x/y", "/pre2x/y",
]


def test_lighttpd_prefix_split_table(per_test_gateway, lighttpd, unique, procs):
    """Records, for lighttpd prefixes "/" (no fix-root-scriptname), "/pre/"
    and "/pre2", what lighttpd sends (raw capture) and what the app sees.
    Asserts only that every request is served (200): the repair rule for
    these splits is still being designed."""
    gw = per_test_gateway("echo", ECHO + ["--threads", "2"], proto="fastcgi")
    mounted = {m: per_test_gateway("mount", ECHO + ["--threads", "2", "--mount", m], proto="fastcgi") for m in ("/pre", "/pre2")}
    _, cap_dir = unique("capture")
    capture = procs.add(FcgiCapture(str(cap_dir / "capture.sock")))
    via_gw = lighttpd("prefixes-gw", lighttpd_fastcgi(gw.socket, PREFIX_ROUTES))
    via_cap = lighttpd("prefixes-cap", lighttpd_fastcgi(capture.address, PREFIX_ROUTES))
    via_mount = {m: lighttpd("prefixes-mount", lighttpd_fastcgi(g.socket, PREFIX_ROUTES))
                 for m, g in mounted.items()}

    def seen(server, path):
        env = env_of(requests.get(server.url(path), timeout=10))
        return f"{env['SCRIPT_NAME']!r} {env['PATH_INFO']!r}"

    rows = []
    for path in PREFIX_PATHS:
        r = requests.get(via_cap.url(path), timeout=10)
        assert r.status_code == 200, (path, r.status_code, r.text[:200])
        sent = capture.requests[-1]["env"]
        rows.append((
            path,
            repr(sent[b"SCRIPT_NAME"].decode("latin-1")) if b"SCRIPT_NAME" in sent else "-",
            repr(sent[b"PATH_INFO"].decode("latin-1")) if b"PATH_INFO" in sent else "-",
            seen(via_gw, path),
            seen(via_mount["/pre"], path),
            seen(via_mount["/pre2"], path),
        ))
    header = ("request path", "sent SCRIPT_NAME", "sent PATH_INFO", "app sees SN PI",
              "app --mount /pre", "app --mount /pre2")
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    print("\nlighttpd fastcgi.server prefixes (\"/pre/\", \"/pre2\", \"/\" without fix-root-scriptname),"
          " first match wins; '-' = not sent:")
    for row in [header] + rows:
        print("  " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)))


# ---------------------------------------------------------------------------
# 3. AUTHORIZER through real front servers

PROTECTED = b"the protected content\n"


def test_lighttpd_authorizer(per_test_gateway, lighttpd, unique):
    auth = per_test_gateway("authz", AUTHORIZER + ["--threads", "2"], proto="fastcgi")
    resp = per_test_gateway("echo", ECHO + ["--threads", "2"], proto="fastcgi")
    _, docroot = unique("docroot")
    (docroot / "protected" / "deny-all").mkdir(parents=True)
    (docroot / "protected" / "secret.txt").write_bytes(PROTECTED)
    (docroot / "protected" / "deny-all" / "secret.txt").write_bytes(PROTECTED)
    server = lighttpd(
        "authz",
        f"""
fastcgi.server = (
    "/protected/" => (("socket" => "{auth.socket}", "check-local" => "disable",
                       "mode" => "authorizer", "docroot" => "{docroot}")),
    "/guarded/" => (
        ("socket" => "{auth.socket}", "check-local" => "disable", "mode" => "authorizer"),
        ("socket" => "{resp.socket}", "check-local" => "disable")),
)
""",
        docroot=docroot,
    )
    good = {"X-Token": "good"}

    # static files behind the authorizer
    r = requests.get(server.url("/protected/secret.txt"), headers=good, timeout=10)
    assert (r.status_code, r.content) == (200, PROTECTED), f"{r.status_code} {r.text[:200]}\n{explain(server, auth)}"
    for headers in ({}, {"X-Token": "bad"}):
        r = requests.get(server.url("/protected/secret.txt"), headers=headers, timeout=10)
        assert r.status_code == 403, f"{headers}: {r.status_code} {r.text[:200]}"
        assert PROTECTED not in r.content
        assert r.content == b"denied by the authorizer\n"
    # the authorizer routes on PATH_INFO, rebuilt from REQUEST_URI
    r = requests.get(server.url("/protected/deny-all/secret.txt"), headers=good, timeout=10)
    assert r.status_code == 403, (r.status_code, r.text[:200])

    # a responder gateway behind the authorizer: what reaches it
    r = requests.get(server.url("/guarded/page?q=1"), headers=good, timeout=10)
    env = env_of(r)
    passed = {k: env.get(k) for k in ("USER", "AUTHZ_ROLE", "AUTHZ_PATH", "REMOTE_USER")}
    print("lighttpd: Variable-* from the authorizer, as the responder saw them:", passed)
    assert env["PATH_INFO"] == "/guarded/page"
    assert env["FCGI_ROLE"] == "RESPONDER"
    assert passed["USER"] == "alice"
    assert passed["AUTHZ_ROLE"] == "AUTHORIZER"
    assert passed["AUTHZ_PATH"] == "/guarded/page"
    r = requests.get(server.url("/guarded/page"), timeout=10)
    assert (r.status_code, r.content) == (403, b"denied by the authorizer\n")


@pytest.fixture
def apache_authnz(per_test_gateway, apache):
    """mod_authnz_fcgi (TCP only) calling an authorizer gateway: in the
    check_user_id phase (AuthnzFcgiCheckAuthnProvider, FCGI_APACHE_ROLE=
    AUTHENTICATOR; its Variable-USER becomes the user) and, under /authz/,
    also for `Require TokenAuthz` (FCGI_APACHE_ROLE=AUTHORIZER). The
    protected content is a responder gateway behind mod_proxy_fcgi."""
    auth = per_test_gateway("authz", AUTHORIZER + ["--threads", "2"], proto="fastcgi", tcp=True)
    resp = per_test_gateway("echo", ECHO + ["--threads", "4"], proto="fastcgi")
    backend = f"fcgi://{auth.socket}/"
    checkauthn = ('AuthnzFcgiCheckAuthnProvider TokenAuthn Authoritative On RequireBasicAuth Off '
                  'UserExpr "%{reqenv:USER}"')
    server = apache(
        "authnz",
        f"""
AuthnzFcgiDefineProvider authn TokenAuthn {backend}
AuthnzFcgiDefineProvider authz TokenAuthz {backend}
ProxyPass "/" "unix:{resp.socket}|fcgi://resp/" enablereuse=on
<Location "/protected/">
    AuthType Token
    AuthName "rustgi"
    {checkauthn}
    Require valid-user
</Location>
<Location "/authz/">
    AuthType Token
    AuthName "rustgi"
    {checkauthn}
    Require TokenAuthz
</Location>
""",
        modules=["authn_core", "authz_user", "authnz_fcgi"],
    )
    return server, auth


GOOD = {"X-Token": "good"}


def test_apache_authnz_fcgi_check_user_id(apache_authnz):
    server, auth = apache_authnz
    r = requests.get(server.url("/protected/page"), headers=GOOD, timeout=10)
    assert r.status_code == 200, f"{r.status_code} {r.text[:300]}\n{explain(server, auth)}"
    env = r.json()["environ"]
    print("Apache authn phase, as the responder saw it:",
          {k: env.get(k) for k in ("REMOTE_USER", "USER", "AUTHZ_ROLE", "AUTHZ_PATH")})
    assert env["REMOTE_USER"] == "alice"
    # (no AUTH_TYPE: Apache sets it from r->ap_auth_type, which mod_authnz_fcgi leaves unset)
    assert env["USER"] == "alice"
    assert env["AUTHZ_ROLE"] == "AUTHENTICATOR"
    assert env["AUTHZ_PATH"] == "/protected/page"  # PATH_INFO rebuilt for the authorizer
    assert env["PATH_INFO"] == "/protected/page"
    for headers in ({}, {"X-Token": "bad"}):
        r = requests.get(server.url("/protected/page"), headers=headers, timeout=10)
        assert r.status_code == 403, f"{headers}: {r.status_code} {r.text[:300]}\n{explain(server, auth)}"
        assert "application/json" not in r.headers.get("Content-Type", "")
    r = requests.get(server.url("/protected/deny-all/page"), headers=GOOD, timeout=10)
    assert r.status_code == 403, (r.status_code, r.text[:200])
    assert not server.error_log.lines_matching(r"authnz_fcgi:error"), server.error_log.tail(20)


def test_apache_authnz_fcgi_require_provider(apache_authnz):
    server, auth = apache_authnz
    r = requests.get(server.url("/authz/page"), headers=GOOD, timeout=10)
    assert r.status_code == 200, f"{r.status_code} {r.text[:300]}\n{explain(server, auth)}"
    env = r.json()["environ"]
    print("Apache authn+authz phases, as the responder saw it:",
          {k: env.get(k) for k in ("REMOTE_USER", "USER", "AUTHZ_ROLE", "AUTHZ_PATH")})
    assert env["REMOTE_USER"] == "alice"
    assert env["AUTHZ_ROLE"] == "AUTHORIZER"  # the authz phase ran after the authn one
    # denied in the authz phase, the user being known: mod_authz_core's own
    # 401 (AUTHZ_DENIED), not the app's answer
    r = requests.get(server.url("/authz/page"), headers={**GOOD, "X-Deny-Phase": "AUTHORIZER"}, timeout=10)
    print("Apache: denied in the authz phase ->", r.status_code)
    assert r.status_code == 401, (r.status_code, r.text[:200])
    assert "application/json" not in r.headers.get("Content-Type", "")
    # denied in the authn phase: the app's 403
    r = requests.get(server.url("/authz/page"), headers={**GOOD, "X-Deny-Phase": "AUTHENTICATOR"}, timeout=10)
    assert r.status_code == 403, (r.status_code, r.text[:200])
    assert not server.error_log.lines_matching(r"authnz_fcgi:error"), server.error_log.tail(20)


def test_apache_authnz_fcgi_denial_body_reaches_the_client(apache_authnz):
    """FastCGI spec, AUTHORIZER: for a status other than 200 "the Web server
    denies access and sends the response status, headers, and content back
    to the HTTP client". mod_authnz_fcgi (Authoritative On) does that with
    ap_custom_response(), but only with the body bytes that came in the same
    STDOUT record as the end of the response head (it flattens its brigade
    the moment the head is complete). A gateway that sends the head and the
    body in separate STDOUT records therefore loses the body: the client
    gets Apache's generic 403 page instead of the authorizer's."""
    server, auth = apache_authnz
    r = requests.get(server.url("/protected/page"), headers={"X-Token": "bad"}, timeout=10)
    assert r.status_code == 403
    assert r.content == b"denied by the authorizer\n", (
        f"Apache answered its own page instead of the authorizer's body: {r.text[:120]!r}"
    )


def test_apache_authnz_fcgi_denial_body_control(procs, apache):
    """The control for the test above: a raw authorizer (FcgiCapture) that
    sends the same 403 head and body in ONE STDOUT record gets its body to
    the client through the same Apache configuration."""
    head_and_body = (b"Status: 403 Forbidden\r\nContent-Type: text/plain\r\n"
                     b"Content-Length: 25\r\n\r\ndenied by the authorizer\n")
    capture = procs.add(FcgiCapture(None, response=head_and_body))
    server = apache(
        "authnz-control",
        f"""
AuthnzFcgiDefineProvider authn TokenAuthn fcgi://{capture.address}/
<Location "/protected/">
    AuthType Token
    AuthName "rustgi"
    AuthnzFcgiCheckAuthnProvider TokenAuthn Authoritative On RequireBasicAuth Off
    Require valid-user
</Location>
""",
        modules=["authn_core", "authz_user", "authnz_fcgi"],
    )
    r = requests.get(server.url("/protected/page"), timeout=10)
    sent = capture.requests[-1]
    print("mod_authnz_fcgi sent: role", sent["role"], "flags", sent["flags"],
          {k.decode(): v.decode("latin-1") for k, v in sent["pairs"]
           if k in (b"FCGI_ROLE", b"FCGI_APACHE_ROLE", b"REQUEST_URI", b"SCRIPT_NAME", b"PATH_INFO",
                    b"CONTENT_LENGTH")})
    assert sent["role"] == 2  # AUTHORIZER
    assert (r.status_code, r.content) == (403, b"denied by the authorizer\n")
