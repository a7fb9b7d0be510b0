//! SCGI head decoding, in bytes per second: a browser's GET as nginx 1.22
//! sends it through the stock `/etc/nginx/scgi_params` (22 params), and the
//! same with a 16 KiB cookie. Timed: decoding a filled buffer (filling it,
//! and dropping the `Request` and so the buffer, are not).
//!
//! `cargo bench -p rustgi-scgi -- --warm-up-time 1 --measurement-time 3`

use bytes::BytesMut;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rustgi_model::StreamProtocol;
use rustgi_scgi::Scgi;

/// The params in nginx's order: CONTENT_LENGTH first (SCGI requires it),
/// then `scgi_params`, then the client's headers.
fn params(cookie: &str) -> Vec<(&'static str, String)> {
    let mut params: Vec<(&'static str, String)> = [
        ("CONTENT_LENGTH", "0"),
        ("REQUEST_METHOD", "GET"),
        ("REQUEST_URI", "/articles/2026/11/rustgi?page=2&sort=new"),
        ("QUERY_STRING", "page=2&sort=new"),
        ("CONTENT_TYPE", ""),
        ("DOCUMENT_URI", "/articles/2026/11/rustgi"),
        ("DOCUMENT_ROOT", "/usr/share/nginx/html"),
        ("SCGI", "1"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("REQUEST_SCHEME", "http"),
        ("REMOTE_ADDR", "192.0.2.17"),
        ("REMOTE_PORT", "51234"),
        ("SERVER_PORT", "80"),
        ("SERVER_NAME", "example.org"),
    ]
    .into_iter()
    .map(|(name, value)| (name, value.to_string()))
    .collect();
    params.extend(browser_headers(cookie));
    params
}

/// What Firefox sends for a page, as nginx forwards it.
fn browser_headers(cookie: &str) -> Vec<(&'static str, String)> {
    [
        ("HTTP_HOST", "example.org"),
        (
            "HTTP_USER_AGENT",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        ),
        (
            "HTTP_ACCEPT",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        ("HTTP_ACCEPT_LANGUAGE", "en-GB,en;q=0.5"),
        ("HTTP_ACCEPT_ENCODING", "gzip, deflate, br, zstd"),
        ("HTTP_REFERER", "http://example.org/articles/"),
        ("HTTP_CONNECTION", "keep-alive"),
        ("HTTP_COOKIE", cookie),
    ]
    .into_iter()
    .map(|(name, value)| (name, value.to_string()))
    .collect()
}

/// `length ":" (name NUL value NUL)* ","`
fn netstring(params: &[(&str, String)]) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in params {
        block.extend_from_slice(name.as_bytes());
        block.push(0);
        block.extend_from_slice(value.as_bytes());
        block.push(0);
    }
    let mut wire = format!("{}:", block.len()).into_bytes();
    wire.extend_from_slice(&block);
    wire.push(b',');
    wire
}

fn decode(c: &mut Criterion) {
    let session = "sessionid=3f9a1c7e5b2d4f6a8c0e1b3d5f7a9c2e; csrftoken=Zx8Kq2Lm4Np6Rt8Vw0Yb";
    let big = format!("big={}", "x".repeat(16 * 1024 - 4));
    let cases = [
        ("nginx_get", netstring(&params(session))),
        ("cookie_16k", netstring(&params(&big))),
    ];
    let scgi = Scgi::default();
    let mut group = c.benchmark_group("scgi");
    for (name, wire) in &cases {
        let request = scgi
            .decode_head(&mut BytesMut::from(&wire[..]))
            .expect("a valid head")
            .expect("a whole head");
        assert_eq!(request.params.len(), 22);
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_function(*name, |b| {
            b.iter_batched(
                || BytesMut::from(&wire[..]),
                |mut buf| scgi.decode_head(&mut buf),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
