//! The response on its way from the Python thread to the connection.
//!
//! A channel bounded in bytes, not messages: one `yield` can be 100 MB, and a
//! slow client must slow the application down instead of growing memory.
//! The Python side blocks (GIL released) while the channel is full; the
//! connection side is async and takes everything queued at once, so what is
//! already waiting goes out in one write without delaying any block.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Poll, Waker};

pub use rustgi_model::ResponseEvent;

/// Where a request's response goes: through the channel to the I/O lane,
/// or straight to the connection from the Python thread (the Python lane).
pub enum ResponseTarget {
    Channel(ResponseSender),
    PythonLane(Box<dyn LaneWriter>),
}

impl ResponseTarget {
    /// Whether the request's client is known to have gone: the I/O lane
    /// closed the channel (the connection hung up, FastCGI's ABORT_REQUEST),
    /// or the Python lane's socket hung up. Asked before the application
    /// starts, so that a request nobody waits for takes no thread's time.
    pub fn client_gone(&self) -> bool {
        match self {
            ResponseTarget::Channel(sender) => sender.is_disconnected(),
            ResponseTarget::PythonLane(writer) => writer.client_gone(),
        }
    }
}

/// The Python lane's side of a response: the Python thread writes it to
/// the connection itself. For a
/// request that arrived whole this spares the hand-off back to the I/O
/// thread: the wake-up that costs more than the rest of a small request
/// (DESIGN.md, "Hot path budget"). The implementation (in rustgi-serve)
/// encodes the events in its protocol and closes the connection when it is
/// dropped: gracefully after `End`, cut otherwise.
///
/// A body block may be the application's bytes object itself (no copy):
/// the `Bytes` keeps it alive, so holding on to it is safe, but one dropped
/// off the Python thread only frees it once a Python thread re-attaches.
pub trait LaneWriter: Send + Sync {
    /// Encodes `events` and writes what the connection takes now, without
    /// blocking. `Ok(true)`: nothing is pending; `Ok(false)`: call
    /// [`wait_writable`](Self::wait_writable) without the GIL, then `send`
    /// again (with no events) to go on.
    fn send(&mut self, events: &mut Vec<ResponseEvent>) -> Result<bool, Disconnected>;
    /// Waits until the connection takes more bytes; `Err` when it is gone
    /// or stalled beyond the write timeout.
    fn wait_writable(&self) -> Result<(), Disconnected>;
    /// Whether the client is known to have gone (its connection hung up)
    /// before the application started: the request is then not run.
    fn client_gone(&self) -> bool {
        false
    }
}

/// The connection is gone; nothing more will be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disconnected;

struct State {
    queue: VecDeque<ResponseEvent>,
    queued_bytes: usize,
    receiver_gone: bool,
    sender_gone: bool,
    waker: Option<Waker>,
}

struct Shared {
    max_bytes: usize,
    state: Mutex<State>,
    room: Condvar,
}

/// Creates a channel that holds at most `max_bytes` of body (one larger
/// block is let through when the channel is empty).
pub fn response_channel(max_bytes: usize) -> (ResponseSender, ResponseReceiver) {
    let shared = Arc::new(Shared {
        max_bytes,
        state: Mutex::new(State {
            queue: VecDeque::new(),
            queued_bytes: 0,
            receiver_gone: false,
            sender_gone: false,
            waker: None,
        }),
        room: Condvar::new(),
    });
    (
        ResponseSender {
            shared: shared.clone(),
        },
        ResponseReceiver { shared },
    )
}

/// The Python thread's end.
pub struct ResponseSender {
    shared: Arc<Shared>,
}

/// What [`ResponseSender::try_send`] did.
pub enum TrySend {
    Sent,
    /// The channel is full: call [`ResponseSender::wait_for_room`] (without
    /// the GIL) and try again.
    Full,
}

impl ResponseSender {
    /// Queues `events` as one unit if there is room.
    pub fn try_send(&self, events: &mut Vec<ResponseEvent>) -> Result<TrySend, Disconnected> {
        self.enqueue(events, true)
    }

    /// Queues `events` whatever the bound (a few small events of our own,
    /// sent without the application: `--timeout`'s 504).
    pub fn send_now(&self, mut events: Vec<ResponseEvent>) {
        let _gone_is_fine = self.enqueue(&mut events, false);
    }

    /// Takes `events` (leaving it empty) unless the channel is gone, or
    /// full and `bounded` (leaving it as it was).
    fn enqueue(
        &self,
        events: &mut Vec<ResponseEvent>,
        bounded: bool,
    ) -> Result<TrySend, Disconnected> {
        let weight: usize = events.iter().map(ResponseEvent::weight).sum();
        let mut state = self.shared.state.lock().unwrap();
        if state.receiver_gone {
            return Err(Disconnected);
        }
        if bounded && state.queued_bytes > 0 && state.queued_bytes + weight > self.shared.max_bytes
        {
            return Ok(TrySend::Full);
        }
        state.queued_bytes += weight;
        state.queue.extend(events.drain(..));
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(TrySend::Sent)
    }

    /// Blocks until the connection has taken what was queued, or is gone.
    pub fn wait_for_room(&self) {
        let state = self.shared.state.lock().unwrap();
        let _unused = self
            .shared
            .room
            .wait_while(state, |s| s.queued_bytes > 0 && !s.receiver_gone)
            .unwrap();
    }

    /// True once the connection has gone away.
    pub fn is_disconnected(&self) -> bool {
        self.shared.state.lock().unwrap().receiver_gone
    }
}

impl Drop for ResponseSender {
    fn drop(&mut self) {
        let mut state = self.shared.state.lock().unwrap();
        state.sender_gone = true;
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The connection's end.
pub struct ResponseReceiver {
    shared: Arc<Shared>,
}

/// Lets the connection give up on a response while its receiver is busy
/// elsewhere (FastCGI's ABORT_REQUEST): the application's next block fails
/// at once, and its iterable is closed.
#[derive(Clone)]
pub struct ResponseCloser {
    shared: Arc<Shared>,
}

impl ResponseCloser {
    pub fn close(&self) {
        close_receiver(&self.shared);
    }
}

fn close_receiver(shared: &Shared) {
    let mut state = shared.state.lock().unwrap();
    state.receiver_gone = true;
    state.queue.clear();
    state.queued_bytes = 0;
    drop(state);
    shared.room.notify_all();
}

impl ResponseReceiver {
    pub fn closer(&self) -> ResponseCloser {
        ResponseCloser {
            shared: self.shared.clone(),
        }
    }

    /// Takes every event queued so far, waiting for at least one. `None`
    /// means the sender went away (which, without an `End`, is an abort).
    pub async fn recv(&self, into: &mut Vec<ResponseEvent>) -> Option<()> {
        poll_fn(|cx| {
            let mut state = self.shared.state.lock().unwrap();
            if !state.queue.is_empty() {
                into.extend(state.queue.drain(..));
                state.queued_bytes = 0;
                drop(state);
                self.shared.room.notify_all();
                return Poll::Ready(Some(()));
            }
            if state.sender_gone {
                return Poll::Ready(None);
            }
            state.waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

impl Drop for ResponseReceiver {
    fn drop(&mut self) {
        close_receiver(&self.shared);
    }
}
