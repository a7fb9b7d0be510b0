//! What can be wrong with what a web server sends on a FastCGI connection.

use std::fmt;

use crate::Role;
use crate::record::type_name;
use rustgi_model::LengthError;

/// Why a block of name-value pairs (PARAMS, GET_VALUES) was refused.
/// Offsets count bytes from the start of that stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PairError {
    /// The stream ended inside a pair: a length field, or the name and
    /// value its lengths declared, run past the end.
    Truncated {
        at: usize,
        /// Bytes the pair needs from `at` (a lower bound while its lengths
        /// are incomplete).
        needed: u64,
        available: usize,
    },
    /// A pair whose name length is 0.
    EmptyName { at: usize },
}

impl fmt::Display for PairError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PairError::Truncated {
                at,
                needed,
                available,
            } => write!(
                f,
                "the stream ends inside the name-value pair at byte {at}: it needs at least {needed} bytes, {available} remain"
            ),
            PairError::EmptyName { at } => write!(
                f,
                "the name-value pair at byte {at} of the stream has an empty name"
            ),
        }
    }
}

impl std::error::Error for PairError {}

/// Why a connection was refused. Every variant is fatal for the connection:
/// the stream of records can no longer be trusted.
///
/// `offset` is the offset of the offending record's first byte from the
/// start of the connection; `record_type` is the raw type byte.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// The version byte is not 1: not FastCGI, or out of step.
    BadVersion { offset: u64, version: u8 },
    /// A request type (BEGIN_REQUEST … DATA, and the application's
    /// END_REQUEST/STDOUT/STDERR) on id 0, which only management records use.
    RequestTypeOnManagementId { offset: u64, record_type: u8 },
    /// A management type (GET_VALUES …) on a request id.
    ManagementTypeOnRequestId {
        offset: u64,
        record_type: u8,
        id: u16,
    },
    /// END_REQUEST, STDOUT or STDERR from the web server: only an
    /// application sends those.
    ApplicationType {
        offset: u64,
        record_type: u8,
        id: u16,
    },
    /// A type FastCGI 1.0 does not define, on a request id.
    UnknownType {
        offset: u64,
        record_type: u8,
        id: u16,
    },
    /// A record whose body has a fixed length came with another.
    BadBodyLength {
        offset: u64,
        record_type: u8,
        id: u16,
        length: u16,
        expected: u16,
    },
    /// BEGIN_REQUEST for an id that is still active.
    DuplicateBegin { offset: u64, id: u16 },
    /// STDIN or DATA before the empty PARAMS record.
    BeforeParamsEnd {
        offset: u64,
        record_type: u8,
        id: u16,
    },
    /// A PARAMS, STDIN or DATA record after that stream's empty record.
    AfterStreamEnd {
        offset: u64,
        record_type: u8,
        id: u16,
    },
    /// DATA for a request whose role is not FILTER.
    DataWithoutFilter { offset: u64, id: u16, role: Role },
    /// The PARAMS stream has, or a pair in it declares, more bytes than the
    /// limit.
    ParamsTooLarge {
        offset: u64,
        id: u16,
        size: u64,
        limit: usize,
    },
    /// A malformed name-value pair in PARAMS.
    Params {
        offset: u64,
        id: u16,
        error: PairError,
    },
    /// CONTENT_LENGTH breaks the length policy every protocol shares:
    /// neither empty nor a decimal `u64`, or repeated with another value.
    ContentLength { id: u16, error: LengthError },
    /// STDIN brings more bytes than CONTENT_LENGTH declared.
    StdinOverLength {
        offset: u64,
        id: u16,
        received: u64,
        content_length: u64,
    },
    /// STDIN ended before CONTENT_LENGTH bytes.
    StdinShort {
        offset: u64,
        id: u16,
        received: u64,
        content_length: u64,
    },
    /// A malformed GET_VALUES body.
    GetValues { offset: u64, error: PairError },
    /// The connection ended inside a record header.
    TruncatedHeader { offset: u64, have: usize },
    /// The connection ended inside a record's content or padding.
    TruncatedRecord {
        offset: u64,
        record_type: u8,
        id: u16,
        have: usize,
        need: usize,
    },
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ProtocolError::*;
        match self {
            BadVersion { offset, version } => write!(
                f,
                "FastCGI record at offset {offset} has version {version} (expected 1){}",
                version_hint(*offset, *version)
            ),
            RequestTypeOnManagementId {
                offset,
                record_type,
            } => write!(
                f,
                "FastCGI {} record at offset {offset} has request id 0, which only management records use",
                type_name(*record_type)
            ),
            ManagementTypeOnRequestId {
                offset,
                record_type,
                id,
            } => write!(
                f,
                "FastCGI {} record at offset {offset} is a management record but has request id {id} (expected 0)",
                type_name(*record_type)
            ),
            ApplicationType {
                offset,
                record_type,
                id,
            } => write!(
                f,
                "FastCGI {} record at offset {offset} for request {id}: only an application sends this type",
                type_name(*record_type)
            ),
            UnknownType {
                offset,
                record_type,
                id,
            } => write!(
                f,
                "FastCGI record at offset {offset} has {} for request {id}",
                type_name(*record_type)
            ),
            BadBodyLength {
                offset,
                record_type,
                id,
                length,
                expected,
            } => write!(
                f,
                "FastCGI {} record at offset {offset} for request {id} has {length} content bytes (expected {expected})",
                type_name(*record_type)
            ),
            DuplicateBegin { offset, id } => write!(
                f,
                "FastCGI BEGIN_REQUEST (1) record at offset {offset} for request {id}, which is already active"
            ),
            BeforeParamsEnd {
                offset,
                record_type,
                id,
            } => write!(
                f,
                "FastCGI {} record at offset {offset} for request {id} came before the end of its PARAMS stream",
                type_name(*record_type)
            ),
            AfterStreamEnd {
                offset,
                record_type,
                id,
            } => write!(
                f,
                "FastCGI {} record at offset {offset} for request {id} came after that stream's end",
                type_name(*record_type)
            ),
            DataWithoutFilter { offset, id, role } => write!(
                f,
                "FastCGI DATA (8) record at offset {offset} for request {id}, whose role is {role}: only FILTER requests have a DATA stream"
            ),
            ParamsTooLarge {
                offset,
                id,
                size,
                limit,
            } => write!(
                f,
                "FastCGI PARAMS for request {id} exceed --max-header-size: {size} > {limit} bytes (record at offset {offset})"
            ),
            Params { offset, id, error } => write!(
                f,
                "FastCGI PARAMS for request {id} (record at offset {offset}): {error}"
            ),
            ContentLength {
                id,
                error: LengthError::Conflicting { first, second },
            } => write!(
                f,
                "FastCGI request {id} has CONTENT_LENGTH twice with different values: {first:?} and {second:?}"
            ),
            ContentLength {
                id,
                error: LengthError::NotDigit { value, .. } | LengthError::Overflow { value, .. },
            } => write!(
                f,
                "FastCGI request {id} has CONTENT_LENGTH {value:?}, which is not a decimal number of bytes"
            ),
            StdinOverLength {
                offset,
                id,
                received,
                content_length,
            } => write!(
                f,
                "FastCGI STDIN (5) record at offset {offset} for request {id} takes the body to {received} bytes, over its CONTENT_LENGTH of {content_length}"
            ),
            StdinShort {
                offset,
                id,
                received,
                content_length,
            } => write!(
                f,
                "FastCGI STDIN for request {id} ended (record at offset {offset}) after {received} bytes, short of its CONTENT_LENGTH of {content_length}"
            ),
            GetValues { offset, error } => {
                write!(
                    f,
                    "FastCGI GET_VALUES (9) record at offset {offset}: {error}"
                )
            }
            TruncatedHeader { offset, have } => write!(
                f,
                "FastCGI connection closed inside a record header at offset {offset}: {have} of 8 bytes"
            ),
            TruncatedRecord {
                offset,
                record_type,
                id,
                have,
                need,
            } => write!(
                f,
                "FastCGI connection closed inside a {} record for request {id} at offset {offset}: {have} of {need} bytes",
                type_name(*record_type)
            ),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// The first byte a client sends tells the protocols apart: say what a
/// wrong one looks like.
fn version_hint(offset: u64, version: u8) -> &'static str {
    if offset != 0 {
        return "";
    }
    match version {
        b'0'..=b'9' => "; an ASCII digit starts an SCGI request",
        0 => "; 0x00 starts a uwsgi request",
        b'A'..=b'Z' => "; an ASCII letter starts an HTTP request",
        0x16 => "; 0x16 starts a TLS handshake",
        _ => "",
    }
}
