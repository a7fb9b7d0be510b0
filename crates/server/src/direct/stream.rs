//! SCGI and uwsgi in the fast lane: one request per connection.

use super::writer::{COALESCE_LIMIT, DirectWriter, Encoder, Outgoing, Settings};
use super::{Decoded, Lane, Socket};
use crate::stream::StreamContext;
use bytes::BytesMut;
use rustgi_core::{Job, ResponseEvent, ResponseTarget, body_pipe};
use rustgi_model::{BodyFraming, Request, StreamProtocol};
use std::borrow::Cow;
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

/// A job answered straight on the connection if `buf` holds a whole
/// request (head and body, nothing after). `maybe_more`: the read that
/// brought `buf` filled it, so the socket may hold more.
pub(crate) fn start<P: StreamProtocol + Copy>(
    ctx: &StreamContext<P>,
    socket: Socket,
    mut buf: BytesMut,
    maybe_more: bool,
    peer: &str,
    tracker: &TaskTracker,
) -> Lane {
    let request = match ctx.protocol.decode_head(&mut buf) {
        Ok(Some(request)) => request,
        // Need more, or an error the I/O loop reports.
        Ok(None) | Err(_) => {
            return Lane::Async {
                socket,
                buf,
                head: None,
            };
        }
    };
    let whole = matches!(ctx.protocol.body_framing(&request),
        BodyFraming::Length(length) if length == buf.len() as u64);
    if !whole {
        let head = Decoded {
            request,
            protocol: ctx.protocol.name(),
        };
        return Lane::Async {
            socket,
            buf,
            head: Some(head),
        };
    }
    let id = crate::next_request_id();
    for warning in &request.warnings {
        tracing::warn!(%peer, request = id, "{warning}");
    }
    let (body, body_reader) = body_pipe(Some(buf.len() as u64), ctx.spool);
    if !buf.is_empty() {
        body.push(buf.freeze());
    }
    let request = Arc::new(request);
    let encoder = StreamEncoder {
        protocol: ctx.protocol,
        request: request.clone(),
    };
    let settings = Settings {
        write_timeout: ctx.timeouts.write,
        drain: maybe_more,
        peer: Cow::Owned(peer.to_owned()),
        id,
        tracked: tracker.token(),
    };
    Lane::Direct(Job {
        id,
        request,
        body: body_reader,
        streams: Vec::new(),
        response: ResponseTarget::Direct(Box::new(DirectWriter::new(socket, encoder, settings))),
        errors_to_peer: false,
    })
}
