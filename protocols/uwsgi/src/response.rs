//! The response head: a real HTTP status line, as uwsgi front servers
//! expect it.
//!
//! ```text
//! HTTP/1.1 200 OK\r\n
//! Content-Type: text/plain\r\n
//! \r\n
//! ```
//!
//! The version is the request's SERVER_PROTOCOL when that is `HTTP/x.y`
//! (what uWSGI sends too), else `HTTP/1.0`. Apache's mod_proxy_uwsgi
//! refuses a response without such a line; nginx takes either. The body
//! follows as it is, and the end of the response is the end of the
//! connection (one request per connection).

use bytes::Bytes;
use rustgi_model::{
    Request, ResponseEncoder, ResponseEvent, ResponseHead, Segments, encode_stream_event,
};

/// The version used when the request's SERVER_PROTOCOL is missing or is not
/// `HTTP/x.y`.
const FALLBACK_VERSION: &[u8] = b"HTTP/1.0";

/// uwsgi's response encoder, for one request: it keeps the HTTP version
/// of the request's status line, and nothing else of the request.
#[derive(Clone, Debug)]
pub struct UwsgiEncoder {
    version: Bytes,
}

impl UwsgiEncoder {
    pub fn new(request: &Request) -> Self {
        UwsgiEncoder {
            version: version(request),
        }
    }

    /// Appends `<version> <status>\r\n`, the header lines and the blank line.
    fn write_head(&self, head: &ResponseHead, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.version);
        out.push(b' ');
        out.extend_from_slice(&head.status);
        out.extend_from_slice(b"\r\n");
        head.write_header_lines(out);
    }
}

impl ResponseEncoder for UwsgiEncoder {
    fn encode(&mut self, event: ResponseEvent, out: &mut Segments) {
        encode_stream_event(event, out, |head, out| self.write_head(head, out));
    }
}

/// The request's SERVER_PROTOCOL if it is an HTTP version.
fn version(request: &Request) -> Bytes {
    request
        .param(b"SERVER_PROTOCOL")
        .filter(|v| is_http_version(v))
        .cloned()
        .unwrap_or(Bytes::from_static(FALLBACK_VERSION))
}

/// `HTTP/` digit `.` digit.
fn is_http_version(v: &[u8]) -> bool {
    matches!(v, [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
        if major.is_ascii_digit() && minor.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustgi_model::Param;
    use rustgi_model::testing::{check_stream_encoder, encode_all};
    use std::io::IoSlice;

    fn head(status: &'static str) -> ResponseHead {
        ResponseHead::from_static(status, &[("Content-Type", "text/plain")]).unwrap()
    }

    fn with_protocol(protocol: &'static str) -> Request {
        Request {
            params: vec![Param::new("SERVER_PROTOCOL", protocol)],
            ..Request::default()
        }
    }

    #[test]
    fn uses_the_request_protocol() {
        let mut out = Vec::new();
        UwsgiEncoder::new(&with_protocol("HTTP/1.1")).write_head(&head("200 OK"), &mut out);
        assert_eq!(out, b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n");
        for (protocol, line) in [
            ("HTTP/1.0", "HTTP/1.0 404 Not Found"),
            ("HTTP/2.0", "HTTP/2.0 404 Not Found"),
        ] {
            let mut out = Vec::new();
            UwsgiEncoder::new(&with_protocol(protocol))
                .write_head(&head("404 Not Found"), &mut out);
            assert!(
                out.starts_with(format!("{line}\r\n").as_bytes()),
                "{protocol}"
            );
        }
    }

    #[test]
    fn head_and_small_body_are_one_segment() {
        let mut encoder = UwsgiEncoder::new(&with_protocol("HTTP/1.1"));
        let body = Bytes::from_static(b"hello");
        let events = [
            ResponseEvent::Head(head("200 OK")),
            ResponseEvent::Body(body),
        ];
        let out = encode_all(&mut encoder, events);
        let mut slices = [IoSlice::new(&[]); 8];
        assert_eq!(out.io_slices(&mut slices), 1);
        assert_eq!(
            &*slices[0],
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhello"
        );
    }

    #[test]
    fn large_blocks_are_referenced_and_the_rest_is_silent() {
        check_stream_encoder(&mut UwsgiEncoder::new(&Request::default()));
    }

    #[test]
    fn falls_back_to_http_1_0() {
        for protocol in [
            "",
            "HTTP/1",
            "HTTP/1.1 ",
            "HTTP/11.1",
            "http/1.1",
            "HTTP/x.1",
            "SPDY/3.1",
        ] {
            let mut out = b"kept".to_vec();
            UwsgiEncoder::new(&with_protocol(protocol))
                .write_head(&head("204 No Content"), &mut out);
            assert_eq!(
                out, b"keptHTTP/1.0 204 No Content\r\nContent-Type: text/plain\r\n\r\n",
                "{protocol:?}"
            );
        }
        let mut out = Vec::new();
        UwsgiEncoder::new(&Request::default()).write_head(&head("200 OK"), &mut out);
        assert!(out.starts_with(b"HTTP/1.0 200 OK\r\n"));
    }
}
