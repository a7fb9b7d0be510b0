use crate::{Request, ResponseHead};

/// A protocol that carries one request per connection: a head, then exactly
/// `content_length` body bytes, then the response until the connection
/// closes (SCGI and uwsgi). FastCGI, with its records and multiplexing, has a
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

    /// Appends the response head for `request` to `out`.
    fn encode_head(&self, request: &Request, head: &ResponseHead, out: &mut Vec<u8>);
}
