//! AJP 1.3, the Apache JServ Protocol (Apache mod_proxy_ajp, mod_jk,
//! lighttpd mod_ajp13), as flup's `flup.server.ajp` serves it.
//!
//! Every packet from the web server is `0x12 0x34, length (u16), payload`;
//! every one back is `'A' 'B', length, payload`. Between requests the web
//! server sends a forward request (prefix 2), a CPING (10, answered with
//! CPONG) or, rarely, a shutdown (7, refused: no web server may stop
//! us). A request's body follows in packets of its own, the first unasked
//! when it has a Content-Length, the others as the container asks for
//! them (GET_BODY_CHUNK). The response is SEND_HEADERS, SEND_BODY_CHUNKs
//! and END_RESPONSE, whose reuse flag keeps the connection for the next
//! request: AJP connections are always kept.
//!
//! This crate does no I/O, as `httparse` does not: [`Ajp::decode_command`]
//! turns what the server read into a [`Command`] (a forward request
//! becomes a [`Request`](rustgi_model::Request) with CGI names),
//! [`BodyReader`] asks for and decodes body packets, and [`AjpEncoder`]
//! turns the response into packets. Decoding is incremental ("need more"
//! consumes nothing) and a length field never drives an allocation beyond
//! the packet limit.

#![forbid(unsafe_code)]

mod body;
pub mod client;
pub mod codes;
mod error;
mod fields;
mod forward;
mod packet;
mod response;
mod secret;

pub use body::{BodyKind, BodyReader, Chunk, MAX_BODY_CHUNK};
pub use error::AjpError;
pub use forward::Forward;
pub use packet::{
    DEFAULT_PACKET_SIZE, HEADER_LEN, MAGIC, MAX_PAYLOAD, skip_empty_packets, split_packet,
};
pub use response::{AjpEncoder, MAX_SEND_CHUNK};
pub use secret::Secret;

use bytes::BytesMut;

/// What the web server sent between requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Forward(Box<Forward>),
    /// CPING: answer [`cpong`].
    Cping,
    /// The old PING (8): nothing to answer.
    Ping,
    /// A request to stop the container: refused (logged, connection
    /// closed), as Tomcat refuses it from anyone but itself.
    Shutdown,
    /// An empty packet: lighttpd ends a body it had none of with one.
    Empty,
}

/// The AJP protocol as configured: the packet limit and the secret.
#[derive(Clone, Debug)]
pub struct Ajp {
    limit: usize,
    /// The largest packet, header included, for the response.
    packet_size: usize,
    secret: Option<Secret>,
}

impl Ajp {
    /// `max_packet`: the largest payload accepted (`--ajp-packet-size`;
    /// the format allows 65535), and the largest response head packet,
    /// header included, as the web server's buffer counts it. `secret`:
    /// when set, a forward request must carry it.
    pub fn new(max_packet: usize, secret: Option<Secret>) -> Self {
        Ajp {
            limit: max_packet.min(MAX_PAYLOAD),
            packet_size: max_packet,
            secret,
        }
    }

    /// The largest payload accepted.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Decodes the packet at the front of `buf` as a command; `Ok(None)`:
    /// need more, nothing consumed. On an error the connection is to be
    /// closed (what follows cannot be framed).
    pub fn decode_command(&self, buf: &mut BytesMut) -> Result<Option<Command>, AjpError> {
        let Some(payload) = split_packet(buf, self.limit)? else {
            return Ok(None);
        };
        let command = match payload.first() {
            None => Command::Empty,
            Some(&codes::FORWARD_REQUEST) => {
                Command::Forward(Box::new(forward::decode(payload, self.secret.as_ref())?))
            }
            Some(&codes::CPING) => Command::Cping,
            Some(&codes::PING) => Command::Ping,
            Some(&codes::SHUTDOWN) => Command::Shutdown,
            Some(&code) => return Err(AjpError::UnknownPacketType { code }),
        };
        Ok(Some(command))
    }

    /// The response encoder of a request. SEND_HEADERS must fit the packet
    /// the web server reads, the size `--ajp-packet-size` gives to what we
    /// read: Tomcat has one `packetSize` for both.
    pub fn encoder(&self) -> AjpEncoder {
        AjpEncoder::new(self.packet_size)
    }

    /// The reader of a request's body.
    pub fn body(&self, kind: BodyKind) -> BodyReader {
        BodyReader::new(kind, self.limit)
    }
}

/// The answer to CPING.
pub fn cpong() -> [u8; 5] {
    [b'A', b'B', 0, 1, codes::CPONG_REPLY]
}

#[cfg(test)]
mod tests;
