//! The chunked transfer coding (RFC 9112 §7.1), decoded incrementally.
//!
//! ```text
//! chunked-body = *chunk last-chunk trailer-section CRLF
//! chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//! chunk-size   = 1*HEXDIG
//! last-chunk   = 1*("0") [ chunk-ext ] CRLF
//! chunk-ext    = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
//! trailer-section = *( field-line CRLF )
//! ```
//!
//! No stock front server sends a chunked body to a gateway (they de-chunk,
//! or refuse with 411); uWSGI's protocol has it as an extension, for a
//! request with `Transfer-Encoding: chunked` and no `CONTENT_LENGTH`. The
//! framing is checked strictly, because a lax chunked parser is how request
//! smuggling starts: every line ends in CRLF (a bare LF or CR is refused), a
//! chunk's data is followed by CRLF, a size is hex that fits in a `u64`.
//! Extensions are skipped; trailers are checked and dropped (they never
//! reach the application). The size line and the trailer section have
//! limits, so a peer cannot make the decoder buffer without end: it keeps
//! only a few counters, never a line.
//!
//! Like the protocol decoders, this does no I/O: the connection driver feeds
//! it what it reads and gets data slices back, zero-copy.

use crate::show;
use bytes::{Buf, Bytes, BytesMut};
use std::fmt;

/// Default limit on one chunk-size line, extensions and CRLF included.
pub const DEFAULT_MAX_SIZE_LINE: usize = 8 * 1024;
/// Default limit on the trailer section, its final CRLF included.
pub const DEFAULT_MAX_TRAILERS: usize = 8 * 1024;

/// What one call of [`ChunkedDecoder::decode`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Chunked {
    /// Body bytes (never empty), split off the input without a copy.
    Data(Bytes),
    /// The input is used up and the body is not complete: read more.
    NeedMore,
    /// The last chunk, the trailers and the final CRLF are in. Bytes after
    /// them stay in the input.
    End,
}

/// Why a chunked body was refused. Offsets count bytes from the first byte
/// of the chunked body (the first size line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChunkedError {
    /// A size line does not start with a hex digit.
    SizeNotHex { byte: u8, offset: u64 },
    /// A chunk size does not fit in a `u64`.
    SizeOverflow { offset: u64, digits: usize },
    /// After the size's digits came something other than `;`, whitespace
    /// before `;`, or CRLF; or an extension holds a control character.
    BadSizeLine { byte: u8, offset: u64 },
    /// A size line is longer than the limit (no CRLF within it).
    SizeLineTooLong { offset: u64, limit: usize },
    /// A CR is not followed by LF.
    MissingLf { byte: u8, offset: u64 },
    /// A LF without the CR before it.
    BareLf { offset: u64 },
    /// A chunk's data is not followed by CRLF: the size was wrong.
    MissingCrlfAfterData { byte: u8, offset: u64, size: u64 },
    /// A trailer line holds a control character, or its name a byte that is
    /// not a token byte (whitespace included: no obsolete line folding).
    BadTrailer { byte: u8, offset: u64 },
    /// A trailer line has no `:` or an empty name.
    TrailerWithoutName { offset: u64 },
    /// The trailer section is longer than the limit.
    TrailersTooLong { offset: u64, limit: usize },
}

impl fmt::Display for ChunkedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ChunkedError::*;
        match self {
            SizeNotHex { byte, offset } => write!(
                f,
                "chunked body: the chunk size at offset {offset} must start with a hex digit, found {}",
                show::byte(*byte)
            ),
            SizeOverflow { offset, digits } => write!(
                f,
                "chunked body: the chunk size at offset {offset} does not fit in 64 bits ({digits} hex digits so far)"
            ),
            BadSizeLine { byte, offset } => write!(
                f,
                "chunked body: unexpected {} at offset {offset} in a chunk size line (expected a hex digit, ';' or CRLF)",
                show::byte(*byte)
            ),
            SizeLineTooLong { offset, limit } => write!(
                f,
                "chunked body: the chunk size line at offset {offset} is over the limit of {limit} bytes"
            ),
            MissingLf { byte, offset } => write!(
                f,
                "chunked body: CR at offset {offset} must be followed by LF, found {}",
                show::byte(*byte)
            ),
            BareLf { offset } => write!(
                f,
                "chunked body: LF without CR at offset {offset} (lines must end in CRLF)"
            ),
            MissingCrlfAfterData { byte, offset, size } => write!(
                f,
                "chunked body: the {size}-byte chunk must be followed by CRLF, found {} at offset {offset}",
                show::byte(*byte)
            ),
            BadTrailer { byte, offset } => write!(
                f,
                "chunked body: unexpected {} at offset {offset} in a trailer line",
                show::byte(*byte)
            ),
            TrailerWithoutName { offset } => write!(
                f,
                "chunked body: the trailer line at offset {offset} is not `name: value`"
            ),
            TrailersTooLong { offset, limit } => write!(
                f,
                "chunked body: the trailer section at offset {offset} is over the limit of {limit} bytes"
            ),
        }
    }
}

impl std::error::Error for ChunkedError {}

/// Where the decoder is in the chunked body.
#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    /// In the size's hex digits (at least one seen unless `digits` is 0).
    Size {
        size: u64,
        digits: usize,
    },
    /// Whitespace after the digits: only `;` may follow it.
    SizeSpace {
        size: u64,
    },
    /// In the extensions, skipped up to the CR.
    Extension {
        size: u64,
    },
    /// After the size line's CR.
    SizeLf {
        size: u64,
    },
    /// In a chunk's data.
    Data {
        left: u64,
        size: u64,
    },
    /// After a chunk's data: its CR, then its LF.
    DataCr {
        size: u64,
    },
    DataLf {
        size: u64,
    },
    /// At the start of a trailer line, or of the final CRLF.
    TrailerStart,
    /// In a trailer line's name (at least one byte of it seen).
    TrailerName,
    /// In a trailer line's value.
    TrailerValue,
    /// After a trailer line's CR (`last`: the line was empty, so this CRLF
    /// ends the body).
    TrailerLf {
        last: bool,
    },
    Done,
    Failed(ChunkedError),
}

/// An incremental, sans-I/O decoder of one chunked body.
///
/// Feed it the bytes read so far with [`ChunkedDecoder::decode`]: it
/// consumes what it has checked (framing bytes are dropped, data bytes are
/// handed back) and keeps its place in between calls, so the input can be
/// cut anywhere. Once it has failed, it returns the same error again.
#[derive(Clone, Debug)]
pub struct ChunkedDecoder {
    state: State,
    /// Bytes of the chunked body consumed so far (framing and data).
    offset: u64,
    /// Data bytes handed out so far.
    received: u64,
    /// Where the current size line or the trailer section started.
    start: u64,
    /// Where the current trailer line started.
    line: u64,
    max_size_line: usize,
    max_trailers: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder::new()
    }
}

impl ChunkedDecoder {
    /// A decoder with the default limits ([`DEFAULT_MAX_SIZE_LINE`],
    /// [`DEFAULT_MAX_TRAILERS`]).
    pub fn new() -> Self {
        ChunkedDecoder::with_limits(DEFAULT_MAX_SIZE_LINE, DEFAULT_MAX_TRAILERS)
    }

    /// A decoder with given limits on a size line and on the trailer
    /// section (both counted with their CRLFs).
    pub fn with_limits(max_size_line: usize, max_trailers: usize) -> Self {
        ChunkedDecoder {
            state: State::Size { size: 0, digits: 0 },
            offset: 0,
            received: 0,
            start: 0,
            line: 0,
            max_size_line,
            max_trailers,
        }
    }

    /// Data bytes handed out so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Bytes of the chunked body consumed so far, framing included.
    pub fn consumed(&self) -> u64 {
        self.offset
    }

    /// True once [`Chunked::End`] has been returned.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes checked bytes from the front of `input` until it has data to
    /// hand back, the body ends, or the input is used up.
    pub fn decode(&mut self, input: &mut BytesMut) -> Result<Chunked, ChunkedError> {
        loop {
            match &mut self.state {
                State::Failed(error) => return Err(error.clone()),
                State::Done => return Ok(Chunked::End),
                State::Data { left, size } => {
                    if input.is_empty() {
                        return Ok(Chunked::NeedMore);
                    }
                    let n = input
                        .len()
                        .min(usize::try_from(*left).unwrap_or(usize::MAX));
                    let data = input.split_to(n).freeze();
                    *left -= n as u64;
                    if *left == 0 {
                        self.state = State::DataCr { size: *size };
                    }
                    self.offset += n as u64;
                    self.received += n as u64;
                    return Ok(Chunked::Data(data));
                }
                _ => {}
            }
            let Some(&byte) = input.first() else {
                return Ok(Chunked::NeedMore);
            };
            if let Err(error) = self.step(byte) {
                self.state = State::Failed(error.clone());
                return Err(error);
            }
            input.advance(1);
            self.offset += 1;
        }
    }

    /// Takes one framing byte, the one at `self.offset`.
    fn step(&mut self, byte: u8) -> Result<(), ChunkedError> {
        let offset = self.offset;
        self.check_limits()?;
        self.state = match std::mem::replace(&mut self.state, State::Done) {
            State::Size { size, digits } => match hex(byte) {
                Some(d) => State::Size {
                    size: size.checked_mul(16).and_then(|s| s.checked_add(d)).ok_or(
                        ChunkedError::SizeOverflow {
                            offset: self.start,
                            digits: digits + 1,
                        },
                    )?,
                    digits: digits + 1,
                },
                None if digits == 0 => return Err(ChunkedError::SizeNotHex { byte, offset }),
                None => match byte {
                    b'\r' => State::SizeLf { size },
                    b';' => State::Extension { size },
                    b' ' | b'\t' => State::SizeSpace { size },
                    b'\n' => return Err(ChunkedError::BareLf { offset }),
                    _ => return Err(ChunkedError::BadSizeLine { byte, offset }),
                },
            },
            State::SizeSpace { size } => match byte {
                b' ' | b'\t' => State::SizeSpace { size },
                b';' => State::Extension { size },
                b'\n' => return Err(ChunkedError::BareLf { offset }),
                _ => return Err(ChunkedError::BadSizeLine { byte, offset }),
            },
            State::Extension { size } => match byte {
                b'\r' => State::SizeLf { size },
                b'\n' => return Err(ChunkedError::BareLf { offset }),
                _ if is_control(byte) => return Err(ChunkedError::BadSizeLine { byte, offset }),
                _ => State::Extension { size },
            },
            State::SizeLf { size } => match byte {
                b'\n' if size == 0 => {
                    self.start = offset + 1;
                    self.line = offset + 1;
                    State::TrailerStart
                }
                b'\n' => State::Data { left: size, size },
                _ => return Err(ChunkedError::MissingLf { byte, offset }),
            },
            State::DataCr { size } => match byte {
                b'\r' => State::DataLf { size },
                _ => return Err(ChunkedError::MissingCrlfAfterData { byte, offset, size }),
            },
            State::DataLf { size } => match byte {
                b'\n' => {
                    self.start = offset + 1;
                    State::Size { size: 0, digits: 0 }
                }
                _ => return Err(ChunkedError::MissingCrlfAfterData { byte, offset, size }),
            },
            State::TrailerStart => match byte {
                b'\r' => State::TrailerLf { last: true },
                b'\n' => return Err(ChunkedError::BareLf { offset }),
                b':' => return Err(ChunkedError::TrailerWithoutName { offset }),
                // Whitespace first would be obsolete line folding.
                _ if !is_name_byte(byte) => return Err(ChunkedError::BadTrailer { byte, offset }),
                _ => State::TrailerName,
            },
            State::TrailerName => match byte {
                b':' => State::TrailerValue,
                b'\r' | b'\n' => {
                    return Err(ChunkedError::TrailerWithoutName { offset: self.line });
                }
                _ if !is_name_byte(byte) => return Err(ChunkedError::BadTrailer { byte, offset }),
                _ => State::TrailerName,
            },
            State::TrailerValue => match byte {
                b'\r' => State::TrailerLf { last: false },
                b'\n' => return Err(ChunkedError::BareLf { offset }),
                _ if is_control(byte) => return Err(ChunkedError::BadTrailer { byte, offset }),
                _ => State::TrailerValue,
            },
            State::TrailerLf { last } => match byte {
                b'\n' if last => State::Done,
                b'\n' => {
                    self.line = offset + 1;
                    State::TrailerStart
                }
                _ => return Err(ChunkedError::MissingLf { byte, offset }),
            },
            State::Data { .. } | State::Done | State::Failed(_) => {
                unreachable!("decode handles data and the final states")
            }
        };
        Ok(())
    }

    /// Refuses the byte at `self.offset` if it would make the size line or
    /// the trailer section longer than its limit.
    fn check_limits(&self) -> Result<(), ChunkedError> {
        let used = self.offset - self.start;
        match self.state {
            State::Size { .. }
            | State::SizeSpace { .. }
            | State::Extension { .. }
            | State::SizeLf { .. }
                if used >= self.max_size_line as u64 =>
            {
                Err(ChunkedError::SizeLineTooLong {
                    offset: self.start,
                    limit: self.max_size_line,
                })
            }
            State::TrailerStart
            | State::TrailerName
            | State::TrailerValue
            | State::TrailerLf { .. }
                if used >= self.max_trailers as u64 =>
            {
                Err(ChunkedError::TrailersTooLong {
                    offset: self.start,
                    limit: self.max_trailers,
                })
            }
            _ => Ok(()),
        }
    }
}

fn hex(byte: u8) -> Option<u64> {
    char::from(byte).to_digit(16).map(u64::from)
}

/// Control characters other than HTAB (which values may hold).
fn is_control(byte: u8) -> bool {
    (byte < 0x20 && byte != b'\t') || byte == 0x7f
}

/// A byte of an HTTP token (a field name).
fn is_name_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ChunkedError::*;

    /// Decodes `input` in one go: the data, and how it ended.
    fn run(
        decoder: &mut ChunkedDecoder,
        input: &[u8],
    ) -> (Vec<u8>, Result<Chunked, ChunkedError>, BytesMut) {
        let mut buf = BytesMut::from(input);
        let mut data = Vec::new();
        loop {
            match decoder.decode(&mut buf) {
                Ok(Chunked::Data(bytes)) => {
                    assert!(!bytes.is_empty());
                    data.extend_from_slice(&bytes);
                }
                other => return (data, other, buf),
            }
        }
    }

    fn whole(input: &[u8]) -> (Vec<u8>, BytesMut) {
        let (data, end, rest) = run(&mut ChunkedDecoder::new(), input);
        assert_eq!(end, Ok(Chunked::End));
        (data, rest)
    }

    #[track_caller]
    fn refused(input: &[u8], expected: ChunkedError, message: &str) {
        let mut decoder = ChunkedDecoder::new();
        let (_, end, _) = run(&mut decoder, input);
        assert_eq!(end, Err(expected.clone()));
        assert_eq!(expected.to_string(), message);
        // It stays failed.
        assert_eq!(
            decoder.decode(&mut BytesMut::from(&b"0\r\n\r\n"[..])),
            Err(expected)
        );
    }

    #[test]
    fn decodes_chunks_extensions_and_trailers() {
        let (data, rest) =
            whole(b"5\r\nhello\r\n1;a=b ; c=\"d\"\r\n \r\nA\r\n0123456789\r\n0\r\n\r\nnext");
        assert_eq!(data, b"hello 0123456789");
        assert_eq!(rest.as_ref(), b"next");
        let (data, _) = whole(b"3 ;x\r\nabc\r\n000\r\nExpires: never\r\nX-Sum:\t1 2\r\n\r\n");
        assert_eq!(data, b"abc");
        let (data, rest) = whole(b"0\r\n\r\n");
        assert!(data.is_empty() && rest.is_empty());
        let (data, end, rest) = run(&mut ChunkedDecoder::new(), b"fF\r\n");
        assert_eq!((data, end, rest.len()), (vec![], Ok(Chunked::NeedMore), 0));
    }

    #[test]
    fn data_is_split_off_without_a_copy() {
        let mut buf = BytesMut::from(&b"5\r\nhello\r\n0\r\n\r\n"[..]);
        let start = buf.as_ptr() as usize;
        let mut decoder = ChunkedDecoder::new();
        let Ok(Chunked::Data(data)) = decoder.decode(&mut buf) else {
            panic!("data expected");
        };
        assert_eq!(data.as_ptr() as usize, start + 3);
        assert_eq!(decoder.decode(&mut buf), Ok(Chunked::End));
        assert!(decoder.is_done());
        assert_eq!(decoder.received(), 5);
        assert_eq!(decoder.consumed(), 15);
    }

    #[test]
    fn a_chunk_is_handed_out_as_it_arrives() {
        let mut decoder = ChunkedDecoder::new();
        let mut buf = BytesMut::from(&b"b\r\nhel"[..]);
        assert_eq!(
            decoder.decode(&mut buf),
            Ok(Chunked::Data(Bytes::from_static(b"hel")))
        );
        assert_eq!(decoder.decode(&mut buf), Ok(Chunked::NeedMore));
        buf.extend_from_slice(b"lo worl");
        assert_eq!(
            decoder.decode(&mut buf),
            Ok(Chunked::Data(Bytes::from_static(b"lo worl")))
        );
        buf.extend_from_slice(b"d\r");
        assert_eq!(
            decoder.decode(&mut buf),
            Ok(Chunked::Data(Bytes::from_static(b"d")))
        );
        assert_eq!(decoder.decode(&mut buf), Ok(Chunked::NeedMore));
        assert!(buf.is_empty());
        buf.extend_from_slice(b"\n0\r\n\r");
        assert_eq!(decoder.decode(&mut buf), Ok(Chunked::NeedMore));
        assert!(!decoder.is_done());
        buf.extend_from_slice(b"\n");
        assert_eq!(decoder.decode(&mut buf), Ok(Chunked::End));
        assert_eq!(decoder.decode(&mut buf), Ok(Chunked::End));
    }

    #[test]
    fn size_not_hex() {
        refused(
            b"x\r\n",
            SizeNotHex {
                byte: b'x',
                offset: 0,
            },
            "chunked body: the chunk size at offset 0 must start with a hex digit, found 'x' (0x78)",
        );
        assert_eq!(
            run(&mut ChunkedDecoder::new(), b"\r\n").1,
            Err(SizeNotHex {
                byte: b'\r',
                offset: 0
            })
        );
        assert_eq!(
            run(&mut ChunkedDecoder::new(), b" 5\r\n").1,
            Err(SizeNotHex {
                byte: b' ',
                offset: 0
            })
        );
        assert_eq!(
            run(&mut ChunkedDecoder::new(), b"1\r\na\r\n-1\r\n").1,
            Err(SizeNotHex {
                byte: b'-',
                offset: 6
            })
        );
    }

    #[test]
    fn size_overflow() {
        assert_eq!(whole(b"0000000000000000000000000\r\n\r\n").0, b"");
        let mut decoder = ChunkedDecoder::new();
        let mut buf = BytesMut::from(&b"ffffffffffffffff\r\n"[..]);
        assert_eq!(decoder.decode(&mut buf), Ok(Chunked::NeedMore));
        refused(
            b"10000000000000000\r\n",
            SizeOverflow {
                offset: 0,
                digits: 17,
            },
            "chunked body: the chunk size at offset 0 does not fit in 64 bits (17 hex digits so far)",
        );
    }

    #[test]
    fn bad_size_line() {
        refused(
            b"5x\r\n",
            BadSizeLine {
                byte: b'x',
                offset: 1,
            },
            "chunked body: unexpected 'x' (0x78) at offset 1 in a chunk size line (expected a hex digit, ';' or CRLF)",
        );
        // Whitespace may only come before an extension.
        assert_eq!(
            run(&mut ChunkedDecoder::new(), b"5 \r\n").1,
            Err(BadSizeLine {
                byte: b'\r',
                offset: 2
            })
        );
        assert_eq!(
            run(&mut ChunkedDecoder::new(), b"5;a\x00\r\n").1,
            Err(BadSizeLine { byte: 0, offset: 3 })
        );
    }

    #[test]
    fn size_line_too_long() {
        let mut line = b"5;".to_vec();
        line.resize(DEFAULT_MAX_SIZE_LINE - 2, b'x');
        line.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
        assert_eq!(whole(&line).0, b"hello", "exactly at the limit");
        let mut line = b"5;".to_vec();
        line.resize(DEFAULT_MAX_SIZE_LINE - 1, b'x');
        line.extend_from_slice(b"\r\n");
        refused(
            &line,
            SizeLineTooLong {
                offset: 0,
                limit: 8192,
            },
            "chunked body: the chunk size line at offset 0 is over the limit of 8192 bytes",
        );
        let (_, end, _) = run(
            &mut ChunkedDecoder::with_limits(4, 100),
            b"1\r\na\r\n12;x\r\n",
        );
        assert_eq!(
            end,
            Err(SizeLineTooLong {
                offset: 6,
                limit: 4
            })
        );
        // Leading zeros count too: the line is what is limited.
        let (_, end, _) = run(&mut ChunkedDecoder::with_limits(4, 100), b"00000");
        assert_eq!(
            end,
            Err(SizeLineTooLong {
                offset: 0,
                limit: 4
            })
        );
    }

    #[test]
    fn missing_lf() {
        refused(
            b"5\rhello",
            MissingLf {
                byte: b'h',
                offset: 2,
            },
            "chunked body: CR at offset 2 must be followed by LF, found 'h' (0x68)",
        );
        assert_eq!(
            run(&mut ChunkedDecoder::new(), b"0\r\nA: b\rX").1,
            Err(MissingLf {
                byte: b'X',
                offset: 8
            })
        );
        assert_eq!(
            run(&mut ChunkedDecoder::new(), b"0\r\n\r\r").1,
            Err(MissingLf {
                byte: b'\r',
                offset: 4
            })
        );
    }

    #[test]
    fn bare_lf() {
        refused(
            b"5\nhello\r\n",
            BareLf { offset: 1 },
            "chunked body: LF without CR at offset 1 (lines must end in CRLF)",
        );
        assert_eq!(
            run(&mut ChunkedDecoder::new(), b"5;x\n").1,
            Err(BareLf { offset: 3 })
        );
        assert_eq!(
            run(&mut ChunkedDecoder::new(), b"0\r\n\n").1,
            Err(BareLf { offset: 3 })
        );
        assert_eq!(
            run(&mut ChunkedDecoder::new(), b"0\r\nA: b\n").1,
            Err(BareLf { offset: 7 })
        );
    }

    #[test]
    fn missing_crlf_after_data() {
        refused(
            b"3\r\nhello\r\n",
            MissingCrlfAfterData {
                byte: b'l',
                offset: 6,
                size: 3,
            },
            "chunked body: the 3-byte chunk must be followed by CRLF, found 'l' (0x6c) at offset 6",
        );
        assert_eq!(
            run(&mut ChunkedDecoder::new(), b"3\r\nhel\rl").1,
            Err(MissingCrlfAfterData {
                byte: b'l',
                offset: 7,
                size: 3
            })
        );
    }

    #[test]
    fn bad_trailer() {
        refused(
            b"0\r\nA: b\x01\r\n\r\n",
            BadTrailer { byte: 1, offset: 7 },
            "chunked body: unexpected '\\x01' (0x01) at offset 7 in a trailer line",
        );
        // Obsolete line folding, and whitespace before the colon.
        assert_eq!(
            run(&mut ChunkedDecoder::new(), b"0\r\nA: b\r\n c\r\n\r\n").1,
            Err(BadTrailer {
                byte: b' ',
                offset: 9
            })
        );
        assert_eq!(
            run(&mut ChunkedDecoder::new(), b"0\r\nA : b\r\n\r\n").1,
            Err(BadTrailer {
                byte: b' ',
                offset: 4
            })
        );
    }

    #[test]
    fn trailer_without_name() {
        refused(
            b"0\r\nA: b\r\nnocolon\r\n\r\n",
            TrailerWithoutName { offset: 9 },
            "chunked body: the trailer line at offset 9 is not `name: value`",
        );
        assert_eq!(
            run(&mut ChunkedDecoder::new(), b"0\r\n: b\r\n\r\n").1,
            Err(TrailerWithoutName { offset: 3 })
        );
    }

    #[test]
    fn trailers_too_long() {
        let mut input = b"1\r\na\r\n0\r\nX: ".to_vec();
        input.resize(9 + DEFAULT_MAX_TRAILERS - 4, b'v');
        input.extend_from_slice(b"\r\n\r\n");
        assert_eq!(whole(&input).0, b"a", "exactly at the limit");
        input.insert(12, b'v');
        refused(
            &input,
            TrailersTooLong {
                offset: 9,
                limit: 8192,
            },
            "chunked body: the trailer section at offset 9 is over the limit of 8192 bytes",
        );
        let (_, end, _) = run(&mut ChunkedDecoder::with_limits(100, 2), b"0\r\n\r\n");
        assert_eq!(end, Ok(Chunked::End));
        let (_, end, _) = run(&mut ChunkedDecoder::with_limits(100, 1), b"0\r\n\r\n");
        assert_eq!(
            end,
            Err(TrailersTooLong {
                offset: 3,
                limit: 1
            })
        );
    }
}
