//! The request body's framing undone: the bytes after a request head
//! become body data, whichever way the protocol delimits the body.
//!
//! Sans-I/O, like the protocol decoders: the connection driver feeds what
//! it reads and gets data back without a copy.

use crate::{BodyFraming, Chunked, ChunkedDecoder, ChunkedError};
use bytes::{Bytes, BytesMut};

/// What one call of [`BodyDecoder::decode`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unframed {
    /// Body bytes (never empty), split off the input without a copy.
    Data(Bytes),
    /// The input is used up and the body is not complete: read more.
    NeedMore,
    /// The body is complete. `past_end` bytes followed it in the input;
    /// they were dropped, since a stream protocol carries one request per
    /// connection and nothing may follow its body (nginx does send more
    /// over SCGI in one case: the server logs the count).
    End { past_end: u64 },
}

/// Turns the bytes after a request head into body data, by length or by
/// the chunked coding, as [`BodyFraming`] says.
#[derive(Clone, Debug)]
pub struct BodyDecoder {
    framing: Framing,
}

#[derive(Clone, Debug)]
enum Framing {
    Length { left: u64 },
    Chunked(ChunkedDecoder),
}

impl BodyDecoder {
    pub fn new(framing: BodyFraming) -> Self {
        let framing = match framing {
            BodyFraming::Length(length) => Framing::Length { left: length },
            BodyFraming::Chunked => Framing::Chunked(ChunkedDecoder::new()),
        };
        BodyDecoder { framing }
    }

    /// Consumes body bytes from the front of `input` until it has data to
    /// hand back, the body ends, or the input is used up. Only a chunked
    /// body can be malformed; once it is, every call returns the error.
    pub fn decode(&mut self, input: &mut BytesMut) -> Result<Unframed, ChunkedError> {
        match &mut self.framing {
            Framing::Length { left: 0 } => {}
            Framing::Length { .. } if input.is_empty() => return Ok(Unframed::NeedMore),
            Framing::Length { left } => {
                let n = input
                    .len()
                    .min(usize::try_from(*left).unwrap_or(usize::MAX));
                *left -= n as u64;
                return Ok(Unframed::Data(input.split_to(n).freeze()));
            }
            Framing::Chunked(decoder) => match decoder.decode(input)? {
                Chunked::Data(data) => return Ok(Unframed::Data(data)),
                Chunked::NeedMore => return Ok(Unframed::NeedMore),
                Chunked::End => {}
            },
        }
        let past_end = input.len() as u64;
        input.clear();
        Ok(Unframed::End { past_end })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes; returns the data, the
    /// bytes past the end, and how many times the decoder asked for more.
    fn run(framing: BodyFraming, input: &[u8], step: usize) -> (Vec<u8>, u64, usize) {
        let mut decoder = BodyDecoder::new(framing);
        let mut buf = BytesMut::new();
        let mut pieces = input.chunks(step);
        let (mut data, mut asked) = (Vec::new(), 0);
        loop {
            match decoder.decode(&mut buf).unwrap() {
                Unframed::Data(d) => {
                    assert!(!d.is_empty());
                    data.extend_from_slice(&d);
                }
                Unframed::NeedMore => {
                    asked += 1;
                    buf.extend_from_slice(pieces.next().expect("the body ended early"));
                }
                Unframed::End { past_end } => return (data, past_end, asked),
            }
        }
    }

    #[test]
    fn a_length_body_ends_at_its_length() {
        for step in [1, 3, 100] {
            let (data, past_end, _) = run(BodyFraming::Length(5), b"hello", step);
            assert_eq!(
                (data.as_slice(), past_end),
                (&b"hello"[..], 0),
                "step {step}"
            );
        }
        let (data, past_end, asked) = run(BodyFraming::Length(5), b"helloEXTRA", 100);
        assert_eq!((data.as_slice(), past_end, asked), (&b"hello"[..], 5, 1));
    }

    #[test]
    fn an_empty_length_body_ends_at_once() {
        let mut decoder = BodyDecoder::new(BodyFraming::Length(0));
        let mut buf = BytesMut::from(&b"xy"[..]);
        assert_eq!(decoder.decode(&mut buf), Ok(Unframed::End { past_end: 2 }));
        assert!(buf.is_empty());
        assert_eq!(decoder.decode(&mut buf), Ok(Unframed::End { past_end: 0 }));
    }

    #[test]
    fn length_data_is_not_copied() {
        let mut buf = BytesMut::from(&b"abcdefgh"[..]);
        let start = buf.as_ptr();
        let mut decoder = BodyDecoder::new(BodyFraming::Length(6));
        let Ok(Unframed::Data(data)) = decoder.decode(&mut buf) else {
            panic!("no data");
        };
        assert_eq!(data.as_ptr(), start);
        assert_eq!(&data[..], b"abcdef");
        assert_eq!(&buf[..], b"gh", "what follows the body stays until the end");
        assert_eq!(decoder.decode(&mut buf), Ok(Unframed::End { past_end: 2 }));
    }

    #[test]
    fn a_chunked_body_ends_at_its_last_chunk() {
        let body = b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nT: v\r\n\r\nNEXT";
        for step in [1, 2, 7] {
            let (data, _, _) = run(BodyFraming::Chunked, body, step);
            assert_eq!(data, b"abcde", "step {step}");
        }
        // Byte by byte, the end is found before the bytes past it arrive.
        assert_eq!(run(BodyFraming::Chunked, body, 1).1, 0);
        assert_eq!(run(BodyFraming::Chunked, body, 100).1, 4);
    }

    #[test]
    fn a_malformed_chunked_body_is_a_typed_error() {
        let mut decoder = BodyDecoder::new(BodyFraming::Chunked);
        let mut buf = BytesMut::from(&b"zz\r\n"[..]);
        let error = ChunkedError::SizeNotHex {
            byte: b'z',
            offset: 0,
        };
        assert_eq!(decoder.decode(&mut buf), Err(error.clone()));
        assert_eq!(decoder.decode(&mut buf), Err(error));
    }
}
