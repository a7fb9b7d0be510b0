//! CONTENT_LENGTH, read one way by every protocol and by CGI mode.
//!
//! - Absent or empty means "no length" (nginx sends an empty CONTENT_LENGTH
//!   for a request without a body); each protocol decides what that means.
//! - Otherwise ASCII digits only: no sign, no `0x`, no whitespace around
//!   them. RFC 3875 defines the variable as `1*digit`, front servers send
//!   exactly that, and a parser that trims or skips what another one keeps
//!   is how two hops come to disagree on where a body ends. Leading zeros
//!   are accepted: the value stays unambiguous.
//! - A value over `u64::MAX` is refused, never wrapped or saturated.
//! - Sent more than once, every value must be the same bytes: two lengths
//!   for one body are a request-smuggling hazard, not something to merge.
//!
//! The same rules serve FastCGI's FCGI_DATA_LENGTH ([`length_param`]).

use crate::{Param, show};
use std::fmt;

pub const CONTENT_LENGTH: &[u8] = b"CONTENT_LENGTH";

/// Why a length parameter was refused. It displays as a predicate, to
/// follow the parameter's name (`CONTENT_LENGTH "1x" is not a decimal …`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LengthError {
    /// A byte that is not a decimal digit, at `index` in the value
    /// (`value` ends with it).
    NotDigit {
        value: String,
        byte: u8,
        index: usize,
    },
    /// The value does not fit in a `u64`: its first `digits` digits (in
    /// `value`) do not.
    Overflow { value: String, digits: usize },
    /// Sent twice with different values.
    Conflicting { first: String, second: String },
}

impl LengthError {
    /// The predicate for a value that starts at byte `offset` of a request,
    /// as the SCGI and uwsgi decoders report it.
    pub fn at(&self, offset: usize) -> impl fmt::Display + '_ {
        AtOffset {
            error: self,
            offset,
        }
    }
}

struct AtOffset<'a> {
    error: &'a LengthError,
    offset: usize,
}

impl fmt::Display for AtOffset<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let offset = self.offset;
        match self.error {
            LengthError::NotDigit { byte, index, .. } => write!(
                f,
                "is not a decimal number: {} at offset {}",
                show::byte(*byte),
                offset + index
            ),
            LengthError::Overflow { digits, .. } => write!(
                f,
                "at offset {offset} does not fit in 64 bits ({digits} digits so far)"
            ),
            conflicting => write!(f, "at offset {offset} {conflicting}"),
        }
    }
}

impl fmt::Display for LengthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LengthError::NotDigit { value, byte, index } => write!(
                f,
                "{value:?} is not a decimal number: {} at index {index}",
                show::byte(*byte)
            ),
            LengthError::Overflow { value, .. } => {
                write!(f, "{value:?} does not fit in 64 bits")
            }
            LengthError::Conflicting { first, second } => write!(
                f,
                "was sent twice with different values, {first:?} and {second:?} \
                 (refused: the two could frame the body differently)"
            ),
        }
    }
}

impl std::error::Error for LengthError {}

/// One value: `None` when empty, else its digits as a `u64`. A prefix of a
/// value gives the same error as the whole, so a decoder can refuse a value
/// whose end has yet to arrive.
pub fn parse_length(value: &[u8]) -> Result<Option<u64>, LengthError> {
    if value.is_empty() {
        return Ok(None);
    }
    let mut n: u64 = 0;
    for (index, &byte) in value.iter().enumerate() {
        // What a decoder has seen of the value when it refuses it, so that
        // the error is the same however the value arrived.
        let seen = || show::field(&value[..=index]);
        if !byte.is_ascii_digit() {
            let value = seen();
            return Err(LengthError::NotDigit { value, byte, index });
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(byte - b'0')))
            .ok_or_else(|| LengthError::Overflow {
                value: seen(),
                digits: index + 1,
            })?;
    }
    Ok(Some(n))
}

/// The values of one length parameter, taken as a decoder meets them, so
/// that it can say where a refused one was.
#[derive(Clone, Debug, Default)]
pub struct LengthValues<'a> {
    first: Option<&'a [u8]>,
    length: Option<u64>,
}

impl<'a> LengthValues<'a> {
    /// Takes one more value sent under the parameter's name.
    pub fn add(&mut self, value: &'a [u8]) -> Result<(), LengthError> {
        match self.first {
            None => {
                self.length = parse_length(value)?;
                self.first = Some(value);
            }
            Some(first) if first != value => {
                return Err(LengthError::Conflicting {
                    first: show::field(first),
                    second: show::field(value),
                });
            }
            Some(_) => {}
        }
        Ok(())
    }

    /// The length, once every value is in; `None` when absent or empty.
    pub fn length(&self) -> Option<u64> {
        self.length
    }
}

/// The length the parameter `name` declares in `params` (FastCGI's
/// FCGI_DATA_LENGTH, for one).
pub fn length_param(params: &[Param], name: &[u8]) -> Result<Option<u64>, LengthError> {
    let mut values = LengthValues::default();
    for param in params.iter().filter(|p| p.name.as_ref() == name) {
        values.add(&param.value)?;
    }
    Ok(values.length())
}

/// The length CONTENT_LENGTH declares in `params` (FastCGI, CGI mode).
pub fn content_length(params: &[Param]) -> Result<Option<u64>, LengthError> {
    length_param(params, CONTENT_LENGTH)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_lengths(values: &[&'static str]) -> Vec<Param> {
        let mut params = vec![Param::new("A", "1")];
        params.extend(values.iter().map(|v| Param::new(CONTENT_LENGTH, *v)));
        params
    }

    fn not_digit(value: &str, byte: u8, index: usize) -> LengthError {
        let value = value.to_owned();
        LengthError::NotDigit { value, byte, index }
    }

    #[test]
    fn digits_only() {
        assert_eq!(parse_length(b"0"), Ok(Some(0)));
        assert_eq!(parse_length(b"0042"), Ok(Some(42)));
        assert_eq!(parse_length(b"18446744073709551615"), Ok(Some(u64::MAX)));
        assert_eq!(parse_length(b""), Ok(None));
        for (value, byte, index) in [
            ("+5", b'+', 0),
            ("-1", b'-', 0),
            (" 5", b' ', 0),
            ("5 ", b' ', 1),
            ("0x10", b'x', 1),
            ("1_000", b'_', 1),
        ] {
            let refused = parse_length(value.as_bytes());
            let seen = &value[..=index];
            assert_eq!(refused, Err(not_digit(seen, byte, index)), "{value:?}");
        }
        let error = not_digit("12a", b'a', 2);
        assert_eq!(
            format!("CONTENT_LENGTH {error}"),
            "CONTENT_LENGTH \"12a\" is not a decimal number: 'a' (0x61) at index 2"
        );
        assert_eq!(
            format!("CONTENT_LENGTH {}", error.at(20)),
            "CONTENT_LENGTH is not a decimal number: 'a' (0x61) at offset 22"
        );
    }

    #[test]
    fn overflow_is_refused() {
        let error = parse_length(b"99999999999999999999999").unwrap_err();
        let value = "99999999999999999999".to_owned();
        assert_eq!(error, LengthError::Overflow { value, digits: 20 });
        assert_eq!(
            format!("CONTENT_LENGTH {}", error.at(7)),
            "CONTENT_LENGTH at offset 7 does not fit in 64 bits (20 digits so far)"
        );
        assert!(matches!(
            parse_length(b"18446744073709551616"),
            Err(LengthError::Overflow { digits: 20, .. })
        ));
    }

    #[test]
    fn absent_or_empty_is_none() {
        assert_eq!(content_length(&with_lengths(&[])), Ok(None));
        assert_eq!(content_length(&with_lengths(&[""])), Ok(None));
        assert_eq!(content_length(&with_lengths(&["", ""])), Ok(None));
    }

    #[test]
    fn identical_repeats_are_fine() {
        assert_eq!(content_length(&with_lengths(&["7", "7", "7"])), Ok(Some(7)));
    }

    #[test]
    fn conflicting_repeats_are_refused_naming_both() {
        for (values, first, second) in [
            (&["5", "6"][..], "5", "6"),
            (&["", "6"], "", "6"),
            (&["6", ""], "6", ""),
            (&["7", "007"], "7", "007"),
            (&["5", "x"], "5", "x"),
        ] {
            let error = content_length(&with_lengths(values)).unwrap_err();
            assert_eq!(
                error,
                LengthError::Conflicting {
                    first: first.into(),
                    second: second.into()
                },
                "{values:?}"
            );
        }
        let error = content_length(&with_lengths(&["5", "6"])).unwrap_err();
        assert!(error.to_string().contains("\"5\" and \"6\""), "{error}");
    }

    #[test]
    fn the_first_bad_value_is_named() {
        let refused = content_length(&with_lengths(&["x", "5"]));
        assert_eq!(refused, Err(not_digit("x", b'x', 0)));
    }

    #[test]
    fn any_parameter_name() {
        let params = vec![
            Param::new(CONTENT_LENGTH, "3"),
            Param::new("FCGI_DATA_LENGTH", "10"),
        ];
        assert_eq!(length_param(&params, b"FCGI_DATA_LENGTH"), Ok(Some(10)));
        assert_eq!(length_param(&params, b"OTHER"), Ok(None));
    }
}
