//! The request a log line belongs to, as the log shows it.

use bytes::Bytes;
use rustgi_model::show::request_field;

/// The request a log line belongs to.
#[derive(Clone, Debug)]
pub struct RequestTag {
    /// The request id operators see (`RUSTGI_REQUEST_ID`, the access
    /// log's `request_id`): the trusted header's, or generated.
    pub request_id: Bytes,
    pub method: Bytes,
    pub path: Bytes,
}

impl std::fmt::Display for RequestTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "#{} {} {}",
            request_field(&self.request_id),
            request_field(&self.method),
            request_field(&self.path)
        )
    }
}
