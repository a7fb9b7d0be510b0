//! What the fuzz targets share: the input layout, feeding bytes in pieces,
//! and the checks that hold for every decoder.
//!
//! Every target reads its input the same way:
//!
//! ```text
//! input   = n:u8 control[n] stream
//! control = typed choices (limits, cut points, driver actions), read with
//!           `arbitrary`; missing bytes read as zeros (defaults)
//! stream  = the bytes a peer sends
//! ```
//!
//! So a capture from `fixtures/` with a 0 in front is a seed that decodes
//! whole with the defaults, and the fuzzer mutates the stream and the way
//! it is cut separately. A panic or a failed `assert!` is a finding.

use arbitrary::Unstructured;
use bytes::BytesMut;
use rustgi_model::testing::check_decodes_or_fails_cleanly;
use rustgi_model::{BodyDecoder, BodyFraming, ChunkedError, StreamProtocol, Unframed};
use std::fmt::Debug;

pub mod pairs;

/// The most cut points a target reads: enough to split a head and a body
/// several ways, few enough that a check stays linear in the input.
pub const MAX_CUTS: usize = 8;

/// Splits an input into its control bytes and the stream.
pub fn split(data: &[u8]) -> (Unstructured<'_>, &[u8]) {
    let Some((&n, rest)) = data.split_first() else {
        return (Unstructured::new(&[]), &[]);
    };
    let n = usize::from(n).min(rest.len());
    let (control, stream) = rest.split_at(n);
    (Unstructured::new(control), stream)
}

/// Up to [`MAX_CUTS`] sorted offsets into a stream of `len` bytes, where
/// the stream is cut into the pieces a peer's writes (or a socket's reads)
/// would bring.
pub fn cuts(u: &mut Unstructured<'_>, len: usize) -> Vec<usize> {
    let n = u.int_in_range(0..=MAX_CUTS).unwrap_or(0);
    let mut cuts: Vec<usize> = (0..n)
        .map(|_| u.int_in_range(0..=len).unwrap_or(len))
        .collect();
    cuts.sort_unstable();
    cuts
}

/// The pieces of `stream` between `cuts` (sorted), the last one included.
pub fn pieces<'a>(stream: &'a [u8], cuts: &[usize]) -> impl Iterator<Item = &'a [u8]> {
    let mut from = 0;
    cuts.iter().copied().chain([stream.len()]).map(move |to| {
        let to = to.clamp(from, stream.len());
        let piece = &stream[from..to];
        from = to;
        piece
    })
}

/// A head decoder's contract on `stream`: a request, "need more" or a
/// typed error, never a panic; nothing consumed unless a head was
/// decoded; a prefix at each cut decodes to "need more" or to what the
/// whole does; fed in the pieces, the same request and rest as whole. The
/// body that follows a decoded head is then unframed as the protocol says.
pub fn check_head<P>(protocol: &P, stream: &[u8], cuts: &[usize])
where
    P: StreamProtocol,
    P::Error: PartialEq + Debug,
{
    check_decodes_or_fails_cleanly(protocol, stream);
    let mut whole_buf = BytesMut::from(stream);
    let whole = protocol.decode_head(&mut whole_buf);
    if let Err(error) = &whole {
        // Every error names what was wrong; writing it must not panic.
        assert!(!error.to_string().is_empty());
    }
    for &k in cuts {
        let mut buf = BytesMut::from(&stream[..k]);
        match protocol.decode_head(&mut buf) {
            Ok(None) => assert_eq!(buf.as_ref(), &stream[..k], "consumed on need more"),
            prefix => assert_eq!(prefix, whole, "prefix of {k} bytes"),
        }
    }

    // The way a server reads: append a piece, try again until decided.
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let mut incremental = Ok(None);
    for piece in pieces(stream, cuts) {
        buf.extend_from_slice(piece);
        fed += piece.len();
        incremental = protocol.decode_head(&mut buf);
        if !matches!(incremental, Ok(None)) {
            break;
        }
    }
    assert_eq!(incremental, whole, "decoded differently in pieces");
    if let Ok(Some(request)) = whole {
        buf.extend_from_slice(&stream[fed..]);
        assert_eq!(buf, whole_buf, "a different body after the head");
        let framing = protocol.body_framing(&request);
        let body_cuts: Vec<usize> = cuts.iter().map(|&c| c.min(buf.len())).collect();
        check_body(framing, &buf, &body_cuts);
    }
}

/// How unframing a body ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BodyEnd {
    /// The input ran out first.
    NeedMore,
    /// The body ended after `consumed` bytes of the input.
    End {
        consumed: u64,
    },
    Failed(ChunkedError),
}

/// Unframes `input` fed in the pieces between `cuts`, checking the
/// decoder's contract at each call; returns the data and how it ended.
pub fn unframe(framing: BodyFraming, input: &[u8], cuts: &[usize]) -> (Vec<u8>, BodyEnd) {
    let mut decoder = BodyDecoder::new(framing);
    let mut buf = BytesMut::new();
    let mut data = Vec::new();
    let mut fed = 0u64;
    for piece in pieces(input, cuts) {
        buf.extend_from_slice(piece);
        fed += piece.len() as u64;
        loop {
            match decoder.decode(&mut buf) {
                Ok(Unframed::Data(bytes)) => {
                    assert!(!bytes.is_empty(), "empty data");
                    data.extend_from_slice(&bytes);
                    if let BodyFraming::Length(n) = framing {
                        assert!(data.len() as u64 <= n, "more data than the length");
                    }
                }
                Ok(Unframed::NeedMore) => {
                    assert!(buf.is_empty(), "need more with input left");
                    break;
                }
                Ok(Unframed::End { past_end }) => {
                    assert!(buf.is_empty(), "bytes past the end kept");
                    assert!(past_end <= fed);
                    if let BodyFraming::Length(n) = framing {
                        assert_eq!(data.len() as u64, n, "ended short of the length");
                    }
                    // Once ended, it stays ended.
                    buf.extend_from_slice(b"more");
                    let again = decoder.decode(&mut buf);
                    assert_eq!(again, Ok(Unframed::End { past_end: 4 }));
                    return (
                        data,
                        BodyEnd::End {
                            consumed: fed - past_end,
                        },
                    );
                }
                Err(error) => {
                    assert!(!error.to_string().is_empty());
                    assert_eq!(decoder.decode(&mut buf), Err(error.clone()), "not sticky");
                    return (data, BodyEnd::Failed(error));
                }
            }
        }
    }
    (data, BodyEnd::NeedMore)
}

/// A body decodes to the same data, end and error whether it arrives
/// whole or in pieces.
pub fn check_body(framing: BodyFraming, input: &[u8], cuts: &[usize]) {
    let whole = unframe(framing, input, &[]);
    let cut = unframe(framing, input, cuts);
    assert_eq!(whole, cut, "unframed differently in pieces {cuts:?}");
}
