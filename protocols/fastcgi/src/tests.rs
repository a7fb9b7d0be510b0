//! State-machine tests on real nginx captures (fixtures/fastcgi/*.bin) and
//! on hand-made records, one per rule and one per error.

use bytes::{Bytes, BytesMut};
use rustgi_model::{LengthError, Param, Request};

use super::*;
use crate::client::{
    LengthForm, Record, encode_abort_request, encode_begin_request, encode_get_values, encode_pair,
    encode_params, encode_record, encode_stream, joined, records, stdin_data,
};
use ProtocolError::*;

const GET: &[u8] = include_bytes!("../../../fixtures/fastcgi/get.bin");
const POST_LARGE: &[u8] = include_bytes!("../../../fixtures/fastcgi/post_large.bin");
const KEEP_CONN_2: &[u8] = include_bytes!("../../../fixtures/fastcgi/keep_conn.bin");
const REPEATED_COOKIE: &[u8] = include_bytes!("../../../fixtures/fastcgi/repeated_cookie.bin");

/// Offsets of the records in a capture.
fn boundaries(bytes: &[u8]) -> Vec<usize> {
    let mut at = vec![0];
    for r in records(bytes).unwrap() {
        at.push(at.last().unwrap() + r.header.record_len());
    }
    at
}

/// Where the second request starts in keep_conn.bin: nginx sends it only
/// after our END_REQUEST, so a driver never sees both at once.
fn keep_conn_second() -> usize {
    let recs = records(KEEP_CONN_2).unwrap();
    let second = recs
        .iter()
        .enumerate()
        .filter(|(_, r)| r.header.record_type == RecordType::BeginRequest as u8)
        .nth(1)
        .unwrap()
        .0;
    boundaries(KEEP_CONN_2)[second]
}

/// Each fixture as the turns of its connection: the bytes nginx sent before
/// waiting for our answer.
fn fixtures() -> [(&'static str, Vec<&'static [u8]>); 4] {
    [
        ("get", vec![GET]),
        ("post_large", vec![POST_LARGE]),
        (
            "keep_conn",
            vec![
                &KEEP_CONN_2[..keep_conn_second()],
                &KEEP_CONN_2[keep_conn_second()..],
            ],
        ),
        ("repeated_cookie", vec![REPEATED_COOKIE]),
    ]
}

/// The POST body capture.py sent: byte i is 'a' + i % 26.
fn post_body() -> Vec<u8> {
    (0..70 * 1024).map(|i| b'a' + (i % 26) as u8).collect()
}

/// A driver in miniature: feeds bytes, collects events, and answers each
/// request (end_request, appStatus 0) once its STDIN has ended.
struct Driver {
    conn: Connection,
    buf: BytesMut,
    events: Vec<Event>,
    out: Vec<u8>,
}

impl Driver {
    fn new(config: Config) -> Self {
        Driver {
            conn: Connection::new(config),
            buf: BytesMut::new(),
            events: Vec::new(),
            out: Vec::new(),
        }
    }

    fn feed(&mut self, bytes: &[u8]) -> Result<(), ProtocolError> {
        self.buf.extend_from_slice(bytes);
        let result = self.conn.receive(&mut self.buf);
        self.drain();
        result
    }

    fn drain(&mut self) {
        while let Some(event) = self.conn.poll_event() {
            if let Event::StdinEnd { id } = event {
                self.conn.end_request(id, 0, &mut self.out);
            }
            self.events.push(event);
        }
        self.conn.take_output(&mut self.out);
    }
}

/// Runs a fixture's turns, each cut into the given chunks.
fn run_turns(turns: &[&[u8]], cut: impl Fn(&[u8]) -> Vec<Vec<u8>>) -> (Vec<Event>, Vec<u8>, bool) {
    let mut driver = Driver::new(Config::default());
    for turn in turns {
        for chunk in cut(turn) {
            driver.feed(&chunk).unwrap();
        }
        assert!(driver.buf.is_empty(), "a turn ends on a record boundary");
    }
    driver.conn.receive_eof(&driver.buf).unwrap();
    (
        joined(driver.events),
        driver.out,
        driver.conn.should_close(),
    )
}

fn whole(turns: &[&[u8]]) -> (Vec<Event>, Vec<u8>, bool) {
    run_turns(turns, |t| vec![t.to_vec()])
}

fn requests(events: &[Event]) -> Vec<&Request> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Request { request, .. } => Some(request),
            _ => None,
        })
        .collect()
}

fn param<'a>(request: &'a Request, name: &str) -> &'a [u8] {
    request.param(name.as_bytes()).unwrap().as_ref()
}

/// The answer end_request writes for id 1, appStatus 0.
fn ended(id: u16) -> Vec<u8> {
    let mut out = Vec::new();
    encode_record(6, id, b"", 0, &mut out);
    encode_end_request(id, 0, ProtocolStatus::RequestComplete, &mut out);
    out
}

// --- Real requests from nginx 1.22 ---

#[test]
fn nginx_get() {
    let (events, out, close) = whole(&[GET]);
    assert_eq!(events.len(), 2, "{events:?}");
    let Event::Request {
        id,
        role,
        keep_conn,
        content_length,
        request,
    } = &events[0]
    else {
        panic!("{events:?}")
    };
    assert_eq!((*id, *role, *keep_conn), (1, Role::Responder, false));
    assert_eq!(*content_length, None, "nginx sends CONTENT_LENGTH empty");
    assert_eq!(request.content_length, 0);
    assert_eq!(request.params.len(), 22);
    assert_eq!(request.params[0].name.as_ref(), b"QUERY_STRING");
    assert_eq!(param(request, "QUERY_STRING"), b"a=1&b=two%20words");
    assert_eq!(param(request, "REQUEST_METHOD"), b"GET");
    assert_eq!(param(request, "CONTENT_LENGTH"), b"");
    assert_eq!(param(request, "SCRIPT_NAME"), b"/hello/world");
    assert_eq!(
        param(request, "REQUEST_URI"),
        b"/hello/world?a=1&b=two%20words"
    );
    assert!(param(request, "HTTP_USER_AGENT").starts_with(b"curl/"));
    assert!(request.warnings.is_empty());
    assert_eq!(events[1], Event::StdinEnd { id: 1 });
    assert_eq!(out, ended(1));
    assert!(close, "no KEEP_CONN: close after the request");
}

#[test]
fn nginx_post_with_a_70_kib_body() {
    let (events, _, close) = whole(&[POST_LARGE]);
    assert_eq!(events.len(), 3, "Request, Stdin (joined), StdinEnd");
    let Event::Request {
        content_length,
        request,
        ..
    } = &events[0]
    else {
        panic!()
    };
    assert_eq!(*content_length, Some(71680));
    assert_eq!(request.content_length, 71680);
    assert_eq!(param(request, "REQUEST_METHOD"), b"POST");
    assert_eq!(param(request, "CONTENT_TYPE"), b"application/octet-stream");
    assert_eq!(
        events[1],
        Event::Stdin {
            id: 1,
            data: post_body().into()
        }
    );
    assert_eq!(events[2], Event::StdinEnd { id: 1 });
    assert!(close);
}

#[test]
fn nginx_post_body_arrives_in_three_stdin_records_without_copies() {
    let mut buf = BytesMut::from(POST_LARGE);
    let start = buf.as_ptr() as usize;
    let end = start + buf.len();
    let mut conn = Connection::new(Config::default());
    conn.receive(&mut buf).unwrap();
    let mut chunks = Vec::new();
    while let Some(event) = conn.poll_event() {
        match event {
            Event::Stdin { data, .. } => {
                let at = data.as_ptr() as usize;
                assert!(start <= at && at + data.len() <= end, "copied");
                chunks.push(data.len());
            }
            Event::Request { request, .. } => {
                for p in &request.params {
                    let at = p.value.as_ptr() as usize;
                    assert!(start <= at && at <= end, "{p:?} was copied");
                }
            }
            _ => {}
        }
    }
    assert_eq!(chunks, [32768, 32768, 6144]);
    assert_eq!(conn.offset(), POST_LARGE.len() as u64);
}

#[test]
fn nginx_keep_conn_reuses_the_connection_and_the_id() {
    let at = keep_conn_second();
    let (events, out, close) = whole(&[&KEEP_CONN_2[..at], &KEEP_CONN_2[at..]]);
    let mut uris = Vec::new();
    for event in &events {
        if let Event::Request {
            id,
            keep_conn,
            request,
            ..
        } = event
        {
            assert_eq!(*id, 1);
            assert!(*keep_conn);
            uris.push(param(request, "DOCUMENT_URI").to_vec());
        }
    }
    assert_eq!(uris, [&b"/keep/first"[..], b"/keep/second"]);
    assert_eq!(out, [ended(1), ended(1)].concat());
    assert!(!close, "KEEP_CONN: the web server owns the connection");
}

#[test]
fn nginx_repeated_cookie_is_kept_as_sent() {
    let (events, _, _) = whole(&[REPEATED_COOKIE]);
    let request = requests(&events)[0];
    let cookies: Vec<_> = request.values(b"HTTP_COOKIE").collect();
    assert_eq!(cookies, ["a=1", "b=2"]);
}

#[test]
fn fixtures_split_anywhere_give_the_same_events() {
    for (name, turns) in fixtures() {
        let expected = whole(&turns);
        let big = turns.iter().any(|t| t.len() > 4096);
        let step = if big { 7 } else { 1 };
        // One cut.
        for k in (0..=turns[0].len()).step_by(step) {
            let got = run_turns(&turns, |t| {
                let k = k.min(t.len());
                vec![t[..k].to_vec(), t[k..].to_vec()]
            });
            assert_eq!(got, expected, "{name}: cut at {k}");
        }
        // Chunks of every size up to 9, or byte by byte.
        for size in 1..=9 {
            let got = run_turns(&turns, |t| t.chunks(size).map(<[u8]>::to_vec).collect());
            assert_eq!(got, expected, "{name}: chunks of {size}");
        }
    }
}

#[test]
fn a_prefix_consumes_whole_records_only() {
    for k in 0..=GET.len() {
        let mut conn = Connection::new(Config::default());
        let mut buf = BytesMut::from(&GET[..k]);
        conn.receive(&mut buf).unwrap();
        let consumed = (k - buf.len()) as u64;
        assert_eq!(consumed, conn.offset());
        let whole_records = boundaries(GET)
            .into_iter()
            .filter(|&b| b <= k)
            .max()
            .unwrap();
        assert_eq!(consumed as usize, whole_records, "prefix of {k}");
        let eof = conn.receive_eof(&buf);
        assert_eq!(eof.is_ok(), buf.is_empty(), "{k}");
    }
}

// --- Hand-made requests ---

/// BEGIN_REQUEST + PARAMS (one record) + STDIN (one record) for a responder.
fn request(id: u16, keep_conn: bool, params: &[(&[u8], &[u8])], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_begin_request(id, Role::Responder.code(), keep_conn, &mut out);
    encode_params(id, params, 65535, &mut out);
    encode_stream(RecordType::Stdin, id, body, 65535, &mut out);
    out
}

fn head(id: u16, role: u16, keep_conn: bool, params: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_begin_request(id, role, keep_conn, &mut out);
    encode_params(id, params, 65535, &mut out);
    out
}

fn run(config: Config, bytes: &[u8]) -> (Result<(), ProtocolError>, Vec<Event>, Vec<u8>) {
    let mut conn = Connection::new(config);
    let mut buf = BytesMut::from(bytes);
    let result = conn.receive(&mut buf);
    let mut events = Vec::new();
    while let Some(e) = conn.poll_event() {
        events.push(e);
    }
    let mut out = Vec::new();
    conn.take_output(&mut out);
    (result, events, out)
}

fn events(bytes: &[u8]) -> Vec<Event> {
    let (result, events, _) = run(Config::default(), bytes);
    result.unwrap();
    events
}

#[track_caller]
fn refused_with(config: Config, bytes: &[u8], expected: ProtocolError, message: &str) {
    let (result, _, _) = run(config, bytes);
    let error = result.unwrap_err();
    assert_eq!(error, expected);
    assert_eq!(error.to_string(), message);
}

#[track_caller]
fn refused(bytes: &[u8], expected: ProtocolError, message: &str) {
    refused_with(Config::default(), bytes, expected, message);
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn record(record_type: RecordType, id: u16, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_record(
        record_type as u8,
        id,
        content,
        padding_for(content.len()),
        &mut out,
    );
    out
}

fn answer(out: &[u8]) -> Vec<(u8, u16, Vec<u8>)> {
    records(out)
        .unwrap()
        .into_iter()
        .map(|Record { header, content }| (header.record_type, header.request_id, content))
        .collect()
}

fn end_request_body(status: ProtocolStatus) -> Vec<u8> {
    EndRequest::new(0, status).encode().to_vec()
}

#[test]
fn a_minimal_request() {
    let bytes = request(1, false, &[(b"CONTENT_LENGTH", b"3"), (b"X", b"")], b"abc");
    assert_eq!(
        events(&bytes),
        [
            Event::Request {
                id: 1,
                role: Role::Responder,
                keep_conn: false,
                content_length: Some(3),
                request: Request {
                    params: vec![Param::new("CONTENT_LENGTH", "3"), Param::new("X", "")],
                    content_length: 3,
                    warnings: vec![],
                }
            },
            Event::Stdin {
                id: 1,
                data: Bytes::from_static(b"abc")
            },
            Event::StdinEnd { id: 1 },
        ]
    );
}

#[test]
fn a_pair_straddling_two_params_records() {
    let mut bytes = Vec::new();
    encode_begin_request(1, 1, false, &mut bytes);
    let mut stream = Vec::new();
    encode_pair(
        b"NAME",
        b"value",
        LengthForm::Shortest,
        LengthForm::Shortest,
        &mut stream,
    );
    encode_pair(
        b"N2",
        b"v2",
        LengthForm::Shortest,
        LengthForm::Shortest,
        &mut stream,
    );
    // Cut inside the first pair's name, then inside the second's lengths.
    for chunk in [&stream[..4], &stream[4..12], &stream[12..]] {
        bytes.extend(record(RecordType::Params, 1, chunk));
    }
    bytes.extend(record(RecordType::Params, 1, b""));
    let evs = events(&bytes);
    assert_eq!(
        requests(&evs)[0].params,
        [Param::new("NAME", "value"), Param::new("N2", "v2")]
    );
}

#[test]
fn four_byte_lengths_for_short_names() {
    let mut stream = Vec::new();
    encode_pair(b"A", b"1", LengthForm::Long, LengthForm::Long, &mut stream);
    encode_pair(
        b"B",
        b"2",
        LengthForm::Long,
        LengthForm::Shortest,
        &mut stream,
    );
    encode_pair(
        b"C",
        b"3",
        LengthForm::Shortest,
        LengthForm::Long,
        &mut stream,
    );
    assert_eq!(&stream[..10], b"\x80\x00\x00\x01\x80\x00\x00\x01A1");
    let bytes = cat(&[
        &record(RecordType::BeginRequest, 1, &[0, 1, 0, 0, 0, 0, 0, 0]),
        &record(RecordType::Params, 1, &stream),
        &record(RecordType::Params, 1, b""),
    ]);
    let evs = events(&bytes);
    assert_eq!(
        requests(&evs)[0].params,
        [
            Param::new("A", "1"),
            Param::new("B", "2"),
            Param::new("C", "3")
        ]
    );
}

#[test]
fn padding_is_skipped() {
    let mut bytes = Vec::new();
    encode_record(1, 1, &[0, 1, 0, 0, 0, 0, 0, 0], 255, &mut bytes);
    encode_record(4, 1, b"\x01\x01AB", 3, &mut bytes);
    encode_record(4, 1, b"", 17, &mut bytes);
    encode_record(5, 1, b"body", 0, &mut bytes);
    encode_record(5, 1, b"", 1, &mut bytes);
    let evs = joined(events(&bytes));
    assert_eq!(requests(&evs)[0].params, [Param::new("A", "B")]);
    assert_eq!(
        evs[1..],
        [
            Event::Stdin {
                id: 1,
                data: Bytes::from_static(b"body")
            },
            Event::StdinEnd { id: 1 }
        ]
    );
}

#[test]
fn get_values_is_answered_with_known_names_only() {
    let mut bytes = Vec::new();
    encode_get_values(
        &[
            b"FCGI_MAX_CONNS",
            b"FCGI_UNKNOWN",
            b"FCGI_MAX_REQS",
            b"FCGI_MPXS_CONNS",
        ],
        &mut bytes,
    );
    let config = Config {
        max_connections: 7,
        max_requests: 42,
        multiplex: false,
        ..Config::default()
    };
    let (result, evs, out) = run(config, &bytes);
    result.unwrap();
    assert!(evs.is_empty());
    assert_eq!(
        answer(&out),
        [(
            RecordType::GetValuesResult as u8,
            0,
            b"\x0e\x01FCGI_MAX_CONNS7\x0d\x02FCGI_MAX_REQS42\x0f\x01FCGI_MPXS_CONNS0".to_vec()
        )]
    );
}

#[test]
fn other_types_on_id_0_get_unknown_type() {
    for t in [0u8, 10, 11, 12, 200, 255] {
        let mut bytes = Vec::new();
        encode_record(t, 0, b"whatever", 0, &mut bytes);
        let (result, evs, out) = run(Config::default(), &bytes);
        result.unwrap();
        assert!(evs.is_empty());
        assert_eq!(
            answer(&out),
            [(
                RecordType::UnknownType as u8,
                0,
                vec![t, 0, 0, 0, 0, 0, 0, 0]
            )],
            "type {t}"
        );
    }
}

#[test]
fn nothing_is_sent_unsolicited() {
    let mut conn = Connection::new(Config::default());
    let mut buf = BytesMut::from(&request(1, false, &[], b"")[..]);
    conn.receive(&mut buf).unwrap();
    assert!(!conn.has_output());
    let mut out = Vec::new();
    conn.take_output(&mut out);
    assert!(out.is_empty());
}

#[test]
fn multiplexed_requests_interleaved() {
    let mut bytes = Vec::new();
    for id in [1, 2, 3] {
        encode_begin_request(id, 1, true, &mut bytes);
    }
    for id in [3, 1, 2] {
        let len = format!("{}", id * 2);
        encode_params(
            id,
            &[
                (b"CONTENT_LENGTH", len.as_bytes()),
                (b"ID", &[b'0' + id as u8]),
            ],
            3,
            &mut bytes,
        );
    }
    for round in 0..2 {
        for id in [2, 3, 1] {
            let chunk = vec![b'a' + id as u8; id as usize];
            bytes.extend(record(RecordType::Stdin, id, &chunk));
            if round == 1 {
                bytes.extend(record(RecordType::Stdin, id, b""));
            }
        }
    }
    let evs = events(&bytes);
    let ids: Vec<u16> = requests(&evs)
        .iter()
        .map(|r| u16::from(param(r, "ID")[0] - b'0'))
        .collect();
    assert_eq!(ids, [3, 1, 2]);
    for id in [1u16, 2, 3] {
        let mine: Vec<&Event> = evs
            .iter()
            .filter(|e| match e {
                Event::Request { id: i, .. }
                | Event::Stdin { id: i, .. }
                | Event::StdinEnd { id: i } => *i == id,
                _ => false,
            })
            .collect();
        assert_eq!(mine.len(), 4, "id {id}");
        let body = stdin_data(mine.iter().copied());
        assert_eq!(body, vec![b'a' + id as u8; 2 * id as usize]);
        assert_eq!(mine[3], &Event::StdinEnd { id });
    }
}

#[test]
fn an_id_is_reusable_right_after_end_request() {
    let mut conn = Connection::new(Config::default());
    let mut buf = BytesMut::from(&request(1, true, &[(b"N", b"1")], b"")[..]);
    conn.receive(&mut buf).unwrap();
    assert!(conn.is_active(1));
    let mut out = Vec::new();
    conn.end_request(1, 5, &mut out);
    assert!(!conn.is_active(1));
    assert_eq!(
        answer(&out),
        [
            (6, 1, vec![]),
            (
                3,
                1,
                EndRequest::new(5, ProtocolStatus::RequestComplete)
                    .encode()
                    .to_vec()
            )
        ]
    );
    // Ending it again writes nothing.
    let mut again = Vec::new();
    conn.end_request(1, 0, &mut again);
    assert!(again.is_empty());
    // A STDIN record still in flight for the old request is ignored.
    buf.extend_from_slice(&record(RecordType::Stdin, 1, b"late"));
    buf.extend_from_slice(&request(1, true, &[(b"N", b"2")], b""));
    conn.receive(&mut buf).unwrap();
    let mut uris = Vec::new();
    while let Some(e) = conn.poll_event() {
        if let Event::Request { request, .. } = &e {
            uris.push(param(request, "N").to_vec());
        }
        assert!(!matches!(e, Event::Stdin { .. }));
    }
    assert_eq!(uris, [b"1".to_vec(), b"2".to_vec()]);
    assert!(conn.is_active(1));
    assert!(!conn.should_close());
}

#[test]
fn abort_for_an_active_request() {
    let mut conn = Connection::new(Config::default());
    let mut bytes = head(1, 1, false, &[(b"CONTENT_LENGTH", b"10")]);
    encode_abort_request(1, &mut bytes);
    // After the abort: ignored, even over CONTENT_LENGTH.
    bytes.extend(record(RecordType::Stdin, 1, b"more than ten bytes"));
    encode_abort_request(1, &mut bytes);
    let mut buf = BytesMut::from(&bytes[..]);
    conn.receive(&mut buf).unwrap();
    assert!(matches!(conn.poll_event(), Some(Event::Request { .. })));
    assert_eq!(conn.poll_event(), Some(Event::Abort { id: 1 }));
    assert_eq!(conn.poll_event(), None);
    assert!(conn.is_active(1), "active until abort_complete");
    assert!(!conn.should_close());
    let mut out = Vec::new();
    conn.abort_complete(1, &mut out);
    assert_eq!(out, ended(1));
    assert!(!conn.is_active(1));
    assert!(conn.should_close());
}

#[test]
fn abort_for_an_inactive_request_is_ignored() {
    let mut bytes = Vec::new();
    encode_abort_request(9, &mut bytes);
    let (result, evs, out) = run(Config::default(), &bytes);
    result.unwrap();
    assert!(evs.is_empty());
    assert!(out.is_empty());
}

#[test]
fn abort_before_params_end_is_ended_by_the_state_machine() {
    let mut bytes = Vec::new();
    encode_begin_request(1, 1, false, &mut bytes);
    bytes.extend(record(RecordType::Params, 1, b"\x01\x01AB"));
    encode_abort_request(1, &mut bytes);
    bytes.extend(record(RecordType::Params, 1, b""));
    let mut conn = Connection::new(Config::default());
    let mut buf = BytesMut::from(&bytes[..]);
    conn.receive(&mut buf).unwrap();
    assert_eq!(conn.poll_event(), None, "the driver never hears of it");
    assert!(!conn.is_active(1));
    let mut out = Vec::new();
    conn.take_output(&mut out);
    assert_eq!(
        answer(&out),
        [(3, 1, end_request_body(ProtocolStatus::RequestComplete))]
    );
    assert!(conn.should_close());
}

#[test]
fn unknown_role_is_refused_and_its_records_ignored() {
    for role in [0u16, 4, 0xffff] {
        let mut bytes = head(1, role, true, &[(b"A", b"B")]);
        bytes.extend(record(RecordType::Stdin, 1, b""));
        let (result, evs, out) = run(Config::default(), &bytes);
        result.unwrap();
        assert!(evs.is_empty(), "role {role}");
        assert_eq!(
            answer(&out),
            [(3, 1, end_request_body(ProtocolStatus::UnknownRole))]
        );
    }
}

#[test]
fn roles_narrowed_by_config() {
    let config = Config {
        roles: Roles::RESPONDER | Roles::AUTHORIZER,
        ..Config::default()
    };
    let (result, evs, out) = run(config.clone(), &head(1, Role::Filter.code(), false, &[]));
    result.unwrap();
    assert!(evs.is_empty());
    assert_eq!(
        answer(&out),
        [(3, 1, end_request_body(ProtocolStatus::UnknownRole))]
    );
    let (result, evs, out) = run(config, &head(1, Role::Authorizer.code(), false, &[]));
    result.unwrap();
    assert!(matches!(
        evs[..],
        [Event::Request {
            role: Role::Authorizer,
            ..
        }]
    ));
    assert!(out.is_empty());
}

#[test]
fn over_the_per_connection_limit_is_overloaded() {
    let config = Config {
        max_requests_per_connection: 2,
        ..Config::default()
    };
    let mut bytes = Vec::new();
    for id in [1, 2, 3] {
        encode_begin_request(id, 1, true, &mut bytes);
    }
    let mut conn = Connection::new(config);
    let mut buf = BytesMut::from(&bytes[..]);
    conn.receive(&mut buf).unwrap();
    assert_eq!(conn.active_requests(), 2);
    assert!(!conn.is_active(3));
    let mut out = Vec::new();
    conn.take_output(&mut out);
    assert_eq!(
        answer(&out),
        [(3, 3, end_request_body(ProtocolStatus::Overloaded))]
    );
    // Room again once one ends.
    conn.end_request(1, 0, &mut Vec::new());
    let mut buf = BytesMut::from(&head(3, 1, true, &[])[..]);
    conn.receive(&mut buf).unwrap();
    assert!(conn.is_active(3));
}

#[test]
fn a_second_request_without_multiplexing_is_cant_mpx_conn() {
    let config = Config {
        multiplex: false,
        ..Config::default()
    };
    let mut bytes = head(1, 1, true, &[]);
    bytes.extend(head(2, 1, true, &[]));
    let (result, evs, out) = run(config, &bytes);
    result.unwrap();
    assert_eq!(requests(&evs).len(), 1);
    assert_eq!(
        answer(&out),
        [(3, 2, end_request_body(ProtocolStatus::CantMpxConn))]
    );
}

#[test]
fn should_close_follows_keep_conn() {
    for keep_conn in [false, true] {
        let mut conn = Connection::new(Config::default());
        let mut buf = BytesMut::from(&request(1, keep_conn, &[], b"")[..]);
        conn.receive(&mut buf).unwrap();
        assert!(!conn.should_close(), "not while the request is active");
        conn.end_request(1, 0, &mut Vec::new());
        assert_eq!(conn.should_close(), !keep_conn, "keep_conn {keep_conn}");
    }
    // A refused request without KEEP_CONN closes too.
    let mut conn = Connection::new(Config::default());
    let mut buf = BytesMut::from(&head(1, 9, false, &[])[..]);
    conn.receive(&mut buf).unwrap();
    assert!(conn.should_close());
}

#[test]
fn records_for_an_inactive_id_are_ignored() {
    let mut bytes = Vec::new();
    bytes.extend(record(RecordType::Params, 5, b"\x00garbage"));
    bytes.extend(record(RecordType::Params, 5, b""));
    bytes.extend(record(RecordType::Stdin, 5, b"x"));
    bytes.extend(record(RecordType::Data, 5, b"x"));
    let (result, evs, out) = run(Config::default(), &bytes);
    result.unwrap();
    assert!(evs.is_empty());
    assert!(out.is_empty());
}

#[test]
fn authorizer_without_content_length_and_an_empty_stdin() {
    let mut bytes = head(1, Role::Authorizer.code(), false, &[(b"REMOTE_USER", b"u")]);
    bytes.extend(record(RecordType::Stdin, 1, b""));
    let evs = events(&bytes);
    assert!(matches!(
        &evs[0],
        Event::Request {
            role: Role::Authorizer,
            content_length: None,
            ..
        }
    ));
    assert_eq!(evs[1], Event::StdinEnd { id: 1 });
}

#[test]
fn without_content_length_stdin_ends_the_body() {
    let mut bytes = head(1, 1, false, &[]);
    encode_stream(RecordType::Stdin, 1, b"any length", 3, &mut bytes);
    let evs = joined(events(&bytes));
    assert_eq!(
        evs[1..],
        [
            Event::Stdin {
                id: 1,
                data: Bytes::from_static(b"any length")
            },
            Event::StdinEnd { id: 1 }
        ]
    );
}

#[test]
fn filter_has_a_data_stream() {
    let mut bytes = head(
        1,
        Role::Filter.code(),
        false,
        &[(b"FCGI_DATA_LENGTH", b"4")],
    );
    encode_stream(RecordType::Stdin, 1, b"", 10, &mut bytes);
    encode_stream(RecordType::Data, 1, b"file", 3, &mut bytes);
    let evs = joined(events(&bytes));
    assert_eq!(
        evs[1..],
        [
            Event::StdinEnd { id: 1 },
            Event::Data {
                id: 1,
                data: Bytes::from_static(b"file")
            },
            Event::DataEnd { id: 1 }
        ]
    );
}

#[test]
fn stdout_and_stderr_through_the_connection() {
    let mut conn = Connection::new(Config::default());
    let mut buf = BytesMut::from(&request(1, true, &[], b"")[..]);
    conn.receive(&mut buf).unwrap();
    let mut out = Vec::new();
    assert!(!conn.write_stdout(2, b"not active", &mut out));
    assert!(!conn.write_stderr(2, b"not active", &mut out));
    assert!(out.is_empty());
    assert!(conn.write_stdout(1, b"Status: 200 OK\r\n\r\nhi", &mut out));
    assert!(conn.write_stderr(1, b"warning\n", &mut out));
    conn.end_request(1, 0, &mut out);
    let got: Vec<(u8, u16, Vec<u8>)> = answer(&out);
    assert_eq!(
        got,
        [
            (6, 1, b"Status: 200 OK\r\n\r\nhi".to_vec()),
            (7, 1, b"warning\n".to_vec()),
            (7, 1, vec![]),
            (6, 1, vec![]),
            (3, 1, end_request_body(ProtocolStatus::RequestComplete)),
        ]
    );
    assert!(!conn.write_stdout(1, b"after the end", &mut out));
}

// --- Refused, one test per error, with its message ---

#[test]
fn bad_version() {
    let mut bytes = request(1, false, &[], b"");
    bytes[0] = 2;
    refused(
        &bytes,
        BadVersion {
            offset: 0,
            version: 2,
        },
        "FastCGI record at offset 0 has version 2 (expected 1)",
    );
    // Later in the connection, and known from the header alone.
    let mut bytes = request(1, false, &[], b"");
    let at = bytes.len();
    bytes.extend_from_slice(&[3, 5, 0, 1, 0xff, 0xff, 0, 0]);
    refused(
        &bytes,
        BadVersion {
            offset: at as u64,
            version: 3,
        },
        &format!("FastCGI record at offset {at} has version 3 (expected 1)"),
    );
}

#[test]
fn other_protocols_are_named() {
    refused(
        b"GET / HTTP/1.1\r\n",
        BadVersion {
            offset: 0,
            version: b'G',
        },
        "FastCGI record at offset 0 has version 71 (expected 1); an ASCII letter starts an HTTP request",
    );
    let (result, _, _) = run(Config::default(), b"70:CONTENT_LENGTH\0");
    assert!(
        result
            .unwrap_err()
            .to_string()
            .ends_with("an ASCII digit starts an SCGI request")
    );
    let (result, _, _) = run(Config::default(), &[0, 0x20, 0, 0, 0, 0, 0, 0]);
    assert!(
        result
            .unwrap_err()
            .to_string()
            .ends_with("0x00 starts a uwsgi request")
    );
}

#[test]
fn request_type_on_id_0() {
    refused(
        &record(RecordType::Stdin, 0, b"x"),
        RequestTypeOnManagementId {
            offset: 0,
            record_type: 5,
        },
        "FastCGI STDIN (5) record at offset 0 has request id 0, which only management records use",
    );
    for t in 1..=8u8 {
        let mut bytes = Vec::new();
        encode_record(t, 0, b"", 0, &mut bytes);
        assert!(
            matches!(
                run(Config::default(), &bytes).0,
                Err(RequestTypeOnManagementId { .. })
            ),
            "type {t}"
        );
    }
}

#[test]
fn management_type_on_a_request_id() {
    let mut bytes = Vec::new();
    encode_record(9, 3, b"", 0, &mut bytes);
    refused(
        &bytes,
        ManagementTypeOnRequestId {
            offset: 0,
            record_type: 9,
            id: 3,
        },
        "FastCGI GET_VALUES (9) record at offset 0 is a management record but has request id 3 (expected 0)",
    );
}

#[test]
fn application_types_from_the_web_server() {
    let mut bytes = head(1, 1, false, &[]);
    let at = bytes.len();
    bytes.extend(record(RecordType::Stdout, 1, b"x"));
    refused(
        &bytes,
        ApplicationType {
            offset: at as u64,
            record_type: 6,
            id: 1,
        },
        "FastCGI STDOUT (6) record at offset 24 for request 1: only an application sends this type",
    );
}

#[test]
fn unknown_type_on_a_request_id() {
    let mut bytes = Vec::new();
    encode_record(12, 1, b"", 0, &mut bytes);
    refused(
        &bytes,
        UnknownType {
            offset: 0,
            record_type: 12,
            id: 1,
        },
        "FastCGI record at offset 0 has unknown type 12 for request 1",
    );
}

#[test]
fn begin_request_body_must_be_eight_bytes() {
    refused(
        &record(RecordType::BeginRequest, 1, &[0, 1, 0, 0, 0, 0, 0]),
        BadBodyLength {
            offset: 0,
            record_type: 1,
            id: 1,
            length: 7,
            expected: 8,
        },
        "FastCGI BEGIN_REQUEST (1) record at offset 0 for request 1 has 7 content bytes (expected 8)",
    );
}

#[test]
fn begin_request_for_an_active_id() {
    let mut bytes = head(1, 1, true, &[]);
    bytes.extend(head(1, 1, true, &[]));
    refused(
        &bytes,
        DuplicateBegin { offset: 24, id: 1 },
        "FastCGI BEGIN_REQUEST (1) record at offset 24 for request 1, which is already active",
    );
}

#[test]
fn stdin_before_params_end() {
    let mut bytes = Vec::new();
    encode_begin_request(1, 1, false, &mut bytes);
    bytes.extend(record(RecordType::Params, 1, b"\x01\x01AB"));
    bytes.extend(record(RecordType::Stdin, 1, b""));
    refused(
        &bytes,
        BeforeParamsEnd {
            offset: 32,
            record_type: 5,
            id: 1,
        },
        "FastCGI STDIN (5) record at offset 32 for request 1 came before the end of its PARAMS stream",
    );
    let mut bytes = Vec::new();
    encode_begin_request(1, 3, false, &mut bytes);
    bytes.extend(record(RecordType::Data, 1, b"d"));
    assert!(matches!(
        run(Config::default(), &bytes).0,
        Err(BeforeParamsEnd { record_type: 8, .. })
    ));
}

#[test]
fn records_after_their_stream_ended() {
    let mut bytes = request(1, false, &[], b"");
    bytes.extend(record(RecordType::Stdin, 1, b"x"));
    refused(
        &bytes,
        AfterStreamEnd {
            offset: 32,
            record_type: 5,
            id: 1,
        },
        "FastCGI STDIN (5) record at offset 32 for request 1 came after that stream's end",
    );
    let mut bytes = head(1, 1, false, &[]);
    bytes.extend(record(RecordType::Params, 1, b"\x01\x01ab"));
    assert!(matches!(
        run(Config::default(), &bytes).0,
        Err(AfterStreamEnd { record_type: 4, .. })
    ));
    let mut bytes = head(1, 3, false, &[]);
    encode_stream(RecordType::Data, 1, b"", 1, &mut bytes);
    bytes.extend(record(RecordType::Data, 1, b"d"));
    assert!(matches!(
        run(Config::default(), &bytes).0,
        Err(AfterStreamEnd { record_type: 8, .. })
    ));
}

#[test]
fn a_repeated_end_of_stream_is_ignored() {
    // fastcgi-client ends an empty body with two empty STDIN records.
    let mut bytes = request(1, true, &[], b"");
    bytes.extend(record(RecordType::Stdin, 1, b""));
    bytes.extend(record(RecordType::Params, 1, b""));
    let (result, events, _) = run(Config::default(), &bytes);
    result.unwrap();
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, Event::StdinEnd { id: 1 }))
            .count(),
        1
    );
}

#[test]
fn data_for_a_responder() {
    let mut bytes = head(1, 1, false, &[]);
    bytes.extend(record(RecordType::Data, 1, b"d"));
    refused(
        &bytes,
        DataWithoutFilter {
            offset: 24,
            id: 1,
            role: Role::Responder,
        },
        "FastCGI DATA (8) record at offset 24 for request 1, whose role is RESPONDER: only FILTER requests have a DATA stream",
    );
}

#[test]
fn params_over_the_limit_as_records_arrive() {
    let config = Config {
        max_params_size: 100,
        ..Config::default()
    };
    let mut bytes = Vec::new();
    encode_begin_request(1, 1, false, &mut bytes);
    let mut stream = Vec::new();
    for i in 0..10u8 {
        encode_pair(
            &[b'A' + i],
            &[b'v'; 8],
            LengthForm::Shortest,
            LengthForm::Shortest,
            &mut stream,
        );
    }
    // 110 bytes in two records: refused at the second, which takes it over.
    bytes.extend(record(RecordType::Params, 1, &stream[..60]));
    let at = bytes.len();
    bytes.extend(record(RecordType::Params, 1, &stream[60..]));
    refused_with(
        config.clone(),
        &bytes,
        ParamsTooLarge {
            offset: at as u64,
            id: 1,
            size: 110,
            limit: 100,
        },
        &format!(
            "FastCGI PARAMS for request 1 exceed --max-header-size: 110 > 100 bytes (record at offset {at})"
        ),
    );
    // Exactly the limit is fine.
    let config = Config {
        max_params_size: 110,
        ..Config::default()
    };
    let (result, _, _) = run(config, &bytes);
    result.unwrap();
}

#[test]
fn the_brief_s_example_message() {
    let error = ParamsTooLarge {
        offset: 16,
        id: 1,
        size: 70000,
        limit: 65536,
    };
    assert_eq!(
        error.to_string(),
        "FastCGI PARAMS for request 1 exceed --max-header-size: 70000 > 65536 bytes (record at offset 16)"
    );
}

#[test]
fn a_declared_length_over_the_limit_is_refused_before_its_bytes() {
    let mut bytes = Vec::new();
    encode_begin_request(1, 1, false, &mut bytes);
    // A 2 GiB value is declared; only 6 bytes of the stream arrive.
    bytes.extend(record(RecordType::Params, 1, b"\x01\xff\xff\xff\xffA"));
    refused(
        &bytes,
        ParamsTooLarge {
            offset: 16,
            id: 1,
            size: 6 + 0x7fff_ffff,
            limit: 65536,
        },
        "FastCGI PARAMS for request 1 exceed --max-header-size: 2147483653 > 65536 bytes (record at offset 16)",
    );
}

#[test]
fn a_pair_running_past_the_params_end() {
    let mut bytes = Vec::new();
    encode_begin_request(1, 1, false, &mut bytes);
    bytes.extend(record(RecordType::Params, 1, b"\x01\x01AB\x04\x09NAMEval"));
    bytes.extend(record(RecordType::Params, 1, b""));
    refused(
        &bytes,
        Params {
            offset: 40,
            id: 1,
            error: PairError::Truncated {
                at: 4,
                needed: 15,
                available: 9,
            },
        },
        "FastCGI PARAMS for request 1 (record at offset 40): the stream ends inside the name-value pair at byte 4: it needs at least 15 bytes, 9 remain",
    );
}

#[test]
fn an_empty_name() {
    let mut bytes = Vec::new();
    encode_begin_request(1, 1, false, &mut bytes);
    bytes.extend(record(RecordType::Params, 1, b"\x01\x01AB\x00\x01x"));
    refused(
        &bytes,
        Params {
            offset: 16,
            id: 1,
            error: PairError::EmptyName { at: 4 },
        },
        "FastCGI PARAMS for request 1 (record at offset 16): the name-value pair at byte 4 of the stream has an empty name",
    );
}

#[test]
fn a_bad_content_length() {
    refused(
        &head(1, 1, false, &[(b"CONTENT_LENGTH", b"12a")]),
        ContentLength {
            id: 1,
            error: LengthError::NotDigit {
                value: "12a".into(),
                byte: b'a',
                index: 2,
            },
        },
        "FastCGI request 1 has CONTENT_LENGTH \"12a\", which is not a decimal number of bytes",
    );
    for bad in [&b" 1"[..], b"-1", b"99999999999999999999", b"+1"] {
        assert!(matches!(
            run(
                Config::default(),
                &head(1, 1, false, &[(b"CONTENT_LENGTH", bad)])
            )
            .0,
            Err(ContentLength { .. })
        ));
    }
}

#[test]
fn conflicting_content_lengths() {
    refused(
        &head(
            1,
            1,
            false,
            &[(b"CONTENT_LENGTH", b"1"), (b"CONTENT_LENGTH", b"100")],
        ),
        ContentLength {
            id: 1,
            error: LengthError::Conflicting {
                first: "1".into(),
                second: "100".into(),
            },
        },
        "FastCGI request 1 has CONTENT_LENGTH twice with different values: \"1\" and \"100\"",
    );
    // The same value twice is fine.
    let bytes = request(
        1,
        false,
        &[(b"CONTENT_LENGTH", b"1"), (b"CONTENT_LENGTH", b"1")],
        b"x",
    );
    assert_eq!(events(&bytes).len(), 3);
}

#[test]
fn stdin_over_content_length() {
    let mut bytes = head(1, 1, false, &[(b"CONTENT_LENGTH", b"5")]);
    let at = bytes.len();
    bytes.extend(record(RecordType::Stdin, 1, b"abc"));
    bytes.extend(record(RecordType::Stdin, 1, b"def"));
    refused(
        &bytes,
        StdinOverLength {
            offset: at as u64 + 16,
            id: 1,
            received: 6,
            content_length: 5,
        },
        &format!(
            "FastCGI STDIN (5) record at offset {} for request 1 takes the body to 6 bytes, over its CONTENT_LENGTH of 5",
            at + 16
        ),
    );
}

#[test]
fn stdin_short_of_content_length() {
    let mut bytes = head(1, 1, false, &[(b"CONTENT_LENGTH", b"5")]);
    bytes.extend(record(RecordType::Stdin, 1, b"abc"));
    let at = bytes.len();
    bytes.extend(record(RecordType::Stdin, 1, b""));
    refused(
        &bytes,
        StdinShort {
            offset: at as u64,
            id: 1,
            received: 3,
            content_length: 5,
        },
        &format!(
            "FastCGI STDIN for request 1 ended (record at offset {at}) after 3 bytes, short of its CONTENT_LENGTH of 5"
        ),
    );
}

#[test]
fn a_malformed_get_values() {
    refused(
        &record(RecordType::GetValues, 0, b"\x0e\x00FCGI"),
        GetValues {
            offset: 0,
            error: PairError::Truncated {
                at: 0,
                needed: 16,
                available: 6,
            },
        },
        "FastCGI GET_VALUES (9) record at offset 0: the stream ends inside the name-value pair at byte 0: it needs at least 16 bytes, 6 remain",
    );
}

#[test]
fn truncated_at_eof() {
    let mut conn = Connection::new(Config::default());
    let mut buf = BytesMut::from(&GET[..19]);
    conn.receive(&mut buf).unwrap();
    assert_eq!(buf.len(), 3);
    let error = conn.receive_eof(&buf).unwrap_err();
    assert_eq!(
        error,
        TruncatedHeader {
            offset: 16,
            have: 3
        }
    );
    assert_eq!(
        error.to_string(),
        "FastCGI connection closed inside a record header at offset 16: 3 of 8 bytes"
    );

    let mut conn = Connection::new(Config::default());
    let mut buf = BytesMut::from(&GET[..100]);
    conn.receive(&mut buf).unwrap();
    let error = conn.receive_eof(&buf).unwrap_err();
    let need = boundaries(GET)[2] - 16;
    assert_eq!(
        error,
        TruncatedRecord {
            offset: 16,
            record_type: 4,
            id: 1,
            have: 84,
            need,
        }
    );
    assert_eq!(
        error.to_string(),
        format!(
            "FastCGI connection closed inside a PARAMS (4) record for request 1 at offset 16: 84 of {need} bytes"
        )
    );

    let mut conn = Connection::new(Config::default());
    assert_eq!(conn.receive_eof(&BytesMut::new()), Ok(()));
}

#[test]
fn errors_are_sticky() {
    let mut conn = Connection::new(Config::default());
    let mut buf = BytesMut::from(&[2u8, 1, 0, 1, 0, 0, 0, 0][..]);
    let first = conn.receive(&mut buf).unwrap_err();
    let mut good = BytesMut::from(&request(1, false, &[], b"")[..]);
    assert_eq!(conn.receive(&mut good), Err(first.clone()));
    assert_eq!(conn.receive_eof(&good), Err(first));
    assert_eq!(conn.poll_event(), None);
}

#[test]
fn errors_come_from_the_header_before_the_content() {
    // A STDOUT header claiming 65535 bytes: refused with 8 bytes in.
    let mut bytes = head(1, 1, false, &[]);
    bytes.extend_from_slice(&[1, 6, 0, 1, 0xff, 0xff, 0, 0]);
    assert!(matches!(
        run(Config::default(), &bytes).0,
        Err(ApplicationType { .. })
    ));
}
