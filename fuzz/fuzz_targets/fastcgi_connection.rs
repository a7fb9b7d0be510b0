//! The FastCGI connection state machine, driven as the gateway drives it:
//! any bytes, cut anywhere, fed with the driver's own calls in between
//! (STDOUT, STDERR, ending requests, completing aborts) under a fuzzed
//! configuration. Checked after every call:
//! - no panic; an error is sticky, also at EOF;
//! - it consumed exactly the whole records it decoded, and what it keeps
//!   is less than one record (bounded, whatever a length field says);
//! - no more active requests than the configuration allows;
//! - events in protocol order: a request's body and abort only after its
//!   Request event, never more STDIN than CONTENT_LENGTH, and exactly that
//!   much at its end;
//! - its own replies and the driver's output are whole records, and the
//!   replies are bounded by what came in.

#![no_main]

use arbitrary::Unstructured;
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rustgi_fastcgi::client::records;
use rustgi_fastcgi::{Config, Connection, Event, HEADER_LEN, Header, RecordType, Roles};
use rustgi_fuzz::{cuts, pieces, split};

/// A request the driver has heard of.
struct Started {
    id: u16,
    content_length: Option<u64>,
    stdin: u64,
    stdin_ended: bool,
    aborted: bool,
}

struct Driver {
    conn: Connection<u32>,
    config: Config,
    started: Vec<Started>,
    /// Bytes of whole records consumed, and of replies made.
    consumed: u64,
    replied: u64,
}

impl Driver {
    /// After an error the connection is dead and its counts are moot: a
    /// request whose PARAMS failed CONTENT_LENGTH's check counts as started
    /// although its Request event never came.
    fn check_limits(&self, alive: bool) {
        let active = self.conn.active_requests();
        assert!(active <= self.config.max_requests_per_connection);
        if !self.config.multiplex {
            assert!(active <= 1);
        }
        assert!(self.conn.started_requests() <= active);
        if alive {
            assert_eq!(self.conn.started_requests(), self.started.len());
        }
    }

    fn events(&mut self) {
        while let Some(event) = self.conn.poll_event() {
            let started = |s: &[Started], id: u16| {
                let i = s.iter().position(|r| r.id == id);
                i.unwrap_or_else(|| panic!("an event for request {id} before its Request"))
            };
            match event {
                Event::Request {
                    id,
                    content_length,
                    request,
                    ..
                } => {
                    assert!(
                        !self.started.iter().any(|r| r.id == id),
                        "request {id} twice"
                    );
                    assert!(self.conn.is_active(id));
                    assert_eq!(request.content_length, content_length.unwrap_or(0));
                    let size: usize = request
                        .params
                        .iter()
                        .map(|p| p.name.len() + p.value.len())
                        .sum();
                    assert!(size <= self.config.max_params_size);
                    assert!(self.conn.attach(id, u32::from(id)).is_ok());
                    self.started.push(Started {
                        id,
                        content_length,
                        stdin: 0,
                        stdin_ended: false,
                        aborted: false,
                    });
                }
                Event::Stdin { id, data } => {
                    let i = started(&self.started, id);
                    let r = &mut self.started[i];
                    assert!(!r.stdin_ended && !r.aborted);
                    r.stdin += data.len() as u64;
                    if let Some(n) = r.content_length {
                        assert!(r.stdin <= n, "more STDIN than CONTENT_LENGTH");
                    }
                }
                Event::StdinEnd { id } => {
                    let i = started(&self.started, id);
                    let r = &mut self.started[i];
                    assert!(!r.stdin_ended && !r.aborted);
                    r.stdin_ended = true;
                    if let Some(n) = r.content_length {
                        assert_eq!(r.stdin, n, "STDIN ended short of CONTENT_LENGTH");
                    }
                }
                Event::Data { id, .. } | Event::DataEnd { id } => {
                    let r = &self.started[started(&self.started, id)];
                    assert!(!r.aborted);
                }
                Event::Abort { id } => {
                    let i = started(&self.started, id);
                    let r = &mut self.started[i];
                    assert!(!r.aborted, "aborted twice");
                    r.aborted = true;
                }
            }
        }
    }

    fn replies(&mut self) {
        let mut out = Vec::new();
        self.conn.take_output(&mut out);
        assert!(!self.conn.has_output());
        self.replied += out.len() as u64;
        let replies = records(&out).expect("replies that are not whole records");
        for reply in replies {
            let t = reply.header.record_type;
            assert!(
                [
                    RecordType::EndRequest,
                    RecordType::GetValuesResult,
                    RecordType::UnknownType
                ]
                .iter()
                .any(|&k| k as u8 == t),
                "a reply of type {t}"
            );
        }
        // One reply of at most 8 + 64 bytes for a record of at least 8.
        assert!(
            self.replied <= 9 * self.consumed,
            "{} replied for {}",
            self.replied,
            self.consumed
        );
    }

    /// What the driver does between reads: answer, end, complete aborts.
    fn act(&mut self, u: &mut Unstructured<'_>) {
        let n = u.int_in_range(0..=3).unwrap_or(0);
        for _ in 0..n {
            if self.started.is_empty() {
                return;
            }
            let i = u.choose_index(self.started.len()).unwrap_or(0);
            let id = self.started[i].id;
            let mut out = Vec::new();
            match u.int_in_range(0..=3).unwrap_or(0) {
                0 => {
                    let len = u.int_in_range(0..=70_000).unwrap_or(0);
                    assert!(self.conn.write_stdout(id, &vec![b'o'; len], &mut out));
                }
                1 => {
                    let len = u.int_in_range(0..=100).unwrap_or(0);
                    assert!(self.conn.write_stderr(id, &vec![b'e'; len], &mut out));
                }
                2 if self.started[i].aborted => {
                    assert_eq!(self.conn.abort_complete(id, &mut out), Some(u32::from(id)));
                    self.started.swap_remove(i);
                }
                _ => {
                    let status = u.arbitrary().unwrap_or(0);
                    assert_eq!(
                        self.conn.end_request(id, status, &mut out),
                        Some(u32::from(id))
                    );
                    self.started.swap_remove(i);
                    assert!(!self.conn.is_active(id));
                }
            }
            records(&out).expect("the driver's output is not whole records");
            self.check_limits(true);
        }
    }
}

fn config(u: &mut Unstructured<'_>) -> Config {
    let roles = [
        Roles::ALL,
        Roles::RESPONDER,
        Roles::AUTHORIZER | Roles::FILTER,
        Roles::NONE,
    ];
    let max_params_size = match u.int_in_range(0..=300).unwrap_or(0) {
        0 => Config::default().max_params_size,
        limit => limit - 1,
    };
    Config {
        roles: roles[u.choose_index(roles.len()).unwrap_or(0)],
        max_params_size,
        max_requests_per_connection: match u.int_in_range(0..=5).unwrap_or(0) {
            0 => Config::default().max_requests_per_connection,
            n => n - 1,
        },
        multiplex: !u.arbitrary().unwrap_or(false),
        ..Config::default()
    }
}

fuzz_target!(|data: &[u8]| {
    let (mut u, stream) = split(data);
    let config = config(&mut u);
    let cuts = cuts(&mut u, stream.len());
    let mut driver = Driver {
        conn: Connection::with_request_data(config.clone()),
        config,
        started: Vec::new(),
        consumed: 0,
        replied: 0,
    };
    let mut buf = BytesMut::new();
    for piece in pieces(stream, &cuts) {
        buf.extend_from_slice(piece);
        let before = buf.len();
        let offset = driver.conn.offset();
        let result = driver.conn.receive(&mut buf);
        let consumed = (before - buf.len()) as u64;
        assert_eq!(
            consumed,
            driver.conn.offset() - offset,
            "consumed what it decoded"
        );
        driver.consumed += consumed;
        driver.events();
        driver.replies();
        driver.check_limits(result.is_ok());
        if let Err(error) = result {
            assert!(!error.to_string().is_empty());
            assert_eq!(
                driver.conn.receive(&mut buf),
                Err(error.clone()),
                "not sticky"
            );
            assert_eq!(driver.conn.receive_eof(&buf), Err(error));
            return;
        }
        // What stays is less than one record.
        match Header::parse(&buf) {
            Some(header) => assert!(buf.len() < header.record_len()),
            None => assert!(buf.len() < HEADER_LEN),
        }
        driver.act(&mut u);
    }
    let eof = driver.conn.receive_eof(&buf);
    assert_eq!(eof.is_ok(), buf.is_empty());
    // The connection's end: every request still active is the driver's.
    let kept = driver.conn.take_request_data().count();
    assert_eq!(kept, driver.started.len());
});
