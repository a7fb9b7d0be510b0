//! AJP in the Python lane: a forward request that arrived whole, alone in
//! what was read (with its body, when that fits the packet that follows
//! it unasked). AJP connections are always kept: after the response the
//! connection goes back to the intake for its next request, as a kept
//! FastCGI one does. Anything else (a CPING, a body that needs
//! GET_BODY_CHUNK, a packet cut by the read, bad input) is the I/O lane's,
//! from the same bytes.

use super::{Accepted, Answer, HandOff, KeptAs, Lane, answer_here};
use crate::io_lane::ajp::AjpContext;
use rustgi_ajp::{BodyKind, Chunk, Command};
use rustgi_core::body_pipe;
use std::sync::Arc;
use tokio_util::task::TaskTracker;

/// A job answered straight on the connection if `conn.buf` holds exactly
/// one whole request.
pub(crate) fn start(ctx: &AjpContext, conn: Accepted, tracker: &TaskTracker) -> Lane {
    let Some(ajp) = ctx.protocol.as_ref() else {
        return Lane::Io { conn, head: None };
    };
    // A copy: the I/O lane needs the bytes as they came if this is not a
    // request for the Python lane.
    let mut rest = conn.buf.clone();
    let Ok(Some(Command::Forward(forward))) = ajp.decode_command(&mut rest) else {
        return Lane::Io { conn, head: None };
    };
    let forward = *forward;
    let (body, body_reader) = body_pipe(Some(forward.request.content_length), ctx.shared.spool);
    match forward.body {
        BodyKind::Length(0) => {
            // lighttpd follows every request without a body with an empty
            // packet.
            while let Ok(Some(Command::Empty)) = ajp.decode_command(&mut rest) {}
        }
        BodyKind::Length(_) => {
            let mut reader = ajp.body(forward.body);
            match reader.decode(&mut rest) {
                Ok(Some(Chunk::Data(data))) if reader.ended() => body.push(data),
                _ => return Lane::Io { conn, head: None },
            }
        }
        BodyKind::UntilEmpty => return Lane::Io { conn, head: None },
    }
    if !rest.is_empty() {
        return Lane::Io { conn, head: None };
    }
    body.finish();
    let answer = Answer {
        body: body_reader,
        encoder: ajp.encoder(),
        write_timeout: ctx.shared.timeouts.write,
        errors_to_peer: false,
        kept: Some(KeptAs::Ajp),
        front: rustgi_observe::Front::Ajp,
        handed: HandOff {
            runtime: ctx.shared.runtime.clone(),
            buffer: ctx.shared.response_buffer,
        },
    };
    answer_here(conn, Arc::new(forward.request), answer, tracker)
}
