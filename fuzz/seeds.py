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
    for path in sorted((FIXTURES / "fastcgi").glob("*.bin")):
        data = path.read_bytes()
        add("fastcgi_connection", data)
        add("fastcgi_records", params_stream(data))
    # GET_VALUES as nginx never sends it but the spec has it.
    names = b"".join(bytes([len(n), 0]) + n for n in (b"FCGI_MAX_CONNS", b"FCGI_MAX_REQS", b"FCGI_MPXS_CONNS"))
    add("fastcgi_records", names)
    get_values = struct.pack(">BBHHBB", 1, 9, 0, len(names), 0, 0) + names
    add("fastcgi_connection", get_values)
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
