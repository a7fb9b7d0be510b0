//! The application's side of the wire: STDOUT, STDERR and END_REQUEST.
//!
//! The response itself is CGI style, carried in the STDOUT stream:
//!
//! ```text
//! Status: 200 OK\r\n
//! Content-Type: text/plain\r\n
//! \r\n
//! body…
//! ```
//!
//! then an empty STDOUT record closes the stream and END_REQUEST ends the
//! request ([`Connection::end_request`](crate::Connection::end_request)
//! writes both).
//!
//! # Record size
//!
//! Data is cut into records of at most [`MAX_STDOUT_CONTENT`] = 65528 bytes:
//! the largest multiple of 8 under the 65535 the length field allows. A full
//! record is then exactly 64 KiB on the wire (8 + 65528) and needs no
//! padding, so a vectored write is `header, data` with no third slice. The
//! alternative, 65535 bytes + 1 byte of padding, carries 0.01% more data per
//! record. Measured on this machine (a quick bench, not kept: 4 GiB through
//! a Unix socketpair to a reader walking the records, app blocks of 64 KiB to
//! 1 MiB, reader buffers of 8 and 64 KiB), 65528 was 1–8% faster through the
//! socket in every case; the encoding alone (a memcpy at 20–35 GB/s) showed
//! no difference beyond noise.

use rustgi_model::ResponseHead;

use crate::end::{EndRequest, ProtocolStatus};
use crate::record::{HEADER_LEN, Header, RecordType, padding, write_record};

/// The most content bytes in one STDOUT or STDERR record the encoder writes.
pub const MAX_STDOUT_CONTENT: usize = 65528;

/// Appends `data` as STDOUT records of at most [`MAX_STDOUT_CONTENT`]
/// bytes, each padded to a multiple of 8. Empty `data` writes nothing: an
/// empty STDOUT record would close the stream, which only
/// [`Connection::end_request`](crate::Connection::end_request) does.
pub fn encode_stdout(id: u16, data: &[u8], out: &mut Vec<u8>) {
    encode_data(RecordType::Stdout, id, data, out);
}

/// Appends `data` as STDERR records (nginx logs their content). Empty `data`
/// writes nothing.
pub fn encode_stderr(id: u16, data: &[u8], out: &mut Vec<u8>) {
    encode_data(RecordType::Stderr, id, data, out);
}

fn encode_data(record_type: RecordType, id: u16, data: &[u8], out: &mut Vec<u8>) {
    let records = data.len().div_ceil(MAX_STDOUT_CONTENT);
    out.reserve(data.len() + records * (HEADER_LEN + 7));
    for chunk in data.chunks(MAX_STDOUT_CONTENT) {
        write_record(record_type, id, chunk, out);
    }
}

/// Appends an empty record of a stream type: the end of that stream.
pub(crate) fn encode_stream_end(record_type: RecordType, id: u16, out: &mut Vec<u8>) {
    write_record(record_type, id, &[], out);
}

/// Appends an END_REQUEST record.
pub fn encode_end_request(
    id: u16,
    app_status: u32,
    protocol_status: ProtocolStatus,
    out: &mut Vec<u8>,
) {
    let body = EndRequest::new(app_status, protocol_status).encode();
    write_record(RecordType::EndRequest, id, &body, out);
}

/// Appends the CGI-style response head: `Status: <status>\r\n`, the header
/// lines and the blank line. These are raw bytes, to be carried in STDOUT
/// ([`encode_stdout`]); [`encode_head_record`] does both.
pub fn encode_response_head(head: &ResponseHead, out: &mut Vec<u8>) {
    head.write_cgi_head(out);
}

/// Appends the response head as STDOUT: one record, written in place
/// (no intermediate buffer) unless the head is over [`MAX_STDOUT_CONTENT`].
pub fn encode_head_record(id: u16, head: &ResponseHead, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    encode_response_head(head, out);
    let len = out.len() - start - HEADER_LEN;
    match u16::try_from(len) {
        Ok(len16) if len <= MAX_STDOUT_CONTENT => {
            let header = Header::new(RecordType::Stdout, id, len16).encode();
            out[start..start + HEADER_LEN].copy_from_slice(&header);
            out.extend_from_slice(padding(len));
        }
        _ => {
            let bytes = out.split_off(start + HEADER_LEN);
            out.truncate(start);
            encode_stdout(id, &bytes, out);
        }
    }
}

/// The header of a record with `content_len` bytes of content and the
/// padding [`padding`](crate::padding) gives: for a vectored write of
/// `header, content, padding` without copying the content.
pub fn record_header(record_type: RecordType, id: u16, content_len: u16) -> [u8; HEADER_LEN] {
    Header::new(record_type, id, content_len).encode()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::records;
    use bytes::Bytes;

    fn head(headers: &[(&'static str, &'static str)]) -> ResponseHead {
        ResponseHead::new(
            Bytes::from_static(b"200 OK"),
            headers
                .iter()
                .map(|(n, v)| {
                    (
                        Bytes::from_static(n.as_bytes()),
                        Bytes::from_static(v.as_bytes()),
                    )
                })
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn stdout_is_cut_into_padded_records() {
        let data: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let mut out = Vec::new();
        encode_stdout(7, &data, &mut out);
        let recs = records(&out).unwrap();
        let lens: Vec<usize> = recs.iter().map(|r| r.content.len()).collect();
        assert_eq!(lens, [65528, 65528, 65528, 200_000 - 3 * 65528]);
        for r in &recs {
            assert_eq!(r.header.record_type, RecordType::Stdout as u8);
            assert_eq!(r.header.request_id, 7);
            assert_eq!(r.header.record_len() % 8, 0);
        }
        let joined: Vec<u8> = recs.iter().flat_map(|r| r.content.clone()).collect();
        assert_eq!(joined, data);
        assert_eq!(out.len() % 8, 0);
    }

    #[test]
    fn empty_data_writes_no_record() {
        let mut out = Vec::new();
        encode_stdout(1, b"", &mut out);
        encode_stderr(1, b"", &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn stderr_and_end_request() {
        let mut out = Vec::new();
        encode_stderr(1, b"oops\n", &mut out);
        encode_end_request(1, 3, ProtocolStatus::RequestComplete, &mut out);
        assert_eq!(
            out,
            b"\x01\x07\x00\x01\x00\x05\x03\x00oops\n\0\0\0\
              \x01\x03\x00\x01\x00\x08\x00\x00\x00\x00\x00\x03\x00\x00\x00\x00"
        );
    }

    #[test]
    fn head_in_one_record() {
        let mut out = b"kept".to_vec();
        encode_head_record(1, &head(&[("Content-Type", "text/plain")]), &mut out);
        let text = b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\n";
        let mut expected = b"kept".to_vec();
        expected.extend_from_slice(&record_header(RecordType::Stdout, 1, text.len() as u16));
        expected.extend_from_slice(text);
        expected.extend_from_slice(padding(text.len()));
        assert_eq!(out, expected);

        let mut raw = Vec::new();
        encode_response_head(&head(&[("Content-Type", "text/plain")]), &mut raw);
        assert_eq!(raw, text);
    }

    #[test]
    fn a_huge_head_takes_several_records() {
        // Near the 64 KiB an application may send (ResponseHead refuses more).
        let value: &'static str = Box::leak("v".repeat(65_520).into_boxed_str());
        let h = head(&[("X-Big", value)]);
        let mut raw = Vec::new();
        encode_response_head(&h, &mut raw);
        let mut out = Vec::new();
        encode_head_record(2, &h, &mut out);
        let recs = records(&out).unwrap();
        assert_eq!(recs.len(), 2);
        let joined: Vec<u8> = recs.iter().flat_map(|r| r.content.clone()).collect();
        assert_eq!(joined, raw);
    }
}
