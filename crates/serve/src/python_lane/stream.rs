//! SCGI and uwsgi in the Python lane: one request per connection.

use super::{Accepted, Answer, Decoded, HandOff, Lane, answer_here};
use crate::config::Protocol;
use crate::io_lane::stream::StreamContext;
use rustgi_core::body_pipe;
use rustgi_model::{BodyFraming, Request, StreamProtocol};
use std::sync::Arc;
use tokio_util::task::TaskTracker;

/// A job answered straight on the connection if `conn.buf` holds a whole
/// request (head and body, nothing after; the head may have been decoded
/// already).
pub(crate) fn start<P: StreamProtocol>(
    ctx: &StreamContext<P>,
    protocol: Protocol,
    mut conn: Accepted,
    head: Option<Request>,
    tracker: &TaskTracker,
) -> Lane {
    let request = match head {
        Some(request) => request,
        None => match ctx.protocol.decode_head(&mut conn.buf) {
            Ok(Some(request)) => request,
            // Need more, or an error the I/O lane reports.
            Ok(None) | Err(_) => return Lane::Io { conn, head: None },
        },
    };
    let whole = matches!(ctx.protocol.body_framing(&request),
        BodyFraming::Length(length) if length == conn.buf.len() as u64);
    if !whole {
        return Lane::Io {
            conn,
            head: Some(Decoded { protocol, request }),
        };
    }
    let (body, body_reader) = body_pipe(Some(conn.buf.len() as u64), ctx.shared.spool);
    if !conn.buf.is_empty() {
        body.push(conn.buf.split().freeze());
    }
    let request = Arc::new(request);
    let answer = Answer {
        body: body_reader,
        encoder: ctx.protocol.encoder(&request),
        write_timeout: ctx.shared.timeouts.write,
        errors_to_peer: false,
        kept: None,
        front: protocol.front(),
        handed: HandOff {
            runtime: ctx.shared.runtime.clone(),
            buffer: ctx.shared.response_buffer,
        },
    };
    answer_here(conn, request, answer, tracker)
}
