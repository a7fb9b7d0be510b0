"""FastCGI, spoken by a small raw client (tests/fcgi_client.py, written from
the FastCGI 1.0 spec) straight to gateways on Unix sockets, without nginx.

The gateways are this module's own (`--proto fastcgi`), each on a socket in
the session's temp dir, with its stderr in tests/.run/logs/fastcgi-raw-<name>-<pid>.log. The
apps are in tests/apps/fastcgi_app.py, all under wsgiref.validate.

Covers what nginx never does (multiplexing, ABORT_REQUEST, GET_VALUES, the
AUTHORIZER and FILTER roles) and what a broken or hostile peer may send: for
each kind of bad input the gateway must close the connection, log one WARN
line that names the problem, and go on serving.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path

import pytest

from fcgi_client import (
    AUTHORIZER,
    BEGIN_REQUEST,
    DATA,
    GET_VALUES,
    END_REQUEST,
    FILTER,
    GET_VALUES_RESULT,
    PARAMS,
    OVERLOADED,
    REQUEST_COMPLETE,
    RESPONDER,
    STDERR,
    STDIN,
    STDOUT,
    UNKNOWN_ROLE,
    UNKNOWN_TYPE,
    FcgiConnection,
    abort_request,
    begin_request,
    cut,
    decode_pairs,
    encode_length,
    encode_pair,
    encode_pairs,
    encode_record,
    get_values,
    request_records,
    responder_params,
    stream_records,
)
from harness import APPS, REPO, KiB, MiB, wait_until
from plugins.fronts import module_gateway

APP = str((APPS / "fastcgi_app.py").relative_to(REPO))
MAX_HEADER = 1024


def raw_gateway(name, *args, doc=""):
    return module_gateway(name, ["--app", APP, *args], proto="fastcgi", check_exit=False, doc=doc)


fcgi = raw_gateway("fcgi", "--threads", "8")
strict = raw_gateway("fcgi-strict", "--threads", "4", "--max-header-size", str(MAX_HEADER),
                     "--bad-input-warnings", "0",
                     doc="Small PARAMS limit, for the bad-input cases (each logged).")
responder_only = raw_gateway("fcgi-responder", "--threads", "2", "--fastcgi-roles", "responder")
no_stderr = raw_gateway("fcgi-nostderr", "--threads", "2", "--no-fastcgi-stderr")


@pytest.fixture
def marker(run_dir, request) -> Path:
    """A path for a marker file written by the app (not created)."""
    d = run_dir / "fcgi-markers"
    d.mkdir(mode=0o777, exist_ok=True)
    path = d / f"{request.node.name.replace('/', '_')}-{time.monotonic_ns()}.txt"
    return path


# --------------------------------------------------------------------------
# helpers


def connect(gw, timeout=10.0) -> FcgiConnection:
    return FcgiConnection(gw.socket, timeout=timeout)


def simple(gw, path="/hello", query="", body=b"", *, request_id=1, keep_conn=False, timeout=10.0):
    """One request on a new connection; returns its Reply."""
    with connect(gw, timeout) as conn:
        conn.request(request_id, responder_params("POST" if body else "GET", path, query=query,
                                                  body_len=len(body)), body, keep_conn=keep_conn)
        return conn.read_end(request_id, timeout)


def assert_served(gw, what=""):
    r = simple(gw)
    assert r.protocol_status == REQUEST_COMPLETE, (what, r, gw.describe())
    assert (r.response().status, r.response().body) == (200, b"hello"), (what, gw.describe())
    assert gw.alive(), gw.describe()


def body_of(reply) -> bytes:
    return reply.response().body


def interleave(*record_lists):
    """Round-robin over lists of records: a1 b1 c1 a2 b2 c2 ..."""
    out = []
    longest = max(len(r) for r in record_lists)
    for i in range(longest):
        for records in record_lists:
            if i < len(records):
                out.append(records[i])
    return b"".join(out)


def records_of(request_id, params, body=b"", params_split=None, stdin_split=None):
    """A request as a list of separate records (to interleave)."""
    out = [begin_request(request_id)]
    for piece in cut(encode_pairs(params), params_split):
        out.append(encode_record(PARAMS, request_id, piece))
    out.append(encode_record(PARAMS, request_id))
    for piece in cut(body, stdin_split):
        out.append(encode_record(STDIN, request_id, piece))
    out.append(encode_record(STDIN, request_id))
    return out


# --------------------------------------------------------------------------
# multiplexing and streams


def test_multiplexed_requests_complete_independently(fcgi):
    slow = records_of(1, responder_params("GET", "/tag", query="tag=one&secs=1"), params_split=64)
    fast2 = records_of(2, responder_params("GET", "/tag", query="tag=two"), params_split=50)
    body3 = os.urandom(5000)
    fast3 = records_of(3, responder_params("POST", "/echo", body_len=len(body3)), body3,
                       params_split=100, stdin_split=1000)
    with connect(fcgi) as conn:
        started = time.monotonic()
        conn.send(interleave(slow, fast2, fast3))
        conn.read_until(lambda: all(conn.reply(i).ended for i in (1, 2, 3)), 10, "three END_REQUESTs")
    r1, r2, r3 = (conn.reply(i) for i in (1, 2, 3))
    for r in (r1, r2, r3):
        assert (r.app_status, r.protocol_status) == (0, REQUEST_COMPLETE), r
        assert r.stdout_closed, r
    assert body_of(r1) == b"tag:one"
    assert body_of(r2) == b"tag:two"
    assert body_of(r3) == body3
    assert r2.ended_at < r1.ended_at and r3.ended_at < r1.ended_at, (
        "the fast requests waited for the slow one: ended at "
        f"{[round(r.ended_at - started, 3) for r in (r1, r2, r3)]}"
    )
    assert r2.ended_at - started < 0.8 and r3.ended_at - started < 0.8
    assert r1.ended_at - started >= 0.95
    # Records of one request came in order: STDOUT..., empty STDOUT, END_REQUEST.
    for r in (r1, r2, r3):
        types = [(rec.type, bool(rec.content)) for rec in r.records]
        assert types[-2:] == [(STDOUT, False), (END_REQUEST, True)], types


def test_params_pair_split_across_records_with_4_byte_lengths(fcgi):
    long_value = "L" * 300
    params = responder_params("GET", "/environ", extra=[("HTTP_X_SHORT", "short-value"),
                                                        ("HTTP_X_LONG", long_value)])
    # Every length in the 4-byte form, even the short ones.
    stream = encode_pairs(params, long=True)
    short_pair = encode_pair("HTTP_X_SHORT", "short-value", long_name=True, long_value=True)
    long_pair = encode_pair("HTTP_X_LONG", long_value, long_name=True, long_value=True)
    assert short_pair[:4] == b"\x80\x00\x00\x0c" and long_pair[4:8] == b"\x80\x00\x01\x2c"
    short_at = stream.index(short_pair)
    long_at = stream.index(long_pair)
    # Cuts: inside the short pair's name length (2 of its 4 bytes), inside
    # the long pair's value length, and inside the long value.
    cuts = [short_at + 2, long_at + 6, long_at + 8 + 11 + 100]
    records = begin_request(1) + b"".join(encode_record(PARAMS, 1, piece) for piece in cut(stream, cuts))
    records += encode_record(PARAMS, 1) + encode_record(STDIN, 1)
    assert len(cut(stream, cuts)) == 4
    with connect(fcgi) as conn:
        conn.send(records)
        r = conn.read_end(1)
    assert r.protocol_status == REQUEST_COMPLETE, r
    environ = json.loads(body_of(r))
    assert environ["HTTP_X_SHORT"] == "short-value"
    assert environ["HTTP_X_LONG"] == long_value
    assert environ["PATH_INFO"] == "/environ"
    assert environ["HTTP_HOST"] == "localhost"


def test_abort_during_streaming_response(fcgi, marker):
    params = responder_params("GET", "/stream", query=f"path={marker}&interval=0.3&blocks=100")
    with connect(fcgi) as conn:
        conn.request(1, params)
        conn.read_until(lambda: b"block 1\n" in conn.reply(1).stdout, 5, "two streamed blocks")
        assert not marker.exists(), "close() called before the abort"
        aborted_at = time.monotonic()
        conn.send(abort_request(1))
        aborted = conn.read_end(1, timeout=5)
        assert aborted.ended_at - aborted_at < 0.5, (
            f"END_REQUEST came {aborted.ended_at - aborted_at:.3f}s after ABORT_REQUEST"
        )
        assert aborted.protocol_status == REQUEST_COMPLETE, aborted
        # The same id at once, on the same connection; it stays active long
        # enough for the aborted app to try its next block meanwhile.
        del conn.replies[1]
        conn.request(1, responder_params("GET", "/tag", query="tag=after-abort&secs=0.8"))
        again = conn.read_end(1, timeout=5)
        assert again.protocol_status == REQUEST_COMPLETE, again
        assert b"block" not in again.stdout, f"output of the aborted request leaked: {again.stdout!r}"
        assert again.response().status == 200, again.stdout
        assert body_of(again) == b"tag:after-abort"
        # close() of the aborted iterable is called (after its next block fails).
        assert wait_until(marker.exists, timeout=3), "the aborted app's close() was not called\n" + fcgi.describe()
        assert marker.read_text().startswith("closed after"), marker.read_text()
        # Nothing more arrives for id 1 (the aborted app kept yielding for a while).
        late = conn.records_within(1.0)
        assert late == [], f"records after the second request ended: {late}"
        assert not conn.eof


def test_abort_while_the_app_reads_its_body(fcgi, marker):
    # 70,000 of 200,000 bytes: over --buffer-body (64 KiB), so the app
    # starts before the body is in, and blocks in its read.
    params = responder_params("POST", "/read-blocked", query=f"path={marker}", body_len=200_000)
    with connect(fcgi) as conn:
        conn.send(begin_request(1) + stream_records(PARAMS, 1, encode_pairs(params))
                  + stream_records(STDIN, 1, b"x" * 70_000, end=False))
        assert wait_until(marker.exists, timeout=5), "the app never started\n" + fcgi.describe()
        time.sleep(0.3)  # the app is now blocked in read()
        aborted_at = time.monotonic()
        conn.send(abort_request(1))
        r = conn.read_end(1, timeout=5)
        assert r.ended_at - aborted_at < 0.5
        assert r.protocol_status == REQUEST_COMPLETE, r
        assert wait_until(lambda: "OSError" in marker.read_text(), timeout=5), (
            f"the app's read did not fail: {marker.read_text()!r}\n" + fcgi.describe()
        )
        assert "read " not in marker.read_text()
        # The connection still works.
        del conn.replies[1]
        conn.request(1, responder_params("GET", "/hello"))
        assert body_of(conn.read_end(1)) == b"hello"


# --------------------------------------------------------------------------
# management records, KEEP_CONN, inactive ids


def test_get_values_unknown_type_and_nothing_unsolicited(fcgi):
    with connect(fcgi) as conn:
        assert conn.records_within(0.3) == [], "the gateway spoke first"
        conn.send(get_values(["FCGI_MAX_CONNS", "FCGI_NO_SUCH_VALUE", "FCGI_MAX_REQS", "FCGI_MPXS_CONNS"]))
        rec = conn.read_management()
        assert (rec.type, rec.request_id) == (GET_VALUES_RESULT, 0), rec
        values = dict(decode_pairs(rec.content))
        assert set(values) == {b"FCGI_MAX_CONNS", b"FCGI_MAX_REQS", b"FCGI_MPXS_CONNS"}, values
        assert values[b"FCGI_MAX_CONNS"].isdigit() and int(values[b"FCGI_MAX_CONNS"]) > 0, values
        assert values[b"FCGI_MAX_REQS"].isdigit() and int(values[b"FCGI_MAX_REQS"]) > 0, values
        assert values[b"FCGI_MPXS_CONNS"] == b"1", values

        conn.send(encode_record(99, 0, b"whatever"))
        rec = conn.read_management()
        assert (rec.type, rec.request_id) == (UNKNOWN_TYPE, 0), rec
        assert rec.content == bytes([99]) + b"\0" * 7, rec

        conn.request(1, responder_params("GET", "/hello"))
        assert body_of(conn.read_end(1)) == b"hello"
        extra = conn.records_within(1.0)
        assert extra == [], f"unsolicited records after END_REQUEST: {extra}"
        assert not conn.eof, "a KEEP_CONN connection was closed"
        assert [r.type for r in conn.log if r.request_id == 0] == [GET_VALUES_RESULT, UNKNOWN_TYPE]


def test_abort_before_params_end(fcgi):
    params = encode_pairs(responder_params("GET", "/tag", query="tag=never&secs=0"))
    with connect(fcgi) as conn:
        conn.send(begin_request(1) + encode_record(PARAMS, 1, params[:50]))
        time.sleep(0.1)
        conn.send(abort_request(1))
        r = conn.read_end(1, timeout=2)
        assert (r.protocol_status, r.stdout) == (REQUEST_COMPLETE, b""), r
        # The rest of its PARAMS now belongs to no request: ignored.
        conn.send(encode_record(PARAMS, 1, params[50:]) + encode_record(PARAMS, 1) + encode_record(STDIN, 1))
        assert conn.records_within(0.5) == [], conn.log
        conn.replies.pop(1)
        conn.request(1, responder_params("GET", "/hello"))
        assert body_of(conn.read_end(1)) == b"hello"


def test_any_padding_is_skipped_and_replies_are_padded(fcgi):
    body = os.urandom(3000)
    params = encode_pairs(responder_params("POST", "/echo", body_len=len(body)))
    records = begin_request(1)
    paddings = [0, 1, 7, 8, 255]
    for i, piece in enumerate(cut(params, 60)):
        records += encode_record(PARAMS, 1, piece, padding=paddings[i % len(paddings)])
    records += encode_record(PARAMS, 1, padding=255)
    for i, piece in enumerate(cut(body, 700)):
        records += encode_record(STDIN, 1, piece, padding=paddings[-1 - i % len(paddings)])
    records += encode_record(STDIN, 1, padding=3)
    with connect(fcgi) as conn:
        conn.send(records)
        r = conn.read_end(1)
        conn.send(encode_record(GET_VALUES, 0, encode_pairs([(b"FCGI_MPXS_CONNS", b"")], long=True), padding=13))
        answer = conn.read_management()
    assert body_of(r) == body
    assert dict(decode_pairs(answer.content)) == {b"FCGI_MPXS_CONNS": b"1"}, answer
    unaligned = [rec for rec in conn.log if (len(rec.content) + rec.padding) % 8]
    assert not unaligned, f"records not padded to a multiple of 8: {unaligned}"


def test_without_keep_conn_the_gateway_closes(fcgi):
    with connect(fcgi) as conn:
        conn.request(1, responder_params("GET", "/hello"), keep_conn=False)
        assert body_of(conn.read_end(1)) == b"hello"
        assert conn.closed_by_peer(3), "connection still open after END_REQUEST without KEEP_CONN"


def test_with_keep_conn_several_sequential_requests(fcgi):
    with connect(fcgi) as conn:
        for i in range(4):
            conn.replies.pop(1, None)
            conn.request(1, responder_params("GET", "/tag", query=f"tag=seq{i}"))
            r = conn.read_end(1)
            assert (r.protocol_status, body_of(r)) == (REQUEST_COMPLETE, f"tag:seq{i}".encode())
        body = os.urandom(70000)
        conn.replies.pop(1, None)
        conn.request(2, responder_params("POST", "/echo", body_len=len(body)), body, stdin_split=8000)
        assert body_of(conn.read_end(2)) == body
        assert conn.records_within(0.3) == [] and not conn.eof


def test_records_for_inactive_ids_are_ignored(fcgi):
    with connect(fcgi) as conn:
        conn.send(
            encode_record(STDIN, 7, b"stray body")
            + encode_record(STDIN, 7)
            + stream_records(PARAMS, 8, encode_pairs(responder_params("GET", "/hello")))
            + abort_request(9)
            + encode_record(DATA, 10, b"stray data")
        )
        conn.request(1, responder_params("GET", "/hello"))
        r = conn.read_end(1)
        assert (r.protocol_status, body_of(r)) == (REQUEST_COMPLETE, b"hello")
        assert conn.records_within(0.5) == []
        assert sorted(conn.replies) == [1], f"records for inactive ids: {conn.log}"
        assert not conn.eof


# --------------------------------------------------------------------------
# roles


def authorizer_params(uri, authorization):
    """What lighttpd sends an AUTHORIZER: no CONTENT_LENGTH, SCRIPT_NAME,
    PATH_INFO or PATH_TRANSLATED; the request's URI."""
    pairs = [
        ("REQUEST_METHOD", "GET"),
        ("REQUEST_URI", uri),
        ("QUERY_STRING", uri.partition("?")[2]),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("GATEWAY_INTERFACE", "CGI/1.1"),
        ("SERVER_SOFTWARE", "lighttpd/1.4.69"),
        ("SERVER_NAME", "localhost"),
        ("SERVER_PORT", "80"),
        ("REMOTE_ADDR", "127.0.0.1"),
        ("REMOTE_PORT", "40001"),
        ("HTTP_HOST", "localhost"),
        ("HTTP_AUTHORIZATION", authorization),
    ]
    return [(k.encode(), v.encode()) for k, v in pairs]


def test_authorizer_allows_with_variables_and_denies(fcgi):
    with connect(fcgi) as conn:
        conn.request(1, authorizer_params("/private/report%20x?page=2", "Bearer alice"), role=AUTHORIZER)
        r = conn.read_end(1)
        assert r.protocol_status == REQUEST_COMPLETE, r
        resp = r.response()
        assert resp.status == 200, r.stdout
        assert resp.header("Variable-USER") == "alice", resp.headers
        environ = json.loads(resp.body)
        assert environ["FCGI_ROLE"] == "AUTHORIZER"
        assert environ["PATH_INFO"] == "/private/report x"
        assert environ["SCRIPT_NAME"] == ""
        assert environ["QUERY_STRING"] == "page=2"
        assert environ.get("CONTENT_LENGTH", "") in ("", "0"), environ.get("CONTENT_LENGTH")

        conn.request(2, authorizer_params("/private/report", "Bearer mallory"), role=AUTHORIZER)
        r = conn.read_end(2)
        assert r.protocol_status == REQUEST_COMPLETE, r
        assert (r.response().status, r.response().body) == (403, b"denied"), r.stdout


def test_filter_reads_the_data_stream(fcgi):
    data = os.urandom(100 * KiB)
    params = responder_params("POST", "/filtered.html", body_len=10,
                              extra=[("FCGI_DATA_LENGTH", str(len(data))),
                                     ("FCGI_DATA_LAST_MOD", "1700000000")])
    records = request_records(1, params, b"stdin-part", role=FILTER, stdin_split=4,
                              data=data, data_split=30000)
    assert records.count(bytes([1, DATA, 0, 1])) == 5  # 4 with content, then the empty one
    with connect(fcgi) as conn:
        conn.send(records)
        r = conn.read_end(1)
    assert r.protocol_status == REQUEST_COMPLETE, r
    assert r.response().status == 200, r.stdout
    answer = json.loads(body_of(r))
    assert answer == {
        "stdin": "stdin-part",
        "data_len": len(data),
        "data_sha256": hashlib.sha256(data).hexdigest(),
        "FCGI_ROLE": "FILTER",
        "FCGI_DATA_LENGTH": str(len(data)),
        "FCGI_DATA_LAST_MOD": "1700000000",
    }


def test_unknown_role_gets_unknown_role(fcgi):
    with connect(fcgi) as conn:
        conn.request(1, responder_params("GET", "/hello"), role=9)
        r = conn.read_end(1, timeout=5)
        assert (r.app_status, r.protocol_status) == (0, UNKNOWN_ROLE), r
        assert r.stdout == b"" and [rec.type for rec in r.records] == [END_REQUEST], r.records
        # The id is free again, the connection (KEEP_CONN) still works.
        assert conn.records_within(0.3) == []
        conn.replies.pop(1)
        conn.request(1, responder_params("GET", "/hello"))
        assert body_of(conn.read_end(1)) == b"hello"


def test_unknown_role_without_keep_conn_closes(fcgi):
    with connect(fcgi) as conn:
        conn.request(1, responder_params("GET", "/hello"), role=9, keep_conn=False)
        r = conn.read_end(1, timeout=5)
        assert r.protocol_status == UNKNOWN_ROLE, r
        assert conn.closed_by_peer(3)


def test_roles_not_enabled_get_unknown_role(responder_only):
    with connect(responder_only) as conn:
        conn.request(1, authorizer_params("/private", "Bearer alice"), role=AUTHORIZER)
        r = conn.read_end(1, timeout=5)
        assert r.protocol_status == UNKNOWN_ROLE, r
        assert r.stdout == b"", r
        conn.replies.pop(1)
        conn.request(1, responder_params("GET", "/hello"), role=RESPONDER)
        assert body_of(conn.read_end(1)) == b"hello"


# --------------------------------------------------------------------------
# STDERR


def test_wsgi_errors_arrive_as_stderr_records(fcgi):
    with connect(fcgi) as conn:
        conn.request(1, responder_params("GET", "/errors", query="n=3"))
        r = conn.read_end(1)
    assert body_of(r) == b"errors sent"
    assert r.stderr == b"err line 0\nerr line 1\nerr line 2\n", r.stderr
    assert r.stderr_closed, f"STDERR not closed: {r.records}"
    kinds = [(rec.type, bool(rec.content)) for rec in r.records]
    close_at = kinds.index((STDERR, False))
    assert kinds[close_at + 1:] in ([(STDOUT, False), (END_REQUEST, True)], [(END_REQUEST, True)]), kinds
    assert all(k != (STDERR, True) for k in kinds[close_at:]), kinds


def test_no_fastcgi_stderr(no_stderr):
    mark = no_stderr.log.mark()
    with connect(no_stderr) as conn:
        conn.request(1, responder_params("GET", "/errors", query="n=3"))
        r = conn.read_end(1)
    assert body_of(r) == b"errors sent"
    assert [rec for rec in r.records if rec.type == STDERR] == [], r.records
    # The lines still reach the gateway's log.
    assert no_stderr.log.wait_for(r"err line 2", since=mark), no_stderr.describe(mark)


# --------------------------------------------------------------------------
# big bodies


def test_big_body_in_small_records_does_not_stall_other_requests(fcgi):
    body = os.urandom(5 * MiB)
    half = len(body) // 2
    slow = responder_params("POST", "/slow-sha", query="delay=0.08&chunk=65536", body_len=len(body))
    first = begin_request(1) + stream_records(PARAMS, 1, encode_pairs(slow))
    first += stream_records(STDIN, 1, body[:half], 4000, end=False)
    second_half = stream_records(STDIN, 1, body[half:], 4000)
    other = request_records(2, responder_params("GET", "/tag", query="tag=meanwhile"))
    times = {}
    errors = []

    with connect(fcgi, timeout=60) as conn:
        def send():
            try:
                conn.send(first)
                times["other_sent"] = time.monotonic()
                conn.send(other)
                conn.send(second_half)
                times["all_sent"] = time.monotonic()
            except Exception as e:  # reported below
                errors.append(e)

        started = time.monotonic()
        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        conn.read_until(lambda: conn.reply(1).ended and conn.reply(2).ended, 60, "both END_REQUESTs")
        sender.join(10)
    assert not errors, errors
    r1, r2 = conn.reply(1), conn.reply(2)
    assert body_of(r2) == b"tag:meanwhile"
    assert body_of(r1) == f"sha256={hashlib.sha256(body).hexdigest()} len={len(body)}".encode()
    took = {k: round(v - started, 2) for k, v in times.items()}
    assert r2.ended_at < r1.ended_at, (took, r1.ended_at - started, r2.ended_at - started)
    # The app needs ~6.4 s to read 80 blocks; the other request and the whole
    # body must get through long before (the body is spooled, not waited for).
    assert r2.ended_at - times["other_sent"] < 1.5, (took, r2.ended_at - started)
    assert times["all_sent"] - started < 3.0, took
    assert r1.ended_at - started > 5.0, "the app did not read slowly: the test proves nothing"


# --------------------------------------------------------------------------
# bad input


def _good_params(body_len=0, extra=()):
    return encode_pairs(responder_params("POST" if body_len else "GET", "/hello", body_len=body_len,
                                         extra=extra))


_BEGIN = begin_request(1)
_PARAMS_END = stream_records(PARAMS, 1, _good_params())
_TRUNCATED_PAIR = _good_params() + encode_length(10) + encode_length(200) + b"HTTP_X_CUT" + b"v" * 50

# (case id, bytes to send, shut down our write side after, regexes one WARN line must match)
BAD_INPUT = [
    ("wrong-version", encode_record(BEGIN_REQUEST, 1, _BEGIN[8:], version=2), False,
     [r"version 2 \(expected 1\)"]),
    ("begin-request-on-id-0", begin_request(0), False,
     [r"BEGIN_REQUEST \(1\) record at offset 0 has request id 0"]),
    ("stdin-on-id-0", _BEGIN + _PARAMS_END + encode_record(STDIN, 0, b"body"), False,
     [r"STDIN \(5\) record at offset \d+ has request id 0"]),
    ("truncated-header", _BEGIN + b"\x01\x04\x00", True,
     [r"closed inside a record header at offset 16: 3 of 8 bytes"]),
    ("truncated-content", _BEGIN + encode_record(PARAMS, 1, b"p" * 100)[:8 + 40], True,
     [r"closed inside a PARAMS \(4\) record for request 1 at offset 16: 48 of 112 bytes"]),
    ("pair-past-stream-end", _BEGIN + stream_records(PARAMS, 1, _TRUNCATED_PAIR, 100), False,
     [r"PARAMS for request 1", r"ends inside the name-value pair at byte \d+"]),
    ("params-over-max-header-size",
     _BEGIN + stream_records(PARAMS, 1, _good_params(extra=[("HTTP_COOKIE", "c" * 1000)]), 500), False,
     [r"PARAMS for request 1 exceed --max-header-size: \d+ > 1024 bytes"]),
    ("params-over-max-header-size-in-small-pairs",
     _BEGIN + stream_records(PARAMS, 1, _good_params(extra=[(f"HTTP_X_{i}", "v" * 40) for i in range(20)]),
                             128), False,
     [r"PARAMS for request 1 exceed --max-header-size: \d+ > 1024 bytes"]),
    ("stdin-over-content-length",
     _BEGIN + stream_records(PARAMS, 1, _good_params(body_len=10)) + encode_record(STDIN, 1, b"s" * 20)
     + encode_record(STDIN, 1), False,
     [r"STDIN \(5\) record .* request 1 takes the body to 20 bytes, over its CONTENT_LENGTH of 10"]),
    ("begin-request-for-active-id", _BEGIN + _BEGIN, False,
     [r"BEGIN_REQUEST \(1\) record at offset 16 for request 1, which is already active"]),
    ("begin-request-body-wrong-length", encode_record(BEGIN_REQUEST, 1, b"\0\1\1\0"), False,
     [r"BEGIN_REQUEST \(1\) record at offset 0 for request 1 has 4 content bytes \(expected 8\)"]),
    ("get-values-on-a-request-id", encode_record(GET_VALUES, 1, b""), False,
     [r"GET_VALUES \(9\) record at offset 0 is a management record but has request id 1"]),
    ("stdout-from-the-web-server", _BEGIN + encode_record(STDOUT, 1, b"x"), False,
     [r"STDOUT \(6\) record at offset 16 for request 1: only an application sends this type"]),
    ("unknown-type-on-a-request-id", _BEGIN + encode_record(99, 1, b"x"), False,
     [r"record at offset 16 has unknown type 99 for request 1"]),
    ("data-for-a-responder", _BEGIN + _PARAMS_END + encode_record(DATA, 1, b"file"), False,
     [r"DATA \(8\) record at offset \d+ for request 1, whose role is RESPONDER"]),
    ("params-after-their-end", _BEGIN + _PARAMS_END + encode_record(PARAMS, 1, encode_pair("X", "y")), False,
     [r"PARAMS \(4\) record at offset \d+ for request 1 came after that stream's end"]),
    ("content-length-not-a-number",
     _BEGIN + stream_records(PARAMS, 1, encode_pairs([(b"CONTENT_LENGTH", b"12a")]
                                                     + responder_params("POST", "/hello", body_len=None))), False,
     [r'request 1 has CONTENT_LENGTH "12a", which is not a decimal number']),
    ("stdin-short-of-content-length",
     _BEGIN + stream_records(PARAMS, 1, _good_params(body_len=10)) + stream_records(STDIN, 1, b"4444"), False,
     [r"STDIN for request 1 ended .* after 4 bytes, short of its CONTENT_LENGTH of 10"]),
    ("stdin-before-params-end",
     _BEGIN + encode_record(PARAMS, 1, _good_params()) + encode_record(STDIN, 1, b"early"), False,
     [r"STDIN \(5\) record at offset \d+ for request 1 came before the end of its PARAMS stream"]),
]


@pytest.mark.parametrize("data, shut_wr, patterns", [c[1:] for c in BAD_INPUT], ids=[c[0] for c in BAD_INPUT])
def test_bad_input_is_refused_logged_and_survived(strict, data, shut_wr, patterns):
    mark = strict.log.mark()
    with connect(strict) as conn:
        conn.send_tolerant(data)
        if shut_wr:
            conn.shut_wr()
        assert conn.closed_by_peer(5), (
            f"connection still open 5s after {data[:64]!r}; received {conn.log}\n" + strict.describe(mark)
        )
    served = [rec for rec in conn.log if rec.type == STDOUT and rec.content]
    assert not served, f"bad input was served: {served}"
    warns = strict.log.wait_for(r"\bWARN\b", *patterns, since=mark, timeout=5)
    assert warns, f"no WARN line matching {patterns}\n" + strict.describe(mark)
    time.sleep(0.2)
    bad_lines = strict.log.lines_matching(r"\bWARN\b", r"bad FastCGI input", since=mark)
    assert len(bad_lines) == 1 and len(warns) == 1, "expected one WARN line:\n" + "\n".join(bad_lines)
    assert_served(strict, "right after the bad input")


def test_bad_input_on_one_connection_does_not_disturb_another(strict):
    mark = strict.log.mark()
    with connect(strict) as good:
        good.request(1, responder_params("GET", "/tag", query="tag=undisturbed&secs=1"))
        time.sleep(0.2)  # the good request is running
        for data in (b"\x02" + b"\0" * 15, begin_request(1) + begin_request(1), b"GET / HTTP/1.1\r\n\r\n"):
            with connect(strict) as bad:
                bad.send_tolerant(data)
                assert bad.closed_by_peer(5), data
        r = good.read_end(1, timeout=5)
        assert (r.protocol_status, body_of(r)) == (REQUEST_COMPLETE, b"tag:undisturbed"), r
        assert good.records_within(0.3) == [] and not good.eof
    assert len(strict.log.lines_matching(r"\bWARN\b", r"bad FastCGI input", since=mark)) == 3, strict.describe(mark)
    assert strict.log.lines_matching(r"an ASCII letter starts an HTTP request", since=mark)


# --------------------------------------------------------------------------
# the per-connection limit


one_thread = raw_gateway("fcgi-one-thread", "--threads", "1",
                         doc="--threads 1: at most 2 x 1 + 8 = 10 requests on one connection.")


PER_CONNECTION_LIMIT = 10


def test_requests_beyond_the_per_connection_limit_get_overloaded(one_thread):
    ids = range(1, PER_CONNECTION_LIMIT + 2)
    requests = [
        request_records(i, responder_params("GET", "/tag", query=f"tag={i}&secs=0.05"))
        for i in ids
    ]
    with connect(one_thread, timeout=30) as conn:
        conn.send(b"".join(requests))
        conn.read_until(lambda: all(conn.reply(i).ended for i in ids), 20, "every END_REQUEST")
        over = conn.reply(PER_CONNECTION_LIMIT + 1)
        assert (over.app_status, over.protocol_status) == (0, OVERLOADED), over
        assert not [rec for rec in over.records if rec.type == STDOUT], over
        for i in ids[:-1]:
            r = conn.reply(i)
            assert (r.app_status, r.protocol_status) == (0, REQUEST_COMPLETE), r
            assert body_of(r) == f"tag:{i}".encode()
        # The connection itself is fine: the refused id can be used again.
        again = PER_CONNECTION_LIMIT + 1
        conn.replies.pop(again)
        conn.send(request_records(again, responder_params("GET", "/tag", query="tag=again")))
        conn.read_until(lambda: conn.reply(again).ended, 10, "the reused id's END_REQUEST")
        assert conn.reply(again).protocol_status == REQUEST_COMPLETE
        assert body_of(conn.reply(again)) == b"tag:again"
