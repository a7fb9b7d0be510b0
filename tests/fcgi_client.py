"""A small raw FastCGI client, written from the FastCGI 1.0 specification
(Open Market, 1996) for the integration suite. It shares no code with the
Rust encoders/decoders, so each checks the other.

- Records: `encode_record` / `RecordReader` (8-byte header, big-endian,
  content padded to a multiple of 8 unless told otherwise).
- Name-value pairs: `encode_pair` (1- or 4-byte lengths, the 4-byte form
  also for short lengths when asked), `encode_pairs`, `decode_pairs`.
- Request records: `begin_request`, `stream_records` (PARAMS, STDIN, DATA cut
  into records at chosen points, then the empty record), `abort_request`,
  `get_values`.
- `FcgiConnection`: one Unix-socket connection that sends those records and
  sorts what comes back per request id (`Reply`: STDOUT, STDERR, END_REQUEST,
  and the order records came in).
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field

from raw_client import CgiResponse, as_bytes, parse_cgi_response

VERSION_1 = 1

BEGIN_REQUEST = 1
ABORT_REQUEST = 2
END_REQUEST = 3
PARAMS = 4
STDIN = 5
STDOUT = 6
STDERR = 7
DATA = 8
GET_VALUES = 9
GET_VALUES_RESULT = 10
UNKNOWN_TYPE = 11

TYPE_NAMES = {
    BEGIN_REQUEST: "BEGIN_REQUEST", ABORT_REQUEST: "ABORT_REQUEST", END_REQUEST: "END_REQUEST",
    PARAMS: "PARAMS", STDIN: "STDIN", STDOUT: "STDOUT", STDERR: "STDERR", DATA: "DATA",
    GET_VALUES: "GET_VALUES", GET_VALUES_RESULT: "GET_VALUES_RESULT", UNKNOWN_TYPE: "UNKNOWN_TYPE",
}

RESPONDER = 1
AUTHORIZER = 2
FILTER = 3

KEEP_CONN = 1

REQUEST_COMPLETE = 0
CANT_MPX_CONN = 1
OVERLOADED = 2
UNKNOWN_ROLE = 3

HEADER = struct.Struct(">BBHHBx")
MAX_CONTENT = 65535


# --------------------------------------------------------------------------
# records


def encode_record(rtype: int, request_id: int, content: bytes = b"", *, padding: int | None = None,
                  version: int = VERSION_1, content_length: int | None = None) -> bytes:
    """One record. `padding` defaults to what makes content+padding a
    multiple of 8; `version` and `content_length` may be overridden to make
    bad input (the content sent is always `content`)."""
    if padding is None:
        padding = -len(content) % 8
    if content_length is None:
        content_length = len(content)
    assert 0 <= content_length <= MAX_CONTENT, content_length
    return HEADER.pack(version, rtype, request_id, content_length, padding) + content + b"\0" * padding


@dataclass
class Record:
    version: int
    type: int
    request_id: int
    content: bytes
    padding: int

    @property
    def type_name(self) -> str:
        return TYPE_NAMES.get(self.type, f"type {self.type}")

    def __repr__(self):
        shown = self.content if len(self.content) <= 40 else self.content[:40] + b"..."
        return f"<{self.type_name} id={self.request_id} len={len(self.content)} {shown!r}>"


def decode_one(data: bytes) -> tuple[Record, int] | None:
    """The record at the front of `data` and its size with padding, or None
    while it is incomplete."""
    if len(data) < HEADER.size:
        return None
    version, rtype, rid, clen, plen = HEADER.unpack_from(data)
    size = HEADER.size + clen + plen
    if len(data) < size:
        return None
    return Record(version, rtype, rid, data[HEADER.size:HEADER.size + clen], plen), size


def decode_records(data: bytes) -> tuple[list[Record], bytes]:
    """The complete records at the front of `data`, and what is left."""
    records = []
    while (one := decode_one(data)) is not None:
        record, size = one
        records.append(record)
        data = data[size:]
    return records, data


# --------------------------------------------------------------------------
# name-value pairs


def encode_length(n: int, long: bool = False) -> bytes:
    """1 byte if n < 128 (unless `long`), else 4 bytes big-endian with the top bit set."""
    if n < 128 and not long:
        return bytes([n])
    assert n < 2**31
    return struct.pack(">I", n | 0x80000000)


def encode_pair(name, value, *, long_name: bool = False, long_value: bool = False) -> bytes:
    name, value = as_bytes(name), as_bytes(value)
    return encode_length(len(name), long_name) + encode_length(len(value), long_value) + name + value


def encode_pairs(pairs, *, long: bool = False) -> bytes:
    return b"".join(encode_pair(k, v, long_name=long, long_value=long) for k, v in pairs)


def _read_length(data: bytes, at: int) -> tuple[int, int]:
    if data[at] < 128:
        return data[at], at + 1
    if at + 4 > len(data):
        raise ValueError(f"truncated 4-byte length at {at}")
    return struct.unpack_from(">I", data, at)[0] & 0x7FFFFFFF, at + 4


def decode_pairs(data: bytes) -> list[tuple[bytes, bytes]]:
    pairs = []
    at = 0
    while at < len(data):
        nlen, at = _read_length(data, at)
        vlen, at = _read_length(data, at)
        if at + nlen + vlen > len(data):
            raise ValueError(f"pair at {at} runs past the end ({nlen}+{vlen} bytes, {len(data) - at} left)")
        pairs.append((data[at:at + nlen], data[at + nlen:at + nlen + vlen]))
        at += nlen + vlen
    return pairs


# --------------------------------------------------------------------------
# request records


def begin_request(request_id: int, role: int = RESPONDER, keep_conn: bool = True) -> bytes:
    body = struct.pack(">HB5x", role, KEEP_CONN if keep_conn else 0)
    return encode_record(BEGIN_REQUEST, request_id, body)


def abort_request(request_id: int) -> bytes:
    return encode_record(ABORT_REQUEST, request_id)


def get_values(names) -> bytes:
    return encode_record(GET_VALUES, 0, encode_pairs((n, b"") for n in names))


def cut(data: bytes, split=None) -> list[bytes]:
    """Cuts a stream's bytes into record contents.

    `split`: None (records of up to 65535 bytes), an int (records of that
    size), or a list of offsets to cut at (e.g. [3] makes data[:3], data[3:]).
    Never yields an empty piece (the empty record ends a stream)."""
    if split is None:
        split = MAX_CONTENT
    if isinstance(split, int):
        assert 0 < split <= MAX_CONTENT
        points = list(range(split, len(data), split))
    else:
        points = sorted(split)
    pieces = []
    start = 0
    for p in points + [len(data)]:
        if p > start:
            pieces.append(data[start:p])
        start = max(start, p)
    return [p for p in pieces if p]


def stream_records(rtype: int, request_id: int, data: bytes, split=None, *, end: bool = True) -> bytes:
    """`data` as records of `rtype` cut as `cut(data, split)` says, then the
    empty record that ends the stream (unless `end` is false)."""
    out = b"".join(encode_record(rtype, request_id, piece) for piece in cut(data, split))
    if end:
        out += encode_record(rtype, request_id)
    return out


def responder_params(method: str = "GET", path: str = "/hello", *, query: str = "",
                     body_len: int | None = 0, extra=()) -> list[tuple[bytes, bytes]]:
    """What nginx's stock fastcgi_params send (SCRIPT_NAME = the whole path,
    no PATH_INFO). `body_len=None` sends no CONTENT_LENGTH; 0 sends an empty
    one, as nginx does for a request without a body."""
    pairs = [
        ("QUERY_STRING", query),
        ("REQUEST_METHOD", method),
        ("CONTENT_TYPE", "application/octet-stream" if body_len else ""),
    ]
    if body_len is not None:
        pairs.append(("CONTENT_LENGTH", str(body_len) if body_len else ""))
    pairs += [
        ("SCRIPT_NAME", path),
        ("REQUEST_URI", path + ("?" + query if query else "")),
        ("DOCUMENT_URI", path),
        ("DOCUMENT_ROOT", "/srv"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("REQUEST_SCHEME", "http"),
        ("GATEWAY_INTERFACE", "CGI/1.1"),
        ("SERVER_SOFTWARE", "nginx/1.22.1"),
        ("REMOTE_ADDR", "127.0.0.1"),
        ("REMOTE_PORT", "40000"),
        ("SERVER_ADDR", "127.0.0.1"),
        ("SERVER_PORT", "80"),
        ("SERVER_NAME", "localhost"),
        ("HTTP_HOST", "localhost"),
    ]
    pairs += list(extra)
    return [(as_bytes(k), as_bytes(v)) for k, v in pairs]


def request_records(request_id: int, params, body: bytes = b"", *, role: int = RESPONDER,
                    keep_conn: bool = True, params_split=None, stdin_split=None,
                    data: bytes | None = None, data_split=None) -> bytes:
    """A whole request: BEGIN_REQUEST, PARAMS, STDIN (and DATA when given)."""
    out = begin_request(request_id, role, keep_conn)
    out += stream_records(PARAMS, request_id, encode_pairs(params), params_split)
    out += stream_records(STDIN, request_id, body, stdin_split)
    if data is not None:
        out += stream_records(DATA, request_id, data, data_split)
    return out


# --------------------------------------------------------------------------
# responses


def parse_cgi(raw: bytes) -> CgiResponse:
    """A CGI response (`Status:` + headers, blank line, body); no Status
    means 200, as in CGI."""
    return parse_cgi_response(raw, default_status=200, http_status_line=False)


@dataclass
class Reply:
    """What came back for one request id."""

    request_id: int
    stdout: bytes = b""
    stderr: bytes = b""
    stdout_records: int = 0
    stderr_records: int = 0
    stdout_closed: bool = False
    stderr_closed: bool = False
    app_status: int | None = None
    protocol_status: int | None = None
    ended_at: float | None = None
    records: list = field(default_factory=list)

    @property
    def ended(self) -> bool:
        return self.protocol_status is not None

    def response(self) -> CgiResponse:
        return parse_cgi(self.stdout)


class ConnectionClosed(AssertionError):
    pass


class FcgiConnection:
    """One connection to a FastCGI application on a Unix socket."""

    def __init__(self, path: str, timeout: float = 10.0):
        self.path = path
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""
        self.eof = False
        self.replies: dict[int, Reply] = {}
        self.management: list[Record] = []
        self.log: list[Record] = []  # every record received, in order

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.sock.close()

    # sending

    def send(self, data: bytes):
        self.sock.sendall(data)

    def send_tolerant(self, data: bytes) -> bool:
        """Sends, tolerating the peer closing early; returns whether all went."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def shut_wr(self):
        self.sock.shutdown(socket.SHUT_WR)

    def request(self, request_id: int, params, body: bytes = b"", **kw):
        self.send(request_records(request_id, params, body, **kw))

    # receiving

    def reply(self, request_id: int) -> Reply:
        return self.replies.setdefault(request_id, Reply(request_id))

    def _recv(self, deadline: float) -> bool:
        """Reads once; returns False at EOF. Raises socket.timeout at the deadline."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("deadline passed")
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def _take(self, record: Record):
        self.log.append(record)
        if record.request_id == 0:
            self.management.append(record)
            return
        r = self.reply(record.request_id)
        r.records.append(record)
        if record.type == STDOUT:
            if record.content:
                r.stdout += record.content
                r.stdout_records += 1
            else:
                r.stdout_closed = True
        elif record.type == STDERR:
            if record.content:
                r.stderr += record.content
                r.stderr_records += 1
            else:
                r.stderr_closed = True
        elif record.type == END_REQUEST:
            assert len(record.content) == 8, record
            r.app_status, r.protocol_status = struct.unpack(">IB3x", record.content)
            r.ended_at = time.monotonic()

    def read_record(self, timeout: float | None = None) -> Record | None:
        """The next record, or None at EOF. Raises socket.timeout."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            one = decode_one(self.buf)
            if one is not None:
                record, size = one
                self.buf = self.buf[size:]
                self._take(record)
                return record
            if self.eof or not self._recv(deadline):
                assert not self.buf, f"EOF inside a record: {self.buf[:64]!r}"
                return None

    def read_until(self, predicate, timeout: float | None = None, what: str = "condition"):
        """Reads records until `predicate()` is true. Fails at EOF or timeout."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not predicate():
            try:
                record = self.read_record(max(0.001, deadline - time.monotonic()))
            except socket.timeout:
                raise AssertionError(f"timed out waiting for {what}; received {self.log[-8:]}")
            if record is None:
                if predicate():
                    return
                raise ConnectionClosed(f"connection closed while waiting for {what}; received {self.log[-8:]}")

    def read_end(self, request_id: int, timeout: float | None = None) -> Reply:
        """Reads until END_REQUEST for `request_id`; returns its Reply."""
        self.read_until(lambda: self.reply(request_id).ended, timeout, f"END_REQUEST of id {request_id}")
        return self.reply(request_id)

    def read_management(self, timeout: float | None = None) -> Record:
        n = len(self.management)
        self.read_until(lambda: len(self.management) > n, timeout, "a management record")
        return self.management[n]

    def records_within(self, seconds: float) -> list[Record]:
        """Every record that arrives within `seconds` (stops early at EOF)."""
        got = []
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return got
            try:
                record = self.read_record(left)
            except socket.timeout:
                return got
            if record is None:
                return got
            got.append(record)

    def closed_by_peer(self, timeout: float = 5.0) -> bool:
        """Reads (and keeps) records until EOF; False if still open after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.read_record(max(0.001, deadline - time.monotonic())) is None:
                    return True
            except socket.timeout:
                return False
