//! A response the Python thread writes itself: the flow with the blocking
//! sink, behind core's `LaneWriter`.

use super::Socket;
use crate::flow::{Ending, ResponseFlow};
use crate::sink::blocking::BlockingSink;
use crate::sink::{PeerSending, Who};
use rustgi_core::{Disconnected, LaneWriter, ResponseEvent};
use rustgi_model::ResponseEncoder;
use std::borrow::Cow;
use tokio_util::task::task_tracker::TaskTrackerToken;

pub(super) struct LaneResponse<E> {
    flow: ResponseFlow,
    encoder: E,
    /// `None` once the connection failed.
    sink: Option<BlockingSink<Socket>>,
    /// What may still arrive from the peer when we close.
    peer_sending: PeerSending,
    peer: Cow<'static, str>,
    id: u64,
    /// Held while the connection is open: graceful shutdown waits for it.
    _tracked: TaskTrackerToken,
}

impl<E> LaneResponse<E> {
    pub(super) fn new(
        sink: BlockingSink<Socket>,
        encoder: E,
        peer_sending: PeerSending,
        peer: Cow<'static, str>,
        id: u64,
        tracked: TaskTrackerToken,
    ) -> Self {
        LaneResponse {
            // The request arrived whole: nothing to hold back for.
            flow: ResponseFlow::new(true),
            encoder,
            sink: Some(sink),
            peer_sending,
            peer,
            id,
            _tracked: tracked,
        }
    }

    fn who(&self) -> Who<'_> {
        Who {
            peer: &self.peer,
            request: Some(self.id),
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
        let Some(sink) = self.sink.as_mut() else {
            return Err(Disconnected);
        };
        self.flow.encode(&mut self.encoder, events.drain(..));
        let out = self.flow.writable().expect("nothing is held back");
        let written = sink.write(out).map_err(|e| self.fail(e))?;
        if written && self.flow.ending() == Some(Ending::Aborted) {
            // What came before went out: a truncated response rather than
            // none, and the close says it is not whole.
            self.sink = None;
        }
        Ok(written)
    }

    fn wait_writable(&self) -> Result<(), Disconnected> {
        let sink = self.sink.as_ref().ok_or(Disconnected)?;
        sink.wait_writable().map_err(|e| {
            e.log(self.who(), true);
            Disconnected
        })
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
        sink.close(ending, self.peer_sending, self.who());
    }
}
