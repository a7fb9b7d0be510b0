//! Property tests of the chunked decoder: whatever the chunk sizes and
//! however the input is cut, the same bytes come out; and any input at all
//! gives data, "need more", the end or a typed error, never a panic.

use bytes::BytesMut;
use proptest::prelude::*;
use rustgi_model::{Chunked, ChunkedDecoder, ChunkedError};

/// The chunked coding of `body` cut into chunks of the given sizes (the
/// last chunk takes the rest), with optional extensions and trailers.
fn encode(body: &[u8], sizes: &[usize], extensions: bool, trailers: bool, upper: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = body;
    let mut sizes = sizes.iter().cycle();
    while !rest.is_empty() {
        let n = (*sizes.next().unwrap()).clamp(1, rest.len());
        let size = if upper {
            format!("{n:X}")
        } else {
            format!("{n:x}")
        };
        out.extend_from_slice(size.as_bytes());
        if extensions {
            out.extend_from_slice(b" ;name=\"va;lue\";x");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&rest[..n]);
        out.extend_from_slice(b"\r\n");
        rest = &rest[n..];
    }
    out.extend_from_slice(b"0\r\n");
    if trailers {
        out.extend_from_slice(b"Expires: never\r\nX-Digest: sha-256=abc\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Feeds `input` cut at `cuts` (sorted offsets) and collects the data and
/// how the decoding ended, with what was left of the input.
fn decode_cut(input: &[u8], cuts: &[usize]) -> (Vec<u8>, Result<Chunked, ChunkedError>, Vec<u8>) {
    let mut decoder = ChunkedDecoder::with_limits(64, 64);
    let mut buf = BytesMut::new();
    let mut data = Vec::new();
    let mut fed = 0;
    let mut bounds: Vec<usize> = cuts.iter().map(|&c| c.min(input.len())).collect();
    bounds.push(input.len());
    for end in bounds {
        if end < fed {
            continue;
        }
        buf.extend_from_slice(&input[fed..end]);
        fed = end;
        loop {
            match decoder.decode(&mut buf) {
                Ok(Chunked::Data(bytes)) => {
                    assert!(!bytes.is_empty(), "empty data");
                    data.extend_from_slice(&bytes);
                }
                Ok(Chunked::NeedMore) => {
                    assert!(buf.is_empty(), "need more with input left");
                    break;
                }
                other => {
                    let mut rest = buf.to_vec();
                    rest.extend_from_slice(&input[fed..]);
                    return (data, other, rest);
                }
            }
        }
    }
    (data, Ok(Chunked::NeedMore), Vec::new())
}

fn cuts() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0usize..600, 0..12).prop_map(|mut c| {
        c.sort_unstable();
        c
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Random body, random chunking, random cuts: the same bytes, the end,
    /// and what follows the body left in the input.
    #[test]
    fn any_chunking_and_cuts_give_the_body(
        body in prop::collection::vec(any::<u8>(), 0..400),
        sizes in prop::collection::vec(1usize..100, 1..6),
        extensions in any::<bool>(),
        trailers in any::<bool>(),
        upper in any::<bool>(),
        after in prop::collection::vec(any::<u8>(), 0..8),
        cuts in cuts(),
    ) {
        let mut input = encode(&body, &sizes, extensions, trailers, upper);
        input.extend_from_slice(&after);
        let (data, end, rest) = decode_cut(&input, &cuts);
        prop_assert_eq!(end, Ok(Chunked::End));
        prop_assert_eq!(data, body);
        prop_assert_eq!(rest, after);
    }

    /// Any input gives the same data and the same ending however it is cut,
    /// and never panics.
    #[test]
    fn any_input_decodes_the_same_however_cut(
        input in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..300),
            prop::collection::vec(prop::sample::select(b"0123456789abcdefABCDEF;= \t\r\n:xX-".to_vec()), 0..300),
            (prop::collection::vec(any::<u8>(), 0..100), any::<prop::sample::Index>(), any::<u8>())
                .prop_map(|(body, at, byte)| {
                    let mut input = encode(&body, &[7, 30], true, true, false);
                    let i = at.index(input.len());
                    input[i] = byte;
                    input
                }),
        ],
        cuts in cuts(),
    ) {
        let whole = decode_cut(&input, &[]);
        let cut = decode_cut(&input, &cuts);
        prop_assert_eq!(cut, whole);
    }
}
