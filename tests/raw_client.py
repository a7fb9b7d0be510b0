"""What the raw clients share (SCGI in harness.py, uwsgi in uwsgi_client.py,
FastCGI in fcgi_client.py): the socket exchange and the response heads.

Written from the protocols' descriptions and CGI's; it shares nothing with
the Rust side, so that each checks the other.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass


def as_bytes(x) -> bytes:
    """bytes as they are; anything else as its str, in latin-1."""
    return x if isinstance(x, bytes) else str(x).encode("latin-1")


# --------------------------------------------------------------------------
# the exchange


class ConnectionKeptOpen(AssertionError):
    pass


def connect(address: str, timeout: float = 10.0) -> socket.socket:
    """A connected socket: a Unix socket path, or HOST:PORT."""
    if address.startswith("/"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        target = address
    else:
        host, port = address.rsplit(":", 1)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        target = (host, int(port))
    sock.settimeout(timeout)
    try:
        sock.connect(target)
    except BaseException:
        sock.close()
        raise
    return sock


def read_until_eof(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Reads until the peer closes (an RST counts as a close). Raises
    ConnectionKeptOpen if it has not closed after `timeout` seconds."""
    received = b""
    deadline = time.monotonic() + timeout
    while True:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(256 * 1024)
        except ConnectionResetError:
            return received
        except socket.timeout:
            raise ConnectionKeptOpen(
                f"connection still open after {timeout}s (received {len(received)} bytes: "
                f"{received[:200]!r})"
            )
        if not chunk:
            return received
        received += chunk


def exchange(address: str, data: bytes | list[bytes], *, shut_wr: bool = False,
             pause: float = 0.0, timeout: float = 10.0) -> bytes:
    """Connects, sends `data` (bytes, or a list of pieces sent one by one
    with `pause` seconds between them), tolerating an early close by the
    peer, optionally shuts down our write side, and reads until the peer
    closes. Returns what was received; raises ConnectionKeptOpen if the peer
    has not closed after `timeout` seconds."""
    pieces = [data] if isinstance(data, (bytes, bytearray)) else list(data)
    with connect(address, timeout) as sock:
        try:
            for i, piece in enumerate(pieces):
                if i and pause:
                    time.sleep(pause)
                sock.sendall(piece)
            if shut_wr:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the gateway may close as soon as it sees bad input
        except socket.timeout:
            raise AssertionError(
                f"sending stalled for {timeout}s: the peer stopped reading "
                f"(sent part of {sum(len(p) for p in pieces)} bytes)"
            )
        return read_until_eof(sock, timeout)


# --------------------------------------------------------------------------
# response heads


class HeaderList:
    """Lookup in `self.headers`, a list of (name, value) in the order sent."""

    headers: list[tuple[str, str]]

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def header_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


@dataclass
class CgiResponse(HeaderList):
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def parse_cgi_response(raw: bytes, *, default_status: int | None = None,
                       http_status_line: bool = True) -> CgiResponse:
    """Parses a CGI-style response (`Status: 200 OK` + headers, blank line,
    body). With `http_status_line`, a response starting with an HTTP status
    line is accepted too. Without a status, `default_status` (CGI's 200 for
    FastCGI), or a failure when None."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep, f"no end of response head in {raw[:300]!r}"
    lines = head.decode("latin-1").split("\r\n")
    status = None
    headers = []
    if http_status_line and lines and lines[0].startswith("HTTP/"):
        status = int(lines[0].split()[1])
        lines = lines[1:]
    for line in lines:
        name, colon, value = line.partition(":")
        assert colon, f"bad header line {line!r}"
        name, value = name.strip(), value.strip()
        if name.lower() == "status":
            status = int(value.split()[0])
        else:
            headers.append((name, value))
    if status is None:
        status = default_status
    assert status is not None, f"no status in {head!r}"
    return CgiResponse(status, headers, body)
