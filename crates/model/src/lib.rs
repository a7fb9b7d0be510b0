//! The common request/response model.
//!
//! Every wire protocol (SCGI, uwsgi, FastCGI) decodes into [`Request`] and
//! encodes from [`ResponseHead`], so the WSGI core and the connection driver
//! never need to know which protocol a request came in on.

#![forbid(unsafe_code)]

mod body;
pub mod chunked;
mod codec;
mod length;
mod network;
mod request;
mod response;
pub mod sample;
mod segments;
pub mod show;
#[cfg(feature = "testing")]
pub mod testing;

pub use body::{BodyDecoder, Unframed};
pub use chunked::{Chunked, ChunkedDecoder, ChunkedError};
pub use codec::{BodyFraming, StreamProtocol};
pub use length::{
    CONTENT_LENGTH, LengthError, LengthValues, content_length, length_param, parse_length,
};
pub use network::AllowedPeer;
pub use request::{Param, Request};
pub use response::{HeaderError, ResponseHead};
pub use segments::{
    COALESCE_LIMIT, HeadTooLarge, ResponseEncoder, ResponseEvent, Segments, encode_stream_event,
};
