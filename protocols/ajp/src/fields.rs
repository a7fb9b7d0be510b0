//! The field types of AJP's payloads, read with nom from a packet already
//! whole: byte, integer (u16, big-endian), string (u16 length, bytes,
//! NUL; length 0xFFFF is a null string with no bytes and no NUL).

use crate::AjpError;
use bytes::Bytes;
use nom::{
    Parser,
    bytes::complete::take,
    number::complete::{be_u16, u8},
};

/// A cursor over one payload. Strings are slices of it (no copy).
pub(crate) struct Fields {
    payload: Bytes,
    at: usize,
}

/// The offset of a payload's first byte in its packet.
const PAYLOAD_OFFSET: usize = crate::packet::HEADER_LEN;

impl Fields {
    pub(crate) fn new(payload: Bytes) -> Self {
        Fields { payload, at: 0 }
    }

    /// Where the next field starts, counted from the packet's first byte.
    pub(crate) fn offset(&self) -> usize {
        self.at + PAYLOAD_OFFSET
    }

    pub(crate) fn remaining(&self) -> usize {
        self.payload.len() - self.at
    }

    fn rest(&self) -> &[u8] {
        &self.payload[self.at..]
    }

    pub(crate) fn byte(&mut self, what: &'static str) -> Result<u8, AjpError> {
        let parsed: nom::IResult<&[u8], u8> = u8.parse(self.rest());
        let (_, value) = parsed.map_err(|_| self.truncated(what))?;
        self.at += 1;
        Ok(value)
    }

    /// The next byte, not consumed.
    pub(crate) fn peek(&self, what: &'static str) -> Result<u8, AjpError> {
        self.rest()
            .first()
            .copied()
            .ok_or_else(|| self.truncated(what))
    }

    pub(crate) fn integer(&mut self, what: &'static str) -> Result<u16, AjpError> {
        let parsed: nom::IResult<&[u8], u16> = be_u16.parse(self.rest());
        let (_, value) = parsed.map_err(|_| self.truncated(what))?;
        self.at += 2;
        Ok(value)
    }

    /// A string; `None` for the null string.
    pub(crate) fn string(&mut self, what: &'static str) -> Result<Option<Bytes>, AjpError> {
        let length = self.integer(what)?;
        if length == u16::MAX {
            return Ok(None);
        }
        let length = usize::from(length);
        let parsed: nom::IResult<&[u8], (&[u8], u8)> = (take(length), u8).parse(self.rest());
        let (_, (_, nul)) = parsed.map_err(|_| self.truncated(what))?;
        let start = self.at;
        if nul != 0 {
            return Err(AjpError::StringWithoutNul {
                what,
                offset: self.offset() + length,
                found: nul,
            });
        }
        self.at += length + 1;
        Ok(Some(self.payload.slice(start..start + length)))
    }

    fn truncated(&self, what: &'static str) -> AjpError {
        AjpError::Truncated {
            what,
            offset: self.payload.len() + PAYLOAD_OFFSET,
        }
    }
}

/// Appends a string field.
pub(crate) fn put_string(out: &mut Vec<u8>, value: &[u8]) {
    out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    out.extend_from_slice(value);
    out.push(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_null_strings_and_missing_nuls() {
        let mut fields = Fields::new(Bytes::from_static(b"\x00\x02hi\x00\xff\xff\x00\x01xy"));
        assert_eq!(fields.string("a").unwrap().unwrap(), &b"hi"[..]);
        assert_eq!(fields.string("b").unwrap(), None);
        assert_eq!(
            fields.string("c"),
            Err(AjpError::StringWithoutNul {
                what: "c",
                offset: 4 + 10,
                found: b'y'
            })
        );
        let mut short = Fields::new(Bytes::from_static(b"\x00\x05ab"));
        assert_eq!(
            short.string("d"),
            Err(AjpError::Truncated {
                what: "d",
                offset: 8
            })
        );
    }
}
