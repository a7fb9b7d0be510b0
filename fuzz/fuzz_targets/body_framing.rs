//! Body framing (`BodyDecoder`, by length or chunked) and the one
//! CONTENT_LENGTH policy (`parse_length`, `LengthValues`), checked against
//! plain definitions: a length is 1*DIGIT that fits a u64, sent twice it
//! must be the same bytes.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rustgi_fuzz::{check_body, cuts, split};
use rustgi_model::{BodyFraming, LengthError, LengthValues, Param, content_length, parse_length};

/// What `parse_length` must answer, from the definition.
fn expected_length(value: &[u8]) -> Option<Option<u64>> {
    if value.is_empty() {
        return Some(None);
    }
    if !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let digits = std::str::from_utf8(value).ok()?;
    digits.parse::<u64>().ok().map(Some)
}

fn check_lengths(stream: &[u8], cuts: &[usize]) {
    let parsed = parse_length(stream);
    match expected_length(stream) {
        Some(length) => assert_eq!(parsed, Ok(length)),
        None => assert!(parsed.is_err(), "{parsed:?}"),
    }
    // A prefix refuses only as the whole does (a decoder may refuse a value
    // whose end has not arrived).
    for &k in cuts {
        if let Err(error) = parse_length(&stream[..k]) {
            assert_eq!(parsed, Err(error), "prefix of {k} bytes");
        }
    }

    // The values between NULs, sent as CONTENT_LENGTH one after another.
    let values: Vec<&[u8]> = stream.split(|&b| b == 0).take(8).collect();
    let mut taken = LengthValues::default();
    let result = values.iter().try_for_each(|v| taken.add(v));
    let same = values.iter().all(|v| v == &values[0]);
    match (expected_length(values[0]), same) {
        (Some(length), true) => {
            assert_eq!(result, Ok(()));
            assert_eq!(taken.length(), length);
        }
        (None, _) => assert!(matches!(
            result,
            Err(LengthError::NotDigit { .. } | LengthError::Overflow { .. })
        )),
        (Some(_), false) => assert!(result.is_err(), "{result:?}"),
    }
    let params: Vec<Param> = values
        .iter()
        .map(|v| Param::new(&b"CONTENT_LENGTH"[..], Bytes::copy_from_slice(v)))
        .collect();
    assert_eq!(
        content_length(&params).ok(),
        result.ok().map(|()| taken.length())
    );
}

fuzz_target!(|data: &[u8]| {
    let (mut u, stream) = split(data);
    let cuts = cuts(&mut u, stream.len());
    match u.int_in_range(0..=2).unwrap_or(0) {
        0 => check_body(BodyFraming::Chunked, stream, &cuts),
        1 => {
            let length = match u.int_in_range(0..=2).unwrap_or(0) {
                0 => u.int_in_range(0..=stream.len() as u64 + 8).unwrap_or(0),
                1 => u64::MAX,
                _ => u.arbitrary().unwrap_or(0),
            };
            check_body(BodyFraming::Length(length), stream, &cuts);
        }
        _ => check_lengths(stream, &cuts),
    }
});
