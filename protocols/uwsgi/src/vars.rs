//! The vars block: repeated `u16le keylen, key, u16le vallen, value`.
//!
//! Rules, checked in the order the bytes arrive, so that a block still
//! arriving is refused as soon as it breaks one:
//! - every length fits in what is left of the block (datasize in the
//!   header), which is known before the bytes of the key or value arrive;
//! - no key is empty;
//! - CONTENT_LENGTH, when present and not empty, is a decimal `u64` (nginx
//!   sends it empty when the request has no body: that means absent), and
//!   a repeat of it has the same value ([`rustgi_model::LengthValues`]).
//!
//! Repeated keys are kept as sent; merging them is the core's job.

use std::ops::Range;

use nom::{bytes::streaming::take, number::streaming::le_u16};

use crate::UwsgiError;
use rustgi_model::{CONTENT_LENGTH, LengthValues, show};

/// A decoded block: where each key and value lies in the head (offsets from
/// the start of the request), and CONTENT_LENGTH's value when it was sent
/// and not empty.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Vars {
    pub pairs: Vec<(Range<usize>, Range<usize>)>,
    pub content_length: Option<u64>,
}

/// A 2-byte length at the front of `input`; `None` until both bytes are in.
fn length(input: &[u8]) -> Option<usize> {
    le_u16::<_, ()>(input).ok().map(|(_, n)| usize::from(n))
}

/// The `n` bytes at the front of `input`; `None` until they are all in.
fn bytes(input: &[u8], n: usize) -> Option<&[u8]> {
    take::<_, _, ()>(n)(input).ok().map(|(_, taken)| taken)
}

/// Parses the vars block of `size` bytes that starts at offset `base` of the
/// request, of which `block` has arrived so far. `Ok(None)`: need more, and
/// the bytes so far break no rule.
pub(crate) fn parse(block: &[u8], size: usize, base: usize) -> Result<Option<Vars>, UwsgiError> {
    let mut pairs = Vec::new();
    let mut content_length = LengthValues::default();
    let mut pos = 0;
    while pos < size {
        let offset = base + pos;
        let room = size - pos;
        if room < 2 {
            return Err(UwsgiError::KeyLengthCut { offset, room });
        }
        let Some(key_len) = length(&block[pos..]) else {
            return Ok(None);
        };
        let room = room - 2;
        if key_len == 0 {
            return Err(UwsgiError::EmptyKey { offset });
        }
        if key_len > room {
            return Err(UwsgiError::KeyPastBlock {
                offset,
                len: key_len,
                room,
            });
        }
        let key_at = pos + 2;
        let Some(key) = bytes(&block[key_at..], key_len) else {
            return Ok(None);
        };
        let room = room - key_len;
        if room < 2 {
            return Err(UwsgiError::ValueLengthCut {
                offset,
                key: show::field(key),
                room,
            });
        }
        let value_len_at = key_at + key_len;
        let Some(value_len) = length(&block[value_len_at..]) else {
            return Ok(None);
        };
        let room = room - 2;
        if value_len > room {
            return Err(UwsgiError::ValuePastBlock {
                offset,
                key: show::field(key),
                len: value_len,
                room,
            });
        }
        let value_at = value_len_at + 2;
        let Some(value) = bytes(&block[value_at..], value_len) else {
            return Ok(None);
        };
        if key == CONTENT_LENGTH {
            content_length
                .add(value)
                .map_err(|error| UwsgiError::ContentLength {
                    offset: base + value_at,
                    error,
                })?;
        }
        pairs.push((
            base + key_at..base + key_at + key_len,
            base + value_at..base + value_at + value_len,
        ));
        pos = value_at + value_len;
    }
    Ok(Some(Vars {
        pairs,
        content_length: content_length.length(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustgi_model::LengthError;

    /// `key`/`value` pairs as a block.
    fn block(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
        crate::client::encode_vars(pairs.iter().copied())
    }

    #[test]
    fn offsets_count_from_the_request_start() {
        let b = block(&[(b"CONTENT_LENGTH", b"5"), (b"A", b"")]);
        let vars = parse(&b, b.len(), 4).unwrap().unwrap();
        assert_eq!(vars.content_length, Some(5));
        assert_eq!(vars.pairs, vec![(6..20, 22..23), (25..26, 28..28)]);
        assert_eq!(
            parse(b"", 0, 4),
            Ok(Some(Vars {
                pairs: vec![],
                content_length: None
            }))
        );
    }

    #[test]
    fn a_partial_block_needs_more_until_it_breaks_a_rule() {
        let b = block(&[(b"CONTENT_LENGTH", b"12"), (b"A", b"b")]);
        for k in 0..b.len() {
            assert_eq!(parse(&b[..k], b.len(), 0), Ok(None), "prefix {k}");
        }
        // Known from the length field alone, before the key arrives.
        assert_eq!(
            parse(b"\x10\x00", 10, 0),
            Err(UwsgiError::KeyPastBlock {
                offset: 0,
                len: 16,
                room: 8
            })
        );
        assert_eq!(
            parse(b"\x01\x00A\x10\x00", 10, 0),
            Err(UwsgiError::ValuePastBlock {
                offset: 0,
                key: "A".into(),
                len: 16,
                room: 5
            })
        );
    }

    #[test]
    fn empty_or_repeated_content_length() {
        let b = block(&[(b"CONTENT_LENGTH", b""), (b"CONTENT_LENGTH", b"")]);
        assert_eq!(parse(&b, b.len(), 0).unwrap().unwrap().content_length, None);
        let b = block(&[(b"CONTENT_LENGTH", b"007"), (b"CONTENT_LENGTH", b"007")]);
        assert_eq!(
            parse(&b, b.len(), 0).unwrap().unwrap().content_length,
            Some(7)
        );
        let b = block(&[(b"CONTENT_LENGTH", b""), (b"CONTENT_LENGTH", b"7")]);
        assert_eq!(
            parse(&b, b.len(), 0),
            Err(UwsgiError::ContentLength {
                offset: 36,
                error: LengthError::Conflicting {
                    first: "".into(),
                    second: "7".into()
                }
            })
        );
    }
}
