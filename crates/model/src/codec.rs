use crate::{Request, ResponseEncoder};

/// How the body that follows a request head on the wire is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// Exactly this many bytes (CONTENT_LENGTH; 0 when absent).
    Length(u64),
    /// The chunked transfer coding: decode it with
    /// [`ChunkedDecoder`](crate::ChunkedDecoder); the body ends at its last
    /// chunk. Only uwsgi sends this, and only for a request with
    /// `Transfer-Encoding: chunked` and no CONTENT_LENGTH.
    Chunked,
}

/// A protocol that carries one request per connection: a head, then the
/// body (exactly `content_length` bytes unless [`StreamProtocol::body_framing`]
/// says otherwise), then the response until the connection closes (SCGI
/// and uwsgi). FastCGI, with its records and multiplexing, has a
/// driver of its own.
///
/// Implementations do no I/O (sans-I/O, as `httparse` and `quinn-proto`):
/// the server feeds them bytes and writes what they encode.
pub trait StreamProtocol: Send + Sync + 'static {
    /// A typed decoding error whose `Display` names what was wrong (which
    /// field, which offset, which length, which limit).
    type Error: std::error::Error + Send + Sync + 'static;

    /// The protocol's name as users write it (`--proto scgi`).
    fn name(&self) -> &'static str;

    /// Decodes a request head from the front of `buf`.
    ///
    /// `Ok(None)` means "need more": nothing was consumed. On success the head
    /// is removed from `buf` and whatever follows it (body bytes) is left.
    fn decode_head(&self, buf: &mut bytes::BytesMut) -> Result<Option<Request>, Self::Error>;

    /// The protocol's response encoder, for one request (uwsgi's status
    /// line follows the request's SERVER_PROTOCOL).
    type Encoder: ResponseEncoder + Send + Sync + 'static;

    /// The encoder of `request`'s response.
    fn encoder(&self, request: &Request) -> Self::Encoder;

    /// How the body of `request`, a request this protocol decoded, is
    /// delimited on the wire. By default: `content_length` bytes.
    fn body_framing(&self, request: &Request) -> BodyFraming {
        BodyFraming::Length(request.content_length)
    }
}
