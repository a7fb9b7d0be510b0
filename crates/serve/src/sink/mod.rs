//! Where a response's bytes go: the two sinks of the flow (`crate::flow`).
//! A Python thread writes with [`blocking::BlockingSink`] (non-blocking
//! writes, waiting without the GIL only when the socket is full); the I/O
//! loop writes with [`async_io`]. Both close the same way: after a whole
//! response, read what the peer still sends (the async sink shuts its side
//! down first and waits for the peer's EOF; the blocking one takes what is
//! queued, never waiting), so the close is a FIN and never an RST that
//! could cut the response short; after a cut one, just close.

pub(crate) mod async_io;
pub(crate) mod blocking;

/// Most slices handed to one `writev`.
const MAX_SLICES: usize = 64;

use std::time::Duration;

/// How long to wait for the peer's EOF after a whole response.
pub(crate) const DRAIN_TIME: Duration = Duration::from_secs(2);

/// Who a sink writes to, for its log lines.
#[derive(Clone, Copy)]
pub(crate) struct Who<'a> {
    pub(crate) peer: &'a str,
    /// The request, when the connection carries one at a time.
    pub(crate) request: Option<crate::named::Named<'a>>,
}

/// Logs with the peer and, when there is one, the request as fields.
macro_rules! log_for {
    ($level:ident, $who:expr, $($message:tt)+) => {
        match $who.request {
            Some(named) => tracing::$level!(peer = %$who.peer, request = %named, $($message)+),
            None => tracing::$level!(peer = %$who.peer, $($message)+),
        }
    };
}
pub(crate) use log_for;

/// Why a write stopped.
#[derive(Debug)]
pub(crate) enum WriteError {
    Failed(std::io::Error),
    /// No byte taken for the write timeout.
    Stalled(Duration),
}

impl WriteError {
    /// Logs it: a peer gone is ordinary (info), a stalled one is not. On a
    /// Python thread the application's side already logs that the client
    /// went away (the write failed under it): `app_saw_it` keeps that to
    /// debug.
    pub(crate) fn log(&self, who: Who<'_>, app_saw_it: bool) {
        match self {
            WriteError::Failed(e) if app_saw_it => {
                log_for!(debug, who, "writing the response failed: {e}")
            }
            WriteError::Failed(e) => log_for!(info, who, "writing the response failed: {e}"),
            WriteError::Stalled(limit) => log_for!(
                warn,
                who,
                "the peer accepted no response bytes for {limit:?} (--write-timeout); closing"
            ),
        }
    }
}

/// Whether the peer may still be sending when we close.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum PeerSending {
    /// Everything it meant to send has arrived (a whole SCGI body): when
    /// nothing is queued the connection can close at once, sparing every
    /// request another wake-up.
    Done,
    /// It may still be sending (FastCGI STDIN the app never read, a
    /// trailing empty STDIN record): wait for its EOF, bounded.
    Maybe,
}
