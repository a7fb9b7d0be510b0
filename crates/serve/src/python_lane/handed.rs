//! A Python-lane response whose connection was full: the I/O loop writes
//! what the thread left, then the rest of the response as it comes
//! through a channel. The application's iteration meanwhile is parked
//! (see `rustgi_core`): a thread goes on with it each time this side has
//! written everything and finds the channel empty. The connection ends as
//! the Python lane would have ended it: closed gracefully after a whole
//! response, cut otherwise, and a kept FastCGI connection goes back to the
//! intake.

use super::Socket;
use super::response::Kept;
use crate::flow::{Ending, ResponseFlow};
use crate::io_lane::connection::Connection;
use crate::sink::{PeerSending, Who, WriteError, async_io};
use rustgi_core::{Charge, ResponseEvent, ResponseReceiver};
use rustgi_model::ResponseEncoder;
use std::borrow::Cow;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::task::task_tracker::TaskTrackerToken;

/// The most input read from a kept connection while its response is
/// written.
const INPUT_LIMIT: usize = 64 * 1024;

/// What a Python-lane response hands to the I/O loop.
pub(super) struct Handed<E> {
    pub(super) socket: Socket,
    pub(super) write_timeout: Duration,
    /// With what the socket did not take.
    pub(super) flow: ResponseFlow,
    pub(super) encoder: E,
    pub(super) receiver: ResponseReceiver,
    /// What the flow holds at the hand-off, counted until it is written.
    pub(super) charge: Charge,
    pub(super) peer: Cow<'static, str>,
    pub(super) id: crate::named::Naming,
    pub(super) peer_sending: PeerSending,
    pub(super) kept: Option<Kept>,
    /// Graceful shutdown waits for the response.
    pub(super) tracked: Option<TaskTrackerToken>,
}

/// Writes the rest of the response on `runtime`.
pub(super) fn spawn<E: ResponseEncoder + Send + 'static>(
    runtime: &tokio::runtime::Handle,
    handed: Handed<E>,
) {
    runtime.spawn(async move {
        let Handed {
            socket,
            write_timeout,
            flow,
            encoder,
            receiver,
            charge,
            peer,
            id,
            peer_sending,
            kept,
            tracked,
        } = handed;
        let rest = Rest {
            flow,
            encoder,
            charge: Some(charge),
            write_timeout,
            who_peer: peer,
            id,
            peer_sending,
            kept,
        };
        match socket {
            Socket::Unix(s) => match tokio::net::UnixStream::from_std(s) {
                Ok(s) => rest.serve(s, receiver).await,
                Err(e) => rest.refused(&e),
            },
            Socket::Tcp(s) => match tokio::net::TcpStream::from_std(s) {
                Ok(s) => rest.serve(s, receiver).await,
                Err(e) => rest.refused(&e),
            },
        }
        drop(tracked);
    });
}

struct Rest<E> {
    flow: ResponseFlow,
    encoder: E,
    /// Dropped once what the hand-off left is written.
    charge: Option<Charge>,
    write_timeout: Duration,
    who_peer: Cow<'static, str>,
    id: crate::named::Naming,
    peer_sending: PeerSending,
    kept: Option<Kept>,
}

/// What ended a wait.
enum Woke {
    Written(Result<(), WriteError>),
    /// Input from a kept connection's front server: bytes read, 0 at EOF.
    Input(std::io::Result<usize>),
}

impl<E> Rest<E> {
    /// The I/O loop would not take the connection: it is closed, the
    /// parked iteration closes, and what was counted against
    /// `--response-memory` is given back with the charge (else the pool
    /// would stay shut).
    fn refused(self, e: &std::io::Error) {
        tracing::warn!(
            request = %self.id,
            "passing a full connection to the I/O loop failed: {e}; closing it"
        );
    }
}

impl<E: ResponseEncoder> Rest<E> {
    async fn serve<C: Connection>(mut self, mut stream: C, receiver: ResponseReceiver) {
        let ending = {
            let (mut reader, mut writer) = stream.halves();
            // Dropped as it returns: a parked iteration then finds the
            // connection gone, and closes.
            let ending = self.respond(receiver, &mut reader, &mut writer).await;
            let closing = self.kept.as_ref().is_none_or(|kept| kept.closing);
            if ending == Ending::Complete && closing {
                async_io::close(
                    &mut reader,
                    &mut writer,
                    self.peer_sending,
                    self.write_timeout,
                )
                .await;
            }
            ending
        };
        if let (Some(kept), Ending::Complete) = (self.kept.take(), ending)
            && !kept.closing
        {
            match stream.into_socket() {
                Ok(socket) if kept.input.is_empty() => kept.tether.park(socket, self.who_peer),
                Ok(socket) => kept.tether.hand_off(socket, kept.input, self.who_peer),
                Err(e) => {
                    tracing::warn!(peer = %self.who_peer, request = %self.id, "keeping the connection failed: {e}")
                }
            }
        }
    }

    fn who(&self) -> Who<'_> {
        Who {
            peer: &self.who_peer,
            request: Some(self.id.named()),
        }
    }

    /// Writes until the response ends; how it ended.
    async fn respond<R, W>(
        &mut self,
        receiver: ResponseReceiver,
        reader: &mut R,
        writer: &mut W,
    ) -> Ending
    where
        R: AsyncRead + Unpin,
        W: tokio::io::AsyncWrite + Unpin,
    {
        let mut events = Vec::new();
        let mut aborted = false;
        let ending = loop {
            if let Some(kept) = self.kept.as_mut() {
                kept.close_if_stopping(&mut self.flow);
            }
            let out = self.flow.writable().expect("nothing is held back");
            // Input is looked at (for an ABORT_REQUEST) up to a bound: a
            // front server that sends more is answered first.
            let watch = self
                .kept
                .as_mut()
                .filter(|kept| !aborted && kept.input.len() < INPUT_LIMIT);
            let woke = match watch {
                Some(kept) => {
                    kept.input.reserve(4096);
                    tokio::select! {
                        written = async_io::write_all(writer, out, self.write_timeout) => Woke::Written(written),
                        read = reader.read_buf(&mut kept.input) => Woke::Input(read),
                    }
                }
                None => Woke::Written(async_io::write_all(writer, out, self.write_timeout).await),
            };
            match woke {
                Woke::Written(Ok(())) => {}
                Woke::Written(Err(e)) => {
                    e.log(self.who(), false);
                    self.flow.discard();
                    break Ending::Aborted;
                }
                Woke::Input(Ok(0) | Err(_)) => {
                    tracing::info!(peer = %self.who_peer, request = %self.id, "the front server closed the connection during the response");
                    self.flow.discard();
                    break Ending::Aborted;
                }
                Woke::Input(Ok(_)) => {
                    let kept = self.kept.as_ref().expect("read for a kept connection");
                    if kept.aborts() {
                        tracing::info!(peer = %self.who_peer, request = %self.id, "ABORT_REQUEST from the front server");
                        self.flow.aborted_by_peer();
                        aborted = true;
                        // The application's iteration ends; the request
                        // ends here, whole as far as the protocol goes.
                        receiver.closer().close();
                        self.flow.encode(&mut self.encoder, [ResponseEvent::End]);
                    }
                    continue;
                }
            }
            // What the hand-off left is written.
            self.charge = None;
            if let Some(ending) = self.flow.ending() {
                break ending;
            }
            events.clear();
            if receiver.recv(&mut events).await.is_none() {
                break Ending::Aborted;
            }
            if let Some(kept) = self.kept.as_mut() {
                kept.say_last(&mut self.encoder);
            }
            self.flow.encode(&mut self.encoder, events.drain(..));
        };
        self.charge = None;
        ending
    }
}
