//! uwsgi head decoding, in bytes per second: a browser's GET as nginx 1.22
//! sends it through the stock `/etc/nginx/uwsgi_params` (21 vars), and the
//! same with a 16 KiB cookie. Timed: decoding a filled buffer (filling it,
//! and dropping the `Request` and so the buffer, are not).
//!
//! `cargo bench -p rustgi-uwsgi -- --warm-up-time 1 --measurement-time 3`

use bytes::BytesMut;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rustgi_model::StreamProtocol;
use rustgi_uwsgi::Uwsgi;

/// The vars in nginx's order: `uwsgi_params`, then the client's headers.
fn params(cookie: &str) -> Vec<(&'static str, String)> {
    let mut params: Vec<(&'static str, String)> = [
        ("QUERY_STRING", "page=2&sort=new"),
        ("REQUEST_METHOD", "GET"),
        ("CONTENT_TYPE", ""),
        ("CONTENT_LENGTH", ""),
        ("REQUEST_URI", "/articles/2026/11/rustgi?page=2&sort=new"),
        ("PATH_INFO", "/articles/2026/11/rustgi"),
        ("DOCUMENT_ROOT", "/usr/share/nginx/html"),
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

/// `modifier1=0 datasize:u16le modifier2=0 (keylen:u16le key vallen:u16le value)*`
fn packet(params: &[(&str, String)]) -> Vec<u8> {
    let mut vars = Vec::new();
    for (name, value) in params {
        for part in [name.as_bytes(), value.as_bytes()] {
            let len = u16::try_from(part.len()).expect("a var under 64 KiB");
            vars.extend_from_slice(&len.to_le_bytes());
            vars.extend_from_slice(part);
        }
    }
    let size = u16::try_from(vars.len()).expect("a vars block under 64 KiB");
    let mut wire = vec![0];
    wire.extend_from_slice(&size.to_le_bytes());
    wire.push(0);
    wire.extend_from_slice(&vars);
    wire
}

fn decode(c: &mut Criterion) {
    let session = "sessionid=3f9a1c7e5b2d4f6a8c0e1b3d5f7a9c2e; csrftoken=Zx8Kq2Lm4Np6Rt8Vw0Yb";
    let big = format!("big={}", "x".repeat(16 * 1024 - 4));
    let cases = [
        ("nginx_get", packet(&params(session))),
        ("cookie_16k", packet(&params(&big))),
    ];
    let uwsgi = Uwsgi::default();
    let mut group = c.benchmark_group("uwsgi");
    for (name, wire) in &cases {
        let request = uwsgi
            .decode_head(&mut BytesMut::from(&wire[..]))
            .expect("a valid head")
            .expect("a whole head");
        assert_eq!(request.params.len(), 21);
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_function(*name, |b| {
            b.iter_batched(
                || BytesMut::from(&wire[..]),
                |mut buf| uwsgi.decode_head(&mut buf),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
