//! FastCGI in the Python lane: a request that arrived whole, alone in what
//! was read (BEGIN_REQUEST, PARAMS and STDIN to its end), on a new
//! connection or on one the front server keeps (FCGI_KEEP_CONN: after the
//! response it goes back to the intake for the next request). The encoding
//! is the connection's own, as in the I/O lane.

use super::{Accepted, Answer, HandOff, Lane, answer_here};
use crate::io_lane::fastcgi::FastcgiContext;
use rustgi_core::body_pipe;
use rustgi_fastcgi::{self as fcgi, Event, Role, SoleRequest};
use rustgi_model::Param;
use std::sync::Arc;
use tokio_util::task::TaskTracker;

/// Whether `event` begins a request the Python lane can carry: a
/// RESPONDER.
pub(crate) fn is_a_responder(event: &Event) -> bool {
    matches!(
        event,
        Event::Request {
            role: Role::Responder,
            ..
        }
    )
}

/// A job answered straight on the connection if `conn.buf` holds exactly
/// one whole RESPONDER request; anything else (requests interleaved, a
/// body still arriving, other roles, management records, errors) is the
/// I/O lane's, from the same bytes.
pub(crate) fn start(ctx: &FastcgiContext, conn: Accepted, tracker: &TaskTracker) -> Lane {
    let mut connection = fcgi::Connection::new(ctx.protocol.clone());
    // A copy: the I/O lane needs the bytes as they came if this is not a
    // request for the Python lane.
    let mut rest = conn.buf.clone();
    let received = connection.receive(&mut rest);
    let mut events = std::iter::from_fn(|| connection.poll_event()).collect::<Vec<_>>();
    let whole = received.is_ok()
        && rest.is_empty()
        && !connection.has_output()
        && events.first().is_some_and(is_a_responder)
        && matches!(events.last(), Some(Event::StdinEnd { .. }))
        && events[1..events.len() - 1]
            .iter()
            .all(|e| matches!(e, Event::Stdin { .. }));
    if !whole {
        return Lane::Io { conn, head: None };
    }
    let Event::Request {
        id,
        role,
        keep_conn,
        content_length,
        mut request,
    } = events.remove(0)
    else {
        unreachable!("checked above");
    };
    request.params.push(Param::new("FCGI_ROLE", role.name()));
    let (body, body_reader) = body_pipe(content_length, ctx.shared.spool);
    for event in events {
        match event {
            Event::Stdin { data, .. } => body.push(data),
            _ => body.finish(),
        }
    }
    let answer = Answer {
        body: body_reader,
        encoder: SoleRequest { connection, id },
        write_timeout: ctx.shared.timeouts.write,
        errors_to_peer: ctx.errors_to_peer,
        kept: keep_conn.then_some(super::KeptAs::Fastcgi(id)),
        front: rustgi_observe::Front::Fastcgi,
        handed: HandOff {
            runtime: ctx.shared.runtime.clone(),
            buffer: ctx.shared.response_buffer,
        },
    };
    answer_here(conn, Arc::new(request), answer, tracker)
}
