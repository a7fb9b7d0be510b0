//! SCGI head decoding, in bytes per second: a browser's GET as nginx 1.22
//! sends it through the stock `/etc/nginx/scgi_params` (22 params), and the
//! same with a 16 KiB cookie. Timed: decoding a filled buffer (filling it,
//! and dropping the `Request` and so the buffer, are not).
//!
//! `cargo bench -p rustgi-scgi -- --warm-up-time 1 --measurement-time 3`

use bytes::BytesMut;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rustgi_model::StreamProtocol;
use rustgi_model::sample::{ParamsFile, SampleRequest, cookies, nginx_params};
use rustgi_scgi::{Scgi, client::encode_request};

fn decode(c: &mut Criterion) {
    let scgi = Scgi::default();
    let mut group = c.benchmark_group("scgi");
    for (name, cookie) in cookies() {
        let params = nginx_params(ParamsFile::Scgi, &SampleRequest::get(&cookie));
        let wire = encode_request(params.iter().map(|p| (&p.name, &p.value)), b"");
        let request = scgi
            .decode_head(&mut BytesMut::from(&wire[..]))
            .expect("a valid head")
            .expect("a whole head");
        assert_eq!(request.params.len(), 22);
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_function(name, |b| {
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
