//! The response side of one request: its events become STDOUT, STDERR and
//! END_REQUEST records.
//!
//! What is queued goes out in as few STDOUT records as it fits: the head
//! shares its record with the small body that follows it (Apache's
//! mod_authnz_fcgi keeps only the body bytes that arrive in the record
//! where the head ends). A large block is framed where it is, without a
//! copy: a record header, the block's bytes, the padding.

use crate::connection::Connection;
use crate::encode::{MAX_STDOUT_CONTENT, encode_response_head, encode_stdout, record_header};
use crate::record::{RecordType, padding};
use rustgi_model::{COALESCE_LIMIT, ResponseEncoder, ResponseEvent, Segments};

/// Encodes request `id`'s response on its connection; see
/// [`Connection::encoder`].
pub struct RequestEncoder<'a, T> {
    connection: &'a mut Connection<T>,
    id: u16,
}

impl<T> Connection<T> {
    /// The encoder of request `id`'s response. Events for a request that is
    /// not active write nothing: the output of an aborted request never
    /// reaches the next request with the same id. `End` ends the request
    /// (END_REQUEST); `Abort` ends it as truncated
    /// ([`Connection::end_request_truncated`]) and, when it is the only
    /// request on the connection, cuts the connection too
    /// ([`Connection::response_cut`]): a front server that does not read
    /// the missing end of STDOUT as a truncation sees the close.
    pub fn encoder(&mut self, id: u16) -> RequestEncoder<'_, T> {
        RequestEncoder {
            connection: self,
            id,
        }
    }
}

/// A connection that carries one request, with its encoder: what a Python
/// thread answering that request owns.
pub struct SoleRequest {
    pub connection: Connection,
    pub id: u16,
}

impl ResponseEncoder for SoleRequest {
    fn encode(&mut self, event: ResponseEvent, out: &mut Segments) {
        self.connection.encoder(self.id).encode(event, out);
    }

    fn end_batch(&mut self, out: &mut Segments) {
        self.connection.encoder(self.id).end_batch(out);
    }
}

impl<T> RequestEncoder<'_, T> {
    /// Frames the STDOUT content gathered so far.
    fn flush(&mut self, out: &mut Segments) {
        if let Some(i) = self.connection.index(self.id) {
            let stdout = &mut self.connection.requests[i].stdout;
            encode_stdout(self.id, stdout, out.small());
            stdout.clear();
        }
    }
}

impl<T> ResponseEncoder for RequestEncoder<'_, T> {
    fn encode(&mut self, event: ResponseEvent, out: &mut Segments) {
        let id = self.id;
        let Some(i) = self.connection.index(id) else {
            return;
        };
        match event {
            ResponseEvent::Head(head) => {
                encode_response_head(&head, &mut self.connection.requests[i].stdout)
            }
            ResponseEvent::Body(data) if data.len() > COALESCE_LIMIT => {
                self.flush(out);
                for start in (0..data.len()).step_by(MAX_STDOUT_CONTENT) {
                    let piece = data.slice(start..data.len().min(start + MAX_STDOUT_CONTENT));
                    let len = u16::try_from(piece.len()).expect("at most MAX_STDOUT_CONTENT");
                    out.small()
                        .extend_from_slice(&record_header(RecordType::Stdout, id, len));
                    let padding = padding(piece.len());
                    out.push(piece);
                    out.small().extend_from_slice(padding);
                }
            }
            ResponseEvent::Body(data) => {
                self.connection.requests[i].stdout.extend_from_slice(&data)
            }
            ResponseEvent::Stderr(line) => {
                self.flush(out);
                self.connection.write_stderr(id, &line, out.small());
            }
            ResponseEvent::End => {
                self.flush(out);
                self.connection.end_request(id, 0, out.small());
            }
            ResponseEvent::Abort => {
                self.flush(out);
                let alone = self.connection.active_requests() == 1;
                self.connection.end_request_truncated(id, out.small());
                self.connection.cut |= alone;
            }
        }
    }

    fn end_batch(&mut self, out: &mut Segments) {
        self.flush(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{encode_begin_request, encode_stream, records};
    use crate::connection::{Config, Event};
    use bytes::{Bytes, BytesMut};
    use rustgi_model::ResponseHead;
    use std::io::IoSlice;

    /// A connection with these requests begun (KEEP_CONN), their PARAMS
    /// and STDIN ended.
    fn connection_with_request(ids: &[u16]) -> Connection {
        let mut connection = Connection::new(Config::default());
        let mut wire = Vec::new();
        for &id in ids {
            encode_begin_request(id, 1, true, &mut wire);
            encode_stream(RecordType::Params, id, b"", 1024, &mut wire);
            encode_stream(RecordType::Stdin, id, b"", 1024, &mut wire);
        }
        connection.receive(&mut BytesMut::from(&wire[..])).unwrap();
        while let Some(event) = connection.poll_event() {
            assert!(!matches!(event, Event::Abort { .. }));
        }
        connection
    }

    fn head() -> ResponseEvent {
        let head = ResponseHead::new(
            Bytes::from_static(b"200 OK"),
            vec![(
                Bytes::from_static(b"Content-Length"),
                Bytes::from_static(b"2"),
            )],
        )
        .unwrap();
        ResponseEvent::Head(head)
    }

    fn encode(connection: &mut Connection, id: u16, events: Vec<ResponseEvent>) -> Segments {
        let mut out = Segments::default();
        let mut encoder = connection.encoder(id);
        for event in events {
            encoder.encode(event, &mut out);
        }
        encoder.end_batch(&mut out);
        out
    }

    #[test]
    fn the_head_shares_a_record_with_a_small_body_then_the_request_ends() {
        let mut connection = connection_with_request(&[1]);
        let events = vec![
            head(),
            ResponseEvent::Body(Bytes::from_static(b"ok")),
            ResponseEvent::End,
        ];
        let out = encode(&mut connection, 1, events).to_vec();
        let text = b"Status: 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let mut expected = record_header(RecordType::Stdout, 1, text.len() as u16).to_vec();
        expected.extend_from_slice(text);
        expected.extend_from_slice(padding(text.len()));
        // The empty STDOUT record, then END_REQUEST (appStatus 0, complete).
        expected.extend_from_slice(b"\x01\x06\x00\x01\x00\x00\x00\x00");
        expected.extend_from_slice(b"\x01\x03\x00\x01\x00\x08\x00\x00\0\0\0\0\0\0\0\0");
        assert_eq!(out, expected);
        assert!(!connection.is_active(1), "the id is free at once");
    }

    #[test]
    fn a_large_block_is_framed_where_it_is() {
        let mut connection = connection_with_request(&[1]);
        let block = Bytes::from(vec![7u8; MAX_STDOUT_CONTENT + 100]);
        let out = encode(&mut connection, 1, vec![ResponseEvent::Body(block.clone())]);
        let mut slices = [IoSlice::new(&[]); 8];
        assert_eq!(
            out.io_slices(&mut slices),
            5,
            "header, piece, header, piece, padding"
        );
        assert_eq!(slices[1].as_ptr(), block.as_ptr(), "not copied");
        assert_eq!(slices[1].len(), MAX_STDOUT_CONTENT);
        let recs = records(&out.to_vec()).unwrap();
        let lens: Vec<usize> = recs.iter().map(|r| r.content.len()).collect();
        assert_eq!(lens, [MAX_STDOUT_CONTENT, 100]);
    }

    #[test]
    fn an_inactive_request_writes_nothing() {
        let mut connection = connection_with_request(&[1]);
        let out = encode(&mut connection, 2, vec![head(), ResponseEvent::End]);
        assert!(out.is_empty());
    }

    #[test]
    fn an_abort_cuts_a_lone_request_and_ends_one_among_others() {
        let mut connection = connection_with_request(&[1]);
        let out = encode(&mut connection, 1, vec![head(), ResponseEvent::Abort]);
        let recs = records(&out.to_vec()).unwrap();
        let types: Vec<u8> = recs.iter().map(|r| r.header.record_type).collect();
        assert_eq!(
            types,
            [RecordType::Stdout as u8, RecordType::EndRequest as u8],
            "the head, then END_REQUEST with STDOUT left open"
        );
        assert!(!recs[0].content.is_empty());
        assert_eq!(recs[1].content[..4], 1u32.to_be_bytes(), "appStatus 1");
        assert!(connection.response_cut() && connection.should_close());
        assert!(!connection.is_active(1));

        let mut connection = connection_with_request(&[1, 2]);
        let out = encode(&mut connection, 1, vec![ResponseEvent::Abort]);
        let recs = records(&out.to_vec()).unwrap();
        assert_eq!(recs.len(), 1, "no end of STDOUT");
        let end = recs.last().unwrap();
        assert_eq!(end.header.record_type, RecordType::EndRequest as u8);
        assert_eq!(end.content[..4], 1u32.to_be_bytes(), "appStatus 1");
        assert!(!connection.response_cut());
        assert!(connection.is_active(2));
    }

    #[test]
    fn stderr_is_its_own_stream_and_is_closed_at_the_end() {
        let mut connection = connection_with_request(&[1]);
        let events = vec![
            ResponseEvent::Stderr(Bytes::from_static(b"oops\n")),
            ResponseEvent::End,
        ];
        let recs = records(&encode(&mut connection, 1, events).to_vec()).unwrap();
        let types: Vec<u8> = recs.iter().map(|r| r.header.record_type).collect();
        assert_eq!(
            types,
            [
                RecordType::Stderr as u8,
                RecordType::Stderr as u8,
                RecordType::Stdout as u8,
                RecordType::EndRequest as u8
            ]
        );
    }
}
