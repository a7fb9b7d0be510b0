"""A raw uwsgi client, written from the protocol description (uWSGI's
binary protocol, /work/shared/PROTOCOLS.md "uwsgi"); it shares no code with
the Rust encoders/decoders, so each checks the other.

A request is a 4-byte header, a block of vars, then the body:

    modifier1 (u8) | datasize (u16 little-endian) | modifier2 (u8)
    vars = repeated: keylen (u16 LE), key, vallen (u16 LE), value
    body = CONTENT_LENGTH bytes, or (no CONTENT_LENGTH and
           HTTP_TRANSFER_ENCODING: chunked) a chunked body

datasize is the length of the vars block, not of the body. The response is
a full HTTP response (`HTTP/1.1 200 OK`, headers, blank line, body) that
ends when the server closes the connection.

Everything here builds bytes by hand (struct.pack, concatenation) so that a
test can also build wrong ones: a length running past the block, an empty
key, a header that lies about the block's size, broken chunked framing.
"""

from __future__ import annotations

import random
import socket
import struct
from dataclasses import dataclass

from raw_client import ConnectionKeptOpen, HeaderList, as_bytes, connect, exchange, read_until_eof  # noqa: F401

HEADER = struct.Struct("<BHB")  # modifier1, datasize (LE), modifier2


# --------------------------------------------------------------------------
# encoding


def u16le(n: int) -> bytes:
    return struct.pack("<H", n)


def encode_var(key, value, *, key_len: int | None = None, value_len: int | None = None) -> bytes:
    """`keylen key vallen value`; the lengths may be overridden to lie."""
    k, v = as_bytes(key), as_bytes(value)
    return (u16le(len(k) if key_len is None else key_len) + k
            + u16le(len(v) if value_len is None else value_len) + v)


def encode_vars(pairs) -> bytes:
    return b"".join(encode_var(k, v) for k, v in pairs)


def encode_header(datasize: int, modifier1: int = 0, modifier2: int = 0) -> bytes:
    return HEADER.pack(modifier1, datasize, modifier2)


def encode_request(pairs, body: bytes = b"", *, modifier1: int = 0, modifier2: int = 0,
                   datasize: int | None = None) -> bytes:
    """Header + vars block + body. `datasize` overrides the block's length."""
    block = pairs if isinstance(pairs, bytes) else encode_vars(pairs)
    size = len(block) if datasize is None else datasize
    return encode_header(size, modifier1, modifier2) + block + body


def chunk_sizes(total: int, rng: random.Random, largest: int = 100_000) -> list[int]:
    """Random chunk sizes (each >= 1) that add up to `total`."""
    sizes = []
    left = total
    while left > 0:
        n = min(left, rng.randint(1, largest))
        sizes.append(n)
        left -= n
    return sizes


def encode_chunked(body: bytes, sizes=None, *, extensions: bool = False, trailers=()) -> bytes:
    """The chunked transfer coding (RFC 9112 §7.1) of `body`, cut at
    `sizes` (default: one chunk). Sizes in lower- or upper-case hex;
    `extensions` adds a `;name=value` to every size line; `trailers` are
    (name, value) lines after the last chunk."""
    if sizes is None:
        sizes = [len(body)] if body else []
    assert sum(sizes) == len(body) and all(s > 0 for s in sizes), "sizes must cover the body"
    out = []
    at = 0
    for i, size in enumerate(sizes):
        digits = f"{size:x}" if i % 2 == 0 else f"{size:X}"
        ext = f";piece={i}" if extensions else ""
        out.append(f"{digits}{ext}\r\n".encode() + body[at:at + size] + b"\r\n")
        at += size
    out.append(b"0" + (b";last" if extensions else b"") + b"\r\n")
    out.extend(as_bytes(k) + b": " + as_bytes(v) + b"\r\n" for k, v in trailers)
    out.append(b"\r\n")
    return b"".join(out)


def split_randomly(data: bytes, rng: random.Random, largest: int = 70_000) -> list[bytes]:
    """`data` cut at random points (pieces of 1..largest bytes)."""
    pieces = []
    at = 0
    while at < len(data):
        n = rng.randint(1, largest)
        pieces.append(data[at:at + n])
        at += n
    return pieces


def uwsgi_params(method: str = "GET", path: str = "/hello", *, body_len: int | None = 0,
                 query: str = "", protocol: str | None = "HTTP/1.1", script_name: str | None = None,
                 content_type: str = "", extra=()) -> list[tuple[bytes, bytes]]:
    """The vars nginx's stock uwsgi_params sends (PATH_INFO = the path, no
    SCRIPT_NAME unless `script_name` is given). `body_len=None` leaves
    CONTENT_LENGTH out altogether (nginx sends it empty for no body);
    `protocol=None` leaves SERVER_PROTOCOL out."""
    pairs = [
        ("QUERY_STRING", query),
        ("REQUEST_METHOD", method),
        ("CONTENT_TYPE", content_type),
    ]
    if body_len is not None:
        pairs.append(("CONTENT_LENGTH", str(body_len) if body_len else ""))
    pairs += [
        ("REQUEST_URI", path + ("?" + query if query else "")),
        ("PATH_INFO", path),
        ("DOCUMENT_ROOT", "/srv"),
    ]
    if protocol is not None:
        pairs.append(("SERVER_PROTOCOL", protocol))
    if script_name is not None:
        pairs.append(("SCRIPT_NAME", script_name))
    pairs += [
        ("REQUEST_SCHEME", "http"),
        ("REMOTE_ADDR", "127.0.0.1"),
        ("REMOTE_PORT", "40000"),
        ("SERVER_PORT", "80"),
        ("SERVER_NAME", "localhost"),
        ("HTTP_HOST", "localhost"),
    ]
    pairs += list(extra)
    return [(as_bytes(k), as_bytes(v)) for k, v in pairs]


# --------------------------------------------------------------------------
# the exchange


# connect, exchange, read_until_eof and ConnectionKeptOpen are raw_client's
# (imported above), used as uwsgi_client.exchange etc.


# --------------------------------------------------------------------------
# the response


@dataclass
class UwsgiResponse(HeaderList):
    status_line: str
    version: str
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes


class NotAnHttpResponse(AssertionError):
    pass


def parse_response(raw: bytes) -> UwsgiResponse:
    """Parses `HTTP/x.y NNN reason`, header lines, blank line, body (the rest:
    the response ends at EOF). Refuses a response without the HTTP status
    line, as Apache's mod_proxy_uwsgi does."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise NotAnHttpResponse(f"no end of response head in {raw[:300]!r}")
    lines = head.decode("latin-1").split("\r\n")
    status_line = lines[0]
    parts = status_line.split(" ", 2)
    if (len(parts) < 2 or not parts[0].startswith("HTTP/") or len(parts[0]) != 8
            or not parts[1].isdigit() or len(parts[1]) != 3):
        raise NotAnHttpResponse(f"not an HTTP status line: {status_line!r}")
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise NotAnHttpResponse(f"bad header line {line!r}")
        headers.append((name, value.strip()))
    return UwsgiResponse(
        status_line=status_line,
        version=parts[0],
        status=int(parts[1]),
        reason=parts[2] if len(parts) > 2 else "",
        headers=headers,
        body=body,
    )


def request(address: str, method: str = "GET", path: str = "/hello", body: bytes = b"", *,
            query: str = "", protocol: str | None = "HTTP/1.1", modifier1: int = 0,
            script_name: str | None = None, extra=(), timeout: float = 10.0) -> UwsgiResponse:
    """A well-formed request with a CONTENT_LENGTH body; the parsed response."""
    pairs = uwsgi_params(method, path, body_len=len(body), query=query, protocol=protocol,
                         script_name=script_name, extra=extra)
    return parse_response(exchange(address, encode_request(pairs, body, modifier1=modifier1),
                                   timeout=timeout))


# --------------------------------------------------------------------------
# decoding (for a capture server that records what a front server sends)


def decode_vars(block: bytes) -> list[tuple[bytes, bytes]]:
    """The (key, value) pairs of a well-formed vars block."""
    pairs = []
    at = 0
    while at < len(block):
        (klen,) = struct.unpack_from("<H", block, at)
        key = block[at + 2:at + 2 + klen]
        at += 2 + klen
        (vlen,) = struct.unpack_from("<H", block, at)
        value = block[at + 2:at + 2 + vlen]
        at += 2 + vlen
        if len(key) != klen or len(value) != vlen:
            raise ValueError(f"vars block cut inside a var at {at}")
        pairs.append((key, value))
    return pairs


def read_request(sock: socket.socket, timeout: float = 10.0) -> tuple[int, int, list, bytes]:
    """Reads one request (header, vars, CONTENT_LENGTH body) from `sock`;
    returns (modifier1, modifier2, pairs, body)."""
    sock.settimeout(timeout)
    buf = b""

    def need(n):
        nonlocal buf
        while len(buf) < n:
            chunk = sock.recv(65536)
            if not chunk:
                raise EOFError(f"closed after {len(buf)} of {n} bytes")
            buf += chunk

    need(4)
    modifier1, size, modifier2 = HEADER.unpack(buf[:4])
    need(4 + size)
    pairs = decode_vars(buf[4:4 + size])
    length = int(dict(pairs).get(b"CONTENT_LENGTH") or 0)
    need(4 + size + length)
    return modifier1, modifier2, pairs, buf[4 + size:4 + size + length]
