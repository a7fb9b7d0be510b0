//! SCGI, the Simple Common Gateway Interface (Neil Schemenauer, 2008).
//!
//! A request is a netstring holding CGI-style headers, then the body:
//!
//! ```text
//! request = length ":" headers "," body
//! length  = "0" / nonzero-digit *digit        ; ASCII decimal, no leading zeros
//! headers = 1*(name NUL value NUL)            ; CONTENT_LENGTH first, SCGI "1"
//! body    = CONTENT_LENGTH bytes
//! ```
//!
//! The response is CGI style (`Status: 200 OK\r\n`, headers, blank line,
//! body) and ends when the connection closes: one request per connection.
//!
//! This crate does no I/O (no sockets, no logging, no Python), as `httparse`
//! does not: [`Scgi::decode_head`] turns bytes the server has read into a
//! [`Request`], and [`ScgiEncoder`] turns the response into bytes for the
//! server to write. That keeps it testable on byte fixtures
//! and fuzzable in isolation.
//!
//! Decoding is incremental and zero-copy: given a partial head it answers
//! "need more" and consumes nothing; given a whole head it splits it off the
//! buffer and the params are slices of it; given bytes that break the
//! protocol it returns an [`ScgiError`] as soon as the bytes show it, without
//! waiting for the rest (a length over the limit is refused from its digits).

#![forbid(unsafe_code)]

pub mod client;
mod error;
mod headers;
mod netstring;
mod response;

use bytes::BytesMut;
use rustgi_model::{Param, Request, StreamProtocol};

pub use error::ScgiError;
pub use response::ScgiEncoder;

/// The header-block limit the gateway uses unless told otherwise: 64 KiB,
/// room for long cookies (uWSGI's 4 KiB default is a top complaint).
pub const DEFAULT_MAX_HEADER_SIZE: usize = 65536;

/// The SCGI protocol: a request-head decoder and a response-head encoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scgi {
    max_header_size: usize,
}

impl Scgi {
    /// `max_header_size` bounds the netstring's declared length (the header
    /// block, without the length prefix and the `,`), so that a length field
    /// never drives an unbounded buffer.
    pub fn new(max_header_size: usize) -> Self {
        Scgi { max_header_size }
    }
}

impl Default for Scgi {
    fn default() -> Self {
        Scgi::new(DEFAULT_MAX_HEADER_SIZE)
    }
}

impl StreamProtocol for Scgi {
    type Error = ScgiError;

    fn name(&self) -> &'static str {
        "scgi"
    }

    /// Decodes the netstring head from the front of `buf`, in the order the
    /// bytes arrive: length prefix, header block, closing `,`. On success the
    /// head is split off `buf` and the body bytes stay in it.
    fn decode_head(&self, buf: &mut BytesMut) -> Result<Option<Request>, ScgiError> {
        let Some(frame) = netstring::prefix(buf, self.max_header_size)? else {
            return Ok(None);
        };
        let (block, complete) = netstring::block(buf, frame);
        let Some(headers) = headers::parse(block, complete, frame.start)? else {
            return Ok(None);
        };
        if netstring::comma(buf, frame)?.is_none() {
            return Ok(None);
        }

        let head = buf.split_to(frame.head_len()).freeze();
        let mut request = Request {
            params: Param::slices(&head, headers.pairs),
            content_length: headers.content_length,
            warnings: Vec::new(),
        };
        let scgi = request.param(b"SCGI").map(|v| v.as_ref());
        request.warnings.extend(headers::scgi_warning(scgi));
        Ok(Some(request))
    }

    type Encoder = ScgiEncoder;

    /// The CGI-style head; SCGI needs nothing from the request.
    fn encoder(&self, _request: &Request) -> ScgiEncoder {
        ScgiEncoder
    }
}

#[cfg(test)]
mod tests;
