//! The access log: one line per request, written once its response is
//! over (or, for a worker that died, by the master from what the worker
//! said when the request began).
//!
//! A [`Record`] holds plain values, so that whoever knows a request (a
//! worker's flow, the master's scoreboard) can build one; a [`Format`]
//! (parsed once, at start: an unknown field is refused there) renders it.
//! Every value is escaped for its format whatever bytes the client sent,
//! and cut at [`VALUE_LIMIT`] with a marker: a request can neither break a
//! line nor forge one, nor grow one without bound.

mod escape;
mod format;
mod time;
mod writer;

pub use format::{FIELDS, Format, FormatError};
pub use writer::{Destination, Writer, WriterConfig};

use crate::{Ended, Front};
use std::time::{Duration, SystemTime};

/// The most bytes of one value a line carries; past it the value is cut
/// and ends with a marker saying how long it was.
pub const VALUE_LIMIT: usize = 1024;

/// What the access log knows of one request. Byte strings are as the
/// request carried them (the format escapes them).
#[derive(Clone, Debug)]
pub struct Record {
    /// When the request began (wall clock).
    pub time: SystemTime,
    pub request_id: Vec<u8>,
    /// The client's address as the front server gave it (REMOTE_ADDR).
    pub remote: Vec<u8>,
    pub method: Vec<u8>,
    /// The path, without the query string.
    pub path: Vec<u8>,
    pub query: Vec<u8>,
    /// SERVER_PROTOCOL (`HTTP/1.1`).
    pub protocol: Vec<u8>,
    /// The status code sent; `None` when no head went out.
    pub status: Option<u16>,
    /// Body bytes of the response.
    pub response_bytes: u64,
    /// Body bytes of the request (its CONTENT_LENGTH).
    pub request_bytes: u64,
    pub duration: Duration,
    /// From the start to the response head; `None` when none went out.
    pub first_byte: Option<Duration>,
    pub pid: u32,
    pub front: Front,
    pub ended: Ended,
    /// The request headers the format names (name as the format spells
    /// it, value), when the request had them.
    pub request_headers: Vec<(String, Vec<u8>)>,
    /// The response headers the format names, likewise.
    pub response_headers: Vec<(String, Vec<u8>)>,
}

impl Record {
    /// A record with nothing known yet but when, who and how it came.
    pub fn new(time: SystemTime, front: Front) -> Record {
        Record {
            time,
            request_id: Vec::new(),
            remote: Vec::new(),
            method: Vec::new(),
            path: Vec::new(),
            query: Vec::new(),
            protocol: Vec::new(),
            status: None,
            response_bytes: 0,
            request_bytes: 0,
            duration: Duration::ZERO,
            first_byte: None,
            pid: std::process::id(),
            front,
            ended: Ended::Complete,
            request_headers: Vec::new(),
            response_headers: Vec::new(),
        }
    }

    fn header<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    pub fn request_header(&self, name: &str) -> Option<&[u8]> {
        Record::header(&self.request_headers, name)
    }

    pub fn response_header(&self, name: &str) -> Option<&[u8]> {
        Record::header(&self.response_headers, name)
    }
}

/// The CGI parameter a request header arrives as (`User-Agent` →
/// `HTTP_USER_AGENT`; Content-Type and Content-Length have no `HTTP_`).
pub fn cgi_name(header: &str) -> Vec<u8> {
    let upper: Vec<u8> = header
        .bytes()
        .map(|b| match b {
            b'-' => b'_',
            b => b.to_ascii_uppercase(),
        })
        .collect();
    if upper == b"CONTENT_TYPE" || upper == b"CONTENT_LENGTH" {
        upper
    } else {
        [b"HTTP_".as_slice(), &upper].concat()
    }
}

#[cfg(test)]
mod tests;

/// How a request ended, as far as the side running the application knows
/// it (a `--timeout` 504, an application error, a client gone under a
/// write): the bytes of the response do not tell a 504 of ours from the
/// application's own. Set by the WSGI side, read when the record is
/// written; the first verdict stands.
#[derive(Debug, Default)]
pub struct Verdict(std::sync::atomic::AtomicU8);

impl Verdict {
    pub fn set(&self, ended: Ended) {
        let value = ended.index() as u8 + 1;
        let _first_stands = self.0.compare_exchange(
            0,
            value,
            std::sync::atomic::Ordering::AcqRel,
            std::sync::atomic::Ordering::Acquire,
        );
    }

    pub fn get(&self) -> Option<Ended> {
        match self.0.load(std::sync::atomic::Ordering::Acquire) {
            0 => None,
            n => Ended::ALL.get(usize::from(n) - 1).copied(),
        }
    }
}
