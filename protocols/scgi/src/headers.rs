//! The header block inside the netstring: `NAME \0 VALUE \0` pairs.
//!
//! Rules, checked in the order the bytes arrive so that a block still
//! arriving is refused as soon as it breaks one:
//! - the first header is CONTENT_LENGTH, its value a decimal `u64`, and a
//!   repeat of it has the same value ([`rustgi_model::LengthValues`]);
//! - no name is empty;
//! - the block is whole pairs: it ends in the NUL that ends a value.
//!
//! Repeated names are kept as sent; merging them is the core's job.

use std::ops::Range;

use nom::{
    IResult, Parser,
    bytes::streaming::{tag, take_until},
    sequence::terminated,
};

use crate::ScgiError;
use rustgi_model::{CONTENT_LENGTH, LengthError, LengthValues, parse_length, show};

/// A decoded block: where each name and value lies in the head (offsets from
/// the start of the request), and the body length CONTENT_LENGTH declared.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Headers {
    pub pairs: Vec<(Range<usize>, Range<usize>)>,
    pub content_length: u64,
}

/// One NUL-terminated field; nom's `Incomplete` when its NUL has not arrived.
fn field(input: &[u8]) -> IResult<&[u8], &[u8], ()> {
    terminated(take_until("\0"), tag("\0")).parse(input)
}

/// Parses the `block` that starts at offset `base` of the request.
///
/// `complete` says whether `block` holds all the bytes the netstring
/// declared. If it does not, the answer is `Ok(None)` (need more) unless the
/// bytes so far already break a rule.
pub(crate) fn parse(
    block: &[u8],
    complete: bool,
    base: usize,
) -> Result<Option<Headers>, ScgiError> {
    let at = |rest: &[u8]| base + block.len() - rest.len();
    let mut pairs = Vec::new();
    let mut content_length = LengthValues::default();
    let mut rest = block;
    while !rest.is_empty() {
        let name_at = at(rest);
        let Ok((after_name, name)) = field(rest) else {
            return unterminated(complete, name_at, rest.len());
        };
        if name.is_empty() {
            return Err(ScgiError::EmptyName { offset: name_at });
        }
        let first = pairs.is_empty();
        if first && name != CONTENT_LENGTH {
            return Err(ScgiError::ContentLengthNotFirst {
                found: show::field(name),
                offset: name_at,
            });
        }
        let value_at = at(after_name);
        let Ok((after_value, value)) = field(after_name) else {
            if first {
                // The digits of CONTENT_LENGTH that have arrived so far.
                parse_length(after_name).map_err(|error| length_error(value_at, error))?;
            }
            if after_name.is_empty() && complete {
                return Err(ScgiError::OddFieldCount {
                    fields: 2 * pairs.len() + 1,
                    name: show::field(name),
                    offset: name_at,
                });
            }
            return unterminated(complete, value_at, after_name.len());
        };
        if first && value.is_empty() {
            return Err(ScgiError::ContentLengthEmpty { offset: value_at });
        }
        if name == CONTENT_LENGTH {
            content_length
                .add(value)
                .map_err(|error| length_error(value_at, error))?;
        }
        pairs.push((
            name_at..name_at + name.len(),
            value_at..value_at + value.len(),
        ));
        rest = after_value;
    }
    if !complete {
        return Ok(None);
    }
    match content_length.length() {
        Some(content_length) => Ok(Some(Headers {
            pairs,
            content_length,
        })),
        None => Err(ScgiError::MissingContentLength { offset: base }),
    }
}

/// A last field without its NUL: an error once the block is whole, else
/// the NUL is still to come.
fn unterminated(complete: bool, offset: usize, len: usize) -> Result<Option<Headers>, ScgiError> {
    if complete {
        Err(ScgiError::UnterminatedField { offset, len })
    } else {
        Ok(None)
    }
}

fn length_error(offset: usize, error: LengthError) -> ScgiError {
    ScgiError::ContentLength { offset, error }
}

/// The warning for a request without `SCGI: 1`. The spec requires the
/// header, but hand-written front-server configs forget it and the request
/// is otherwise fine, so it is tolerated and reported.
pub(crate) fn scgi_warning(scgi: Option<&[u8]>) -> Option<String> {
    match scgi {
        Some(b"1") => None,
        Some(other) => Some(format!(
            "SCGI header is {:?}, expected \"1\"; request accepted anyway",
            show::field(other)
        )),
        None => Some(
            "SCGI header missing (the spec requires SCGI=1; add `scgi_param SCGI 1;` or the like \
             to the front server's config); request accepted anyway"
                .to_owned(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_count_from_the_request_start() {
        let h = parse(b"CONTENT_LENGTH\x005\x00A\x00\x00", true, 3)
            .unwrap()
            .unwrap();
        assert_eq!(h.content_length, 5);
        assert_eq!(h.pairs, vec![(3..17, 18..19), (20..21, 22..22)]);
    }

    #[test]
    fn a_partial_block_needs_more_until_it_breaks_a_rule() {
        let block = b"CONTENT_LENGTH\x0012\x00A\x00b\x00";
        for k in 0..block.len() {
            assert_eq!(parse(&block[..k], false, 0), Ok(None), "prefix {k}");
        }
        assert_eq!(
            parse(b"CONTENT_LENGTH\x001x", false, 0),
            Err(ScgiError::ContentLength {
                offset: 15,
                error: LengthError::NotDigit {
                    value: "1x".into(),
                    byte: b'x',
                    index: 1
                }
            })
        );
        assert_eq!(
            parse(b"CONTENT_LENGTH\x001\x00\x00", false, 0),
            Err(ScgiError::EmptyName { offset: 17 })
        );
    }

    #[test]
    fn tolerates_leading_zeros_in_content_length() {
        let h = parse(b"CONTENT_LENGTH\x00007\x00", true, 0)
            .unwrap()
            .unwrap();
        assert_eq!(h.content_length, 7);
    }
}
