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
use rustgi_core::Job;
use rustgi_model::Request;

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
        socket: Socket,
        buf: BytesMut,
        head: Option<Decoded>,
    },
}
