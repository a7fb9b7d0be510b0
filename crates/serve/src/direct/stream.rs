//! SCGI and uwsgi in the fast lane: one request per connection.

use super::writer::{COALESCE_LIMIT, Encoder, Outgoing};
use super::{Accepted, Answer, Decoded, Lane, direct_job};
use crate::stream::StreamContext;
use rustgi_core::{ResponseEvent, body_pipe};
use rustgi_model::{BodyFraming, Request, StreamProtocol};
use std::sync::Arc;
use tokio_util::task::TaskTracker;

struct StreamEncoder<P> {
    protocol: P,
    request: Arc<Request>,
}

impl<P: StreamProtocol> Encoder for StreamEncoder<P> {
    fn encode(&mut self, event: ResponseEvent, out: &mut Outgoing) {
        match event {
            ResponseEvent::Head(head) => {
                self.protocol.encode_head(&self.request, &head, out.small())
            }
            ResponseEvent::Body(data) if data.len() <= COALESCE_LIMIT => {
                out.small().extend_from_slice(&data)
            }
            ResponseEvent::Body(data) => out.push(data),
            // Already in the log; SCGI and uwsgi have no channel for it.
            ResponseEvent::Stderr(_) | ResponseEvent::End | ResponseEvent::Abort => {}
        }
    }
}

/// A job answered straight on the connection if `conn.buf` holds a whole
/// request (head and body, nothing after).
pub(crate) fn start<P: StreamProtocol + Copy>(
    ctx: &StreamContext<P>,
    mut conn: Accepted,
    tracker: &TaskTracker,
) -> Lane {
    let request = match ctx.protocol.decode_head(&mut conn.buf) {
        Ok(Some(request)) => request,
        // Need more, or an error the I/O loop reports.
        Ok(None) | Err(_) => return Lane::Async { conn, head: None },
    };
    let whole = matches!(ctx.protocol.body_framing(&request),
        BodyFraming::Length(length) if length == conn.buf.len() as u64);
    if !whole {
        let head = Decoded {
            request,
            protocol: ctx.protocol.name(),
        };
        return Lane::Async {
            conn,
            head: Some(head),
        };
    }
    let (body, body_reader) = body_pipe(Some(conn.buf.len() as u64), ctx.spool);
    if !conn.buf.is_empty() {
        body.push(conn.buf.split().freeze());
    }
    let request = Arc::new(request);
    let answer = Answer {
        body: body_reader,
        encoder: StreamEncoder {
            protocol: ctx.protocol,
            request: request.clone(),
        },
        write_timeout: ctx.timeouts.write,
        errors_to_peer: false,
    };
    direct_job(conn, request, answer, tracker)
}
