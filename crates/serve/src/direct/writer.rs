//! Writing a response from the Python thread: the protocol's encoder turns
//! events into bytes; this writes them without blocking, waits (without the
//! GIL) only when the socket is full, and closes the connection when the
//! request is over.

use super::Socket;
use bytes::Bytes;
use rustgi_core::{DirectResponse, Disconnected, ResponseEvent};
use std::borrow::Cow;
use std::io::{self, IoSlice};
use std::time::Duration;
use tokio_util::task::task_tracker::TaskTrackerToken;

/// Body blocks up to this size are copied next to what precedes them (one
/// write); larger ones are written from where they are.
pub(super) const COALESCE_LIMIT: usize = 16 * 1024;

/// Bytes waiting for the socket, in order: small pieces are joined.
#[derive(Default)]
pub(super) struct Outgoing {
    segments: Vec<Bytes>,
    small: Vec<u8>,
    /// Bytes of `segments[0]` already written.
    written: usize,
}

impl Outgoing {
    /// Where small pieces are appended.
    pub(super) fn small(&mut self) -> &mut Vec<u8> {
        &mut self.small
    }

    /// A large piece, written from where it is.
    pub(super) fn push(&mut self, data: Bytes) {
        self.join_small();
        self.segments.push(data);
    }

    fn join_small(&mut self) {
        if !self.small.is_empty() {
            self.segments
                .push(Bytes::from(std::mem::take(&mut self.small)));
        }
    }

    fn is_empty(&self) -> bool {
        self.segments.is_empty() && self.small.is_empty()
    }
}

/// How a protocol turns response events into bytes.
pub(super) trait Encoder: Send + Sync + 'static {
    /// Encodes one event. `End` and `Abort` are also seen by the writer.
    fn encode(&mut self, event: ResponseEvent, out: &mut Outgoing);
    /// After a batch of events: flush what the encoder holds.
    fn end_batch(&mut self, _out: &mut Outgoing) {}
}

pub(super) struct DirectWriter<E: Encoder> {
    socket: Socket,
    encoder: E,
    out: Outgoing,
    write_timeout: Duration,
    ended: bool,
    cut: bool,
    /// The peer may have sent more than the request: read it before
    /// closing.
    drain: bool,
    peer: Cow<'static, str>,
    id: u64,
    /// Held while the connection is open: graceful shutdown waits for it.
    _tracked: TaskTrackerToken,
}

/// What a writer needs besides its socket and encoder.
pub(super) struct Settings {
    pub(super) write_timeout: Duration,
    pub(super) drain: bool,
    pub(super) peer: Cow<'static, str>,
    pub(super) id: u64,
    pub(super) tracked: TaskTrackerToken,
}

impl<E: Encoder> DirectWriter<E> {
    pub(super) fn new(socket: Socket, encoder: E, settings: Settings) -> Self {
        DirectWriter {
            socket,
            encoder,
            out: Outgoing::default(),
            write_timeout: settings.write_timeout,
            ended: false,
            cut: false,
            drain: settings.drain,
            peer: settings.peer,
            id: settings.id,
            _tracked: settings.tracked,
        }
    }

    /// Writes what the socket takes now; true when nothing is pending.
    fn write_pending(&mut self) -> Result<bool, Disconnected> {
        self.out.join_small();
        let out = &mut self.out;
        while !out.segments.is_empty() {
            let mut slices: Vec<IoSlice<'_>> =
                out.segments.iter().map(|b| IoSlice::new(b)).collect();
            slices[0] = IoSlice::new(&out.segments[0][out.written..]);
            match self.socket.write_vectored(&slices) {
                Ok(0) => return self.fail("the connection took no bytes"),
                Ok(n) => {
                    let mut n = n + out.written;
                    out.written = 0;
                    let done = out
                        .segments
                        .iter()
                        .take_while(|s| {
                            let whole = n >= s.len();
                            if whole {
                                n -= s.len();
                            }
                            whole
                        })
                        .count();
                    out.segments.drain(..done);
                    out.written = n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.fail(&format!("writing the response failed: {e}")),
            }
        }
        Ok(true)
    }

    /// The application's side logs that the client went away.
    fn fail(&mut self, why: &str) -> Result<bool, Disconnected> {
        tracing::debug!(peer = %self.peer, request = self.id, "{why}");
        self.cut = true;
        self.out = Outgoing::default();
        Err(Disconnected)
    }
}

impl<E: Encoder> DirectResponse for DirectWriter<E> {
    fn send(&mut self, events: &mut Vec<ResponseEvent>) -> Result<bool, Disconnected> {
        if self.cut {
            return Err(Disconnected);
        }
        for event in events.drain(..) {
            match event {
                ResponseEvent::End => self.ended = true,
                // Send what came before, then cut: a truncated response
                // rather than none, never one that looks whole.
                ResponseEvent::Abort => self.cut = true,
                _ => {}
            }
            self.encoder.encode(event, &mut self.out);
        }
        self.encoder.end_batch(&mut self.out);
        self.write_pending()
    }

    fn wait_writable(&self) -> Result<(), Disconnected> {
        if self.socket.wait_writable(self.write_timeout) {
            return Ok(());
        }
        tracing::warn!(
            peer = %self.peer,
            request = self.id,
            "the peer accepted no response bytes for {:?} (--write-timeout); closing",
            self.write_timeout
        );
        Err(Disconnected)
    }
}

impl<E: Encoder> Drop for DirectWriter<E> {
    /// Closes the connection. After a whole response, first reads what the
    /// peer may still have queued, so the close is a FIN, not an RST that
    /// could cut the response short. (When the first read took less than
    /// it could and that was exactly the request, nothing can be queued.)
    fn drop(&mut self) {
        if self.cut || !self.ended || !self.out.is_empty() || !self.drain {
            return;
        }
        let mut scratch = [0u8; 4096];
        let mut extra = 0;
        while let Ok(n) = self.socket.read(&mut scratch) {
            if n == 0 {
                break;
            }
            extra += n;
        }
        if extra > 0 {
            tracing::debug!(
                peer = %self.peer,
                request = self.id,
                "discarded {extra} bytes the front server sent after the request"
            );
        }
    }
}
