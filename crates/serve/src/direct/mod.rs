//! The fast lane: a request that arrived whole with its connection is
//! answered by the Python thread that accepted it (see `intake`).
//!
//! Right after accept, one read usually brings the whole request (nginx
//! writes it as soon as it has connected). Then nothing is left for the I/O
//! loop to do: the Python thread runs the application, writes the response
//! with non-blocking writes (waiting without the GIL only when the socket is
//! full), and closes the connection. That spares the cross-thread wake-ups
//! and the epoll registration that otherwise cost more than the rest of a
//! small request. Anything else (a partial head, a body still coming, uwsgi
//! chunked, a FastCGI connection kept for more requests) goes to the I/O
//! loop with the bytes already read.

mod fastcgi;
mod socket;
mod stream;
mod writer;

pub(crate) use fastcgi::start as start_fastcgi;
pub(crate) use socket::Socket;
pub(crate) use stream::start;

use bytes::BytesMut;
use rustgi_core::{BodyReader, Job, ResponseTarget};
use rustgi_model::Request;
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::task::TaskTracker;
use writer::{DirectWriter, Encoder, Settings};

/// A connection as an idle Python thread accepted it, with what its first
/// read brought.
pub(crate) struct Accepted {
    pub(crate) socket: Socket,
    pub(crate) buf: BytesMut,
    /// The read filled `buf`: the socket may hold more.
    pub(crate) maybe_more: bool,
    pub(crate) peer: Cow<'static, str>,
}

/// A request head decoded in the fast lane, for the I/O loop to go on
/// with when its body has not all arrived.
pub(crate) struct Decoded {
    pub(crate) request: Request,
    /// Which protocol decoded it (under `--proto auto`).
    pub(crate) protocol: &'static str,
}

/// Where a new connection goes.
pub(crate) enum Lane {
    /// The accepting Python thread serves it now.
    Direct(Job),
    /// The I/O loop serves it, starting from what was read.
    Async {
        conn: Accepted,
        head: Option<Decoded>,
    },
}

/// What a protocol's fast lane hands to [`direct_job`] besides the
/// connection and the request.
struct Answer<E> {
    body: BodyReader,
    encoder: E,
    write_timeout: Duration,
    errors_to_peer: bool,
}

/// The job for a whole request: the response goes through `encoder`
/// straight to the connection.
fn direct_job<E: Encoder>(
    conn: Accepted,
    request: Arc<Request>,
    answer: Answer<E>,
    tracker: &TaskTracker,
) -> Lane {
    let id = crate::next_request_id();
    for warning in &request.warnings {
        tracing::warn!(peer = %conn.peer, request = id, "{warning}");
    }
    let settings = Settings {
        write_timeout: answer.write_timeout,
        drain: conn.maybe_more,
        peer: conn.peer,
        id,
        tracked: tracker.token(),
    };
    let writer = DirectWriter::new(conn.socket, answer.encoder, settings);
    Lane::Direct(Job {
        id,
        request,
        body: answer.body,
        streams: Vec::new(),
        response: ResponseTarget::Direct(Box::new(writer)),
        errors_to_peer: answer.errors_to_peer,
    })
}
