//! The response on its way from the Python thread to the connection.
//!
//! A channel bounded in bytes, not messages: one `yield` can be 100 MB, and a
//! slow client must slow the application down instead of growing memory.
//! When the channel is full, the iteration of the response parks
//! ([`ResponseSender::park`]): no thread waits for a client. The
//! connection side is async and takes everything queued at once, so what
//! is already waiting goes out in one write without delaying any block;
//! when it has written all it took and finds the channel empty, it resumes
//! the parked iteration on whichever Python thread is free.
//!
//! Every byte queued in a channel, or handed to the I/O loop by a Python
//! thread, counts against one [`Budget`] per process: past it the Python
//! threads take no new request (they go on with parked ones), so that
//! clients that do not read cannot grow memory without bound. A block the
//! Python lane hands over by reference (the application's own bytes
//! object) counts once however many responses hold it ([`Charge`]).

use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
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
    /// Encodes `events` (taking them all) and writes what the connection
    /// takes now, without blocking. `Ok(true)`: nothing is pending;
    /// `Ok(false)`: the connection is full, call
    /// [`hand_off`](Self::hand_off).
    fn send(&mut self, events: &mut Vec<ResponseEvent>) -> Result<bool, Disconnected>;
    /// Passes the connection, with what is pending, to the I/O loop, which
    /// writes it as the client reads; the rest of the response goes there
    /// through the channel returned. What is pending counts against
    /// `budget` until it is written ([`Budget::charge`]): `referenced` is
    /// the application's block the last events carried by reference,
    /// whole, if any (what is pending of it is that object's memory).
    fn hand_off(
        self: Box<Self>,
        budget: &Arc<Budget>,
        referenced: Option<Bytes>,
    ) -> Result<ResponseSender, Disconnected>;
    /// Whether the client is known to have gone (its connection hung up)
    /// before the application started: the request is then not run.
    fn client_gone(&self) -> bool {
        false
    }
}

/// The bytes held for responses on their way to clients (queued in
/// channels, or handed to the I/O loop), against one limit per process.
/// Past the limit the Python threads take no new request until room comes
/// back: new requests wait (in the listen backlog, or queued), they are
/// not refused.
pub struct Budget {
    limit: AtomicUsize,
    held: AtomicUsize,
    /// Called when the bytes held fall back to the limit.
    on_room: OnceLock<Box<dyn Fn() + Send + Sync>>,
    /// The referenced blocks that [`Charge`]s hold, by the address of
    /// their bytes: how many charges hold each. Each counts in `held` once.
    referenced: Mutex<HashMap<usize, usize>>,
}

impl Default for Budget {
    fn default() -> Self {
        Budget::new(usize::MAX)
    }
}

impl Budget {
    pub fn new(limit: usize) -> Self {
        Budget {
            limit: AtomicUsize::new(limit),
            held: AtomicUsize::new(0),
            on_room: OnceLock::new(),
            referenced: Mutex::new(HashMap::new()),
        }
    }

    /// Counts what a response hands to the I/O loop until the returned
    /// charge is dropped (once it is written, or the connection is gone):
    /// `private` bytes of its own (copies, encoded framing), and
    /// `referenced`, the application's block that it holds by reference,
    /// whole but once for all the charges that hold the same block.
    ///
    /// What a parked response keeps alive is what it references: the
    /// bytes object cannot be freed before it is written. A block made per
    /// request (`return [render()]`) is distinct for each, so each counts
    /// in full and the bound holds; one block many responses share (a
    /// module-level constant, a cache's entry) is memory that exists once,
    /// and it counts once. Counting by identity rather than by the
    /// object's reference count does not depend on which references the
    /// application and the iteration still hold at the hand-off, needs no
    /// GIL, and stays right when the application drops its own reference
    /// later (the block then lives on for the responses only, and is
    /// still counted, once).
    pub fn charge(self: &Arc<Self>, private: usize, referenced: Option<Bytes>) -> Charge {
        let referenced = referenced.filter(|block| !block.is_empty());
        if let Some(block) = &referenced {
            let first = {
                let mut held = self.referenced.lock().unwrap();
                let count = held.entry(block.as_ptr() as usize).or_insert(0);
                *count += 1;
                *count == 1
            };
            if first {
                self.hold(block.len());
            }
        }
        self.hold(private);
        Charge {
            budget: self.clone(),
            private,
            referenced,
        }
    }

    /// `on_room` runs (on any thread) each time the bytes held fall from
    /// over the limit back to it.
    pub(crate) fn on_room(&self, on_room: Box<dyn Fn() + Send + Sync>) {
        let _set_once = self.on_room.set(on_room);
    }

    pub(crate) fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Release);
        if let Some(on_room) = self.on_room.get() {
            on_room();
        }
    }

    pub fn hold(&self, bytes: usize) {
        let before = self.held.fetch_add(bytes, Ordering::AcqRel);
        let limit = self.limit.load(Ordering::Acquire);
        if before <= limit && before + bytes > limit {
            tracing::warn!(
                "{} MiB of responses wait for clients to read them (--response-memory {} MiB): new requests wait",
                (before + bytes) >> 20,
                limit >> 20
            );
        }
    }

    pub fn release(&self, bytes: usize) {
        if bytes == 0 {
            return;
        }
        let before = self.held.fetch_sub(bytes, Ordering::AcqRel);
        let limit = self.limit.load(Ordering::Acquire);
        if before > limit && before - bytes <= limit {
            tracing::info!(
                "response memory back under --response-memory: taking new requests again"
            );
            if let Some(on_room) = self.on_room.get() {
                on_room();
            }
        }
    }

    /// Over the limit: take no new request.
    pub fn over(&self) -> bool {
        self.held.load(Ordering::Acquire) > self.limit.load(Ordering::Acquire)
    }

    pub fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }
}

/// What one response holds against the [`Budget`] (see
/// [`Budget::charge`]), given back when it is dropped.
pub struct Charge {
    budget: Arc<Budget>,
    private: usize,
    /// Keeps the block alive as long as its address is a key of
    /// `Budget::referenced`: no other object can have that address while
    /// it is counted.
    referenced: Option<Bytes>,
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.release(std::mem::take(&mut self.private));
        let Some(block) = &self.referenced else {
            return;
        };
        let last = {
            let mut held = self.budget.referenced.lock().unwrap();
            let key = block.as_ptr() as usize;
            let count = held.get_mut(&key).expect("counted by its charge");
            *count -= 1;
            *count == 0 && held.remove(&key).is_some()
        };
        if last {
            self.budget.release(block.len());
        }
        // The block itself goes after its key: dropped here, or later by
        // whoever still holds it.
    }
}

/// The connection is gone; nothing more will be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disconnected;

/// What resumes a parked iteration: it queues it for a Python thread.
pub(crate) type Resume = Box<dyn FnOnce() + Send>;

struct State {
    queue: VecDeque<ResponseEvent>,
    queued_bytes: usize,
    /// Taken by the receiver and counted in the budget until its next
    /// `recv` (by then it has written them).
    taken_bytes: usize,
    receiver_gone: bool,
    sender_gone: bool,
    /// The receiver found the channel empty and waits.
    receiver_waiting: bool,
    waker: Option<Waker>,
    parked: Option<Resume>,
}

struct Shared {
    max_bytes: usize,
    state: Mutex<State>,
    room: Condvar,
    budget: OnceLock<Arc<Budget>>,
}

impl Shared {
    fn release(&self, bytes: usize) {
        if let Some(budget) = self.budget.get() {
            budget.release(bytes);
        }
    }
}

/// Creates a channel that holds at most `max_bytes` of body (one larger
/// block is let through when the channel is empty).
pub fn response_channel(max_bytes: usize) -> (ResponseSender, ResponseReceiver) {
    let shared = Arc::new(Shared {
        max_bytes,
        state: Mutex::new(State {
            queue: VecDeque::new(),
            queued_bytes: 0,
            taken_bytes: 0,
            receiver_gone: false,
            sender_gone: false,
            receiver_waiting: false,
            waker: None,
            parked: None,
        }),
        room: Condvar::new(),
        budget: OnceLock::new(),
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

impl ResponseSender {
    /// Counts what is queued here against `budget` from now on.
    pub fn count_in(&self, budget: &Arc<Budget>) {
        let _set_once = self.shared.budget.set(budget.clone());
    }

    /// Queues `events` (taking them all); `Ok(true)` when the channel is
    /// now full: the producer should [`park`](Self::park) (or, when it
    /// cannot, [`wait_for_room`](Self::wait_for_room)). A channel holds at
    /// most its bound plus the last batch.
    pub fn push(&self, events: &mut Vec<ResponseEvent>) -> Result<bool, Disconnected> {
        self.enqueue(events)
    }

    /// Queues `events` whatever the bound (a few small events of our own,
    /// sent without the application: `--timeout`'s 504).
    pub fn send_now(&self, mut events: Vec<ResponseEvent>) {
        let _gone_is_fine = self.enqueue(&mut events);
    }

    fn enqueue(&self, events: &mut Vec<ResponseEvent>) -> Result<bool, Disconnected> {
        let weight: usize = events.iter().map(ResponseEvent::weight).sum();
        let mut state = self.shared.state.lock().unwrap();
        if state.receiver_gone {
            events.clear();
            return Err(Disconnected);
        }
        if let Some(budget) = self.shared.budget.get() {
            budget.hold(weight);
        }
        state.queued_bytes += weight;
        state.queue.extend(events.drain(..));
        state.receiver_waiting = false;
        let full = state.queued_bytes >= self.shared.max_bytes;
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(full)
    }

    /// Leaves the rest of the response to `resume`, called once the
    /// connection has written everything queued (or is gone). Returns it
    /// instead when that is already so: the producer goes on at once.
    pub(crate) fn park(&self, resume: Resume) -> Result<(), Resume> {
        let mut state = self.shared.state.lock().unwrap();
        if state.receiver_gone || (state.queue.is_empty() && state.receiver_waiting) {
            return Err(resume);
        }
        state.parked = Some(resume);
        Ok(())
    }

    /// Blocks until the connection has taken what was queued, or is gone
    /// (for a producer that cannot park: the application's `write()`).
    pub fn wait_for_room(&self) {
        self.room().wait_for_room();
    }

    /// What [`wait_for_room`](Self::wait_for_room) waits on, to wait
    /// without holding the sender.
    pub(crate) fn room(&self) -> RoomWaiter {
        RoomWaiter(self.shared.clone())
    }

    /// True once the connection has gone away.
    pub fn is_disconnected(&self) -> bool {
        self.shared.state.lock().unwrap().receiver_gone
    }
}

/// See [`ResponseSender::room`].
pub(crate) struct RoomWaiter(Arc<Shared>);

impl RoomWaiter {
    pub(crate) fn wait_for_room(&self) {
        let state = self.0.state.lock().unwrap();
        let _unused = self
            .0
            .room
            .wait_while(state, |s| s.queued_bytes > 0 && !s.receiver_gone)
            .unwrap();
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
    let queue = std::mem::take(&mut state.queue);
    let held = std::mem::take(&mut state.queued_bytes) + std::mem::take(&mut state.taken_bytes);
    let parked = state.parked.take();
    drop(state);
    shared.room.notify_all();
    shared.release(held);
    drop(queue);
    // The parked iteration finds the connection gone, and closes.
    if let Some(resume) = parked {
        resume();
    }
}

impl ResponseReceiver {
    pub fn closer(&self) -> ResponseCloser {
        ResponseCloser {
            shared: self.shared.clone(),
        }
    }

    /// Takes every event queued so far, waiting for at least one. `None`
    /// means the sender went away (which, without an `End`, is an abort).
    ///
    /// Call it once what the last call took is written: the bytes it took
    /// count against the budget until then, and finding the channel empty
    /// resumes a parked producer.
    pub async fn recv(&self, into: &mut Vec<ResponseEvent>) -> Option<()> {
        poll_fn(|cx| {
            let mut state = self.shared.state.lock().unwrap();
            let written = std::mem::take(&mut state.taken_bytes);
            if !state.queue.is_empty() {
                into.extend(state.queue.drain(..));
                state.taken_bytes = std::mem::take(&mut state.queued_bytes);
                state.receiver_waiting = false;
                drop(state);
                self.shared.room.notify_all();
                self.shared.release(written);
                return Poll::Ready(Some(()));
            }
            if state.sender_gone {
                drop(state);
                self.shared.release(written);
                return Poll::Ready(None);
            }
            state.waker = Some(cx.waker().clone());
            state.receiver_waiting = true;
            let parked = state.parked.take();
            drop(state);
            self.shared.release(written);
            if let Some(resume) = parked {
                resume();
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::future::Future;
    use std::sync::atomic::AtomicBool;

    fn body(len: usize) -> Vec<ResponseEvent> {
        vec![ResponseEvent::Body(Bytes::from(vec![b'x'; len]))]
    }

    /// Polls `recv` once: whether it took something.
    fn poll_recv(receiver: &ResponseReceiver) -> Poll<Option<usize>> {
        let mut events = Vec::new();
        let polled = {
            let received = std::pin::pin!(receiver.recv(&mut events));
            let mut context = std::task::Context::from_waker(Waker::noop());
            received.poll(&mut context)
        };
        polled.map(|got| got.map(|()| events.len()))
    }

    fn flag() -> (Arc<AtomicBool>, Resume) {
        let resumed = Arc::new(AtomicBool::new(false));
        let set = resumed.clone();
        (resumed, Box::new(move || set.store(true, Ordering::SeqCst)))
    }

    #[test]
    fn a_parked_producer_resumes_once_the_receiver_has_written_all_it_took() {
        let budget = Arc::new(Budget::new(usize::MAX));
        let (sender, receiver) = response_channel(100);
        sender.count_in(&budget);
        assert_eq!(sender.push(&mut body(60)), Ok(false));
        assert_eq!(sender.push(&mut body(60)), Ok(true), "full at the bound");
        assert_eq!(budget.held(), 120);
        let (resumed, resume) = flag();
        assert!(sender.park(resume).is_ok());
        assert_eq!(poll_recv(&receiver), Poll::Ready(Some(2)));
        assert!(!resumed.load(Ordering::SeqCst), "taken, not yet written");
        assert_eq!(budget.held(), 120, "counted until written");
        assert_eq!(poll_recv(&receiver), Poll::Pending);
        assert!(
            resumed.load(Ordering::SeqCst),
            "written, and the channel empty"
        );
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn a_block_many_responses_hold_counts_once_until_the_last_lets_go() {
        let budget = Arc::new(Budget::new(usize::MAX));
        let shared = Bytes::from(vec![b'x'; 1000]);
        let first = budget.charge(10, Some(shared.clone()));
        let second = budget.charge(20, Some(shared.clone()));
        let third = budget.charge(30, Some(shared.slice(..)));
        assert_eq!(
            budget.held(),
            1000 + 60,
            "the block once, each one's own bytes"
        );
        drop(second);
        drop(first);
        assert_eq!(budget.held(), 1000 + 30, "still held by one");
        drop(third);
        assert_eq!(budget.held(), 0);
        // Counted afresh once held again.
        let again = budget.charge(0, Some(shared));
        assert_eq!(budget.held(), 1000);
        drop(again);
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn blocks_made_per_response_each_count_and_reach_the_bound() {
        let budget = Arc::new(Budget::new(2500));
        let charges: Vec<_> = (0..3)
            .map(|_| budget.charge(5, Some(Bytes::from(vec![b'x'; 1000]))))
            .collect();
        assert_eq!(budget.held(), 3 * 1005);
        assert!(
            budget.over(),
            "three distinct blocks are three blocks' memory"
        );
        drop(charges);
        assert_eq!(budget.held(), 0);
        assert!(!budget.over());
    }

    #[test]
    fn a_receiver_already_waiting_gives_the_producer_back_its_turn() {
        let (sender, receiver) = response_channel(100);
        assert_eq!(sender.push(&mut body(200)), Ok(true));
        assert_eq!(poll_recv(&receiver), Poll::Ready(Some(1)));
        assert_eq!(poll_recv(&receiver), Poll::Pending);
        let (resumed, resume) = flag();
        assert!(sender.park(resume).is_err(), "nothing to wait for");
        assert!(!resumed.load(Ordering::SeqCst));
    }

    #[test]
    fn a_receiver_gone_resumes_the_producer_and_releases_its_bytes() {
        let budget = Arc::new(Budget::new(50));
        let roomy = Arc::new(AtomicBool::new(false));
        let set = roomy.clone();
        budget.on_room(Box::new(move || set.store(true, Ordering::SeqCst)));
        let (sender, receiver) = response_channel(100);
        sender.count_in(&budget);
        assert_eq!(sender.push(&mut body(150)), Ok(true));
        assert!(budget.over());
        let (resumed, resume) = flag();
        assert!(sender.park(resume).is_ok());
        drop(receiver);
        assert!(
            resumed.load(Ordering::SeqCst),
            "it finds the connection gone"
        );
        assert!(!budget.over() && roomy.load(Ordering::SeqCst));
        assert_eq!(sender.push(&mut body(1)), Err(Disconnected));
        assert_eq!(budget.held(), 0);
    }
}
