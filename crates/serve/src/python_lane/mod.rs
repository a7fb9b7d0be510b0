//! The Python lane: a request that arrived whole with its connection is
//! answered by the Python thread that accepted it (see `intake`).
//!
//! Right after accept, one read usually brings the whole request (nginx
//! writes it as soon as it has connected). Then nothing is left for the I/O
//! loop to do: the Python thread runs the application, writes the response
//! with non-blocking writes, and closes the connection. That spares the cross-thread wake-ups
//! and the epoll registration that otherwise cost more than the rest of a
//! small request. When the socket is full, the connection and the rest of
//! the response go to the I/O loop (`handed`): the thread never waits for
//! a client. Anything else (a partial head, a body still coming, uwsgi
//! chunked, a FastCGI connection kept for more requests) goes to the I/O
//! lane (`io_lane`) with the bytes already read.

mod ajp;
mod fastcgi;
mod handed;
mod response;
mod socket;
mod stream;

pub(crate) use ajp::start as start_ajp;
pub(crate) use fastcgi::{is_a_responder, start as start_fastcgi};
pub(crate) use socket::{Socket, hung_up};
pub(crate) use stream::start;

use crate::bad_input::bad_input;
use crate::config::Protocol;
use crate::intake::Tether;
use crate::sink::PeerSending;
use crate::sink::blocking::BlockingSink;
use bytes::BytesMut;
use response::LaneResponse;
use rustgi_core::{BodyReader, Job, ResponseTarget};
use rustgi_model::{Request, ResponseEncoder};
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::task::TaskTracker;

/// A connection as an idle Python thread accepted it, with what its first
/// read brought.
pub(crate) struct Accepted {
    pub(crate) socket: Socket,
    pub(crate) buf: BytesMut,
    /// The read filled `buf`: the socket may hold more.
    pub(crate) maybe_more: bool,
    pub(crate) peer: Cow<'static, str>,
    pub(crate) tether: Tether,
}

/// A request head decoded at accept, for the I/O lane to go on with when
/// its body has not all arrived (its bytes are gone from the buffer, so
/// the protocol goes with it).
pub(crate) struct Decoded {
    pub(crate) protocol: Protocol,
    pub(crate) request: Request,
}

/// Where a new connection goes.
pub(crate) enum Lane {
    /// The accepting Python thread serves it now.
    Python(Job),
    /// The I/O lane serves it, starting from what was read (and the
    /// request head, when it was decoded already).
    Io {
        conn: Accepted,
        head: Option<Decoded>,
    },
}

/// What a protocol hands to [`answer_here`] besides the connection and
/// the request.
struct Answer<E> {
    body: BodyReader,
    encoder: E,
    write_timeout: Duration,
    errors_to_peer: bool,
    /// When the front server keeps the connection for its next request:
    /// after a whole response it goes back to the intake, not closed.
    kept: Option<KeptAs>,
    handed: HandOff,
    front: rustgi_observe::Front,
}

/// How a kept connection's protocol carries its requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeptAs {
    /// FastCGI with FCGI_KEEP_CONN: the request's id (an ABORT_REQUEST
    /// for it may come while the response runs).
    Fastcgi(u16),
    /// AJP: always kept; nothing comes while the response runs, and
    /// END_RESPONSE's reuse flag says whether the connection stays.
    Ajp,
}

/// Where a response goes when its connection is full: the Python thread
/// never waits for a client.
#[derive(Clone)]
pub(crate) struct HandOff {
    pub(crate) runtime: tokio::runtime::Handle,
    /// The bound of the channel the rest of the response then takes.
    pub(crate) buffer: usize,
}

/// The job for a whole request: the response goes through `encoder`
/// straight to the connection.
fn answer_here<E: ResponseEncoder + Send + Sync + 'static>(
    conn: Accepted,
    request: Arc<Request>,
    answer: Answer<E>,
    tracker: &TaskTracker,
) -> Lane {
    let id = crate::next_request_id();
    let named = crate::named::Naming::new(&request, id);
    for warning in &request.warnings {
        bad_input!(&conn.peer, "request", peer = %conn.peer, request = %named, "{warning}");
    }
    let peer_sending = if conn.maybe_more {
        PeerSending::Maybe
    } else {
        PeerSending::Done
    };
    let request_id = crate::record::request_id(&request, id);
    let trail = crate::record::Trail::begin(&request, answer.front, &request_id);
    let verdict = trail.as_ref().map(|t| t.verdict());
    let sink = BlockingSink::new(conn.socket, answer.write_timeout);
    let response = LaneResponse::new(
        sink,
        answer.encoder,
        peer_sending,
        conn.peer,
        named,
        tracker.token(),
        answer.handed,
    )
    .traced(trail)
    .kept_with(answer.kept.map(|kind| (conn.tether, kind)));
    Lane::Python(Job {
        id,
        request_id,
        verdict,
        front: answer.front,
        request,
        body: answer.body,
        streams: Vec::new(),
        response: ResponseTarget::PythonLane(Box::new(response)),
        errors_to_peer: answer.errors_to_peer,
    })
}
