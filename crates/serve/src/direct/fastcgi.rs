//! FastCGI in the fast lane: a connection that carries one request (no
//! FCGI_KEEP_CONN) which arrived whole: BEGIN_REQUEST, PARAMS and STDIN to
//! its end. The encoding is the state machine's, as on the I/O loop.

use super::writer::{COALESCE_LIMIT, Encoder, Outgoing};
use super::{Accepted, Answer, Lane, direct_job};
use crate::fastcgi::FastcgiContext;
use rustgi_core::{ResponseEvent, body_pipe};
use rustgi_fastcgi::{
    self as fcgi, Event, MAX_STDOUT_CONTENT, RecordType, Role, encode_response_head, encode_stdout,
    padding, record_header,
};
use rustgi_model::Param;
use std::sync::Arc;
use tokio_util::task::TaskTracker;

struct FastcgiEncoder {
    machine: fcgi::Connection,
    id: u16,
    /// STDOUT content of this batch: the head shares its record with a
    /// small body that follows it, as on the I/O loop (Apache's
    /// mod_authnz_fcgi keeps only the body bytes in the head's record).
    stdout: Vec<u8>,
}

impl FastcgiEncoder {
    fn flush(&mut self, out: &mut Outgoing) {
        encode_stdout(self.id, &self.stdout, out.small());
        self.stdout.clear();
    }
}

impl Encoder for FastcgiEncoder {
    fn encode(&mut self, event: ResponseEvent, out: &mut Outgoing) {
        match event {
            ResponseEvent::Head(head) => encode_response_head(&head, &mut self.stdout),
            // Large blocks go out from where they are, in records of their
            // own (header, the block's bytes, padding): no copy.
            ResponseEvent::Body(data) if data.len() > COALESCE_LIMIT => {
                self.flush(out);
                for start in (0..data.len()).step_by(MAX_STDOUT_CONTENT) {
                    let piece = data.slice(start..data.len().min(start + MAX_STDOUT_CONTENT));
                    let len = u16::try_from(piece.len()).expect("at most MAX_STDOUT_CONTENT");
                    out.small()
                        .extend_from_slice(&record_header(RecordType::Stdout, self.id, len));
                    let padding = padding(piece.len());
                    out.push(piece);
                    out.small().extend_from_slice(padding);
                }
            }
            ResponseEvent::Body(data) => self.stdout.extend_from_slice(&data),
            ResponseEvent::Stderr(line) => {
                self.flush(out);
                self.machine.write_stderr(self.id, &line, out.small());
            }
            ResponseEvent::End => {
                self.flush(out);
                self.machine.end_request(self.id, 0, out.small());
            }
            // Closing is how a front server learns the response is not whole.
            ResponseEvent::Abort => self.flush(out),
        }
    }

    fn end_batch(&mut self, out: &mut Outgoing) {
        self.flush(out);
    }
}

/// A job answered straight on the connection if `conn.buf` holds exactly
/// one whole RESPONDER request without FCGI_KEEP_CONN; anything else (kept
/// connections, other roles, management records, errors) is the I/O
/// loop's, from the same bytes.
pub(crate) fn start(ctx: &FastcgiContext, conn: Accepted, tracker: &TaskTracker) -> Lane {
    let mut machine = fcgi::Connection::new(ctx.protocol.clone());
    // A copy: the I/O loop needs the bytes as they came if this is not a
    // request for the fast lane.
    let mut rest = conn.buf.clone();
    let received = machine.receive(&mut rest);
    let mut events = std::iter::from_fn(|| machine.poll_event()).collect::<Vec<_>>();
    let whole = received.is_ok()
        && rest.is_empty()
        && !machine.has_output()
        && matches!(
            events.first(),
            Some(Event::Request {
                role: Role::Responder,
                keep_conn: false,
                ..
            })
        )
        && matches!(events.last(), Some(Event::StdinEnd { .. }))
        && events[1..events.len() - 1]
            .iter()
            .all(|e| matches!(e, Event::Stdin { .. }));
    if !whole {
        return Lane::Async { conn, head: None };
    }
    let Event::Request {
        id: fcgi_id,
        role,
        content_length,
        mut request,
        ..
    } = events.remove(0)
    else {
        unreachable!("checked above");
    };
    request.params.push(Param::new("FCGI_ROLE", role.name()));
    let (body, body_reader) = body_pipe(content_length, ctx.spool);
    for event in events {
        match event {
            Event::Stdin { data, .. } => body.push(data),
            _ => body.finish(),
        }
    }
    let answer = Answer {
        body: body_reader,
        encoder: FastcgiEncoder {
            machine,
            id: fcgi_id,
            stdout: Vec::new(),
        },
        write_timeout: ctx.timeouts.write,
        errors_to_peer: ctx.errors_to_peer,
    };
    direct_job(conn, Arc::new(request), answer, tracker)
}
