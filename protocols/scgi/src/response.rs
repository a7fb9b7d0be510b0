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
    use rustgi_model::ResponseHead;
    use rustgi_model::testing::{check_stream_encoder, encode_all};
    use std::io::IoSlice;

    #[test]
    fn head_and_small_body_are_one_segment() {
        let head = ResponseHead::from_static("201 Created", &[("X", "y")]).unwrap();
        let body = Bytes::from_static(b"hello");
        let events = [ResponseEvent::Head(head), ResponseEvent::Body(body)];
        let out = encode_all(&mut ScgiEncoder, events);
        let mut slices = [IoSlice::new(&[]); 8];
        assert_eq!(out.io_slices(&mut slices), 1);
        assert_eq!(&*slices[0], b"Status: 201 Created\r\nX: y\r\n\r\nhello");
    }

    #[test]
    fn large_blocks_are_referenced_and_the_rest_is_silent() {
        check_stream_encoder(&mut ScgiEncoder);
    }
}
