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
use rustgi_model::sample::{ParamsFile, SampleRequest, cookies, nginx_params};

/// Request id 1, RESPONDER, no KEEP_CONN (nginx's default): BEGIN_REQUEST,
/// the PARAMS stream in one record, then STDIN in records of `stdin_chunk`.
fn connection_bytes(request: &SampleRequest, body: &[u8], stdin_chunk: usize) -> Vec<u8> {
    let params = nginx_params(ParamsFile::Fastcgi, request);
    let pairs: Vec<(&[u8], &[u8])> = params.iter().map(|p| (&p.name[..], &p.value[..])).collect();
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
    let body: Vec<u8> = (0..64 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    let [(get_name, session), (big_name, big)] = cookies();
    let get = |cookie| connection_bytes(&SampleRequest::get(cookie), b"", 32768);
    let post = SampleRequest {
        method: "POST",
        content_type: "application/octet-stream",
        content_length: "65536",
        cookie: &session,
    };
    // (name, bytes, events: Request, Stdin per record, StdinEnd)
    let cases = [
        (get_name, get(&session), 2),
        (big_name, get(&big), 2),
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
