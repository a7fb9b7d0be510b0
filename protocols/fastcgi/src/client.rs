//! The web server's side of the wire, kept small: encoders for the records a
//! web server sends, and a reader for the records an application sends.
//!
//! The gateway never uses these. They exist so that tests (this crate's and
//! the server's) can build requests and check responses with the same
//! definitions the decoder uses, and so that round trips can be tested.

use crate::Event;
use crate::begin::{BeginRequest, KEEP_CONN};
use crate::pairs::write_length;
use crate::record::{HEADER_LEN, Header, MANAGEMENT_ID, RecordType, VERSION_1, padding_for};

/// How a name-value length is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LengthForm {
    /// One byte when the length is under 128, else four.
    Shortest,
    /// Always four bytes, top bit set (allowed for short lengths too).
    Long,
}

/// Appends a name-value pair with each length in the given form. Lengths
/// must not exceed 0x7fffffff.
pub fn encode_pair(
    name: &[u8],
    value: &[u8],
    name_form: LengthForm,
    value_form: LengthForm,
    out: &mut Vec<u8>,
) {
    write_length(name.len(), name_form == LengthForm::Long, out);
    write_length(value.len(), value_form == LengthForm::Long, out);
    out.extend_from_slice(name);
    out.extend_from_slice(value);
}

/// Appends one record of any type byte, with `padding` zero bytes of
/// padding (any amount, to test that the receiver skips it). `content` is
/// cut at 65535 bytes.
pub fn encode_record(record_type: u8, id: u16, content: &[u8], padding: u8, out: &mut Vec<u8>) {
    let len = u16::try_from(content.len()).unwrap_or(u16::MAX);
    let header = Header {
        version: VERSION_1,
        record_type,
        request_id: id,
        content_length: len,
        padding_length: padding,
    };
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(&content[..usize::from(len)]);
    out.resize(out.len() + usize::from(padding), 0);
}

/// Appends `content` as one record padded to a multiple of 8.
fn record(record_type: RecordType, id: u16, content: &[u8], out: &mut Vec<u8>) {
    encode_record(
        record_type as u8,
        id,
        content,
        padding_for(content.len()),
        out,
    );
}

/// Appends BEGIN_REQUEST for `role` (a raw code: unknown roles are allowed).
pub fn encode_begin_request(id: u16, role: u16, keep_conn: bool, out: &mut Vec<u8>) {
    let flags = if keep_conn { KEEP_CONN } else { 0 };
    record(
        RecordType::BeginRequest,
        id,
        &BeginRequest { role, flags }.encode(),
        out,
    );
}

/// Appends a whole stream: `data` in records of at most `max_chunk` bytes
/// (clamped to 1..=65535), then the empty record that ends it.
pub fn encode_stream(
    record_type: RecordType,
    id: u16,
    data: &[u8],
    max_chunk: usize,
    out: &mut Vec<u8>,
) {
    for chunk in data.chunks(max_chunk.clamp(1, usize::from(u16::MAX))) {
        record(record_type, id, chunk, out);
    }
    record(record_type, id, &[], out);
}

/// Appends the PARAMS stream for `params` (shortest length forms), cut into
/// records of at most `max_chunk` bytes.
pub fn encode_params(id: u16, params: &[(&[u8], &[u8])], max_chunk: usize, out: &mut Vec<u8>) {
    let mut stream = Vec::new();
    for (name, value) in params {
        encode_pair(
            name,
            value,
            LengthForm::Shortest,
            LengthForm::Shortest,
            &mut stream,
        );
    }
    encode_stream(RecordType::Params, id, &stream, max_chunk, out);
}

/// Appends ABORT_REQUEST.
pub fn encode_abort_request(id: u16, out: &mut Vec<u8>) {
    record(RecordType::AbortRequest, id, &[], out);
}

/// Appends GET_VALUES asking for `names` (values empty, as the spec says).
pub fn encode_get_values(names: &[&[u8]], out: &mut Vec<u8>) {
    let mut body = Vec::new();
    for name in names {
        encode_pair(
            name,
            b"",
            LengthForm::Shortest,
            LengthForm::Shortest,
            &mut body,
        );
    }
    record(RecordType::GetValues, MANAGEMENT_ID, &body, out);
}

/// One record as read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub header: Header,
    pub content: Vec<u8>,
}

/// Reads back a sequence of whole records (padding skipped); `None` if the
/// bytes end inside a record.
pub fn records(mut bytes: &[u8]) -> Option<Vec<Record>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let header = Header::parse(bytes)?;
        let record = bytes.get(..header.record_len())?;
        let content = record[HEADER_LEN..HEADER_LEN + usize::from(header.content_length)].to_vec();
        out.push(Record { header, content });
        bytes = &bytes[header.record_len()..];
    }
    Some(out)
}

/// `events` with the adjacent STDIN (or DATA) chunks of one request joined
/// into one: how the bytes were cut must not matter beyond the chunks.
pub fn joined(events: Vec<Event>) -> Vec<Event> {
    let mut out: Vec<Event> = Vec::new();
    for event in events {
        match (out.last_mut(), event) {
            (Some(Event::Stdin { id: a, data }), Event::Stdin { id: b, data: more }) if *a == b => {
                *data = [&data[..], &more[..]].concat().into();
            }
            (Some(Event::Data { id: a, data }), Event::Data { id: b, data: more }) if *a == b => {
                *data = [&data[..], &more[..]].concat().into();
            }
            (_, event) => out.push(event),
        }
    }
    out
}

/// The STDIN data among `events`, in order.
pub fn stdin_data<'a>(events: impl IntoIterator<Item = &'a Event>) -> Vec<u8> {
    let mut body = Vec::new();
    for event in events {
        if let Event::Stdin { data, .. } = event {
            body.extend_from_slice(data);
        }
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_what_a_web_server_sends() {
        let mut out = Vec::new();
        encode_begin_request(1, 1, true, &mut out);
        encode_params(1, &[(b"A", b"1")], 65535, &mut out);
        encode_stream(RecordType::Stdin, 1, b"", 10, &mut out);
        assert_eq!(
            out,
            b"\x01\x01\x00\x01\x00\x08\x00\x00\x00\x01\x01\x00\x00\x00\x00\x00\
              \x01\x04\x00\x01\x00\x04\x04\x00\x01\x01A1\0\0\0\0\
              \x01\x04\x00\x01\x00\x00\x00\x00\
              \x01\x05\x00\x01\x00\x00\x00\x00"
        );
        let recs = records(&out).unwrap();
        assert_eq!(recs.len(), 4);
        assert_eq!(recs[1].content, b"\x01\x01A1");
        assert_eq!(records(&out[..out.len() - 1]), None);
    }

    #[test]
    fn any_padding() {
        let mut out = Vec::new();
        encode_record(5, 3, b"ab", 255, &mut out);
        assert_eq!(out.len(), 8 + 2 + 255);
        assert_eq!(records(&out).unwrap()[0].content, b"ab");
    }
}
