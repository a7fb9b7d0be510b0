//! The response head: CGI style, as SCGI front servers expect it.
//!
//! ```text
//! Status: 200 OK\r\n
//! Content-Type: text/plain\r\n
//! \r\n
//! ```
//!
//! The body follows as it is, and the end of the response is the end of the
//! connection (SCGI has one request per connection).

use rustgi_model::ResponseHead;

/// Appends `Status: <status>\r\n`, the header lines and the blank line.
pub fn encode_head(head: &ResponseHead, out: &mut Vec<u8>) {
    head.write_cgi_head(out);
}
