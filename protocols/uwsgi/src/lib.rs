//! uwsgi, the binary protocol of the uWSGI server (nginx `uwsgi_pass`,
//! Apache `mod_proxy_uwsgi`).
//!
//! A request is a 4-byte header, a block of vars, then the body:
//!
//! ```text
//! request  = modifier1 datasize modifier2 vars body
//! modifier1 = u8                        ; 0: WSGI; 30: WSGI, cut SCRIPT_NAME off PATH_INFO
//! datasize = u16, little-endian         ; the length of `vars`, not of the body
//! modifier2 = u8                        ; ignored
//! vars     = *(keylen key vallen value) ; keylen, vallen: u16 little-endian
//! body     = CONTENT_LENGTH bytes, or a chunked body (see below)
//! ```
//!
//! The response is a real HTTP status line built from the request's
//! SERVER_PROTOCOL (`HTTP/1.1 200 OK\r\n`), headers, blank line, body, and
//! ends when the connection closes: one request per connection.
//!
//! When CONTENT_LENGTH is sent (and not empty) it gives the body's length
//! and HTTP_TRANSFER_ENCODING is ignored: nginx 1.22 sends both for a
//! chunked upload, with a body it has already de-chunked. Only a request
//! with a chunked Transfer-Encoding and no CONTENT_LENGTH carries a chunked
//! body (uWSGI's extension): [`Uwsgi::body_framing`] then says
//! [`BodyFraming::Chunked`], and the server decodes the body with
//! [`rustgi_model::ChunkedDecoder`].
//!
//! This crate does no I/O (no sockets, no logging, no Python), as `httparse`
//! does not: [`Uwsgi::decode_head`] turns bytes the server has read into a
//! [`Request`], and [`UwsgiEncoder`] turns the response into bytes for the
//! server to write. That keeps it testable on byte fixtures
//! and fuzzable in isolation.
//!
//! Decoding is incremental and zero-copy: given a partial head it answers
//! "need more" and consumes nothing; given a whole head it splits it off the
//! buffer and the params are slices of it; given bytes that break the
//! protocol it returns a [`UwsgiError`] as soon as the bytes show it, without
//! waiting for the rest: an HTTP request sent to the uwsgi socket, an
//! unsupported modifier1 or a datasize over the limit are refused from the
//! 4-byte header, a var running past the block from its length field.

#![forbid(unsafe_code)]

pub mod client;
mod error;
mod framing;
mod header;
mod response;
mod script_name;
mod vars;

use bytes::BytesMut;
use rustgi_model::{BodyFraming, Param, Request, StreamProtocol};

pub use error::UwsgiError;
pub use response::UwsgiEncoder;

/// The vars-block limit the gateway uses unless told otherwise: 65535, the
/// most a u16 datasize can declare, so every block the format allows is
/// accepted (uWSGI's 4 KiB default makes long cookies fail with "invalid
/// request block size", a top complaint).
pub const DEFAULT_MAX_VARS_SIZE: usize = 65535;

/// The uwsgi protocol: a request-head decoder and a response-head encoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Uwsgi {
    max_vars_size: usize,
}

impl Uwsgi {
    /// `max_vars_size` bounds the header's datasize (the vars block's
    /// length). The format cannot declare more than 65535 bytes, so only a
    /// smaller limit refuses anything.
    pub fn new(max_vars_size: usize) -> Self {
        Uwsgi { max_vars_size }
    }
}

impl Default for Uwsgi {
    fn default() -> Self {
        Uwsgi::new(DEFAULT_MAX_VARS_SIZE)
    }
}

impl StreamProtocol for Uwsgi {
    type Error = UwsgiError;

    fn name(&self) -> &'static str {
        "uwsgi"
    }

    /// Decodes the head from the front of `buf`, in the order the bytes
    /// arrive: header, then the vars one by one. On success the head is
    /// split off `buf` and the body bytes stay in it.
    fn decode_head(&self, buf: &mut BytesMut) -> Result<Option<Request>, UwsgiError> {
        let Some(header) = header::parse(buf, self.max_vars_size)? else {
            return Ok(None);
        };
        let end = buf.len().min(header.head_len());
        let block = &buf[header::HEADER_LEN..end];
        let Some(vars) = vars::parse(block, header.size, header::HEADER_LEN)? else {
            return Ok(None);
        };

        let head = buf.split_to(header.head_len()).freeze();
        let mut params = Param::slices(&head, vars.pairs);
        let mut warnings = Vec::new();
        if header.modifier1 == header::MODIFIER_STRIP_SCRIPT_NAME {
            warnings.extend(script_name::strip(&mut params));
        }
        warnings.extend(framing::warning(&params));
        Ok(Some(Request {
            params,
            content_length: vars.content_length.unwrap_or(0),
            warnings,
        }))
    }

    type Encoder = UwsgiEncoder;

    /// A head with an HTTP status line built from the request's
    /// SERVER_PROTOCOL.
    fn encoder(&self, request: &Request) -> UwsgiEncoder {
        UwsgiEncoder::new(request)
    }

    /// `Length(content_length)`, except for a request with a chunked
    /// Transfer-Encoding and no CONTENT_LENGTH: `Chunked`.
    fn body_framing(&self, request: &Request) -> BodyFraming {
        framing::body_framing(request)
    }
}

#[cfg(test)]
mod tests;
