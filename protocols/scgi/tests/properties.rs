//! Property tests of the SCGI head decoder: it never panics, never consumes
//! on "need more" or on an error, round-trips what a netstring encoder
//! writes, and refuses a prefix only with the error the whole input gets.

use proptest::prelude::*;
use rustgi_model::testing::{
    check_decodes_or_fails_cleanly, check_prefixes_fail_as_the_whole, check_round_trip, decode,
    mutate,
};
use rustgi_scgi::client::encode_request;
use rustgi_scgi::{Scgi, ScgiError};

/// Params as (name, value) byte strings, in wire order.
type Params = Vec<(Vec<u8>, Vec<u8>)>;

fn encode(params: &Params, body: &[u8]) -> Vec<u8> {
    encode_request(params.iter().map(|(n, v)| (n, v)), body)
}

/// Names and values as a front server might send them: any byte but NUL.
fn field(min: usize, max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(1u8..=255, min..max)
}

/// A valid request: CONTENT_LENGTH first, then other params, then the body.
fn request() -> impl Strategy<Value = (Params, Vec<u8>)> {
    (
        prop::collection::vec((field(1, 16), field(0, 24)), 0..8),
        prop::collection::vec(any::<u8>(), 0..40),
        any::<bool>(),
    )
        .prop_map(|(rest, body, with_scgi)| {
            let mut params = vec![(
                b"CONTENT_LENGTH".to_vec(),
                body.len().to_string().into_bytes(),
            )];
            if with_scgi {
                params.push((b"SCGI".to_vec(), b"1".to_vec()));
            }
            params.extend(rest);
            (params, body)
        })
}

/// Inputs near the valid ones, where the interesting errors are: a valid
/// request with one byte changed, one byte removed or a byte inserted.
fn near_valid() -> impl Strategy<Value = Vec<u8>> {
    (request(), any::<prop::sample::Index>(), any::<u8>(), 0..3u8).prop_map(
        |((params, body), at, byte, how)| {
            let bytes = encode(&params, &body);
            let at = at.index(bytes.len());
            mutate(bytes, at, byte, how)
        },
    )
}

fn any_input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        // A plausible length prefix, then anything.
        ("[0-9]{1,6}:", prop::collection::vec(any::<u8>(), 0..200)).prop_map(|(p, rest)| {
            let mut bytes = p.into_bytes();
            bytes.extend(rest);
            bytes
        }),
        near_valid(),
    ]
}

fn small_limit() -> impl Strategy<Value = Scgi> {
    prop_oneof![Just(Scgi::default()), (0usize..300).prop_map(Scgi::new)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Any byte string gives a request, "need more" or a typed error,
    /// never a panic, and a prefix fails only as the whole does.
    #[test]
    fn any_bytes_decode_or_fail_cleanly(bytes in any_input(), scgi in small_limit()) {
        check_decodes_or_fails_cleanly(&scgi, &bytes);
        check_prefixes_fail_as_the_whole(&scgi, &bytes);
    }

    /// What the encoder writes decodes to the same params, in order, with
    /// the body left in the buffer, however it is cut.
    #[test]
    fn round_trip((params, body) in request()) {
        let bytes = encode(&params, &body);
        let request = check_round_trip(&Scgi::default(), &bytes, &params, &body);
        let first_scgi_is_1 = params
            .iter()
            .find(|(n, _)| n == b"SCGI")
            .is_some_and(|(_, v)| v == b"1");
        prop_assert_eq!(request.warnings.is_empty(), first_scgi_is_1);
    }

    /// The limit applies to the declared block length and nothing else.
    #[test]
    fn the_limit_is_on_the_declared_length((params, body) in request(), limit in 0usize..300) {
        let bytes = encode(&params, &body);
        let colon = bytes.iter().position(|&b| b == b':').unwrap();
        let declared: usize = std::str::from_utf8(&bytes[..colon]).unwrap().parse().unwrap();
        let (result, _) = decode(&Scgi::new(limit), &bytes);
        if declared > limit {
            let refused = matches!(result, Err(ScgiError::LengthOverLimit { limit: l, .. }) if l == limit);
            prop_assert!(refused, "{:?}", result);
        } else {
            prop_assert!(matches!(result, Ok(Some(_))), "{:?}", result);
        }
    }
}
