//! The response head: CGI style, as SCGI front servers expect it.
//!
//! ```text
//! Status: 200 OK\r\n
//! Content-Type: text/plain\r\n
//! \r\n
//! ```
//!
//! The body follows as it is, and the end of the response is the end of the
//! connection (SCGI has one request per connection).

use rustgi_model::ResponseHead;

/// Appends `Status: <status>\r\n`, the header lines and the blank line.
pub fn encode_head(head: &ResponseHead, out: &mut Vec<u8>) {
    out.extend_from_slice(b"Status: ");
    out.extend_from_slice(&head.status);
    out.extend_from_slice(b"\r\n");
    head.write_header_lines(out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn writes_a_cgi_head() {
        let head = ResponseHead::new(
            Bytes::from_static(b"404 Not Found"),
            vec![
                (
                    Bytes::from_static(b"Content-Type"),
                    Bytes::from_static(b"text/plain"),
                ),
                (
                    Bytes::from_static(b"Set-Cookie"),
                    Bytes::from_static(b"a=1"),
                ),
            ],
        )
        .unwrap();
        let mut out = Vec::new();
        encode_head(&head, &mut out);
        assert_eq!(
            out,
            b"Status: 404 Not Found\r\nContent-Type: text/plain\r\nSet-Cookie: a=1\r\n\r\n"
        );
    }

    #[test]
    fn writes_a_head_without_headers() {
        let head = ResponseHead::new(Bytes::from_static(b"204 No Content"), vec![]).unwrap();
        let mut out = b"kept".to_vec();
        encode_head(&head, &mut out);
        assert_eq!(out, b"keptStatus: 204 No Content\r\n\r\n");
    }
}
