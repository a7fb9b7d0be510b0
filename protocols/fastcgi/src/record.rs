//! The record: an 8-byte header, `contentLength` bytes of content, then
//! `paddingLength` bytes the receiver skips.
//!
//! ```text
//! version:u8 type:u8 requestId:u16be contentLength:u16be paddingLength:u8 reserved:u8
//! content[contentLength] padding[paddingLength]
//! ```
//!
//! Every record fits in 8 + 65535 + 255 bytes, so the header's length fields
//! can never drive an unbounded buffer.

use nom::{IResult, Parser, number::streaming::be_u8, number::streaming::be_u16};

/// The only protocol version there is (`FCGI_VERSION_1`).
pub const VERSION_1: u8 = 1;

/// Length of a record header.
pub const HEADER_LEN: usize = 8;

/// The request id of management records (`FCGI_NULL_REQUEST_ID`).
pub const MANAGEMENT_ID: u16 = 0;

/// The record types of FastCGI 1.0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RecordType {
    BeginRequest = 1,
    AbortRequest = 2,
    EndRequest = 3,
    Params = 4,
    Stdin = 5,
    Stdout = 6,
    Stderr = 7,
    Data = 8,
    GetValues = 9,
    GetValuesResult = 10,
    UnknownType = 11,
}

impl RecordType {
    /// The type a header byte names, if FastCGI 1.0 defines it.
    pub fn from_u8(byte: u8) -> Option<RecordType> {
        use RecordType::*;
        Some(match byte {
            1 => BeginRequest,
            2 => AbortRequest,
            3 => EndRequest,
            4 => Params,
            5 => Stdin,
            6 => Stdout,
            7 => Stderr,
            8 => Data,
            9 => GetValues,
            10 => GetValuesResult,
            11 => UnknownType,
            _ => return None,
        })
    }

    /// The spec's name without the `FCGI_` prefix: `"BEGIN_REQUEST"`.
    pub fn name(self) -> &'static str {
        use RecordType::*;
        match self {
            BeginRequest => "BEGIN_REQUEST",
            AbortRequest => "ABORT_REQUEST",
            EndRequest => "END_REQUEST",
            Params => "PARAMS",
            Stdin => "STDIN",
            Stdout => "STDOUT",
            Stderr => "STDERR",
            Data => "DATA",
            GetValues => "GET_VALUES",
            GetValuesResult => "GET_VALUES_RESULT",
            UnknownType => "UNKNOWN_TYPE",
        }
    }

    /// Management types travel on request id 0 only.
    pub fn is_management(self) -> bool {
        matches!(
            self,
            RecordType::GetValues | RecordType::GetValuesResult | RecordType::UnknownType
        )
    }
}

/// `"STDIN (5)"`, or `"unknown type 12"`: for error messages.
pub(crate) fn type_name(byte: u8) -> String {
    match RecordType::from_u8(byte) {
        Some(t) => format!("{} ({byte})", t.name()),
        None => format!("unknown type {byte}"),
    }
}

/// A decoded record header. The type stays a byte: unknown types must be
/// answered (UNKNOWN_TYPE) or reported, not lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub version: u8,
    pub record_type: u8,
    pub request_id: u16,
    pub content_length: u16,
    pub padding_length: u8,
}

fn header(input: &[u8]) -> IResult<&[u8], Header, ()> {
    (be_u8, be_u8, be_u16, be_u16, be_u8, be_u8)
        .map(
            |(version, record_type, request_id, content_length, padding_length, _reserved)| {
                Header {
                    version,
                    record_type,
                    request_id,
                    content_length,
                    padding_length,
                }
            },
        )
        .parse(input)
}

impl Header {
    /// A header with version 1 and the padding that rounds the content up to
    /// a multiple of 8.
    pub fn new(record_type: RecordType, request_id: u16, content_length: u16) -> Header {
        Header {
            version: VERSION_1,
            record_type: record_type as u8,
            request_id,
            content_length,
            padding_length: padding_for(usize::from(content_length)),
        }
    }

    /// Decodes the header at the front of `input`; `None` until 8 bytes are
    /// there.
    pub fn parse(input: &[u8]) -> Option<Header> {
        header(input).ok().map(|(_, h)| h)
    }

    /// The 8 bytes on the wire (the reserved byte is 0).
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let [id1, id0] = self.request_id.to_be_bytes();
        let [len1, len0] = self.content_length.to_be_bytes();
        [
            self.version,
            self.record_type,
            id1,
            id0,
            len1,
            len0,
            self.padding_length,
            0,
        ]
    }

    /// The whole record's length: header, content and padding.
    pub fn record_len(&self) -> usize {
        HEADER_LEN + usize::from(self.content_length) + usize::from(self.padding_length)
    }

    /// The record's type, if FastCGI 1.0 defines it.
    pub fn known_type(&self) -> Option<RecordType> {
        RecordType::from_u8(self.record_type)
    }
}

/// The padding that rounds `content_len` up to a multiple of 8, as the spec
/// recommends senders do.
pub fn padding_for(content_len: usize) -> u8 {
    // < 8, so the cast is exact.
    (content_len.wrapping_neg() % 8) as u8
}

const ZEROS: [u8; 8] = [0; 8];

/// The padding bytes that follow `content_len` bytes of content: for a
/// vectored write of `header, content, padding`.
pub fn padding(content_len: usize) -> &'static [u8] {
    &ZEROS[..usize::from(padding_for(content_len))]
}

/// Appends one record holding `content` (at most 65535 bytes), padded to a
/// multiple of 8.
pub(crate) fn write_record(record_type: RecordType, id: u16, content: &[u8], out: &mut Vec<u8>) {
    debug_assert!(content.len() <= usize::from(u16::MAX));
    let len = u16::try_from(content.len()).unwrap_or(u16::MAX);
    let content = &content[..usize::from(len)];
    out.reserve(HEADER_LEN + content.len() + 7);
    out.extend_from_slice(&Header::new(record_type, id, len).encode());
    out.extend_from_slice(content);
    out.extend_from_slice(padding(content.len()));
}

/// An empty GET_VALUES_RESULT (a management record: request id 0, no
/// content), sent after the last END_REQUEST on a kept connection we are
/// about to close. A front server that keeps connections only when
/// END_REQUEST is the last byte it read (nginx: `u->keepalive` is set only
/// when the record ends the buffer) then closes the connection itself
/// instead of caching it, so that it never sends a request on it as it
/// closes; one that reads on finds an unsolicited, empty variable list.
pub fn closing_notice() -> [u8; HEADER_LEN] {
    Header::new(RecordType::GetValuesResult, 0, 0).encode()
}

/// Whether `input`, records from the front server, holds ABORT_REQUEST for
/// request `id` among its whole records: how a writer that owns a request's
/// connection alone, and does not decode it while the response runs, learns
/// that the request was aborted.
pub fn holds_abort_request(input: &[u8], id: u16) -> bool {
    let mut rest = input;
    while let Some(header) = Header::parse(rest) {
        if header.known_type() == Some(RecordType::AbortRequest) && header.request_id == id {
            return true;
        }
        rest = rest.get(header.record_len()..).unwrap_or_default();
    }
    false
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_abort_request_is_found_among_whole_records() {
        // STDIN for id 2 (3 bytes, 5 of padding), then ABORT_REQUEST for id 1.
        let stdin = [1, 5, 0, 2, 0, 3, 5, 0, b'a', b'b', b'c', 0, 0, 0, 0, 0];
        let abort = [1, 2, 0, 1, 0, 0, 0, 0];
        let input = [&stdin[..], &abort[..]].concat();
        assert!(holds_abort_request(&input, 1));
        assert!(!holds_abort_request(&input, 2));
        assert!(!holds_abort_request(&stdin, 1));
        // A cut record is not read past.
        assert!(!holds_abort_request(&input[..input.len() - 1], 1));
    }

    use super::*;

    #[test]
    fn decodes_and_encodes_a_header() {
        let bytes = [1, 5, 0x12, 0x34, 0x01, 0x02, 6, 0xff];
        let h = Header::parse(&bytes).unwrap();
        assert_eq!(
            h,
            Header {
                version: 1,
                record_type: 5,
                request_id: 0x1234,
                content_length: 0x0102,
                padding_length: 6,
            }
        );
        assert_eq!(h.record_len(), 8 + 258 + 6);
        assert_eq!(h.known_type(), Some(RecordType::Stdin));
        // The reserved byte is written as 0.
        assert_eq!(h.encode(), [1, 5, 0x12, 0x34, 0x01, 0x02, 6, 0]);
    }

    #[test]
    fn needs_eight_bytes() {
        for k in 0..8 {
            assert_eq!(Header::parse(&[1; 8][..k]), None, "{k} bytes");
        }
        assert!(Header::parse(&[1; 9]).is_some());
    }

    #[test]
    fn pads_to_a_multiple_of_eight() {
        assert_eq!(padding_for(0), 0);
        assert_eq!(padding_for(1), 7);
        assert_eq!(padding_for(8), 0);
        assert_eq!(padding_for(65535), 1);
        assert_eq!(padding_for(65528), 0);
        assert_eq!(padding(3), &[0u8; 5]);
        let mut out = Vec::new();
        write_record(RecordType::Stdout, 1, b"abc", &mut out);
        assert_eq!(out, b"\x01\x06\x00\x01\x00\x03\x05\x00abc\0\0\0\0\0");
    }

    #[test]
    fn type_names() {
        for byte in 0..=255u8 {
            if let Some(t) = RecordType::from_u8(byte) {
                assert_eq!(t as u8, byte);
                assert_eq!(type_name(byte), format!("{} ({byte})", t.name()));
            }
        }
        assert_eq!(type_name(5), "STDIN (5)");
        assert_eq!(type_name(12), "unknown type 12");
        assert_eq!(type_name(0), "unknown type 0");
        assert!(RecordType::GetValues.is_management());
        assert!(!RecordType::Stdin.is_management());
    }
}
