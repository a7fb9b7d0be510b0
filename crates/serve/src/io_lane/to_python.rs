//! `RUSTGI_LANE=python` (tests): the I/O lane reads what has not arrived of
//! a request the Python lane can carry, then hands the connection to a
//! Python thread, which answers it as if it had arrived whole at accept.
//! That makes the lane a test can see independent of how the front server
//! split its writes. What the Python lane cannot carry (FastCGI
//! requests interleaved on one connection, roles other than RESPONDER, uwsgi chunked bodies, SCGI
//! and uwsgi bodies over `--buffer-body` (the I/O lane streams those under
//! `--body-min-rate`), FastCGI bodies over [`GATHER_LIMIT`], bad input) is
//! served in the I/O lane.

use super::connection::Connection;
use super::stream::StreamContext;
use crate::config::Protocol;
use crate::intake::Tether;
use crate::python_lane::is_a_responder;
use crate::python_lane::{Accepted, Decoded, Lane};
use crate::service::Service;
use bytes::BytesMut;
use rustgi_fastcgi::{self as fcgi, Event};
use rustgi_model::{BodyFraming, Request, StreamProtocol};
use std::borrow::Cow;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

/// The most request bytes gathered in memory for the Python lane.
const GATHER_LIMIT: usize = 16 << 20;
/// How long a FastCGI request's STDIN may pause before the request is left
/// to the I/O lane.
const STDIN_PAUSE: Duration = Duration::from_millis(100);

/// A connection with what has been read of it.
pub(crate) struct Partial<C> {
    pub(crate) stream: C,
    pub(crate) buf: BytesMut,
    /// The head, when it was decoded already (its bytes are gone from
    /// `buf`).
    pub(crate) head: Option<Request>,
}

/// What was gathered: a whole request for the Python lane, or the
/// connection back for the I/O lane.
enum Gathered<C> {
    Whole(Partial<C>),
    Io(Partial<C>),
}

/// Serves a connection of `protocol`, in the Python lane when the request
/// can be made whole.
pub(crate) async fn serve<C: Connection>(
    service: &Service,
    protocol: Protocol,
    partial: Partial<C>,
    accepted: Instant,
    (peer, tether): (&str, Tether),
    tracker: &TaskTracker,
) {
    let deadline = accepted + service.timeouts().header;
    let body_timeout = service.timeouts().body;
    let gathered = match protocol {
        Protocol::Scgi => gather_stream(&service.scgi, partial, deadline, body_timeout).await,
        Protocol::Uwsgi => gather_stream(&service.uwsgi, partial, deadline, body_timeout).await,
        Protocol::Fastcgi => gather_fastcgi(service, partial, deadline, body_timeout).await,
        _ => Gathered::Io(partial),
    };
    let Partial { stream, buf, head } = match gathered {
        Gathered::Io(Partial { stream, buf, head }) => {
            let head = head.map(|request| Decoded { protocol, request });
            return service
                .serve_here(stream, buf, head, accepted, (peer, tether))
                .await;
        }
        Gathered::Whole(partial) => partial,
    };
    let socket = match stream.into_socket() {
        Ok(socket) => socket,
        Err(e) => {
            tracing::warn!(%peer, "taking the connection off the I/O loop failed: {e}");
            return;
        }
    };
    let conn = Accepted {
        socket,
        buf,
        maybe_more: true,
        peer: Cow::Owned(peer.to_owned()),
        tether,
    };
    match service.python_lane(protocol, conn, head, tracker) {
        Lane::Python(job) => service.submit(job),
        // Boxed: serving in the I/O lane is what brought us here.
        Lane::Io { conn, head } => {
            Box::pin(service.serve_accepted(conn, head, accepted, None)).await
        }
    }
}

/// Reads more into `buf` before `limit`; `Err` at EOF, on a read error, at
/// the deadline, or past [`GATHER_LIMIT`].
async fn read_more<C: Connection>(partial: &mut Partial<C>, limit: Instant) -> Result<(), ()> {
    if partial.buf.len() >= GATHER_LIMIT {
        return Err(());
    }
    partial.buf.reserve(super::stream::READ_SIZE);
    let read = partial.stream.read_buf(&mut partial.buf);
    match tokio::time::timeout_at(limit, read).await {
        Ok(Ok(n)) if n > 0 => Ok(()),
        _ => Err(()),
    }
}

async fn gather_stream<C: Connection, P: StreamProtocol>(
    ctx: &StreamContext<P>,
    mut partial: Partial<C>,
    deadline: Instant,
    body_timeout: Duration,
) -> Gathered<C> {
    let protocol = &ctx.protocol;
    let request = loop {
        if let Some(request) = &partial.head {
            break request;
        }
        match protocol.decode_head(&mut partial.buf) {
            Ok(Some(request)) => partial.head = Some(request),
            // The I/O lane reports it.
            Err(_) => return Gathered::Io(partial),
            Ok(None) => {
                if read_more(&mut partial, deadline).await.is_err() {
                    return Gathered::Io(partial);
                }
            }
        }
    };
    let BodyFraming::Length(length) = protocol.body_framing(request) else {
        return Gathered::Io(partial);
    };
    if length > ctx.shared.body.buffer as u64 {
        return Gathered::Io(partial);
    }
    while (partial.buf.len() as u64) < length {
        if read_more(&mut partial, Instant::now() + body_timeout)
            .await
            .is_err()
        {
            return Gathered::Io(partial);
        }
    }
    Gathered::Whole(partial)
}

/// Reads until the connection's first request is whole: a RESPONDER
/// whose STDIN has ended.
async fn gather_fastcgi<C: Connection>(
    service: &Service,
    mut partial: Partial<C>,
    deadline: Instant,
    body_timeout: Duration,
) -> Gathered<C> {
    let mut probe = fcgi::Connection::new(service.fastcgi.protocol.clone());
    // The probe consumes its own copy: `buf` goes to the lane as it came.
    let mut unparsed = BytesMut::new();
    let mut fed = 0;
    let mut started = false;
    loop {
        unparsed.extend_from_slice(&partial.buf[fed..]);
        fed = partial.buf.len();
        // Bad input, or records the connection answers itself (management
        // records, refused requests): the I/O lane's.
        if probe.receive(&mut unparsed).is_err() || probe.has_output() {
            return Gathered::Io(partial);
        }
        while let Some(event) = probe.poll_event() {
            match event {
                Event::Request { .. } if is_a_responder(&event) => started = true,
                Event::Stdin { .. } => {}
                Event::StdinEnd { .. } if started => return Gathered::Whole(partial),
                _ => return Gathered::Io(partial),
            }
        }
        // A front server sends a request's records together; a client that
        // waits for the response before it ends STDIN (cgi-fcgi does) has a
        // request only the I/O lane can carry.
        let limit = if started {
            Instant::now() + body_timeout.min(STDIN_PAUSE)
        } else {
            deadline
        };
        if read_more(&mut partial, limit).await.is_err() {
            // The I/O lane says why (EOF, a timeout, bad input).
            return Gathered::Io(partial);
        }
    }
}
