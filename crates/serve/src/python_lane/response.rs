//! A response the Python thread writes itself: the flow with the blocking
//! sink, behind core's `LaneWriter`, until the socket is full: then the
//! connection and the rest go to the I/O loop (`super::handed`).

use super::handed::{self, Handed};
use super::{HandOff, KeptAs, Socket};
use crate::flow::{Ending, ResponseFlow};
use crate::intake::Tether;
use crate::sink::blocking::BlockingSink;
use crate::sink::{PeerSending, Who};
use bytes::{Bytes, BytesMut};
use rustgi_core::{Budget, Disconnected, LaneWriter, ResponseEvent, ResponseSender};
use rustgi_model::ResponseEncoder;
use std::borrow::Cow;
use std::os::fd::AsFd;
use std::sync::Arc;
use tokio_util::task::task_tracker::TaskTrackerToken;

pub(super) struct LaneResponse<E> {
    flow: ResponseFlow,
    /// `None` once handed off.
    encoder: Option<E>,
    /// `None` once the connection failed.
    sink: Option<BlockingSink<Socket>>,
    /// What may still arrive from the peer when we close.
    peer_sending: PeerSending,
    peer: Cow<'static, str>,
    id: crate::named::Naming,
    /// Held while the connection is open: graceful shutdown waits for it.
    tracked: Option<TaskTrackerToken>,
    /// A kept FastCGI connection: back to the intake after a whole
    /// response.
    kept: Option<Kept>,
    handed: HandOff,
}

/// What a response on a kept connection keeps.
pub(super) struct Kept {
    pub(super) tether: Tether,
    pub(super) kind: KeptAs,
    /// What the front server sent while the response ran (an
    /// ABORT_REQUEST, or a request it multiplexes): the I/O lane takes it
    /// from here.
    pub(super) input: BytesMut,
    /// A batch was written: the next one looks for input first.
    written: bool,
    /// The worker stopped keeping connections before the response ended:
    /// the closing notice follows END_REQUEST, and the connection closes.
    pub(super) closing: bool,
}

impl Kept {
    /// Once the response is whole (END_REQUEST encoded), in a worker that
    /// keeps no more connections: the closing notice goes into the same
    /// write as END_REQUEST, so that the front server reads both at once
    /// and never caches the connection (see `intake::Tether::stopping`).
    pub(super) fn close_if_stopping(&mut self, flow: &mut ResponseFlow) {
        if self.closing
            || self.kind == KeptAs::Ajp
            || flow.ending() != Some(Ending::Complete)
            || !self.tether.stopping()
        {
            return;
        }
        if let Some(out) = flow.writable() {
            out.small()
                .extend_from_slice(&rustgi_fastcgi::closing_notice());
            self.closing = true;
        }
    }
}

impl Kept {
    /// Before a batch is encoded, in a worker that keeps no more
    /// connections: an encoder that can say so in its end (AJP's
    /// END_RESPONSE reuse=0) does, and the connection closes after it.
    pub(super) fn say_last<E: ResponseEncoder>(&mut self, encoder: &mut E) {
        if !self.closing
            && self.kind == KeptAs::Ajp
            && self.tether.stopping()
            && encoder.last_on_connection()
        {
            self.closing = true;
        }
    }

    /// Whether what the front server sent meanwhile ends the request
    /// (FastCGI's ABORT_REQUEST for it).
    pub(super) fn aborts(&self) -> bool {
        match self.kind {
            KeptAs::Fastcgi(id) => rustgi_fastcgi::holds_abort_request(&self.input, id),
            KeptAs::Ajp => false,
        }
    }
}

impl<E> LaneResponse<E> {
    pub(super) fn new(
        sink: BlockingSink<Socket>,
        encoder: E,
        peer_sending: PeerSending,
        peer: Cow<'static, str>,
        id: crate::named::Naming,
        tracked: TaskTrackerToken,
        handed: HandOff,
    ) -> Self {
        LaneResponse {
            // The request arrived whole: nothing to hold back for.
            flow: ResponseFlow::new(true),
            encoder: Some(encoder),
            sink: Some(sink),
            peer_sending,
            peer,
            id,
            tracked: Some(tracked),
            kept: None,
            handed,
        }
    }

    /// The request's record, which the flow fills in.
    pub(super) fn traced(mut self, trail: Option<crate::record::Trail>) -> Self {
        self.flow = std::mem::replace(&mut self.flow, ResponseFlow::new(true)).traced(trail);
        self
    }

    /// The front server keeps the connection: after a whole response it
    /// goes back to the intake through `tether`, instead of closing.
    pub(super) fn kept_with(mut self, kept: Option<(Tether, KeptAs)>) -> Self {
        self.kept = kept.map(|(tether, kind)| Kept {
            tether,
            kind,
            input: BytesMut::new(),
            written: false,
            closing: false,
        });
        self
    }

    /// On a kept connection, from the second batch on: whether the front
    /// server aborted the request meanwhile (ABORT_REQUEST). A response
    /// written in one batch (most) pays nothing for this.
    fn aborted(&mut self) -> bool {
        let (Some(kept), Some(sink)) = (self.kept.as_mut(), self.sink.as_ref()) else {
            return false;
        };
        if !std::mem::replace(&mut kept.written, true) {
            return false;
        }
        kept.input.reserve(4096);
        // EOF or an error shows when writing.
        if !matches!(sink.wire().try_read_into(&mut kept.input), Ok(1..)) {
            return false;
        }
        kept.aborts()
    }

    fn who(&self) -> Who<'_> {
        Who {
            peer: &self.peer,
            request: Some(self.id.named()),
        }
    }

    fn fail(&mut self, error: crate::sink::WriteError) -> Disconnected {
        error.log(self.who(), true);
        self.sink = None;
        self.flow.discard();
        Disconnected
    }
}

impl<E: ResponseEncoder + Send + Sync + 'static> LaneWriter for LaneResponse<E> {
    fn send(&mut self, events: &mut Vec<ResponseEvent>) -> Result<bool, Disconnected> {
        if self.sink.is_none() {
            return Err(Disconnected);
        }
        let aborted = self.aborted();
        if aborted {
            tracing::info!(peer = %self.peer, request = %self.id, "ABORT_REQUEST from the front server");
            self.flow.aborted_by_peer();
            // The request ends here, whole as far as the protocol goes
            // (END_REQUEST), and the application stops.
            events.clear();
            events.push(ResponseEvent::End);
        }
        let sink = self.sink.as_mut().expect("checked above");
        let encoder = self.encoder.as_mut().expect("not handed off");
        if let Some(kept) = self.kept.as_mut() {
            kept.say_last(encoder);
        }
        self.flow.encode(encoder, events.drain(..));
        let closing = self.kept.as_mut().is_some_and(|kept| {
            kept.close_if_stopping(&mut self.flow);
            kept.closing
        });
        let out = self.flow.writable().expect("nothing is held back");
        let written = sink.write(out).map_err(|e| self.fail(e))?;
        if written
            && closing
            && let Some(sink) = self.sink.as_ref()
        {
            // The FIN follows at once: a front server that reads on sees
            // the end with the response.
            sink.wire().shutdown_write();
        }
        if written && self.flow.ending() == Some(Ending::Aborted) {
            // What came before went out: a truncated response rather than
            // none, and the close says it is not whole.
            self.sink = None;
        }
        if aborted {
            return Err(Disconnected);
        }
        Ok(written)
    }

    fn client_gone(&self) -> bool {
        self.sink
            .as_ref()
            .is_some_and(|sink| super::hung_up(sink.wire().as_fd()))
    }

    fn hand_off(
        mut self: Box<Self>,
        budget: &Arc<Budget>,
        referenced: Option<Bytes>,
    ) -> Result<ResponseSender, Disconnected> {
        let sink = self.sink.take().ok_or(Disconnected)?;
        let (sender, receiver) = rustgi_core::response_channel(self.handed.buffer);
        sender.count_in(budget);
        let flow = std::mem::replace(&mut self.flow, ResponseFlow::new(true));
        // Counted from now: the thread looks at the budget before it
        // takes its next request. Released once it is written. What is
        // pending of the application's block is that object's memory,
        // counted once for every response that holds it.
        let of_block = referenced
            .as_ref()
            .map_or(0, |block| flow.pending_within(block));
        let charge = budget.charge(
            flow.pending() - of_block,
            referenced.filter(|_| of_block > 0),
        );
        let handed = Handed {
            write_timeout: sink.write_timeout(),
            socket: sink.into_wire(),
            flow,
            encoder: self.encoder.take().expect("handed off once"),
            receiver,
            charge,
            peer: std::mem::take(&mut self.peer),
            id: self.id.clone(),
            peer_sending: self.peer_sending,
            kept: self.kept.take(),
            tracked: self.tracked.take(),
        };
        handed::spawn(&self.handed.runtime, handed);
        Ok(sender)
    }
}

impl<E> Drop for LaneResponse<E> {
    fn drop(&mut self) {
        let Some(sink) = self.sink.take() else {
            return;
        };
        // Unwritten bytes (the request ended while the socket was full)
        // make the response a cut one.
        let ending = if self.flow.pending() > 0 {
            Some(Ending::Aborted)
        } else {
            self.flow.ending()
        };
        match self.kept.take() {
            // Told and shut down for writing: nothing more to say, and the
            // front server sends nothing after the notice.
            Some(kept) if kept.closing && ending == Some(Ending::Complete) => {}
            Some(kept) if ending == Some(Ending::Complete) => {
                let peer = std::mem::take(&mut self.peer);
                if kept.input.is_empty() {
                    kept.tether.park(sink.into_wire(), peer);
                } else {
                    kept.tether.hand_off(sink.into_wire(), kept.input, peer);
                }
            }
            _ => sink.close(ending, self.peer_sending, self.who()),
        }
    }
}
