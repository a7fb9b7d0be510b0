"""A small AJP 1.3 client, written from the protocol's description (Apache
Tomcat's "AJPv13" connector reference): it plays the web server's side, as
mod_proxy_ajp does. It shares no code with the Rust crate (protocols/ajp),
so that the two are checked against each other.

Packets from the web server: 0x12 0x34, u16 length, payload. Packets back:
'A' 'B', u16 length, payload. Strings: u16 length, bytes, NUL (0xFFFF:
null). A forward request (prefix 2) is followed, when it has a
Content-Length, by the first body packet unasked; further body packets go
only in answer to GET_BODY_CHUNK (prefix 6), and an empty one ends a body.
The response: SEND_HEADERS (4), SEND_BODY_CHUNK (3), END_RESPONSE (5, reuse
flag); CPING (10) is answered by CPONG (9).
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field

METHODS = {
    "OPTIONS": 1, "GET": 2, "HEAD": 3, "POST": 4, "PUT": 5, "DELETE": 6, "TRACE": 7,
}
# SC_REQ_* codes of the coded request header names.
REQUEST_HEADER_CODES = {
    "accept": 0xA001, "accept-charset": 0xA002, "accept-encoding": 0xA003,
    "accept-language": 0xA004, "authorization": 0xA005, "connection": 0xA006,
    "content-type": 0xA007, "content-length": 0xA008, "cookie": 0xA009,
    "cookie2": 0xA00A, "host": 0xA00B, "pragma": 0xA00C, "referer": 0xA00D,
    "user-agent": 0xA00E,
}
RESPONSE_HEADER_NAMES = {
    0xA001: "Content-Type", 0xA002: "Content-Language", 0xA003: "Content-Length",
    0xA004: "Date", 0xA005: "Last-Modified", 0xA006: "Location", 0xA007: "Set-Cookie",
    0xA008: "Set-Cookie2", 0xA009: "Servlet-Engine", 0xA00A: "Status",
    0xA00B: "WWW-Authenticate",
}
# Attribute codes.
CONTEXT, SERVLET_PATH, REMOTE_USER, AUTH_TYPE, QUERY_STRING = 1, 2, 3, 4, 5
JVM_ROUTE, SSL_CERT, SSL_CIPHER, SSL_SESSION, REQ_ATTRIBUTE = 6, 7, 8, 9, 10
SSL_KEY_SIZE, SECRET, STORED_METHOD, ARE_DONE = 11, 12, 13, 0xFF


def string(value: bytes | str | None) -> bytes:
    if value is None:
        return b"\xff\xff"
    if isinstance(value, str):
        value = value.encode("latin-1")
    return struct.pack(">H", len(value)) + value + b"\x00"


def packet(payload: bytes) -> bytes:
    return b"\x12\x34" + struct.pack(">H", len(payload)) + payload


def body_packet(data: bytes) -> bytes:
    return packet(struct.pack(">H", len(data)) + data)


def forward_request(
    method: str = "GET",
    uri: str = "/",
    query: str | None = None,
    headers: list[tuple[str, str | bytes]] = (),
    secret: str | None = None,
    is_ssl: bool = False,
    attributes: list[tuple[int, bytes]] = (),
    remote_addr: str = "127.0.0.1",
    server_name: str = "localhost",
    server_port: int = 80,
) -> bytes:
    p = bytes([2, METHODS[method]])
    p += string("HTTP/1.1") + string(uri) + string(remote_addr) + string(None)
    p += string(server_name) + struct.pack(">H", server_port) + bytes([1 if is_ssl else 0])
    p += struct.pack(">H", len(headers))
    for name, value in headers:
        code = REQUEST_HEADER_CODES.get(name.lower())
        p += struct.pack(">H", code) if code else string(name)
        p += string(value)
    if query is not None:
        p += bytes([QUERY_STRING]) + string(query)
    if secret is not None:
        p += bytes([SECRET]) + string(secret)
    for code, value in attributes:
        p += bytes([code]) + value
    p += bytes([ARE_DONE])
    return packet(p)


@dataclass
class Response:
    status: int = 0
    reason: bytes = b""
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    body: bytes = b""
    reuse: bool | None = None  # None: the connection closed before END_RESPONSE
    chunks: list[int] = field(default_factory=list)  # SEND_BODY_CHUNK sizes
    asked: list[int] = field(default_factory=list)  # GET_BODY_CHUNK sizes

    def header(self, name: str) -> bytes | None:
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None


class Connection:
    """One connection to a gateway (Unix socket path, or (host, port))."""

    def __init__(self, where, timeout: float = 10.0):
        family = socket.AF_UNIX if isinstance(where, str) else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(where)
        self.pending = b""

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data: bytes):
        self.sock.sendall(data)

    def _exactly(self, n: int) -> bytes | None:
        while len(self.pending) < n:
            data = self.sock.recv(65536)
            if not data:
                return None
            self.pending += data
        out, self.pending = self.pending[:n], self.pending[n:]
        return out

    def read_packet(self) -> bytes | None:
        """The next container packet's payload; None at EOF."""
        head = self._exactly(4)
        if head is None:
            return None
        assert head[:2] == b"AB", f"bad reply magic {head!r}"
        (length,) = struct.unpack(">H", head[2:])
        return self._exactly(length)

    def closed(self) -> bool:
        """True when the gateway has closed the connection (EOF, or reset)."""
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def response(self, body_chunks: list[bytes] = ()) -> Response:
        """Reads one response, answering GET_BODY_CHUNK from `body_chunks`
        (then with the empty packet that ends a body)."""
        chunks = list(body_chunks)
        r = Response()
        while True:
            p = self.read_packet()
            if p is None:
                return r
            kind = p[0]
            if kind == 4:
                r.status, = struct.unpack(">H", p[1:3])
                at = 3
                r.reason, at = _string(p, at)
                (count,) = struct.unpack(">H", p[at:at + 2])
                at += 2
                for _ in range(count):
                    if p[at] == 0xA0:
                        (code,) = struct.unpack(">H", p[at:at + 2])
                        name = RESPONSE_HEADER_NAMES[code]
                        at += 2
                    else:
                        raw, at = _string(p, at)
                        name = raw.decode("latin-1")
                    value, at = _string(p, at)
                    r.headers.append((name, value))
            elif kind == 3:
                data, _ = _string(p, 1)
                r.body += data
                r.chunks.append(len(data))
            elif kind == 5:
                r.reuse = p[1] == 1
                return r
            elif kind == 6:
                (size,) = struct.unpack(">H", p[1:3])
                r.asked.append(size)
                self.send(body_packet(chunks.pop(0)) if chunks else packet(b"\x00\x00"))
            else:
                raise AssertionError(f"unexpected packet type {kind}: {p!r}")

    def request(self, *args, body: bytes = b"", chunk: int = 8186, **kw) -> Response:
        """Sends a forward request (with Content-Length when there is a
        body), the first body packet unasked, and answers the rest."""
        headers = list(kw.pop("headers", []))
        if body:
            headers.append(("Content-Length", str(len(body))))
        self.send(forward_request(*args, headers=headers, **kw))
        pieces = [body[i:i + chunk] for i in range(0, len(body), chunk)]
        if pieces:
            self.send(body_packet(pieces.pop(0)))
        return self.response(pieces)


def _string(p: bytes, at: int) -> tuple[bytes, int]:
    (length,) = struct.unpack(">H", p[at:at + 2])
    if length == 0xFFFF:
        return b"", at + 2
    value = p[at + 2:at + 2 + length]
    assert p[at + 2 + length] == 0, "string without its NUL"
    return value, at + 3 + length
