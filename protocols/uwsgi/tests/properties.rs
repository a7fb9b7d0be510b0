//! Property tests of the uwsgi head decoder: it never panics, never consumes
//! on "need more" or on an error, round-trips what a test-only encoder
//! writes, and refuses a prefix only with the error the whole input gets.

use proptest::prelude::*;
use rustgi_model::testing::{
    check_decodes_or_fails_cleanly, check_prefixes_fail_as_the_whole, check_round_trip, decode,
    mutate,
};
use rustgi_model::{BodyFraming, StreamProtocol};
use rustgi_uwsgi::client::{encode_vars, packet};
use rustgi_uwsgi::{Uwsgi, UwsgiError};

/// Params as (name, value) byte strings, in wire order.
type Params = Vec<(Vec<u8>, Vec<u8>)>;

fn encode(modifier1: u8, modifier2: u8, params: &Params, body: &[u8]) -> Vec<u8> {
    let vars = encode_vars(params.iter().map(|(n, v)| (n, v)));
    [packet(modifier1, modifier2, &vars), body.to_vec()].concat()
}

/// Names as a front server might send them (never CONTENT_LENGTH, whose
/// value must be a number, nor the vars modifier1 30 rewrites), and any
/// values.
fn name() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 1..16).prop_filter("special var", |n| {
        !matches!(
            n.as_slice(),
            b"CONTENT_LENGTH" | b"SCRIPT_NAME" | b"PATH_INFO" | b"HTTP_TRANSFER_ENCODING"
        )
    })
}

/// A valid request: other params with CONTENT_LENGTH somewhere (or absent
/// for an empty body), then the body.
fn request() -> impl Strategy<Value = (Params, Vec<u8>)> {
    (
        prop::collection::vec((name(), prop::collection::vec(any::<u8>(), 0..24)), 0..8),
        prop::collection::vec(any::<u8>(), 0..40),
        any::<prop::sample::Index>(),
        any::<bool>(),
    )
        .prop_map(|(mut params, body, at, send_length)| {
            if send_length || !body.is_empty() {
                let i = at.index(params.len() + 1);
                params.insert(
                    i,
                    (
                        b"CONTENT_LENGTH".to_vec(),
                        body.len().to_string().into_bytes(),
                    ),
                );
            }
            (params, body)
        })
}

/// Inputs near the valid ones, where the interesting errors are: a valid
/// request with one byte changed, one byte removed or a byte inserted.
fn near_valid() -> impl Strategy<Value = Vec<u8>> {
    (
        request(),
        prop_oneof![Just(0u8), Just(30u8)],
        any::<prop::sample::Index>(),
        any::<u8>(),
        0..3u8,
    )
        .prop_map(|((params, body), modifier1, at, byte, how)| {
            let bytes = encode(modifier1, 0, &params, &body);
            let at = at.index(bytes.len());
            mutate(bytes, at, byte, how)
        })
}

fn any_input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        // A plausible header (modifier1 0 or 30, a small datasize), then anything.
        (
            prop_oneof![Just(0u8), Just(30u8)],
            0u16..220,
            any::<u8>(),
            prop::collection::vec(any::<u8>(), 0..220)
        )
            .prop_map(|(m1, size, m2, rest)| {
                let mut bytes = vec![m1];
                bytes.extend_from_slice(&size.to_le_bytes());
                bytes.push(m2);
                bytes.extend(rest);
                bytes
            }),
        near_valid(),
    ]
}

fn small_limit() -> impl Strategy<Value = Uwsgi> {
    prop_oneof![Just(Uwsgi::default()), (0usize..300).prop_map(Uwsgi::new)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Any byte string gives a request, "need more" or a typed error,
    /// never a panic, and a prefix fails only as the whole does.
    #[test]
    fn any_bytes_decode_or_fail_cleanly(bytes in any_input(), uwsgi in small_limit()) {
        check_decodes_or_fails_cleanly(&uwsgi, &bytes);
        check_prefixes_fail_as_the_whole(&uwsgi, &bytes);
    }

    /// What the encoder writes decodes to the same params, in order, with
    /// the body left in the buffer, however it is cut, whatever modifier2
    /// says.
    #[test]
    fn round_trip((params, body) in request(), modifier2 in any::<u8>()) {
        let bytes = encode(0, modifier2, &params, &body);
        let uwsgi = Uwsgi::default();
        let request = check_round_trip(&uwsgi, &bytes, &params, &body);
        prop_assert_eq!(uwsgi.body_framing(&request), BodyFraming::Length(body.len() as u64));
        prop_assert!(request.warnings.is_empty());
    }

    /// With modifier1 30, PATH_INFO under SCRIPT_NAME loses the prefix and
    /// nothing else changes.
    #[test]
    fn round_trip_modifier30(
        (mut params, body) in request(),
        script in "(/[a-z]{1,6}){0,2}",
        rest in "(/[a-z]{0,6}){0,3}",
    ) {
        params.push((b"SCRIPT_NAME".to_vec(), script.clone().into_bytes()));
        params.push((b"PATH_INFO".to_vec(), format!("{script}{rest}").into_bytes()));
        let bytes = encode(30, 0, &params, &body);
        let (result, buf) = decode(&Uwsgi::default(), &bytes);
        let request = result.unwrap().unwrap();
        prop_assert_eq!(request.param(b"PATH_INFO").unwrap().as_ref(), rest.as_bytes());
        prop_assert_eq!(request.param(b"SCRIPT_NAME").unwrap().as_ref(), script.as_bytes());
        prop_assert_eq!(request.params.len(), params.len());
        prop_assert!(request.warnings.is_empty());
        prop_assert_eq!(buf.as_ref(), &body[..]);
    }

    /// The limit applies to the declared block length and nothing else.
    #[test]
    fn the_limit_is_on_the_declared_length((params, body) in request(), limit in 0usize..300) {
        let bytes = encode(0, 0, &params, &body);
        let declared = usize::from(u16::from_le_bytes([bytes[1], bytes[2]]));
        let (result, _) = decode(&Uwsgi::new(limit), &bytes);
        if declared > limit {
            prop_assert_eq!(result, Err(UwsgiError::VarsOverLimit { size: declared, limit }));
        } else {
            prop_assert!(matches!(result, Ok(Some(_))), "{:?}", result);
        }
    }
}
