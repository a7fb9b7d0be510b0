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

/// What the access log knows of one request, borrowed from whoever
/// knows it (a worker's request and flow, the master's scoreboard): no
/// copy is made to write a line. Byte strings are as the request carried
/// them (the format escapes them).
#[derive(Clone, Copy)]
pub struct Record<'a> {
    /// When the request began (wall clock).
    pub time: SystemTime,
    pub request_id: &'a [u8],
    /// The client's address as the front server gave it (REMOTE_ADDR).
    pub remote: &'a [u8],
    pub method: &'a [u8],
    /// The path, without the query string.
    pub path: &'a [u8],
    pub query: &'a [u8],
    /// SERVER_PROTOCOL (`HTTP/1.1`).
    pub protocol: &'a [u8],
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
    /// The request's and the response's headers, looked up by name as
    /// the format asks for them.
    pub headers: &'a dyn Headers,
}

/// Headers by name (case-insensitive), for `request_header:NAME` and
/// `response_header:NAME` and the named formats' Referer and User-Agent.
pub trait Headers {
    fn request(&self, name: &str) -> Option<&[u8]>;
    fn response(&self, name: &str) -> Option<&[u8]>;
}

/// Headers as lists of (name, value): what a record built from anything
/// else than a live request (the master's scoreboard, tests) carries.
#[derive(Clone, Copy, Debug, Default)]
pub struct HeaderList<'a> {
    pub request: &'a [(&'a str, &'a [u8])],
    pub response: &'a [(&'a str, &'a [u8])],
}

fn find<'a>(list: &'a [(&'a str, &'a [u8])], name: &str) -> Option<&'a [u8]> {
    list.iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| *v)
}

impl Headers for HeaderList<'_> {
    fn request(&self, name: &str) -> Option<&[u8]> {
        find(self.request, name)
    }

    fn response(&self, name: &str) -> Option<&[u8]> {
        find(self.response, name)
    }
}

/// No headers known.
pub const NO_HEADERS: HeaderList<'static> = HeaderList {
    request: &[],
    response: &[],
};

impl Record<'_> {
    pub fn request_header(&self, name: &str) -> Option<&[u8]> {
        self.headers.request(name)
    }

    pub fn response_header(&self, name: &str) -> Option<&[u8]> {
        self.headers.response(name)
    }
}

/// This process's pid, asked once (getpid is a system call).
pub fn pid() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static PID: AtomicU32 = AtomicU32::new(0);
    match PID.load(Ordering::Relaxed) {
        0 => {
            let pid = std::process::id();
            PID.store(pid, Ordering::Relaxed);
            pid
        }
        pid => pid,
    }
}

/// `n` in decimal, written into `digits` (its end), without `fmt`'s
/// machinery: a line has up to six numbers, and a generated request id
/// one.
pub fn decimal(mut n: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &digits[at..]
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
