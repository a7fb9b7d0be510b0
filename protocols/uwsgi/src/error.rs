//! What can be wrong with a uwsgi request head.

use rustgi_model::LengthError;
use std::fmt;

/// Why a request head was refused.
///
/// Every variant carries the numbers an operator needs to find the fault in a
/// capture: offsets count bytes from the first byte of the request (the
/// 4-byte header is offsets 0 to 3, the vars block starts at 4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UwsgiError {
    /// The first four bytes are an HTTP method token (`GET `, `POST`, …):
    /// someone pointed an HTTP client (or `proxy_pass`) at the uwsgi socket.
    HttpRequest { start: [u8; 4] },
    /// modifier1 is neither 0 (a WSGI request) nor 30 (a WSGI request whose
    /// PATH_INFO still holds SCRIPT_NAME).
    UnsupportedModifier { modifier1: u8, modifier2: u8 },
    /// The header's datasize (the vars block's length) is over the limit.
    /// Refused as soon as the header is in, before the block arrives.
    VarsOverLimit { size: usize, limit: usize },
    /// Fewer than the 2 bytes of a key length are left in the block.
    KeyLengthCut { offset: usize, room: usize },
    /// A key is longer than what is left of the block after its length.
    KeyPastBlock {
        offset: usize,
        len: usize,
        room: usize,
    },
    /// A key length is 0.
    EmptyKey { offset: usize },
    /// Fewer than the 2 bytes of a value length are left in the block.
    ValueLengthCut {
        offset: usize,
        key: String,
        room: usize,
    },
    /// A value is longer than what is left of the block after its length.
    ValuePastBlock {
        offset: usize,
        key: String,
        len: usize,
        room: usize,
    },
    /// A CONTENT_LENGTH value, the one at `offset`, breaks the length policy
    /// every protocol shares: not a decimal `u64`, or a repeat that differs.
    ContentLength { offset: usize, error: LengthError },
}

impl fmt::Display for UwsgiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use UwsgiError::*;
        match self {
            HttpRequest { start } => write!(
                f,
                "an HTTP request (\"{}\") was sent to the uwsgi socket; point an HTTP client at the \
                 front server, or the front server's uwsgi_pass here",
                start.escape_ascii()
            ),
            UnsupportedModifier {
                modifier1,
                modifier2,
            } => write!(
                f,
                "uwsgi modifier1 {modifier1} (modifier2 {modifier2}) is not supported: only 0 (WSGI) and 30 are"
            ),
            VarsOverLimit { size, limit } => write!(
                f,
                "uwsgi vars block of {size} bytes is over the limit of {limit}"
            ),
            KeyLengthCut { offset, room } => write!(
                f,
                "uwsgi var at offset {offset}: its 2-byte key length runs past the block ({room} {} left)",
                bytes(*room)
            ),
            KeyPastBlock { offset, len, room } => write!(
                f,
                "uwsgi var at offset {offset}: key length {len} runs past the block ({room} {} left)",
                bytes(*room)
            ),
            EmptyKey { offset } => write!(f, "uwsgi var at offset {offset} has an empty key"),
            ValueLengthCut { offset, key, room } => write!(
                f,
                "uwsgi var {key:?} at offset {offset}: its 2-byte value length runs past the block ({room} {} left)",
                bytes(*room)
            ),
            ValuePastBlock {
                offset,
                key,
                len,
                room,
            } => write!(
                f,
                "uwsgi var {key:?} at offset {offset}: value length {len} runs past the block ({room} {} left)",
                bytes(*room)
            ),
            ContentLength { offset, error } => {
                write!(f, "uwsgi CONTENT_LENGTH {}", error.at(*offset))
            }
        }
    }
}

impl std::error::Error for UwsgiError {}

fn bytes(n: usize) -> &'static str {
    if n == 1 { "byte" } else { "bytes" }
}
