//! Property tests of the FastCGI connection state machine: any bytes, cut
//! anywhere, give events or a typed error and never a panic, the same
//! however they are cut; and what the client encoders write, multiplexed,
//! padded and cut at random, decodes to the same requests and bodies.

use bytes::BytesMut;
use proptest::prelude::*;
use rustgi_fastcgi::client::{
    Record, encode_abort_request, encode_begin_request, encode_get_values, encode_params,
    encode_record, encode_stream, joined, records, stdin_data,
};
use rustgi_fastcgi::{Config, Connection, Event, ProtocolError, RecordType, Role};
use rustgi_model::Param;
use rustgi_model::testing::mutate;

/// Feeds `bytes` cut at `cuts` (sorted or not: they are clamped and
/// sorted), and returns the events with adjacent body chunks joined, and
/// the first error.
fn feed(
    config: &Config,
    bytes: &[u8],
    cuts: &[usize],
) -> (Vec<Event>, Result<(), ProtocolError>, Vec<u8>) {
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(bytes.len())).collect();
    cuts.push(bytes.len());
    cuts.sort_unstable();
    let mut conn = Connection::new(config.clone());
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    let mut result = Ok(());
    let mut from = 0;
    for cut in cuts {
        buf.extend_from_slice(&bytes[from..cut]);
        from = cut;
        let before = buf.len();
        let offset = conn.offset();
        result = conn.receive(&mut buf);
        if result.is_ok() {
            assert_eq!(
                (before - buf.len()) as u64,
                conn.offset() - offset,
                "consumed what it decoded"
            );
        }
        while let Some(e) = conn.poll_event() {
            events.push(e);
        }
        if result.is_err() {
            // Sticky.
            assert_eq!(conn.receive(&mut buf), result);
            break;
        }
    }
    if result.is_ok() {
        let eof = conn.receive_eof(&buf);
        assert_eq!(eof.is_ok(), buf.is_empty());
    }
    let mut out = Vec::new();
    conn.take_output(&mut out);
    (joined(events), result, out)
}

/// A request as a web server might send it.
#[derive(Clone, Debug)]
struct Req {
    id: u16,
    role: Role,
    keep_conn: bool,
    params: Vec<(Vec<u8>, Vec<u8>)>,
    /// Where CONTENT_LENGTH goes among the params, if sent.
    content_length_at: Option<usize>,
    body: Vec<u8>,
    params_chunk: usize,
    body_chunk: usize,
}

impl Req {
    fn all_params(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut params = self.params.clone();
        if let Some(at) = self.content_length_at {
            let at = at.min(params.len());
            params.insert(
                at,
                (
                    b"CONTENT_LENGTH".to_vec(),
                    self.body.len().to_string().into_bytes(),
                ),
            );
        }
        params
    }

    /// Its records, in order.
    fn records(&self) -> Vec<Record> {
        let mut bytes = Vec::new();
        encode_begin_request(self.id, self.role.code(), self.keep_conn, &mut bytes);
        let params = self.all_params();
        let refs: Vec<(&[u8], &[u8])> = params.iter().map(|(n, v)| (&n[..], &v[..])).collect();
        encode_params(self.id, &refs, self.params_chunk, &mut bytes);
        encode_stream(
            RecordType::Stdin,
            self.id,
            &self.body,
            self.body_chunk,
            &mut bytes,
        );
        records(&bytes).unwrap()
    }
}

fn name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 1..20),
        prop::collection::vec(any::<u8>(), 120..140),
    ]
    .prop_filter("CONTENT_LENGTH is placed on purpose", |n| {
        n.as_slice() != b"CONTENT_LENGTH"
    })
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 0..40),
        1 => prop::collection::vec(any::<u8>(), 100..400),
    ]
}

fn req(id: u16) -> impl Strategy<Value = Req> {
    (
        prop_oneof![Just(Role::Responder), Just(Role::Authorizer)],
        any::<bool>(),
        prop::collection::vec((name(), value()), 0..8),
        prop::option::of(0usize..8),
        prop::collection::vec(any::<u8>(), 0..600),
        1usize..300,
        1usize..300,
    )
        .prop_map(
            move |(role, keep_conn, params, content_length_at, body, params_chunk, body_chunk)| {
                Req {
                    id,
                    role,
                    keep_conn,
                    params,
                    content_length_at,
                    body,
                    params_chunk,
                    body_chunk,
                }
            },
        )
}

/// Up to four requests with distinct ids, their records interleaved in a
/// random order that keeps each request's own order, each record re-padded
/// with 0 to 16 bytes; and cut points.
fn multiplexed() -> impl Strategy<Value = (Vec<Req>, Vec<u8>, Vec<usize>)> {
    (1usize..=4)
        .prop_flat_map(|n| {
            let reqs: Vec<_> = (0..n).map(|i| req(i as u16 * 7 + 1)).collect();
            (
                reqs,
                prop::collection::vec(any::<prop::sample::Index>(), 0..400),
                prop::collection::vec(0u8..=16, 0..400),
            )
        })
        .prop_flat_map(|(reqs, picks, pads)| {
            let mut queues: Vec<std::collections::VecDeque<Record>> =
                reqs.iter().map(|r| r.records().into()).collect();
            let mut bytes = Vec::new();
            let mut k = 0;
            while queues.iter().any(|q| !q.is_empty()) {
                let live: Vec<usize> = (0..queues.len())
                    .filter(|&i| !queues[i].is_empty())
                    .collect();
                let pick = picks.get(k).map_or(0, |p| p.index(live.len()));
                let record = queues[live[pick]].pop_front().unwrap();
                let pad = pads.get(k).copied().unwrap_or(0);
                encode_record(
                    record.header.record_type,
                    record.header.request_id,
                    &record.content,
                    pad,
                    &mut bytes,
                );
                k += 1;
            }
            let len = bytes.len();
            (
                Just(reqs),
                Just(bytes),
                prop::collection::vec(0..=len, 0..12),
            )
        })
}

/// Bytes near valid ones: a request (plus management records) with one
/// byte changed, removed or inserted.
fn near_valid() -> impl Strategy<Value = Vec<u8>> {
    (
        multiplexed(),
        any::<prop::sample::Index>(),
        any::<u8>(),
        0..3u8,
    )
        .prop_map(|((_, mut bytes, _), at, byte, how)| {
            encode_get_values(&[b"FCGI_MAX_CONNS", b"X"], &mut bytes);
            encode_abort_request(1, &mut bytes);
            let at = at.index(bytes.len());
            mutate(bytes, at, byte, how)
        })
}

/// Records with version 1, small ids, mostly the types a web server sends,
/// with any content: the state machine's paths, not just header errors.
fn record_soup() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        (
            prop_oneof![
                8 => prop::sample::select(vec![1u8, 2, 4, 5, 8]),
                1 => 0u8..14,
            ],
            0u16..4,
            prop_oneof![
                Just(vec![0, 1, 1, 0, 0, 0, 0, 0]),
                Just(vec![0, 3, 0, 0, 0, 0, 0, 0]),
                Just(vec![]),
                prop::collection::vec(any::<u8>(), 0..30),
            ],
            0u8..9,
        ),
        0..30,
    )
    .prop_map(|records| {
        let mut bytes = Vec::new();
        for (t, id, content, pad) in records {
            encode_record(t, id, &content, pad, &mut bytes);
        }
        bytes
    })
}

fn any_input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        near_valid(),
        record_soup(),
    ]
}

fn config() -> impl Strategy<Value = Config> {
    (0usize..300, 0usize..4, any::<bool>()).prop_map(|(max_params_size, per_conn, multiplex)| {
        Config {
            max_params_size,
            max_requests_per_connection: per_conn,
            multiplex,
            ..Config::default()
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Any bytes, cut anywhere: events and maybe an error, never a panic,
    /// and the same events and error however they are cut.
    #[test]
    fn any_bytes_any_cuts(
        bytes in any_input(),
        cuts in prop::collection::vec(any::<usize>(), 0..10),
        config in prop_oneof![Just(Config::default()), config()],
    ) {
        let cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        let whole = feed(&config, &bytes, &[]);
        let split = feed(&config, &bytes, &cuts);
        prop_assert_eq!(whole, split);
    }

    /// Multiplexed requests from the client encoders, records interleaved
    /// and re-padded, bytes cut at random: each request's params, in order,
    /// and its body come back.
    #[test]
    fn round_trip((reqs, bytes, cuts) in multiplexed()) {
        let (events, result, out) = feed(&Config::default(), &bytes, &cuts);
        prop_assert_eq!(result, Ok(()));
        prop_assert!(out.is_empty(), "nothing unsolicited");
        for r in &reqs {
            let mine: Vec<&Event> = events
                .iter()
                .filter(|e| match e {
                    Event::Request { id, .. } | Event::Stdin { id, .. } | Event::StdinEnd { id } => {
                        *id == r.id
                    }
                    _ => false,
                })
                .collect();
            let Event::Request { role, keep_conn, content_length, request, .. } = mine[0] else {
                panic!("first event of {}: {:?}", r.id, mine[0]);
            };
            prop_assert_eq!(*role, r.role);
            prop_assert_eq!(*keep_conn, r.keep_conn);
            let expected: Vec<Param> = r
                .all_params()
                .into_iter()
                .map(|(n, v)| Param::new(n, v))
                .collect();
            prop_assert_eq!(&request.params, &expected);
            let declared = r.content_length_at.map(|_| r.body.len() as u64);
            prop_assert_eq!(*content_length, declared);
            prop_assert_eq!(request.content_length, declared.unwrap_or(0));
            let body = stdin_data(mine.iter().copied());
            prop_assert_eq!(&body, &r.body);
            prop_assert_eq!(mine.last().copied(), Some(&Event::StdinEnd { id: r.id }));
        }
    }

    /// Params over the limit are refused, and only those.
    #[test]
    fn the_params_limit((reqs, bytes, _) in multiplexed(), limit in 0usize..2000) {
        let config = Config { max_params_size: limit, ..Config::default() };
        let (_, result, _) = feed(&config, &bytes, &[]);
        let over = reqs.iter().any(|r| {
            let params = r.all_params();
            let size: usize = params
                .iter()
                .map(|(n, v)| {
                    let len = |x: usize| if x < 128 { 1 } else { 4 };
                    len(n.len()) + len(v.len()) + n.len() + v.len()
                })
                .sum();
            size > limit
        });
        match result {
            Ok(()) => prop_assert!(!over),
            Err(ProtocolError::ParamsTooLarge { limit: l, .. }) => {
                prop_assert!(over);
                prop_assert_eq!(l, limit);
            }
            Err(e) => prop_assert!(false, "{}", e),
        }
    }
}
