//! What can be wrong with an SCGI request head.

use rustgi_model::{LengthError, show};
use std::fmt;

/// Why a request head was refused.
///
/// Every variant carries the numbers an operator needs to find the fault in a
/// capture: offsets count bytes from the first byte of the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScgiError {
    /// The request does not start with a digit, so it is not SCGI at all
    /// (an HTTP client sends `G` of `GET`, a uwsgi client `0x00`).
    LengthNotDigit { byte: u8, offset: usize },
    /// `:` came before any digit of the netstring length.
    EmptyLength { offset: usize },
    /// The netstring length starts with `0` and has more digits: netstrings
    /// forbid leading zeros, so the length is ambiguous.
    LeadingZero { offset: usize },
    /// The declared header length is over the limit. Refused as soon as its
    /// digits show it, so `length` is what the first `digits` digits make
    /// (the declared length is at least that).
    LengthOverLimit {
        length: usize,
        digits: usize,
        limit: usize,
    },
    /// The netstring length has more digits than fit in a `usize` (only
    /// reachable with a limit near `usize::MAX`).
    LengthOverflow { digits: usize },
    /// The digits of the length are followed by something other than `:`.
    MissingColon {
        length: usize,
        found: u8,
        offset: usize,
    },
    /// The header block is not followed by the `,` that ends the netstring.
    MissingComma { found: u8, offset: usize },
    /// The block ends after a name: the NUL-terminated fields are odd in
    /// number, so the last name has no value.
    OddFieldCount {
        fields: usize,
        name: String,
        offset: usize,
    },
    /// The block's last field has no terminating NUL.
    UnterminatedField { offset: usize, len: usize },
    /// A header name is empty (`\0` where a name should start).
    EmptyName { offset: usize },
    /// The header block is empty, so CONTENT_LENGTH, which SCGI requires,
    /// is missing.
    MissingContentLength { offset: usize },
    /// The first header is not CONTENT_LENGTH: SCGI requires it first, so
    /// it is either missing or out of order.
    ContentLengthNotFirst { found: String, offset: usize },
    /// CONTENT_LENGTH's value is empty.
    ContentLengthEmpty { offset: usize },
    /// A CONTENT_LENGTH value, the one at `offset`, breaks the length policy
    /// every protocol shares: not a decimal `u64`, or a repeat that differs.
    ContentLength { offset: usize, error: LengthError },
}

impl fmt::Display for ScgiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ScgiError::*;
        match self {
            LengthNotDigit { byte, offset } => write!(
                f,
                "SCGI netstring length must start with a decimal digit, found {} at offset {offset}",
                show::byte(*byte)
            ),
            EmptyLength { offset } => write!(
                f,
                "SCGI netstring length is empty: ':' at offset {offset} with no digit before it"
            ),
            LeadingZero { offset } => write!(
                f,
                "SCGI netstring length has a leading zero at offset {offset}"
            ),
            LengthOverLimit {
                length,
                digits,
                limit,
            } => write!(
                f,
                "SCGI header length is over the limit of {limit} bytes: its first {digits} digits already make {length}"
            ),
            LengthOverflow { digits } => write!(
                f,
                "SCGI netstring length has more digits ({digits} so far) than fit in a usize"
            ),
            MissingColon {
                length,
                found,
                offset,
            } => write!(
                f,
                "SCGI netstring length {length} must be followed by ':', found {} at offset {offset}",
                show::byte(*found)
            ),
            MissingComma { found, offset } => write!(
                f,
                "SCGI header block must be followed by ',', found {} at offset {offset}",
                show::byte(*found)
            ),
            OddFieldCount {
                fields,
                name,
                offset,
            } => write!(
                f,
                "SCGI header block has an odd number of NUL-terminated fields ({fields}): name {name:?} at offset {offset} has no value"
            ),
            UnterminatedField { offset, len } => write!(
                f,
                "SCGI header block does not end in NUL: the field at offset {offset} (length {len}) is unterminated"
            ),
            EmptyName { offset } => write!(f, "SCGI header name at offset {offset} is empty"),
            MissingContentLength { offset } => write!(
                f,
                "SCGI header CONTENT_LENGTH is missing: the header block at offset {offset} is empty"
            ),
            ContentLengthNotFirst { found, offset } => write!(
                f,
                "SCGI requires CONTENT_LENGTH as the first header, found {found:?} at offset {offset}"
            ),
            ContentLengthEmpty { offset } => {
                write!(f, "SCGI CONTENT_LENGTH at offset {offset} is empty")
            }
            ContentLength { offset, error } => {
                write!(f, "SCGI CONTENT_LENGTH {}", error.at(*offset))
            }
        }
    }
}

impl std::error::Error for ScgiError {}
