//! FastCGI decoding through the sans-I/O `Connection`, in bytes per second:
//! a browser's GET as nginx 1.22 sends it through the stock
//! `/etc/nginx/fastcgi_params` (27 params: BEGIN_REQUEST, one PARAMS record,
//! the empty PARAMS and STDIN records), the same with a 16 KiB cookie, and a
//! POST with a 64 KiB body in 32 KiB STDIN records (as nginx sent
//! `fixtures/fastcgi/post_large.bin`). Timed: a new `Connection` receiving
//! a filled buffer, and polling every event (filling the buffer, and
//! dropping the events and so the buffer, are not).
//!
//! `cargo bench -p rustgi-fastcgi -- --warm-up-time 1 --measurement-time 3`

use bytes::BytesMut;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rustgi_fastcgi::client::{encode_begin_request, encode_params, encode_stream};
use rustgi_fastcgi::{Config, Connection, Event, RecordType};

/// The params in nginx's order: `fastcgi_params`, then the client's headers.
fn params(
    method: &str,
    content_type: &str,
    content_length: &str,
    cookie: &str,
) -> Vec<(String, String)> {
    [
        ("QUERY_STRING", "page=2&sort=new"),
        ("REQUEST_METHOD", method),
        ("CONTENT_TYPE", content_type),
        ("CONTENT_LENGTH", content_length),
        ("SCRIPT_NAME", "/articles/2026/11/rustgi"),
        ("REQUEST_URI", "/articles/2026/11/rustgi?page=2&sort=new"),
        ("DOCUMENT_URI", "/articles/2026/11/rustgi"),
        ("DOCUMENT_ROOT", "/usr/share/nginx/html"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("REQUEST_SCHEME", "http"),
        ("GATEWAY_INTERFACE", "CGI/1.1"),
        ("SERVER_SOFTWARE", "nginx/1.22.1"),
        ("REMOTE_ADDR", "192.0.2.17"),
        ("REMOTE_PORT", "51234"),
        ("REMOTE_USER", ""),
        ("SERVER_ADDR", "192.0.2.1"),
        ("SERVER_PORT", "80"),
        ("SERVER_NAME", "example.org"),
        ("REDIRECT_STATUS", "200"),
        // What Firefox sends for a page, as nginx forwards it.
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
    .map(|(name, value)| (name.to_string(), value.to_string()))
    .collect()
}

/// Request id 1, RESPONDER, no KEEP_CONN (nginx's default): BEGIN_REQUEST,
/// the PARAMS stream in one record, then STDIN in records of `stdin_chunk`.
fn connection_bytes(params: &[(String, String)], body: &[u8], stdin_chunk: usize) -> Vec<u8> {
    let pairs: Vec<(&[u8], &[u8])> = params
        .iter()
        .map(|(name, value)| (name.as_bytes(), value.as_bytes()))
        .collect();
    let mut wire = Vec::new();
    encode_begin_request(1, 1, false, &mut wire);
    encode_params(1, &pairs, 65535, &mut wire);
    encode_stream(RecordType::Stdin, 1, body, stdin_chunk, &mut wire);
    wire
}

/// Receives `buf` on a new connection and returns its events.
fn receive(mut buf: BytesMut) -> Vec<Event> {
    let mut connection = Connection::new(Config::default());
    connection.receive(&mut buf).expect("valid records");
    std::iter::from_fn(|| connection.poll_event()).collect()
}

fn decode(c: &mut Criterion) {
    let session = "sessionid=3f9a1c7e5b2d4f6a8c0e1b3d5f7a9c2e; csrftoken=Zx8Kq2Lm4Np6Rt8Vw0Yb";
    let big = format!("big={}", "x".repeat(16 * 1024 - 4));
    let body: Vec<u8> = (0..64 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    let get = |cookie| connection_bytes(&params("GET", "", "", cookie), b"", 32768);
    let post = params("POST", "application/octet-stream", "65536", session);
    // (name, bytes, events: Request, Stdin per record, StdinEnd)
    let cases = [
        ("nginx_get", get(session), 2),
        ("cookie_16k", get(&big), 2),
        ("stdin_64k", connection_bytes(&post, &body, 32768), 4),
    ];

    let mut group = c.benchmark_group("fastcgi");
    for (name, wire, events) in &cases {
        let received = receive(BytesMut::from(&wire[..]));
        assert_eq!(received.len(), *events);
        match &received[0] {
            Event::Request { request, .. } => assert_eq!(request.params.len(), 27),
            other => panic!("expected a request, got {other:?}"),
        }
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_function(*name, |b| {
            b.iter_batched(|| BytesMut::from(&wire[..]), receive, BatchSize::SmallInput)
        });
    }
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
