//! Checks every stream protocol's head decoder and response encoder must
//! pass, for the unit and property tests of the protocol crates: the
//! contracts of [`StreamProtocol::decode_head`] and [`ResponseEncoder`]
//! written once. The gateway never calls
//! them; they panic on a failure, which proptest also reports and shrinks.

use crate::{
    COALESCE_LIMIT, Param, Request, ResponseEncoder, ResponseEvent, Segments, StreamProtocol,
};
use bytes::Bytes;
use bytes::BytesMut;
use std::fmt::Debug;
use std::io::IoSlice;

/// The outcome of decoding `bytes`, and what is left in the buffer.
pub type Decoded<P> = (
    Result<Option<Request>, <P as StreamProtocol>::Error>,
    BytesMut,
);

/// Decodes `bytes` from a fresh buffer.
pub fn decode<P: StreamProtocol>(protocol: &P, bytes: &[u8]) -> Decoded<P> {
    let mut buf = BytesMut::from(bytes);
    let result = protocol.decode_head(&mut buf);
    (result, buf)
}

/// The request a whole head decodes to, and what follows it.
pub fn whole<P>(protocol: &P, bytes: &[u8]) -> (Request, BytesMut)
where
    P: StreamProtocol,
    P::Error: Debug,
{
    let (result, rest) = decode(protocol, bytes);
    (result.unwrap().expect("a whole head"), rest)
}

/// `bytes` are refused with `expected`, which reads as `message`, and
/// nothing is consumed.
pub fn check_refused<P>(protocol: &P, bytes: &[u8], expected: P::Error, message: &str)
where
    P: StreamProtocol,
    P::Error: PartialEq + Debug,
{
    let (result, buf) = decode(protocol, bytes);
    let error = result.unwrap_err();
    assert_eq!(error, expected);
    assert_eq!(error.to_string(), message);
    assert_eq!(buf.as_ref(), bytes, "nothing consumed");
}

/// A limit on the head is inclusive: `bytes`, whose limited part is `size`
/// bytes long, decode under `with_limit(size)`, and are refused under
/// `with_limit(size - 1)` with the error returned.
pub fn limit_is_inclusive<P>(with_limit: impl Fn(usize) -> P, bytes: &[u8], size: usize) -> P::Error
where
    P: StreamProtocol,
    P::Error: Debug,
{
    assert!(decode(&with_limit(size), bytes).0.unwrap().is_some());
    decode(&with_limit(size - 1), bytes).0.unwrap_err()
}

/// `bytes` with the byte at `at` (taken modulo its length) replaced by
/// `byte`, removed, or with `byte` inserted before it, as `how` is 0, 1 or
/// else: inputs near a valid one, where the interesting errors are.
pub fn mutate(mut bytes: Vec<u8>, at: usize, byte: u8, how: u8) -> Vec<u8> {
    let i = at % bytes.len().max(1);
    match how {
        0 if i < bytes.len() => bytes[i] = byte,
        1 if i < bytes.len() => {
            bytes.remove(i);
        }
        _ => bytes.insert(i, byte),
    }
    bytes
}

/// Any bytes give a request, "need more" or a typed error, never a panic;
/// only a decoded head is consumed, and what is left is the rest.
pub fn check_decodes_or_fails_cleanly<P: StreamProtocol>(protocol: &P, bytes: &[u8]) {
    let (result, buf) = decode(protocol, bytes);
    match result {
        Ok(Some(request)) => {
            assert!(bytes.ends_with(&buf) && buf.len() < bytes.len());
            // The framing is defined for whatever was decoded.
            let _ = protocol.body_framing(&request);
        }
        Ok(None) | Err(_) => assert_eq!(buf.as_ref(), bytes),
    }
}

/// A prefix of any input decodes to "need more" or to what the whole input
/// decodes to: errors come as early as the bytes allow, and never differ
/// with how the bytes were cut.
pub fn check_prefixes_fail_as_the_whole<P>(protocol: &P, bytes: &[u8])
where
    P: StreamProtocol,
    P::Error: PartialEq + Debug,
{
    let (whole, _) = decode(protocol, bytes);
    for k in 0..bytes.len() {
        match decode(protocol, &bytes[..k]).0 {
            Ok(None) => {}
            prefix => assert_eq!(prefix, whole, "prefix of {k} bytes"),
        }
    }
}

/// A valid request (its head `head_len` bytes long), cut at every `step`th
/// byte and around the head's end: "need more" with nothing consumed before
/// the head's end, then the same request and the same rest as uncut.
pub fn check_split_points<P>(protocol: &P, name: &str, bytes: &[u8], head_len: usize, step: usize)
where
    P: StreamProtocol,
    P::Error: Debug,
{
    let (expected, expected_rest) = decode(protocol, bytes);
    let expected = expected.unwrap().expect("a whole head");
    for k in (0..=bytes.len())
        .step_by(step)
        .chain([head_len - 1, head_len])
    {
        let mut buf = BytesMut::from(&bytes[..k]);
        let mut result = protocol.decode_head(&mut buf).unwrap();
        if k < head_len {
            assert_eq!(result, None, "{name}: prefix of {k} bytes");
            assert_eq!(buf.as_ref(), &bytes[..k], "{name}: consumed at {k}");
            buf.extend_from_slice(&bytes[k..]);
            result = protocol.decode_head(&mut buf).unwrap();
        } else {
            buf.extend_from_slice(&bytes[k..]);
        }
        assert_eq!(result.as_ref(), Some(&expected), "{name}: split at {k}");
        assert_eq!(buf, expected_rest, "{name}: body after a split at {k}");
    }
}

/// What an encoder wrote from `params` then `body` decodes to those params,
/// in order, declaring the body's length and leaving it in the buffer, and
/// cut anywhere decodes the same. The request is returned for the
/// protocol's own checks.
pub fn check_round_trip<P>(
    protocol: &P,
    bytes: &[u8],
    params: &[(Vec<u8>, Vec<u8>)],
    body: &[u8],
) -> Request
where
    P: StreamProtocol,
    P::Error: Debug,
{
    let (result, buf) = decode(protocol, bytes);
    let request = result.unwrap().expect("a whole head");
    let sent = params.iter().map(|(n, v)| Param::new(n.clone(), v.clone()));
    assert!(request.params.iter().cloned().eq(sent), "{request:?}");
    assert_eq!(request.content_length, body.len() as u64);
    assert_eq!(buf.as_ref(), body);
    check_split_points(protocol, "round trip", bytes, bytes.len() - body.len(), 1);
    request
}

/// A valid request fed a byte at a time decodes exactly at its head's end,
/// to the same request as whole.
pub fn check_byte_by_byte<P>(protocol: &P, name: &str, bytes: &[u8], head_len: usize)
where
    P: StreamProtocol,
    P::Error: Debug,
{
    let expected = decode(protocol, bytes).0.unwrap();
    let mut buf = BytesMut::new();
    for (i, &b) in bytes[..head_len].iter().enumerate() {
        buf.extend_from_slice(&[b]);
        let result = protocol.decode_head(&mut buf).unwrap();
        if i + 1 < head_len {
            assert_eq!(result, None, "{name}: decoded before the head's end");
        } else {
            assert_eq!(result, expected, "{name}");
        }
    }
    assert!(buf.is_empty());
}

/// The params of a decoded request are slices of the buffer it was read
/// into (within its head), not copies.
pub fn check_params_are_slices<P>(protocol: &P, bytes: &[u8], head_len: usize)
where
    P: StreamProtocol,
    P::Error: Debug,
{
    let mut buf = BytesMut::from(bytes);
    let start = buf.as_ptr() as usize;
    let end = start + head_len;
    let request = protocol.decode_head(&mut buf).unwrap().unwrap();
    for p in &request.params {
        for field in [&p.name, &p.value] {
            let at = field.as_ptr() as usize;
            assert!(start <= at && at + field.len() <= end, "{p:?} was copied");
        }
    }
}

/// The bytes `events` encode to.
pub fn encode_all<E: ResponseEncoder>(
    encoder: &mut E,
    events: impl IntoIterator<Item = ResponseEvent>,
) -> Segments {
    let mut out = Segments::default();
    for event in events {
        encoder.encode(event, &mut out);
    }
    encoder.end_batch(&mut out);
    out
}

/// A stream protocol's encoder (SCGI, uwsgi) writes a large body block from
/// where it is, and nothing for `wsgi.errors`, the end or an abort: it has
/// no channel for them, and the connection's close ends the response.
pub fn check_stream_encoder<E: ResponseEncoder>(encoder: &mut E) {
    let large = Bytes::from(vec![7u8; COALESCE_LIMIT + 1]);
    let out = encode_all(encoder, [ResponseEvent::Body(large.clone())]);
    let mut first = [IoSlice::new(&[])];
    out.io_slices(&mut first);
    assert_eq!(first[0].as_ptr(), large.as_ptr(), "copied");
    let silent = [
        ResponseEvent::Stderr(Bytes::from_static(b"oops\n")),
        ResponseEvent::End,
        ResponseEvent::Abort,
    ];
    assert!(encode_all(encoder, silent).is_empty());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt;

    /// A head is the bytes up to a newline; a `!` in it is an error. A
    /// `copying` or `greedy` one breaks the contract the checks check.
    #[derive(Default)]
    struct Line {
        greedy: bool,
        copying: bool,
    }

    #[derive(Debug, PartialEq)]
    struct Bang;

    impl fmt::Display for Bang {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("!")
        }
    }

    impl std::error::Error for Bang {}

    impl StreamProtocol for Line {
        type Error = Bang;

        fn name(&self) -> &'static str {
            "line"
        }

        fn decode_head(&self, buf: &mut BytesMut) -> Result<Option<Request>, Bang> {
            let end = buf.iter().position(|&b| b == b'\n');
            if buf[..end.unwrap_or(buf.len())].contains(&b'!') {
                return Err(Bang);
            }
            let Some(end) = end else {
                if self.greedy {
                    buf.clear();
                }
                return Ok(None);
            };
            let head = buf.split_to(end + 1).freeze();
            let name = if self.copying {
                head.slice(..end).to_vec().into()
            } else {
                head.slice(..end)
            };
            Ok(Some(Request {
                params: vec![Param::new(name, head.slice(end..end))],
                ..Request::default()
            }))
        }

        type Encoder = Silent;

        fn encoder(&self, _: &Request) -> Silent {
            Silent
        }
    }

    /// Writes nothing: the decoder checks do not look at responses.
    struct Silent;

    impl ResponseEncoder for Silent {
        fn encode(&mut self, _: ResponseEvent, _: &mut Segments) {}
    }

    #[test]
    fn a_decoder_keeping_the_contract_passes() {
        let line = Line::default();
        check_split_points(&line, "line", b"head\nbody", 5, 1);
        check_byte_by_byte(&line, "line", b"head\nbody", 5);
        check_params_are_slices(&line, b"head\nbody", 5);
        for bytes in [&b"he!d\nbody"[..], b"head\nb!dy", b"head"] {
            check_decodes_or_fails_cleanly(&line, bytes);
            check_prefixes_fail_as_the_whole(&line, bytes);
        }
    }

    #[test]
    #[should_panic(expected = "consumed at 1")]
    fn consuming_on_need_more_is_caught() {
        let greedy = Line {
            greedy: true,
            ..Line::default()
        };
        check_split_points(&greedy, "greedy", b"head\nbody", 5, 1);
    }

    #[test]
    #[should_panic(expected = "was copied")]
    fn copied_params_are_caught() {
        let copying = Line {
            copying: true,
            ..Line::default()
        };
        check_params_are_slices(&copying, b"head\nbody", 5);
    }

    /// Copies every body block: what a stream protocol must not do.
    struct Copying;

    impl ResponseEncoder for Copying {
        fn encode(&mut self, event: ResponseEvent, out: &mut Segments) {
            if let ResponseEvent::Body(data) = event {
                out.small().extend_from_slice(&data);
            }
        }
    }

    #[test]
    #[should_panic(expected = "copied")]
    fn a_copying_encoder_is_caught() {
        check_stream_encoder(&mut Copying);
    }

    #[test]
    fn mutations_change_one_byte() {
        assert_eq!(mutate(b"abc".to_vec(), 4, b'x', 0), b"axc");
        assert_eq!(mutate(b"abc".to_vec(), 1, b'x', 1), b"ac");
        assert_eq!(mutate(b"abc".to_vec(), 2, b'x', 2), b"abxc");
        assert_eq!(mutate(Vec::new(), 5, b'x', 0), b"x");
    }
}
