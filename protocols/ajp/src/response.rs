//! The response: SEND_HEADERS (status, reason, headers with the coded
//! names where AJP has them), SEND_BODY_CHUNK packets, END_RESPONSE with
//! the reuse flag. A block larger than [`COALESCE_LIMIT`] is referenced
//! piece by piece between the small packet headers, not copied.

use crate::codes;
use crate::fields::put_string;
use crate::packet::{self, HEADER_LEN, REPLY_MAGIC};
use bytes::Bytes;
use rustgi_model::{
    COALESCE_LIMIT, HeadTooLarge, ResponseEncoder, ResponseEvent, ResponseHead, Segments,
};

/// The most body bytes in one SEND_BODY_CHUNK: an 8 KiB packet less its
/// header, the prefix code, the chunk length and the trailing NUL, so
/// that it fits the web server's default buffer.
pub const MAX_SEND_CHUNK: usize = packet::DEFAULT_PACKET_SIZE - HEADER_LEN - 4;

/// AJP's response encoder for one request.
#[derive(Clone, Debug)]
pub struct AjpEncoder {
    reuse: bool,
    /// The largest packet the web server takes, header included (Tomcat's
    /// `packetSize`, Apache's `ProxyIOBufferSize`): SEND_HEADERS must fit.
    packet_size: usize,
}

impl Default for AjpEncoder {
    /// For AJP's default packet of 8 KiB.
    fn default() -> Self {
        AjpEncoder::new(packet::DEFAULT_PACKET_SIZE)
    }
}

impl AjpEncoder {
    /// `packet_size`: the largest packet the web server takes, header
    /// included (at most 65539, the format's).
    pub fn new(packet_size: usize) -> Self {
        AjpEncoder {
            reuse: true,
            packet_size: packet_size.min(packet::MAX_PAYLOAD + HEADER_LEN),
        }
    }
}

impl ResponseEncoder for AjpEncoder {
    fn encode(&mut self, event: ResponseEvent, out: &mut Segments) {
        match event {
            ResponseEvent::Head(head) => send_headers(&head, self.packet_size, out.small()),
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

    /// Apache refuses a SEND_HEADERS larger than its buffer ("AH01081:
    /// ajp_msg_check_header() incoming message is too big") and answers
    /// 500 without a word to us.
    fn check_head(&self, head: &ResponseHead) -> Result<(), HeadTooLarge> {
        let length = HEADER_LEN + headers_payload_len(head);
        if length > self.packet_size {
            return Err(HeadTooLarge {
                length,
                limit: self.packet_size,
                limit_name: "AJP's packet size",
                option: "--ajp-packet-size",
            });
        }
        Ok(())
    }
}

impl crate::AjpError {
    /// Writes what the web server is told before the connection closes on
    /// this error, if anything; true if something was written. A missing
    /// or wrong secret is answered as Tomcat answers it, 403 and
    /// END_RESPONSE reuse=0: the web server passes the 403 on rather than
    /// taking a silent close for a dead backend (Apache's 503, a balancer
    /// trying the next member with the same secret).
    pub fn answer_into(&self, out: &mut Vec<u8>) -> bool {
        if !matches!(self, Self::SecretMissing | Self::SecretWrong) {
            return false;
        }
        let mut payload = vec![codes::SEND_HEADERS];
        payload.extend_from_slice(&403u16.to_be_bytes());
        put_string(&mut payload, b"Forbidden");
        payload.extend_from_slice(&1u16.to_be_bytes());
        payload.extend_from_slice(
            &codes::response_header_code(b"Content-Length")
                .expect("Content-Length has a code")
                .to_be_bytes(),
        );
        put_string(&mut payload, b"0");
        packet::reply(out, &payload);
        packet::reply(out, &[codes::END_RESPONSE, 0]);
        true
    }
}

/// The length of a string field.
fn string_len(value: &[u8]) -> usize {
    2 + value.len() + 1
}

/// SEND_HEADERS' payload length for `head`, as [`send_headers`] writes it.
fn headers_payload_len(head: &ResponseHead) -> usize {
    let reason = head.status.get(4..).unwrap_or_default();
    let fields: usize = head
        .headers
        .iter()
        .map(|(name, value)| {
            let name_len = match codes::response_header_code(name) {
                Some(_) => 2,
                None => string_len(name),
            };
            name_len + string_len(value)
        })
        .sum();
    1 + 2 + string_len(reason) + 2 + fields
}

/// Writes SEND_HEADERS. The flow has checked the head
/// ([`AjpEncoder::check_head`]); one that does not fit all the same
/// becomes a bare 500 rather than a packet the web server refuses or a
/// wrong length.
fn send_headers(head: &ResponseHead, packet_size: usize, out: &mut Vec<u8>) {
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
    if HEADER_LEN + length > packet_size {
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
        send_headers(&head, packet::MAX_PAYLOAD + HEADER_LEN, &mut out);
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

    fn head_with_header_of(size: usize) -> ResponseHead {
        let value = Bytes::from(vec![b'v'; size]);
        ResponseHead::new(
            Bytes::from_static(b"200 OK"),
            vec![(Bytes::from_static(b"X-Big"), value)],
        )
        .unwrap()
    }

    #[test]
    fn a_head_over_the_packet_size_is_refused_by_its_exact_length() {
        let encoder = AjpEncoder::new(8192);
        // Its payload: code, status, reason "OK", count, "X-Big", value.
        let fixed = 1 + 2 + (2 + 2 + 1) + 2 + (2 + 5 + 1) + (2 + 1);
        let fits = head_with_header_of(8188 - fixed);
        assert_eq!(encoder.check_head(&fits), Ok(()));
        let mut out = Segments::default();
        AjpEncoder::new(8192).encode(ResponseEvent::Head(fits), &mut out);
        assert_eq!(written(&out).len(), 8192, "exactly one full packet");
        let over = head_with_header_of(8189 - fixed);
        let error = encoder.check_head(&over).unwrap_err();
        assert_eq!((error.length, error.limit), (8193, 8192));
        assert_eq!(
            error.to_string(),
            "response head of 8193 bytes over AJP's packet size of 8192 (--ajp-packet-size)"
        );
        // Not checked, it still never goes out whole.
        let mut out = Segments::default();
        AjpEncoder::new(8192).encode(ResponseEvent::Head(over), &mut out);
        let packets = decode_response(&written(&out)).unwrap();
        assert!(
            matches!(packets[..], [ResponsePacket::Headers { status: 500, .. }]),
            "{packets:?}"
        );
    }

    #[test]
    fn a_missing_or_wrong_secret_is_answered_403_without_reuse() {
        for error in [crate::AjpError::SecretMissing, crate::AjpError::SecretWrong] {
            let mut out = Vec::new();
            assert!(error.answer_into(&mut out));
            assert_eq!(
                decode_response(&out).unwrap(),
                vec![
                    ResponsePacket::Headers {
                        status: 403,
                        reason: b"Forbidden".to_vec(),
                        headers: vec![(b"content-length".to_vec(), b"0".to_vec())]
                    },
                    ResponsePacket::End { reuse: false },
                ]
            );
        }
        let mut out = Vec::new();
        assert!(!crate::AjpError::EmptyPacket.answer_into(&mut out));
        assert!(out.is_empty(), "other bad input is not answered");
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
