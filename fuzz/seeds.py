#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into CORPUS_DIR/<target>/,
from the captures in fixtures/ and a few hand-written bodies. Run by
fuzz/run and fuzz/ci; nothing it writes is committed.

Every target's input is `n control[n] stream` (fuzz/src/lib.rs): a seed is
a stream with n = 0 (defaults, fed whole), plus the same stream with a few
control bytes, so that the fuzzer starts from cut and limited variants too.
"""

import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"


def seed(control: bytes, stream: bytes) -> bytes:
    return bytes([len(control)]) + control + stream


def fastcgi_records(data: bytes):
    """(type, id, content) of each whole record."""
    at = 0
    while at + 8 <= len(data):
        _v, rtype, rid, clen, plen, _r = struct.unpack(">BBHHBB", data[at : at + 8])
        yield rtype, rid, data[at + 8 : at + 8 + clen]
        at += 8 + clen + plen


def params_stream(data: bytes) -> bytes:
    return b"".join(c for t, _i, c in fastcgi_records(data) if t == 4)


def record(rtype: int, rid: int, content: bytes, padding: int = 0) -> bytes:
    return struct.pack(">BBHHBB", 1, rtype, rid, len(content), padding, 0) + content + bytes(padding)


def pair(name: bytes, value: bytes) -> bytes:
    def length(n: int) -> bytes:
        return bytes([n]) if n < 128 else struct.pack(">I", n | 0x80000000)
    return length(len(name)) + length(len(value)) + name + value


def pairs(stream: bytes):
    at = 0
    while at < len(stream):
        lengths = []
        for _ in range(2):
            if stream[at] < 128:
                lengths.append(stream[at])
                at += 1
            else:
                lengths.append(struct.unpack(">I", stream[at : at + 4])[0] & 0x7FFFFFFF)
                at += 4
        name = stream[at : at + lengths[0]]
        value = stream[at + lengths[0] : at + lengths[0] + lengths[1]]
        at += lengths[0] + lengths[1]
        yield name, value


def compact_request(params: bytes, rid: int, body: bytes, role: int = 1, keep: bool = True,
                    data: bytes | None = None) -> bytes:
    """One request as nginx would send it, with a short body whose length
    CONTENT_LENGTH states, STDIN cut in two records: small enough for
    -max_len, whole enough that a mutation reaches the body's checks."""
    kept = [(n, v) for n, v in pairs(params) if n != b"CONTENT_LENGTH"]
    stream = pair(b"CONTENT_LENGTH", str(len(body)).encode()) + b"".join(pair(n, v) for n, v in kept)
    if data is not None:
        stream += pair(b"FCGI_DATA_LENGTH", str(len(data)).encode())
    out = record(1, rid, struct.pack(">HB5x", role, int(keep)))
    out += record(4, rid, stream, (-len(stream)) % 8) + record(4, rid, b"")
    half = len(body) // 2
    for part in (body[:half], body[half:]):
        if part:
            out += record(5, rid, part)
    out += record(5, rid, b"")
    if data is not None:
        out += record(8, rid, data) + record(8, rid, b"")
    return out


CHUNKED = [
    b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nT: v\r\n\r\n",
    b"0\r\n\r\n",
    b"1A ; name=\"va;lue\"\r\n" + b"z" * 26 + b"\r\n0\r\nExpires: never\r\n\r\nNEXT",
    b"ffffffffffffffff\r\n",
    b"5\r\nhello\r\n0000\r\n\r\n",
]

LENGTHS = [b"0", b"1234", b"18446744073709551615", b"18446744073709551616", b"12\x0012", b"", b"007\x007"]


def main() -> None:
    out = Path(sys.argv[1])
    corpora: dict[str, list[bytes]] = {}

    def add(target: str, stream: bytes, controls=(b"", b"\x00\x04\x10\x40\x80\xff\x20\x08\x30")):
        for control in controls:
            corpora.setdefault(target, []).append(seed(control, stream))

    for proto in ("scgi", "uwsgi"):
        for path in sorted((FIXTURES / proto).glob("*.bin")):
            add(f"{proto}_head", path.read_bytes())
    # uwsgi's chunked extension: Transfer-Encoding chunked, no CONTENT_LENGTH.
    uvars = b"".join(
        struct.pack("<H", len(k)) + k + struct.pack("<H", len(v)) + v
        for k, v in [(b"REQUEST_METHOD", b"POST"), (b"SERVER_PROTOCOL", b"HTTP/1.1"),
                     (b"HTTP_TRANSFER_ENCODING", b"chunked"), (b"PATH_INFO", b"/up")]
    )
    for body in CHUNKED[:3]:
        add("uwsgi_head", struct.pack("<BHB", 0, len(uvars), 0) + uvars + body)
    for path in sorted((FIXTURES / "fastcgi").glob("*.bin")):
        data = path.read_bytes()
        add("fastcgi_connection", data)
        add("fastcgi_records", params_stream(data))
    # Compact requests from the GET capture's params: with a body, two
    # multiplexed with an abort between, an AUTHORIZER, a FILTER with DATA.
    params = params_stream((FIXTURES / "fastcgi" / "get.bin").read_bytes())
    body = b"name=caf%C3%A9&x=" + bytes(range(40))
    add("fastcgi_connection", compact_request(params, 1, body))
    add("fastcgi_connection", compact_request(params, 1, body, keep=True) + compact_request(params, 1, b"", keep=False))
    one, two = compact_request(params, 1, body), compact_request(params, 2, b"abc")
    add("fastcgi_connection", one[:200] + two + record(2, 1, b"") + one[200:])
    add("fastcgi_connection", compact_request(params, 3, b"", role=2))
    add("fastcgi_connection", compact_request(params, 4, body, role=3, data=b"file to filter"))
    # GET_VALUES as nginx never sends it but the spec has it.
    names = b"".join(bytes([len(n), 0]) + n for n in (b"FCGI_MAX_CONNS", b"FCGI_MAX_REQS", b"FCGI_MPXS_CONNS"))
    add("fastcgi_records", names)
    get_values = struct.pack(">BBHHBB", 1, 9, 0, len(names), 0, 0) + names
    add("fastcgi_connection", get_values)
    # AJP: Apache's captures as a connection reads them (a forward request,
    # then its body packets), and lighttpd's.
    ajp = FIXTURES / "ajp"
    add("ajp_connection", (ajp / "get_query_cookie.bin").read_bytes())
    add("ajp_connection", (ajp / "patch_stored_method.bin").read_bytes() + b"\x12\x34\x00\x01\x0a")
    add("ajp_connection", (ajp / "post_head.bin").read_bytes() + (ajp / "post_body_packets.bin").read_bytes())
    add("ajp_connection", (ajp / "chunked_head.bin").read_bytes() + (ajp / "body_end.bin").read_bytes())
    add("ajp_connection", (ajp / "lighttpd_get.bin").read_bytes())
    for body in CHUNKED:
        add("chunked", body)
        add("body_framing", body)
    for value in LENGTHS:
        add("body_framing", value, controls=(b"\x00\x02",))

    for target, seeds in corpora.items():
        directory = out / target
        directory.mkdir(parents=True, exist_ok=True)
        for i, data in enumerate(seeds):
            (directory / f"seed-{i:03}").write_bytes(data)
    print(f"seeds: {', '.join(f'{t} {len(s)}' for t, s in sorted(corpora.items()))}")


if __name__ == "__main__":
    main()
