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

use rustgi_model::{Request, ResponseHead};

/// The version used when the request's SERVER_PROTOCOL is missing or is not
/// `HTTP/x.y`.
const FALLBACK_VERSION: &[u8] = b"HTTP/1.0";

/// Appends `<version> <status>\r\n`, the header lines and the blank line.
pub fn encode_head(request: &Request, head: &ResponseHead, out: &mut Vec<u8>) {
    out.extend_from_slice(version(request));
    out.push(b' ');
    out.extend_from_slice(&head.status);
    out.extend_from_slice(b"\r\n");
    head.write_header_lines(out);
}

/// The request's SERVER_PROTOCOL if it is `HTTP/` digit `.` digit.
fn version(request: &Request) -> &[u8] {
    match request.param(b"SERVER_PROTOCOL").map(|v| v.as_ref()) {
        Some(v @ [b'H', b'T', b'T', b'P', b'/', major, b'.', minor])
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            v
        }
        _ => FALLBACK_VERSION,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use rustgi_model::Param;

    fn head(status: &'static str) -> ResponseHead {
        ResponseHead::new(
            Bytes::from_static(status.as_bytes()),
            vec![(
                Bytes::from_static(b"Content-Type"),
                Bytes::from_static(b"text/plain"),
            )],
        )
        .unwrap()
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
        encode_head(&with_protocol("HTTP/1.1"), &head("200 OK"), &mut out);
        assert_eq!(out, b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n");
        for (protocol, line) in [
            ("HTTP/1.0", "HTTP/1.0 404 Not Found"),
            ("HTTP/2.0", "HTTP/2.0 404 Not Found"),
        ] {
            let mut out = Vec::new();
            encode_head(&with_protocol(protocol), &head("404 Not Found"), &mut out);
            assert!(
                out.starts_with(format!("{line}\r\n").as_bytes()),
                "{protocol}"
            );
        }
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
            encode_head(&with_protocol(protocol), &head("204 No Content"), &mut out);
            assert_eq!(
                out, b"keptHTTP/1.0 204 No Content\r\nContent-Type: text/plain\r\n\r\n",
                "{protocol:?}"
            );
        }
        let mut out = Vec::new();
        encode_head(&Request::default(), &head("200 OK"), &mut out);
        assert!(out.starts_with(b"HTTP/1.0 200 OK\r\n"));
    }
}
