//! Name-value pairs, the content of the PARAMS stream and of GET_VALUES.
//!
//! ```text
//! pair   = length(name) length(value) name value
//! length = u8 < 0x80                         ; 0..127
//!        / u32be with the top bit set        ; value = bits & 0x7fffffff
//! ```
//!
//! All four mixes of short and long lengths occur, and a short length may
//! also come in the 4-byte form: both are accepted.
//!
//! PARAMS is a stream cut into records at arbitrary points, so a pair may
//! straddle records. [`PairsDecoder`] is fed the concatenated stream as it
//! grows and decodes every whole pair once; the pairs are byte ranges of the
//! stream, so they become zero-copy slices of it at the end.

use std::ops::Range;

use nom::{
    IResult, Needed, Parser,
    bytes::streaming::take,
    number::streaming::{be_u8, be_u32},
};

use crate::PairError;

/// Where a pair's name and value lie in the stream.
pub(crate) type PairRanges = (Range<usize>, Range<usize>);

/// One length field, in either form.
fn length(input: &[u8]) -> IResult<&[u8], u32, ()> {
    let (_, first) = be_u8(input)?;
    if first & 0x80 == 0 {
        be_u8.map(u32::from).parse(input)
    } else {
        be_u32.map(|n| n & 0x7fff_ffff).parse(input)
    }
}

/// What the stream holds at a pair's start.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// A whole pair, and the stream offset just after it.
    Pair {
        name: Range<usize>,
        value: Range<usize>,
        end: usize,
    },
    /// Not all of it yet: the pair needs at least `needed` bytes from its
    /// start (exactly that many once both lengths are in).
    Incomplete { needed: u64 },
}

/// How many more bytes a streaming nom parser asked for.
fn more(error: nom::Err<()>) -> u64 {
    match error {
        nom::Err::Incomplete(Needed::Size(n)) => n.get() as u64,
        _ => 1,
    }
}

/// Parses the pair that starts at offset `at` of `stream` (`at <=
/// stream.len()`). An empty name is refused as soon as its length is in.
pub(crate) fn parse_pair(stream: &[u8], at: usize) -> Result<Parsed, PairError> {
    let input = stream.get(at..).unwrap_or_default();
    let have = input.len() as u64;
    let (rest, name_len) = match length(input) {
        Ok(parsed) => parsed,
        // The name length, the value length's first byte.
        Err(e) => {
            return Ok(Parsed::Incomplete {
                needed: have + more(e) + 1,
            });
        }
    };
    if name_len == 0 {
        return Err(PairError::EmptyName { at });
    }
    let (rest, value_len) = match length(rest) {
        Ok(parsed) => parsed,
        Err(e) => {
            return Ok(Parsed::Incomplete {
                needed: have + more(e) + u64::from(name_len),
            });
        }
    };
    let head = input.len() - rest.len();
    let needed = head as u64 + u64::from(name_len) + u64::from(value_len);
    let name_and_value: IResult<&[u8], (&[u8], &[u8]), ()> =
        (take(name_len), take(value_len)).parse(rest);
    match name_and_value {
        Ok((_, (name, value))) => {
            let name_at = at + head;
            let value_at = name_at + name.len();
            let end = value_at + value.len();
            Ok(Parsed::Pair {
                name: name_at..value_at,
                value: value_at..end,
                end,
            })
        }
        Err(_) => Ok(Parsed::Incomplete { needed }),
    }
}

/// Why a stream of pairs was refused while it arrived.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FeedError {
    Pair(PairError),
    /// A pair's declared lengths take the stream to `size` bytes, over the
    /// limit: refused before its bytes arrive.
    OverLimit {
        size: u64,
    },
}

impl From<PairError> for FeedError {
    fn from(e: PairError) -> Self {
        FeedError::Pair(e)
    }
}

/// Decodes pairs from a stream that grows at its end.
#[derive(Debug, Default)]
pub(crate) struct PairsDecoder {
    /// Offset of the first pair not decoded yet.
    pos: usize,
    pairs: Vec<PairRanges>,
}

impl PairsDecoder {
    /// Decodes every whole pair `stream` now holds past the ones already
    /// decoded (`stream` is the whole stream so far: it only ever grows).
    /// A pair whose declared lengths take the stream past `limit` is refused
    /// at once.
    pub fn feed(&mut self, stream: &[u8], limit: usize) -> Result<(), FeedError> {
        if let Some(needed) = self.decode_whole_pairs(stream)? {
            let size = self.pos as u64 + needed;
            if size > limit as u64 {
                return Err(FeedError::OverLimit { size });
            }
        }
        Ok(())
    }

    /// The stream has ended: every byte of it must be part of a whole pair.
    pub fn finish(mut self, stream: &[u8]) -> Result<Vec<PairRanges>, PairError> {
        match self.decode_whole_pairs(stream)? {
            None => Ok(self.pairs),
            Some(needed) => Err(PairError::Truncated {
                at: self.pos,
                needed,
                available: stream.len() - self.pos,
            }),
        }
    }

    /// Decodes pairs until the stream's end (`None`) or a pair that is not
    /// whole yet: then how many bytes from its start it needs.
    fn decode_whole_pairs(&mut self, stream: &[u8]) -> Result<Option<u64>, PairError> {
        if self.pairs.capacity() == 0 {
            // What a front server sends (nginx: about 20 pairs), in one
            // allocation.
            self.pairs.reserve(32);
        }
        while self.pos < stream.len() {
            match parse_pair(stream, self.pos)? {
                Parsed::Pair { name, value, end } => {
                    self.pairs.push((name, value));
                    self.pos = end;
                }
                Parsed::Incomplete { needed } => return Ok(Some(needed)),
            }
        }
        Ok(None)
    }
}

/// Decodes a whole, self-contained block of pairs (a GET_VALUES body).
pub(crate) fn decode_all(block: &[u8]) -> Result<Vec<PairRanges>, PairError> {
    PairsDecoder::default().finish(block)
}

/// Appends one length field: the 1-byte form when `long` is false and the
/// length fits in 7 bits, else the 4-byte form with the top bit set.
/// Lengths over 0x7fffffff cannot be written (the caller checks).
pub(crate) fn write_length(len: usize, long: bool, out: &mut Vec<u8>) {
    debug_assert!(len <= 0x7fff_ffff);
    match u8::try_from(len) {
        Ok(short) if short < 0x80 && !long => out.push(short),
        _ => {
            let len = u32::try_from(len).unwrap_or(u32::MAX) | 0x8000_0000;
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
}

/// Appends a pair with each length in its shortest form.
pub(crate) fn write_pair(name: &[u8], value: &[u8], out: &mut Vec<u8>) {
    write_length(name.len(), false, out);
    write_length(value.len(), false, out);
    out.extend_from_slice(name);
    out.extend_from_slice(value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{LengthForm, encode_pair};
    use proptest::prelude::*;

    fn pairs(block: &[u8]) -> Vec<(&[u8], &[u8])> {
        decode_all(block)
            .unwrap()
            .into_iter()
            .map(|(n, v)| (&block[n], &block[v]))
            .collect()
    }

    #[test]
    fn all_four_length_mixes() {
        let long_name = vec![b'N'; 200];
        let long_value = vec![b'v'; 300];
        let mut block = Vec::new();
        block.extend_from_slice(b"\x01\x02ABC");
        block.extend_from_slice(b"\x80\x00\x00\xc8\x03");
        block.extend_from_slice(&long_name);
        block.extend_from_slice(b"xyz");
        block.extend_from_slice(b"\x01\x80\x00\x01\x2cM");
        block.extend_from_slice(&long_value);
        block.extend_from_slice(b"\x80\x00\x00\xc8\x80\x00\x01\x2c");
        block.extend_from_slice(&long_name);
        block.extend_from_slice(&long_value);
        assert_eq!(
            pairs(&block),
            [
                (&b"A"[..], &b"BC"[..]),
                (&long_name[..], &b"xyz"[..]),
                (&b"M"[..], &long_value[..]),
                (&long_name[..], &long_value[..]),
            ]
        );
    }

    #[test]
    fn four_byte_form_for_short_lengths() {
        // The top bit marks the long form; the value may still be small.
        assert_eq!(
            pairs(b"\x80\x00\x00\x01\x80\x00\x00\x02AB1"),
            [(&b"A"[..], &b"B1"[..])]
        );
        // Empty value in the long form.
        assert_eq!(pairs(b"\x01\x80\x00\x00\x00Q"), [(&b"Q"[..], &b""[..])]);
        // Only bits 30..0 count: the top bit marks the form.
        assert_eq!(
            parse_pair(b"\xff\xff\xff\xff\x01", 0),
            Ok(Parsed::Incomplete {
                needed: 4 + 1 + 0x7fff_ffff + 1
            })
        );
    }

    #[test]
    fn incomplete_says_how_much_is_needed() {
        assert_eq!(parse_pair(b"", 0), Ok(Parsed::Incomplete { needed: 2 }));
        assert_eq!(parse_pair(b"\x80", 0), Ok(Parsed::Incomplete { needed: 5 }));
        assert_eq!(parse_pair(b"\x03", 0), Ok(Parsed::Incomplete { needed: 5 }));
        assert_eq!(
            parse_pair(b"\x03\x04AB", 0),
            Ok(Parsed::Incomplete { needed: 9 })
        );
        assert_eq!(
            parse_pair(b"\x03\x80\x00", 0),
            Ok(Parsed::Incomplete { needed: 1 + 4 + 3 })
        );
    }

    #[test]
    fn empty_name_is_refused_from_its_length() {
        assert_eq!(parse_pair(b"\x00", 0), Err(PairError::EmptyName { at: 0 }));
        assert_eq!(
            parse_pair(b"..\x80\x00\x00\x00", 2),
            Err(PairError::EmptyName { at: 2 })
        );
    }

    #[test]
    fn a_pair_straddling_feeds() {
        let stream = b"\x04\x05NAMEvalue\x01\x00X";
        let mut decoder = PairsDecoder::default();
        for k in 0..=stream.len() {
            decoder.feed(&stream[..k], 100).unwrap();
        }
        let ranges = decoder.finish(stream).unwrap();
        assert_eq!(ranges, vec![(2..6, 6..11), (13..14, 14..14)]);
    }

    #[test]
    fn a_truncated_stream_names_the_pair() {
        let stream = b"\x01\x01AB\x04\x05NAMEval";
        let mut decoder = PairsDecoder::default();
        decoder.feed(stream, 100).unwrap();
        assert_eq!(
            decoder.finish(stream),
            Err(PairError::Truncated {
                at: 4,
                needed: 11,
                available: 9
            })
        );
        assert_eq!(
            decode_all(b"\x80\x00"),
            Err(PairError::Truncated {
                at: 0,
                needed: 5,
                available: 2
            })
        );
    }

    #[test]
    fn declared_lengths_over_the_limit_are_refused_before_their_bytes() {
        let mut decoder = PairsDecoder::default();
        decoder.feed(b"\x01\x01AB", 100).unwrap();
        assert_eq!(
            decoder.feed(b"\x01\x01AB\x01\xff\xff\xff\xff", 100),
            Err(FeedError::OverLimit {
                size: 4 + 6 + 0x7fff_ffff
            })
        );
        // Exactly at the limit is fine.
        let mut decoder = PairsDecoder::default();
        assert_eq!(decoder.feed(b"\x01\x05A", 8), Ok(()));
        assert!(decoder.feed(b"\x01\x05A", 7).is_err());
    }

    fn form() -> impl Strategy<Value = LengthForm> {
        prop_oneof![Just(LengthForm::Shortest), Just(LengthForm::Long)]
    }

    proptest! {
        /// Pairs written in any mix of length forms decode to themselves,
        /// however the stream is cut.
        #[test]
        fn round_trip(
            pairs in prop::collection::vec(
                (prop::collection::vec(any::<u8>(), 1..300), prop::collection::vec(any::<u8>(), 0..300), form(), form()),
                0..6,
            ),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut stream = Vec::new();
            for (name, value, name_form, value_form) in &pairs {
                encode_pair(name, value, *name_form, *value_form, &mut stream);
            }
            let cut = cut.index(stream.len() + 1);
            let mut decoder = PairsDecoder::default();
            decoder.feed(&stream[..cut], usize::MAX).unwrap();
            decoder.feed(&stream, usize::MAX).unwrap();
            let ranges = decoder.finish(&stream).unwrap();
            let decoded: Vec<(&[u8], &[u8])> =
                ranges.into_iter().map(|(n, v)| (&stream[n], &stream[v])).collect();
            let expected: Vec<(&[u8], &[u8])> =
                pairs.iter().map(|(n, v, _, _)| (&n[..], &v[..])).collect();
            prop_assert_eq!(decoded, expected);
        }

        /// Any bytes: pairs, an error, never a panic.
        #[test]
        fn any_block(block in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_all(&block);
        }
    }
}
