//! The request body: packets `0x12 0x34, length, chunk length (u16),
//! bytes`, sent by the web server only when the container asks
//! (GET_BODY_CHUNK), except the first one of a body with a
//! Content-Length, which follows the forward request unasked. An empty
//! packet (or a chunk of length 0) ends a body of unknown length; before
//! Content-Length is reached it says the client's body was cut.

use crate::packet::{self, split_packet};
use crate::{AjpError, codes};
use bytes::{Bytes, BytesMut};

/// How a request's body comes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// Content-Length bytes; when over 0, the first packet comes unasked
    /// (mod_proxy_ajp reads it ahead; Tomcat expects it).
    Length(u64),
    /// `Transfer-Encoding: chunked` without a length: nothing comes unasked
    /// (mod_proxy_ajp: "the AJP protocol does not want body data yet"),
    /// and an empty packet ends it.
    UntilEmpty,
}

/// The most body bytes asked for in one GET_BODY_CHUNK: what fits in an
/// 8 KiB packet after its header and the chunk length.
pub const MAX_BODY_CHUNK: usize = packet::DEFAULT_PACKET_SIZE - packet::HEADER_LEN - 2;

/// What a body packet brought.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Chunk {
    Data(Bytes),
    /// The body is whole.
    End,
    /// The web server ended the body before Content-Length (its client
    /// went away): `received` of `length` bytes came.
    Cut {
        received: u64,
        length: u64,
    },
}

/// One request's body as it arrives: which packets are due, and how much
/// is left. Sans-I/O: the server writes what [`BodyReader::ask`] puts out
/// and feeds what it reads to [`BodyReader::decode`].
#[derive(Clone, Debug)]
pub struct BodyReader {
    length: Option<u64>,
    received: u64,
    /// A packet is due (the unasked first one, or one asked for).
    due: bool,
    ended: bool,
    limit: usize,
}

impl BodyReader {
    /// `limit`: the largest packet payload accepted.
    pub fn new(kind: BodyKind, limit: usize) -> Self {
        let (length, due, ended) = match kind {
            BodyKind::Length(0) => (Some(0), false, true),
            BodyKind::Length(n) => (Some(n), true, false),
            BodyKind::UntilEmpty => (None, false, false),
        };
        BodyReader {
            length,
            received: 0,
            due,
            ended,
            limit,
        }
    }

    /// The body has all come (or was cut, or failed).
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// A packet is on its way: the next bytes from the web server are body.
    pub fn due(&self) -> bool {
        self.due
    }

    pub fn received(&self) -> u64 {
        self.received
    }

    /// Content-Length, when the body has one.
    pub fn length(&self) -> Option<u64> {
        self.length
    }

    /// Asks for the next packet (GET_BODY_CHUNK into `out`) unless one is
    /// due already or the body has ended; whether it asked.
    pub fn ask(&mut self, out: &mut Vec<u8>) -> bool {
        if self.due || self.ended {
            return false;
        }
        let left = self
            .length
            .map_or(MAX_BODY_CHUNK as u64, |length| length - self.received);
        let size = left.min(MAX_BODY_CHUNK as u64) as u16;
        let mut payload = [codes::GET_BODY_CHUNK, 0, 0];
        payload[1..].copy_from_slice(&size.to_be_bytes());
        packet::reply(out, &payload);
        self.due = true;
        true
    }

    /// Decodes the due packet from the front of `buf`; `None`: need more.
    /// Call it only while a packet is [`due`](Self::due).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Chunk>, AjpError> {
        if !self.due {
            return Err(AjpError::UnexpectedBody { length: buf.len() });
        }
        let Some(mut payload) = split_packet(buf, self.limit)? else {
            return Ok(None);
        };
        self.due = false;
        // lighttpd ends a body with a packet of no payload at all; one byte
        // is half a chunk length.
        let chunk = match payload.len() {
            0 => 0,
            1 => {
                return Err(AjpError::Truncated {
                    what: "body chunk length",
                    offset: 0,
                });
            }
            _ => usize::from(u16::from_be_bytes([payload[0], payload[1]])),
        };
        if chunk == 0 {
            self.ended = true;
            return Ok(Some(match self.length {
                Some(length) if self.received < length => Chunk::Cut {
                    received: self.received,
                    length,
                },
                _ => Chunk::End,
            }));
        }
        if chunk > payload.len() - 2 {
            self.ended = true;
            return Err(AjpError::ChunkLongerThanPacket {
                chunk,
                packet: payload.len(),
            });
        }
        if chunk < payload.len() - 2 {
            self.ended = true;
            return Err(AjpError::ChunkShorterThanPacket {
                chunk,
                packet: payload.len(),
            });
        }
        let data = payload.split_off(2);
        self.received += chunk as u64;
        if let Some(length) = self.length {
            if self.received > length {
                self.ended = true;
                return Err(AjpError::BodyBeyondLength {
                    received: self.received,
                    length,
                });
            }
            self.ended = self.received == length;
        }
        Ok(Some(Chunk::Data(data)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::body_packet;

    #[test]
    fn a_length_body_comes_first_unasked_then_as_asked() {
        let mut body = BodyReader::new(BodyKind::Length(5), 8188);
        assert!(body.due());
        let mut out = Vec::new();
        assert!(!body.ask(&mut out), "the first packet is due already");
        let mut buf = BytesMut::from(&body_packet(b"abc")[..]);
        assert_eq!(
            body.decode(&mut buf),
            Ok(Some(Chunk::Data(Bytes::from_static(b"abc"))))
        );
        assert!(body.ask(&mut out));
        assert_eq!(out, b"AB\x00\x03\x06\x00\x02");
        let mut buf = BytesMut::from(&body_packet(b"de")[..]);
        assert_eq!(
            body.decode(&mut buf),
            Ok(Some(Chunk::Data(Bytes::from_static(b"de"))))
        );
        assert!(body.ended());
        assert!(!body.ask(&mut out));
    }

    #[test]
    fn chunked_bodies_are_asked_for_and_end_with_an_empty_packet() {
        let mut body = BodyReader::new(BodyKind::UntilEmpty, 8188);
        assert!(!body.due());
        let mut out = Vec::new();
        assert!(body.ask(&mut out));
        assert_eq!(out, b"AB\x00\x03\x06\x1f\xfa");
        let mut buf = BytesMut::from(&[0x12, 0x34, 0, 2, 0, 0][..]);
        assert_eq!(body.decode(&mut buf), Ok(Some(Chunk::End)));
        assert!(body.ended());
    }

    #[test]
    fn bad_chunks_are_typed_errors() {
        let mut body = BodyReader::new(BodyKind::Length(100), 8188);
        let mut buf = BytesMut::from(&[0x12, 0x34, 0, 4, 0, 9, b'a', b'b'][..]);
        assert_eq!(
            body.decode(&mut buf),
            Err(AjpError::ChunkLongerThanPacket {
                chunk: 9,
                packet: 4
            })
        );
        let mut body = BodyReader::new(BodyKind::Length(100), 8188);
        let mut buf = BytesMut::from(&[0x12, 0x34, 0, 5, 0, 1, b'a', b'b', b'c'][..]);
        assert_eq!(
            body.decode(&mut buf),
            Err(AjpError::ChunkShorterThanPacket {
                chunk: 1,
                packet: 5
            })
        );
        let mut body = BodyReader::new(BodyKind::Length(2), 8188);
        let mut buf = BytesMut::from(&body_packet(b"abc")[..]);
        assert_eq!(
            body.decode(&mut buf),
            Err(AjpError::BodyBeyondLength {
                received: 3,
                length: 2
            })
        );
        let mut body = BodyReader::new(BodyKind::Length(10), 8188);
        let mut buf = BytesMut::from(&[0x12, 0x34, 0, 2, 0, 0][..]);
        assert_eq!(
            body.decode(&mut buf),
            Ok(Some(Chunk::Cut {
                received: 0,
                length: 10
            }))
        );
    }
}
