//! What can be wrong with what a front server sent over AJP.

use rustgi_model::{LengthError, show};
use std::fmt;

/// Why a packet was refused. Offsets count bytes from the packet's first
/// byte (the magic), so that they can be found in a capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AjpError {
    /// A packet from the web server starts with 0x12 0x34; this one does
    /// not: its bytes up to the first that differs (an HTTP request sent
    /// here shows as `G`), the same however the bytes were cut.
    WrongMagic { found: Vec<u8> },
    /// The packet's length field is over the limit (`--ajp-packet-size`,
    /// at most 65535 by the format).
    PacketTooLong { length: usize, limit: usize },
    /// A packet that must carry a code is empty.
    EmptyPacket,
    /// A prefix code no web server sends here (or one the container
    /// sends, such as GET_BODY_CHUNK).
    UnknownPacketType { code: u8 },
    /// The packet ended inside `what`.
    Truncated { what: &'static str, offset: usize },
    /// A string's bytes are not followed by the NUL the format requires.
    StringWithoutNul {
        what: &'static str,
        offset: usize,
        found: u8,
    },
    /// A method code outside the table (1..=27, or 0xFF with a
    /// stored method attribute).
    UnknownMethod { code: u8 },
    /// 0xFF (a method stored in an attribute) with no `?stored_method`.
    MissingStoredMethod,
    /// A coded request header name 0xA0xx outside 0xA001..=0xA00E.
    UnknownHeaderCode { code: u16, offset: usize },
    /// An attribute code outside the table and not the 0xFF terminator.
    UnknownAttribute { code: u8, offset: usize },
    /// Bytes after the attribute list's 0xFF terminator.
    TrailingBytes { count: usize, offset: usize },
    /// A CONTENT_LENGTH that breaks the length policy every protocol
    /// shares.
    ContentLength(LengthError),
    /// `--ajp-secret` is set and the request carries no `?secret`.
    SecretMissing,
    /// The request's `?secret` is not the configured one.
    SecretWrong,
    /// A second `?secret` (Tomcat checks each: one right and one wrong
    /// must not pass).
    SecretRepeated,
    /// A body packet whose inner length says more than the packet holds.
    ChunkLongerThanPacket { chunk: usize, packet: usize },
    /// A body packet with bytes after its chunk: AJP's chunk fills its
    /// packet. lighttpd 1.4's mod_ajp13 sends bodies without the chunk
    /// length, so its data shows as this (or as a chunk longer than the
    /// packet) rather than being taken for what it is not.
    ChunkShorterThanPacket { chunk: usize, packet: usize },
    /// Body bytes beyond the request's CONTENT_LENGTH.
    BodyBeyondLength { received: u64, length: u64 },
    /// A body packet while none was asked for.
    UnexpectedBody { length: usize },
}

impl fmt::Display for AjpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use AjpError::*;
        match self {
            WrongMagic { found } => write!(
                f,
                "AJP packet must start with 0x12 0x34, found {}{}",
                found.iter().map(|&b| show::byte(b)).collect::<Vec<_>>().join(" "),
                if found.first().is_some_and(u8::is_ascii_uppercase) {
                    " (an HTTP request? point HTTP clients at the front server)"
                } else {
                    ""
                }
            ),
            PacketTooLong { length, limit } => write!(
                f,
                "AJP packet of {length} bytes is over the limit of {limit} (--ajp-packet-size; \
                 Apache's ProxyIOBufferSize must not exceed it)"
            ),
            EmptyPacket => f.write_str("AJP packet is empty where a prefix code was expected"),
            UnknownPacketType { code } => {
                write!(f, "AJP packet type {code} is not one a web server sends")
            }
            Truncated { what, offset } => {
                write!(f, "AJP packet ends at offset {offset}, inside the {what}")
            }
            StringWithoutNul {
                what,
                offset,
                found,
            } => write!(
                f,
                "AJP string ({what}) is not ended by NUL: {} at offset {offset}",
                show::byte(*found)
            ),
            UnknownMethod { code } => write!(f, "AJP method code {code} is not in the table"),
            MissingStoredMethod => f.write_str(
                "AJP method code 0xFF (stored method) without a ?stored_method attribute",
            ),
            UnknownHeaderCode { code, offset } => write!(
                f,
                "AJP request header code {code:#06X} at offset {offset} is not in the table (0xA001..0xA00E)"
            ),
            UnknownAttribute { code, offset } => write!(
                f,
                "AJP attribute code {code:#04X} at offset {offset} is not in the table"
            ),
            TrailingBytes { count, offset } => write!(
                f,
                "{count} bytes after the AJP attribute terminator at offset {offset}"
            ),
            ContentLength(e) => write!(f, "Content-Length {e}"),
            SecretMissing => f.write_str(
                "AJP request without a secret (--ajp-secret is set: Apache's ProxyPass needs secret=...)",
            ),
            SecretWrong => f.write_str(
                "AJP request with the wrong secret (not the one --ajp-secret gives)",
            ),
            SecretRepeated => f.write_str("AJP request with ?secret twice"),
            ChunkLongerThanPacket { chunk, packet } => write!(
                f,
                "AJP body chunk announces {chunk} bytes in a packet of {packet}"
            ),
            ChunkShorterThanPacket { chunk, packet } => write!(
                f,
                "AJP body chunk announces {chunk} bytes in a packet of {packet}, which holds more \
                 (lighttpd's mod_ajp13 sends bodies without AJP's chunk length: not supported)"
            ),
            BodyBeyondLength { received, length } => write!(
                f,
                "AJP request body of {received} bytes or more, beyond its Content-Length {length}"
            ),
            UnexpectedBody { length } => write!(
                f,
                "AJP body packet of {length} bytes that was not asked for"
            ),
        }
    }
}

impl std::error::Error for AjpError {}
