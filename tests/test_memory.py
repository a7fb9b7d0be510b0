"""Memory: a 1 GiB upload and a 1 GiB download through nginx must not grow
the gateway's RSS by more than 30 MiB. The /mem/ location has response
buffering off, so nginx streams the download instead of buffering it; the
upload goes through request buffering (nginx spools it to a temp file),
because nginx 1.22 sends a wrong CONTENT_LENGTH with
scgi_request_buffering off (see test_conformance.py). Figures go to
tests/.run/rss.txt and to stdout (pytest -s)."""

import hashlib
import http.client
import time

import pytest
import requests

from harness import ARTIFACTS, GiB, MiB, pattern_block, pattern_sha256

ALLOWED_GROWTH_KIB = 30 * 1024
RSS_FILE = ARTIFACTS / "rss.txt"


def record(line: str):
    print(line)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with open(RSS_FILE, "a") as f:
        f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")


def upload(port: int, total: int, chunk: int = MiB) -> tuple[str, str]:
    """Streams `total` bytes of pattern from a generator with http.client;
    returns (the app's answer, the expected sha256)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    expected = hashlib.sha256()
    try:
        conn.putrequest("POST", "/mem/sha256")
        conn.putheader("Content-Length", str(total))
        conn.putheader("Content-Type", "application/octet-stream")
        conn.endheaders()
        for index in range(0, (total + chunk - 1) // chunk):
            block = pattern_block(index, min(chunk, total - index * chunk))
            expected.update(block)
            conn.send(block)
        resp = conn.getresponse()
        assert resp.status == 200, resp.read()[:500]
        return resp.read().decode(), expected.hexdigest()
    finally:
        conn.close()


def download(url: str) -> tuple[int, str]:
    h = hashlib.sha256()
    n = 0
    with requests.get(url, stream=True, timeout=60) as r:
        assert r.status_code == 200
        for piece in r.iter_content(MiB):
            h.update(piece)
            n += len(piece)
    return n, h.hexdigest()


@pytest.fixture(scope="module")
def warm_mem_gateway(nginx, mem_gateway):
    """The mem gateway after one modest upload and download, so that buffers
    and threads that are made once exist before the first measurement."""
    RSS_FILE.unlink(missing_ok=True)
    answer, expected = upload(nginx.port, 16 * MiB)
    assert answer.startswith(expected)
    n, _ = download(nginx.url(f"/mem/generate?bytes={16 * MiB}&chunk={MiB}"))
    assert n == 16 * MiB
    time.sleep(0.5)
    return mem_gateway


def test_1gib_upload_keeps_rss_flat(nginx, warm_mem_gateway):
    gw = warm_mem_gateway
    before = gw.rss_kib()
    answer, expected = upload(nginx.port, GiB)
    time.sleep(0.5)
    after = gw.rss_kib()
    record(f"upload 1 GiB: RSS before {before} KiB, after {after} KiB, growth {after - before} KiB")
    assert answer == f"{expected} {GiB} past_end=0", gw.describe()
    assert after - before <= ALLOWED_GROWTH_KIB, f"RSS grew by {(after - before) / 1024:.1f} MiB"


def test_1gib_download_keeps_rss_flat(nginx, warm_mem_gateway):
    gw = warm_mem_gateway
    before = gw.rss_kib()
    n, digest = download(nginx.url(f"/mem/generate?bytes={GiB}&chunk={MiB}"))
    time.sleep(0.5)
    after = gw.rss_kib()
    record(f"download 1 GiB: RSS before {before} KiB, after {after} KiB, growth {after - before} KiB")
    assert n == GiB, gw.describe()
    assert digest == pattern_sha256(GiB, MiB)
    assert after - before <= ALLOWED_GROWTH_KIB, f"RSS grew by {(after - before) / 1024:.1f} MiB"
