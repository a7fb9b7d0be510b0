//! The response: CGI style, as SCGI front servers expect it.
//!
//! ```text
//! Status: 200 OK\r\n
//! Content-Type: text/plain\r\n
//! \r\n
//! ```
//!
//! The body follows as it is, and the end of the response is the end of the
//! connection (SCGI has one request per connection).

use rustgi_model::{ResponseEncoder, ResponseEvent, Segments, encode_stream_event};

/// SCGI's response encoder; it needs nothing from the request.
#[derive(Clone, Copy, Debug, Default)]
pub struct ScgiEncoder;

impl ResponseEncoder for ScgiEncoder {
    fn encode(&mut self, event: ResponseEvent, out: &mut Segments) {
        encode_stream_event(event, out, |head, out| head.write_cgi_head(out));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use rustgi_model::{COALESCE_LIMIT, ResponseHead};

    fn encode(events: Vec<ResponseEvent>) -> Segments {
        let mut out = Segments::default();
        for event in events {
            ScgiEncoder.encode(event, &mut out);
        }
        out
    }

    #[test]
    fn head_and_small_body_are_one_segment() {
        let head = ResponseHead::new(
            Bytes::from_static(b"201 Created"),
            vec![(Bytes::from_static(b"X"), Bytes::from_static(b"y"))],
        )
        .unwrap();
        let mut out = encode(vec![
            ResponseEvent::Head(head),
            ResponseEvent::Body(Bytes::from_static(b"hello")),
        ]);
        let slices = out.io_slices(8);
        assert_eq!(slices.len(), 1);
        assert_eq!(&*slices[0], b"Status: 201 Created\r\nX: y\r\n\r\nhello");
    }

    #[test]
    fn a_large_body_is_referenced() {
        let large = Bytes::from(vec![7u8; COALESCE_LIMIT + 1]);
        let mut out = encode(vec![ResponseEvent::Body(large.clone())]);
        assert_eq!(out.io_slices(8)[0].as_ptr(), large.as_ptr());
    }

    #[test]
    fn stderr_and_the_end_write_nothing() {
        let out = encode(vec![
            ResponseEvent::Stderr(Bytes::from_static(b"oops\n")),
            ResponseEvent::End,
            ResponseEvent::Abort,
        ]);
        assert!(out.is_empty());
    }
}
