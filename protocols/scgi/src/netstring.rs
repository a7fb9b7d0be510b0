//! The netstring that frames the header block: `LEN ":" block ","`.
//!
//! LEN is ASCII decimal without leading zeros. It is checked digit by digit,
//! so a length over the limit is refused as soon as its digits show it,
//! before any byte of the block is awaited.

use nom::{Parser, bytes::streaming::tag, character::streaming::digit1};

use crate::ScgiError;

/// Where the header block lies, once `LEN ":"` has been read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Frame {
    /// Offset of the block's first byte (just after the `:`).
    pub start: usize,
    /// The declared length of the block.
    pub len: usize,
}

impl Frame {
    /// Offset of the `,` that must follow the block.
    pub fn end(&self) -> usize {
        self.start.saturating_add(self.len)
    }

    /// Length of the whole head, `,` included: what is split off the buffer.
    pub fn head_len(&self) -> usize {
        self.end().saturating_add(1)
    }
}

/// Reads `LEN ":"` from the front of `buf`; `Ok(None)` means more bytes are
/// needed and the ones so far are a valid start.
pub(crate) fn prefix(buf: &[u8], limit: usize) -> Result<Option<Frame>, ScgiError> {
    let (rest, digits) = match digit1::<_, ()>(buf) {
        Ok(parsed) => parsed,
        Err(nom::Err::Incomplete(_)) => {
            // Only digits so far: they may already be too many.
            length(buf, limit)?;
            return Ok(None);
        }
        Err(_) => {
            return match buf.first() {
                Some(b':') => Err(ScgiError::EmptyLength { offset: 0 }),
                Some(&byte) => Err(ScgiError::LengthNotDigit { byte, offset: 0 }),
                None => Ok(None),
            };
        }
    };
    let len = length(digits, limit)?;
    match (tag::<_, _, ()>(":").parse(rest), rest.first()) {
        (Ok(_), _) => Ok(Some(Frame {
            start: digits.len() + 1,
            len,
        })),
        (Err(_), Some(&found)) => Err(ScgiError::MissingColon {
            length: len,
            found,
            offset: digits.len(),
        }),
        (Err(_), None) => Ok(None),
    }
}

/// The value of the length digits, refused at the first digit that makes it
/// a leading zero, over `limit`, or too large for a `usize`.
fn length(digits: &[u8], limit: usize) -> Result<usize, ScgiError> {
    let mut n: usize = 0;
    for (i, &d) in digits.iter().enumerate() {
        if i == 1 && digits[0] == b'0' {
            return Err(ScgiError::LeadingZero { offset: 0 });
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(usize::from(d - b'0')))
            .ok_or(ScgiError::LengthOverflow { digits: i + 1 })?;
        if n > limit {
            return Err(ScgiError::LengthOverLimit {
                length: n,
                digits: i + 1,
                limit,
            });
        }
    }
    Ok(n)
}

/// The block's bytes that have arrived so far, and whether that is all of it.
pub(crate) fn block(buf: &[u8], frame: Frame) -> (&[u8], bool) {
    let block = &buf[frame.start..buf.len().min(frame.end())];
    (block, block.len() == frame.len)
}

/// Checks the `,` that closes the netstring; `Ok(None)` if it has not
/// arrived yet.
pub(crate) fn comma(buf: &[u8], frame: Frame) -> Result<Option<()>, ScgiError> {
    let rest = buf.get(frame.end()..).unwrap_or_default();
    match (tag::<_, _, ()>(",").parse(rest), rest.first()) {
        (Ok(_), _) => Ok(Some(())),
        (Err(_), Some(&found)) => Err(ScgiError::MissingComma {
            found,
            offset: frame.end(),
        }),
        (Err(_), None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_prefix() {
        assert_eq!(prefix(b"12:", 100), Ok(Some(Frame { start: 3, len: 12 })));
        assert_eq!(prefix(b"0:", 100), Ok(Some(Frame { start: 2, len: 0 })));
        assert_eq!(prefix(b"", 100), Ok(None));
        assert_eq!(prefix(b"12", 100), Ok(None));
    }

    #[test]
    fn refuses_a_long_length_before_its_end() {
        assert_eq!(
            prefix(b"6554", 65536),
            Ok(None),
            "6554x could still be under the limit"
        );
        assert_eq!(
            prefix(b"65537", 65536),
            Err(ScgiError::LengthOverLimit {
                length: 65537,
                digits: 5,
                limit: 65536
            })
        );
        assert_eq!(
            prefix(b"1000000", 65536),
            Err(ScgiError::LengthOverLimit {
                length: 100000,
                digits: 6,
                limit: 65536
            })
        );
    }

    #[test]
    fn block_and_comma() {
        let frame = Frame { start: 2, len: 3 };
        assert_eq!(block(b"3:ab", frame), (&b"ab"[..], false));
        assert_eq!(block(b"3:abc,rest", frame), (&b"abc"[..], true));
        assert_eq!(comma(b"3:abc", frame), Ok(None));
        assert_eq!(comma(b"3:abc,", frame), Ok(Some(())));
        assert_eq!(
            comma(b"3:abc;", frame),
            Err(ScgiError::MissingComma {
                found: b';',
                offset: 5
            })
        );
    }
}
