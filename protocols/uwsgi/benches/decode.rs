//! uwsgi head decoding, in bytes per second: a browser's GET as nginx 1.22
//! sends it through the stock `/etc/nginx/uwsgi_params` (21 vars), and the
//! same with a 16 KiB cookie. Timed: decoding a filled buffer (filling it,
//! and dropping the `Request` and so the buffer, are not).
//!
//! `cargo bench -p rustgi-uwsgi -- --warm-up-time 1 --measurement-time 3`

use bytes::BytesMut;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rustgi_model::StreamProtocol;
use rustgi_model::sample::{ParamsFile, SampleRequest, cookies, nginx_params};
use rustgi_uwsgi::Uwsgi;
use rustgi_uwsgi::client::{encode_vars, packet};

fn decode(c: &mut Criterion) {
    let uwsgi = Uwsgi::default();
    let mut group = c.benchmark_group("uwsgi");
    for (name, cookie) in cookies() {
        let params = nginx_params(ParamsFile::Uwsgi, &SampleRequest::get(&cookie));
        let wire = packet(
            0,
            0,
            &encode_vars(params.iter().map(|p| (&p.name, &p.value))),
        );
        let decoded = uwsgi.decode_head(&mut BytesMut::from(&wire[..]));
        assert_eq!(
            decoded
                .expect("a valid head")
                .expect("a whole head")
                .params
                .len(),
            21
        );
        group.throughput(Throughput::Bytes(wire.len() as u64));
        let fill = || BytesMut::from(&wire[..]);
        group.bench_function(name, |b| {
            b.iter_batched(
                fill,
                |mut buf| uwsgi.decode_head(&mut buf),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
