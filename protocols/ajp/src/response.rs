//! The response: SEND_HEADERS (status, reason, headers with the coded
//! names where AJP has them), SEND_BODY_CHUNK packets, END_RESPONSE with
//! the reuse flag. A block larger than [`COALESCE_LIMIT`] is referenced
//! piece by piece between the small packet headers, not copied.

use crate::codes;
use crate::fields::put_string;
use crate::packet::{self, HEADER_LEN, REPLY_MAGIC};
use bytes::Bytes;
use rustgi_model::{COALESCE_LIMIT, ResponseEncoder, ResponseEvent, ResponseHead, Segments};

/// The most body bytes in one SEND_BODY_CHUNK: an 8 KiB packet less its
/// header, the prefix code, the chunk length and the trailing NUL, so
/// that it fits the web server's default buffer.
pub const MAX_SEND_CHUNK: usize = packet::DEFAULT_PACKET_SIZE - HEADER_LEN - 4;

/// AJP's response encoder for one request.
#[derive(Clone, Debug)]
pub struct AjpEncoder {
    reuse: bool,
}

impl Default for AjpEncoder {
    fn default() -> Self {
        AjpEncoder { reuse: true }
    }
}

impl ResponseEncoder for AjpEncoder {
    fn encode(&mut self, event: ResponseEvent, out: &mut Segments) {
        match event {
            ResponseEvent::Head(head) => send_headers(&head, out.small()),
            ResponseEvent::Body(data) => send_body(data, out),
            ResponseEvent::End => {
                packet::reply(out.small(), &[codes::END_RESPONSE, u8::from(self.reuse)]);
            }
            // No channel for wsgi.errors (it is in the log); a cut response
            // is ended by closing the connection, never by END_RESPONSE.
            ResponseEvent::Stderr(_) | ResponseEvent::Abort => {}
        }
    }

    /// END_RESPONSE tells the web server not to reuse the connection (the
    /// server is stopping): it closes it rather than sending its next
    /// request on a connection about to close.
    fn last_on_connection(&mut self) -> bool {
        self.reuse = false;
        true
    }
}

fn send_headers(head: &ResponseHead, out: &mut Vec<u8>) {
    // Written in place, the length patched in after: no payload buffer of
    // its own to allocate and copy.
    let start = out.len();
    out.extend_from_slice(&REPLY_MAGIC);
    out.extend_from_slice(&[0, 0]);
    out.push(codes::SEND_HEADERS);
    out.extend_from_slice(&head.status_code().to_be_bytes());
    put_string(out, head.status.get(4..).unwrap_or_default());
    out.extend_from_slice(&(head.headers.len() as u16).to_be_bytes());
    for (name, value) in &head.headers {
        match codes::response_header_code(name) {
            Some(code) => out.extend_from_slice(&code.to_be_bytes()),
            None => put_string(out, name),
        }
        put_string(out, value);
    }
    let length = out.len() - start - HEADER_LEN;
    if length > packet::MAX_PAYLOAD {
        // A head within MAX_RESPONSE_HEAD as text can be a few bytes longer
        // in AJP's form than its length field can say: refused as any
        // application error is, rather than sent with a wrong length.
        out.truncate(start);
        let mut payload = vec![codes::SEND_HEADERS];
        payload.extend_from_slice(&500u16.to_be_bytes());
        put_string(&mut payload, b"Internal Server Error");
        payload.extend_from_slice(&0u16.to_be_bytes());
        packet::reply(out, &payload);
        return;
    }
    out[start + 2..start + HEADER_LEN].copy_from_slice(&(length as u16).to_be_bytes());
}

/// The packet header, prefix code and chunk length of a chunk of `len`.
fn chunk_head(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(&REPLY_MAGIC);
    out.extend_from_slice(&((len + 4) as u16).to_be_bytes());
    out.push(codes::SEND_BODY_CHUNK);
    out.extend_from_slice(&(len as u16).to_be_bytes());
}

fn send_body(data: Bytes, out: &mut Segments) {
    if data.len() <= COALESCE_LIMIT {
        let small = out.small();
        for piece in data.chunks(MAX_SEND_CHUNK) {
            chunk_head(small, piece.len());
            small.extend_from_slice(piece);
            small.push(0);
        }
        return;
    }
    let mut start = 0;
    while start < data.len() {
        let end = (start + MAX_SEND_CHUNK).min(data.len());
        let small = out.small();
        if start > 0 {
            small.push(0);
        }
        chunk_head(small, end - start);
        out.push(data.slice(start..end));
        start = end;
    }
    out.small().push(0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{ResponsePacket, decode_response};
    use rustgi_model::testing::encode_all;

    fn written(out: &Segments) -> Vec<u8> {
        let mut slices = [std::io::IoSlice::new(&[]); 64];
        let n = out.io_slices(&mut slices);
        slices[..n].iter().flat_map(|s| s.iter().copied()).collect()
    }

    #[test]
    fn head_body_and_end_are_packets_with_coded_names() {
        let head = ResponseHead::from_static(
            "404 Not Found",
            &[("Content-Type", "text/plain"), ("X-Thing", "1")],
        )
        .unwrap();
        let events = [
            ResponseEvent::Head(head),
            ResponseEvent::Body(Bytes::from_static(b"nope")),
            ResponseEvent::End,
        ];
        let out = encode_all(&mut AjpEncoder::default(), events);
        let bytes = written(&out);
        assert!(bytes.starts_with(b"AB"));
        // 0xA001 is Content-Type's code.
        assert!(bytes.windows(2).any(|w| w == [0xA0, 0x01]));
        let packets = decode_response(&bytes).unwrap();
        assert_eq!(
            packets,
            vec![
                ResponsePacket::Headers {
                    status: 404,
                    reason: b"Not Found".to_vec(),
                    headers: vec![
                        (b"content-type".to_vec(), b"text/plain".to_vec()),
                        (b"X-Thing".to_vec(), b"1".to_vec())
                    ]
                },
                ResponsePacket::Body(b"nope".to_vec()),
                ResponsePacket::End { reuse: true },
            ]
        );
    }

    #[test]
    fn a_head_too_long_for_a_packet_becomes_a_500_in_place() {
        // 10,000 one-letter headers: 60,000 bytes as text, 80,000 in AJP's
        // form (a length and a NUL around each name and value).
        let headers: Vec<(Bytes, Bytes)> = (0..10_000)
            .map(|_| (Bytes::from_static(b"X"), Bytes::from_static(b"y")))
            .collect();
        let head = ResponseHead::new(Bytes::from_static(b"200 OK"), headers).unwrap();
        let mut out = b"before".to_vec();
        send_headers(&head, &mut out);
        assert_eq!(&out[..6], b"before", "what was there stays");
        let packets = decode_response(&out[6..]).unwrap();
        assert_eq!(
            packets,
            vec![ResponsePacket::Headers {
                status: 500,
                reason: b"Internal Server Error".to_vec(),
                headers: vec![]
            }]
        );
    }

    #[test]
    fn large_blocks_go_in_chunks_of_at_most_8184_referenced() {
        let block = Bytes::from((0..100_000u32).map(|i| i as u8).collect::<Vec<u8>>());
        let mut encoder = AjpEncoder::default();
        let mut out = Segments::default();
        encoder.encode(ResponseEvent::Body(block.clone()), &mut out);
        assert_eq!(out.unwritten_within(&block), block.len());
        encoder.last_on_connection();
        encoder.encode(ResponseEvent::End, &mut out);
        let mut bytes = Vec::new();
        while !out.is_empty() {
            let chunk = written(&out);
            out.advance(chunk.len());
            bytes.extend(chunk);
        }
        let packets = decode_response(&bytes).unwrap();
        let mut body = Vec::new();
        for packet in &packets[..packets.len() - 1] {
            let ResponsePacket::Body(data) = packet else {
                panic!("{packet:?}")
            };
            assert!(data.len() <= MAX_SEND_CHUNK);
            body.extend_from_slice(data);
        }
        assert_eq!(body, block);
        assert_eq!(packets.last(), Some(&ResponsePacket::End { reuse: false }));
    }
}
