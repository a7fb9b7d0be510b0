//! The chunked transfer coding's decoder, with the default limits or small
//! ones: whatever the input and however it is cut, the same data, the same
//! end (and bytes after it) or the same error; counters that add up; no
//! empty data; errors and the end sticky.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rustgi_fuzz::{cuts, pieces, split};
use rustgi_model::{Chunked, ChunkedDecoder, ChunkedError};

#[derive(Debug, PartialEq)]
enum Outcome {
    NeedMore,
    /// The body ended; these bytes followed it.
    End(Vec<u8>),
    Failed(ChunkedError),
}

fn decode(limits: Option<(usize, usize)>, stream: &[u8], cuts: &[usize]) -> (Vec<u8>, Outcome) {
    let mut decoder = match limits {
        None => ChunkedDecoder::new(),
        Some((line, trailers)) => ChunkedDecoder::with_limits(line, trailers),
    };
    let mut buf = BytesMut::new();
    let mut data = Vec::new();
    let mut fed = 0;
    for piece in pieces(stream, cuts) {
        buf.extend_from_slice(piece);
        fed += piece.len();
        loop {
            let before = buf.len() as u64;
            let consumed = decoder.consumed();
            let result = decoder.decode(&mut buf);
            assert_eq!(
                before - buf.len() as u64,
                decoder.consumed() - consumed,
                "consumed() is not what it took"
            );
            assert_eq!(
                decoder.received(),
                data.len() as u64
                    + match &result {
                        Ok(Chunked::Data(d)) => d.len() as u64,
                        _ => 0,
                    }
            );
            assert!(decoder.received() <= decoder.consumed());
            assert_eq!(decoder.is_done(), result == Ok(Chunked::End));
            match result {
                Ok(Chunked::Data(d)) => {
                    assert!(!d.is_empty(), "empty data");
                    data.extend_from_slice(&d);
                }
                Ok(Chunked::NeedMore) => {
                    assert!(buf.is_empty(), "need more with input left");
                    break;
                }
                Ok(Chunked::End) => {
                    assert_eq!(decoder.decode(&mut buf), Ok(Chunked::End));
                    let mut rest = buf.to_vec();
                    rest.extend_from_slice(&stream[fed..]);
                    return (data, Outcome::End(rest));
                }
                Err(error) => {
                    assert!(!error.to_string().is_empty());
                    assert_eq!(decoder.decode(&mut buf), Err(error.clone()));
                    return (data, Outcome::Failed(error));
                }
            }
        }
    }
    (data, Outcome::NeedMore)
}

fuzz_target!(|data: &[u8]| {
    let (mut u, stream) = split(data);
    let limits = match u.int_in_range(0..=3).unwrap_or(0) {
        0 => None,
        _ => Some((
            u.int_in_range(0..=64).unwrap_or(0),
            u.int_in_range(0..=64).unwrap_or(0),
        )),
    };
    let cuts = cuts(&mut u, stream.len());
    let whole = decode(limits, stream, &[]);
    let cut = decode(limits, stream, &cuts);
    assert_eq!(whole, cut, "decoded differently in pieces {cuts:?}");
});
