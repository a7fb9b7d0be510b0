//! FastCGI's record header and name-value pair decoders, checked against
//! the plain definitions in `rustgi_fuzz::pairs`:
//! - the stream's first 8 bytes as a record header, and a search for
//!   ABORT_REQUEST among whole records;
//! - the stream as one request's PARAMS, cut into records at the cuts,
//!   under the default limit or a small one;
//! - the stream as a GET_VALUES body, and its answer.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rustgi_fastcgi::client::records;
use rustgi_fastcgi::{
    Config, Connection, Event, HEADER_LEN, Header, MANAGEMENT_ID, MAX_CONNS, MAX_REQS, MPXS_CONNS,
    ProtocolError, RecordType, holds_abort_request,
};
use rustgi_fuzz::pairs::{decode, record};
use rustgi_fuzz::{cuts, split};
use rustgi_model::content_length;

fn check_header(stream: &[u8], id: u16) {
    let header = Header::parse(stream);
    assert_eq!(header.is_some(), stream.len() >= HEADER_LEN);
    if let Some(header) = header {
        let encoded = header.encode();
        assert_eq!(encoded[..7], stream[..7]);
        let content = u16::from_be_bytes([stream[4], stream[5]]);
        assert_eq!(
            header.record_len(),
            8 + usize::from(content) + usize::from(stream[6])
        );
    }
    // ABORT_REQUEST (type 2) for `id` among the whole records.
    let mut at = 0;
    let mut found = false;
    while let Some(h) = stream.get(at..at + 8) {
        let len = 8 + usize::from(u16::from_be_bytes([h[4], h[5]])) + usize::from(h[6]);
        if h[1] == 2 && u16::from_be_bytes([h[2], h[3]]) == id {
            found = true;
            break;
        }
        at += len;
    }
    assert_eq!(holds_abort_request(stream, id), found);
}

fn check_params(stream: &[u8], cuts: &[usize], config: Config) {
    let mut bytes = Vec::new();
    record(
        RecordType::BeginRequest as u8,
        1,
        &[0, 1, 1, 0, 0, 0, 0, 0],
        0,
        &mut bytes,
    );
    let mut from = 0;
    for &to in cuts.iter().chain([&stream.len()]) {
        // Split further so that each record holds at most 65535 bytes.
        for chunk in stream[from..to.max(from)].chunks(0xffff) {
            if !chunk.is_empty() {
                record(
                    RecordType::Params as u8,
                    1,
                    chunk,
                    (to % 8) as u8,
                    &mut bytes,
                );
            }
        }
        from = to.max(from);
    }
    record(RecordType::Params as u8, 1, &[], 0, &mut bytes);

    let limit = config.max_params_size;
    let mut conn = Connection::new(config);
    let mut buf = BytesMut::from(&bytes[..]);
    let result = conn.receive(&mut buf);
    let event = conn.poll_event();
    assert_eq!(conn.poll_event(), None);
    let pairs = decode(stream);
    match (&result, event) {
        (
            Ok(()),
            Some(Event::Request {
                id: 1,
                request,
                content_length: length,
                ..
            }),
        ) => {
            assert!(buf.is_empty());
            let pairs = pairs.expect("the pairs the decoder accepted are not well formed");
            assert!(stream.len() <= limit);
            let decoded: Vec<(&[u8], &[u8])> = request
                .params
                .iter()
                .map(|p| (p.name.as_ref(), p.value.as_ref()))
                .collect();
            assert_eq!(decoded, pairs);
            assert_eq!(content_length(&request.params), Ok(length));
        }
        (Ok(()), other) => panic!("a whole PARAMS stream gave {other:?}"),
        (Err(error), None) => {
            assert!(!error.to_string().is_empty());
            let well_formed = pairs.is_some_and(|pairs| {
                let params: Vec<rustgi_model::Param> = pairs
                    .iter()
                    .map(|(n, v)| rustgi_model::Param::new(n.to_vec(), v.to_vec()))
                    .collect();
                content_length(&params).is_ok()
            });
            if well_formed && stream.len() <= limit {
                panic!("well-formed PARAMS within the limit refused: {error}");
            }
        }
        (Err(error), Some(event)) => panic!("{error} after {event:?}"),
    }
}

fn check_get_values(stream: &[u8]) {
    if stream.len() > 0xffff {
        return;
    }
    let mut bytes = Vec::new();
    record(
        RecordType::GetValues as u8,
        MANAGEMENT_ID,
        stream,
        0,
        &mut bytes,
    );
    let mut conn = Connection::new(Config::default());
    let mut buf = BytesMut::from(&bytes[..]);
    let result = conn.receive(&mut buf);
    let mut out = Vec::new();
    conn.take_output(&mut out);
    assert_eq!(conn.poll_event(), None);
    let Some(asked) = decode(stream) else {
        assert!(
            matches!(result, Err(ProtocolError::GetValues { .. })),
            "{result:?}"
        );
        return;
    };
    assert_eq!(result, Ok(()));
    let answer = records(&out).expect("GET_VALUES_RESULT is not whole records");
    assert_eq!(answer.len(), 1);
    assert_eq!(
        answer[0].header.record_type,
        RecordType::GetValuesResult as u8
    );
    let given = decode(&answer[0].content).expect("GET_VALUES_RESULT's pairs");
    for (name, _) in &given {
        assert!([MAX_CONNS, MAX_REQS, MPXS_CONNS].contains(name));
        assert!(asked.iter().any(|(n, _)| n == name));
    }
    for (i, (name, _)) in given.iter().enumerate() {
        assert!(
            !given[..i].iter().any(|(n, _)| n == name),
            "a name answered twice"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let (mut u, stream) = split(data);
    let id: u16 = u.arbitrary().unwrap_or(0);
    let max_params_size = match u.int_in_range(0..=300).unwrap_or(0) {
        0 => Config::default().max_params_size,
        limit => limit - 1,
    };
    let cuts = cuts(&mut u, stream.len());
    check_header(stream, id);
    check_params(
        stream,
        &cuts,
        Config {
            max_params_size,
            ..Config::default()
        },
    );
    check_get_values(stream);
});
