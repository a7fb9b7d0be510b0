//! The response side of one request: the head held back until the first
//! block, the application's Content-Length, the events pushed to a channel
//! or written to the connection by the Python thread (the Python lane),
//! and our own 500 and 504 responses.

use crate::response::{
    Budget, Disconnected, LaneWriter, ResponseEvent, ResponseSender, ResponseTarget, Resume,
};
use crate::tag::RequestTag;
use bytes::Bytes;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::PyBytes;
use rustgi_model::{COALESCE_LIMIT, ResponseHead};
use rustgi_observe::Ended;
use rustgi_observe::access::Verdict;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Why a response stopped early.
pub(crate) enum Stop {
    App(PyErr),
    Gone,
}

impl From<PyErr> for Stop {
    fn from(e: PyErr) -> Self {
        Stop::App(e)
    }
}

impl From<Disconnected> for Stop {
    fn from(_: Disconnected) -> Self {
        Stop::Gone
    }
}

#[derive(Default)]
struct HeadState {
    /// Set by start_response, taken when the head goes out.
    pending: Option<ResponseHead>,
    sent: bool,
    /// The application's Content-Length: body bytes past it are not sent.
    content_length: Option<u64>,
    body_sent: u64,
    /// The response has a body of its Content-Length (not so for HEAD).
    body_expected: bool,
    /// `End` went out (with the block that reached the Content-Length).
    ended: bool,
}

/// How far `start_response` has gone.
pub(crate) enum HeadProgress {
    None,
    /// Called; the head waits for the first block.
    Pending,
    Sent,
}

/// The response side of one request, shared by `start_response`, `write()`
/// and the iteration.
pub(crate) struct Responder {
    target: Mutex<Target>,
    state: Mutex<HeadState>,
    /// The request, for the log, and its method: a HEAD response declares
    /// a Content-Length without a body.
    tag: RequestTag,
    budget: Arc<Budget>,
    /// How the request ended, for the access log.
    verdict: Option<Arc<Verdict>>,
    /// `--slow-request-log` logged it already (across parks and resumes).
    slow_logged: AtomicBool,
}

enum Target {
    /// The I/O lane's channel, or the channel a Python-lane connection
    /// was handed off with once it was full.
    Channel(ResponseSender),
    /// A Python-lane connection the thread writes itself, until it is
    /// full.
    Writer(Box<dyn LaneWriter>),
    /// The request is over (an application that kept `start_response` must
    /// not keep the connection open), or the connection is gone.
    Gone,
}

/// Whether the response may take more now.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Room {
    Yes,
    /// The connection has all it may hold for now: the iteration parks.
    Full,
}

impl Responder {
    pub(crate) fn new(target: ResponseTarget, tag: RequestTag, budget: Arc<Budget>) -> Self {
        let target = match target {
            ResponseTarget::Channel(sender) => {
                sender.count_in(&budget);
                Target::Channel(sender)
            }
            ResponseTarget::PythonLane(writer) => Target::Writer(writer),
        };
        Responder {
            target: Mutex::new(target),
            state: Mutex::new(HeadState::default()),
            tag,
            budget,
            verdict: None,
            slow_logged: AtomicBool::new(false),
        }
    }

    pub(crate) fn with_verdict(mut self, verdict: Option<Arc<Verdict>>) -> Self {
        self.verdict = verdict;
        self
    }

    /// Tells the access log how the request ended (the first word stands).
    pub(crate) fn ended(&self, ended: Ended) {
        if let Some(verdict) = &self.verdict {
            verdict.set(ended);
        }
    }

    /// True the first time only: `--slow-request-log` logs a request once.
    pub(crate) fn first_slow(&self) -> bool {
        !self.slow_logged.swap(true, Ordering::Relaxed)
    }

    /// Passes a `wsgi.errors` line on to the front server.
    pub(crate) fn send_stderr(&self, _py: Python<'_>, line: Bytes) {
        // In order with the body, past the channel's bound: a log line
        // never makes the application wait. The target is busy only for a
        // moment (a write that does not block), but that moment may run
        // Python code on this very thread (a block's finaliser that logs):
        // then the line is in our log only.
        let Ok(mut target) = self.target.try_lock() else {
            return;
        };
        let _gone_is_fine = self.push_to(&mut target, vec![ResponseEvent::Stderr(line)], None);
    }

    /// Sends `events`, never waiting: the connection takes what it can, and
    /// a Python-lane connection that is full goes to the I/O loop with the
    /// rest. `referenced`: the application's block (whole) that a body
    /// event carries by reference, for what the hand-off counts.
    fn push(
        &self,
        _py: Python<'_>,
        events: Vec<ResponseEvent>,
        referenced: Option<Bytes>,
    ) -> Result<Room, Stop> {
        self.push_to(&mut self.target.lock().unwrap(), events, referenced)
    }

    fn push_to(
        &self,
        target: &mut Target,
        mut events: Vec<ResponseEvent>,
        referenced: Option<Bytes>,
    ) -> Result<Room, Stop> {
        let full = match &mut *target {
            Target::Channel(sender) => sender.push(&mut events),
            Target::Writer(writer) => match writer.send(&mut events) {
                Ok(true) => Ok(false),
                Ok(false) => {
                    let Target::Writer(writer) = std::mem::replace(&mut *target, Target::Gone)
                    else {
                        unreachable!("matched above");
                    };
                    writer.hand_off(&self.budget, referenced).map(|sender| {
                        *target = Target::Channel(sender);
                        true
                    })
                }
                Err(gone) => Err(gone),
            },
            Target::Gone => Err(Disconnected),
        };
        match full {
            Ok(full) => Ok(if full { Room::Full } else { Room::Yes }),
            Err(gone) => {
                *target = Target::Gone;
                Err(gone.into())
            }
        }
    }

    /// For a producer that cannot park (`write()`, whose caller is the
    /// application itself): waits, without the GIL, until the connection
    /// has taken what is queued.
    fn wait_for_room(&self, py: Python<'_>) {
        let room = match &*self.target.lock().unwrap() {
            Target::Channel(sender) => sender.room(),
            _ => return,
        };
        py.detach(|| room.wait_for_room());
    }

    /// Leaves the rest of the response to `resume`, once the connection
    /// has written what it holds; gives it back when the iteration should
    /// go on now.
    pub(crate) fn park(&self, resume: Resume) -> Result<(), Resume> {
        match &*self.target.lock().unwrap() {
            Target::Channel(sender) => sender.park(resume),
            _ => Err(resume),
        }
    }

    /// `--timeout`: ends the response now, without the application: a 504
    /// while the head is still ours, a cut connection otherwise. What the
    /// application sends afterwards is dropped. Needs no GIL.
    pub(crate) fn time_out(&self) -> TimeoutAnswer {
        let (answer, mut events) = {
            let mut state = self.state.lock().unwrap();
            if state.ended {
                return TimeoutAnswer::Complete;
            }
            state.ended = true;
            self.ended(Ended::Timeout);
            if state.sent {
                (TimeoutAnswer::Cut, vec![ResponseEvent::Abort])
            } else {
                state.sent = true;
                (
                    TimeoutAnswer::GatewayTimeout,
                    fixed_response("504 Gateway Timeout", b"Gateway Timeout\n"),
                )
            }
        };
        let mut target = self.target.lock().unwrap();
        match std::mem::replace(&mut *target, Target::Gone) {
            Target::Channel(sender) => {
                sender.send_now(events);
                *target = Target::Channel(sender);
            }
            // Written now as far as the socket takes it; the rest is cut.
            Target::Writer(mut writer) => {
                let _sent_or_cut = writer.send(&mut events);
            }
            Target::Gone => {}
        }
        answer
    }

    /// The response is over: a Python-lane connection is closed, a
    /// channel ends.
    pub(crate) fn release(&self) {
        let target = std::mem::replace(&mut *self.target.lock().unwrap(), Target::Gone);
        drop(target);
    }

    /// Sends body bytes (and `End` when `end`), preceded by the head the
    /// first time. Returns whether the Content-Length is now reached: then
    /// `End` goes with this block, so that the front server never has the
    /// whole body without the end of the response (nginx may close a
    /// FastCGI connection as soon as it has Content-Length bytes, and the
    /// end record would meet a closed socket).
    ///
    /// `block` is the application's (`None` to send the head or the end
    /// alone); what lies past the Content-Length is not sent. A body that
    /// ends short of it is logged and ends with `Abort`, not `End`: the
    /// connection is cut, so that the front server sees a truncated
    /// response instead of waiting for bytes that will never come (nginx
    /// kept its client waiting after a FastCGI END_REQUEST).
    ///
    /// Never waits: [`Room::Full`] says the iteration is to park.
    pub(crate) fn send(
        &self,
        py: Python<'_>,
        block: Option<&Bound<'_, PyBytes>>,
        end: bool,
    ) -> Result<(bool, Room), Stop> {
        let mut events = Vec::with_capacity(3);
        let mut referenced = None;
        let complete = {
            let mut state = self.state.lock().unwrap();
            if state.ended {
                return Ok((true, Room::Yes));
            }
            if !state.sent {
                let head = state.pending.take().ok_or_else(|| {
                    PyRuntimeError::new_err(
                        "the application sent a body before calling start_response",
                    )
                })?;
                state.sent = true;
                state.content_length = head.content_length();
                state.body_expected = self.body_expected(&head);
                events.push(ResponseEvent::Head(head));
            }
            let mut len = block.map_or(0, |block| block.as_bytes().len());
            if let Some(limit) = state.content_length {
                let room = limit.saturating_sub(state.body_sent);
                len = len.min(usize::try_from(room).unwrap_or(usize::MAX));
            }
            state.body_sent += len as u64;
            if let Some(block) = block
                && len > 0
            {
                let (body, whole) = self.body(block, len);
                referenced = whole;
                events.push(ResponseEvent::Body(body));
            }
            let complete = state.content_length.is_some_and(|l| state.body_sent >= l);
            if end || complete {
                events.push(if complete {
                    ResponseEvent::End
                } else {
                    self.end_of_body(&state)
                });
                state.ended = true;
            }
            complete
        };
        let room = if events.is_empty() {
            Room::Yes
        } else {
            self.push(py, events, referenced)?
        };
        Ok((complete, room))
    }

    /// As [`send`](Self::send), waiting (without the GIL) while the
    /// connection is full: for `write()`, which cannot park.
    pub(crate) fn send_waiting(
        &self,
        py: Python<'_>,
        block: &Bound<'_, PyBytes>,
    ) -> Result<(), Stop> {
        if let (_, Room::Full) = self.send(py, Some(block), false)? {
            self.wait_for_room(py);
        }
        Ok(())
    }

    /// Whether a response carries a body of its Content-Length: not one to
    /// HEAD, nor a 1xx, 204 or 304 (RFC 9110 §8.6).
    fn body_expected(&self, head: &ResponseHead) -> bool {
        let code = head.status_code();
        !(self.tag.method.as_ref() == b"HEAD" || code < 200 || code == 204 || code == 304)
    }

    /// How a body that the application ended goes out: whole, or cut
    /// when it is short of its Content-Length.
    fn end_of_body(&self, state: &HeadState) -> ResponseEvent {
        match state.content_length {
            Some(declared) if state.body_expected && state.body_sent < declared => {
                tracing::warn!(
                    request = %self.tag,
                    "the application's body ended after {} of its Content-Length {declared} bytes; \
                     closing the connection so that the front server sees the response truncated",
                    state.body_sent
                );
                ResponseEvent::Abort
            }
            _ => ResponseEvent::End,
        }
    }

    /// The first `len` bytes of a body block, as the target takes them.
    ///
    /// A Python-lane connection is written from the Python thread: it gets
    /// the application's bytes themselves, without a copy (an 8 MiB response
    /// would otherwise be copied 8 MiB at a time). The `Bytes` owns a
    /// reference to the bytes object, so whatever the writer does with it
    /// (keep a clone, drop it later) the memory stays valid.
    ///
    /// The channel's I/O thread gets a copy: a Python object dropped there
    /// only queues its decref until a Python thread next re-attaches, which
    /// a busy thread going from request to request may not do for long, so
    /// the application's blocks would outlive the channel's byte bound
    /// (DESIGN.md, "Connections").
    ///
    /// A small block is copied for either: the encoders copy blocks up to
    /// `COALESCE_LIMIT` next to what precedes them anyway, and a copy costs
    /// less than the owner's allocation and reference.
    ///
    /// With a referenced block comes the whole object's (a `Bytes` of all
    /// of it): what a hand-off counts as that object's memory.
    fn body(&self, block: &Bound<'_, PyBytes>, len: usize) -> (Bytes, Option<Bytes>) {
        match &*self.target.lock().unwrap() {
            Target::Writer(_) if len > COALESCE_LIMIT => {
                let whole = Bytes::from_owner(PyBackedBytes::from(block.clone()));
                (whole.slice(..len), Some(whole))
            }
            _ => (Bytes::copy_from_slice(&block.as_bytes()[..len]), None),
        }
    }

    /// Where `start_response` stands.
    pub(crate) fn head_progress(&self) -> HeadProgress {
        let state = self.state.lock().unwrap();
        if state.sent {
            HeadProgress::Sent
        } else if state.pending.is_some() {
            HeadProgress::Pending
        } else {
            HeadProgress::None
        }
    }

    /// The head `start_response` set, sent with the first block.
    pub(crate) fn set_head(&self, head: ResponseHead) {
        self.state.lock().unwrap().pending = Some(head);
    }

    /// Ends a failed response: a 500 while the head is still ours,
    /// otherwise an abort (the connection is cut, never passed off as whole).
    pub(crate) fn fail(&self, py: Python<'_>) {
        let head_sent = {
            let state = self.state.lock().unwrap();
            if state.ended {
                // The response is whole (a close() that failed): keep it.
                return;
            }
            state.sent
        };
        let events = if head_sent {
            vec![ResponseEvent::Abort]
        } else {
            fixed_response("500 Internal Server Error", b"Internal Server Error\n")
        };
        let _gone_is_fine = self.push(py, events, None);
    }
}

/// A plain-text response of our own (500, 504), whole.
fn fixed_response(status: &'static str, body: &'static [u8]) -> Vec<ResponseEvent> {
    let (head, body) = ResponseHead::own_answer(status, body);
    vec![
        ResponseEvent::Head(head),
        ResponseEvent::Body(body),
        ResponseEvent::End,
    ]
}

/// What the client got when its request timed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeoutAnswer {
    /// 504 Gateway Timeout.
    GatewayTimeout,
    /// The head was already sent: the connection was cut.
    Cut,
    /// The response was already complete (the thread is stuck after it,
    /// in `close()` for instance).
    Complete,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::response::response_channel;
    use std::future::Future;

    /// A connection that keeps every body block it is given, as an encoder
    /// that queues blocks without copying them might.
    struct KeepingConnection(Arc<Mutex<Vec<Bytes>>>);

    impl LaneWriter for KeepingConnection {
        fn send(&mut self, events: &mut Vec<ResponseEvent>) -> Result<bool, Disconnected> {
            for event in events.drain(..) {
                if let ResponseEvent::Body(block) = event {
                    self.0.lock().unwrap().push(block);
                }
            }
            Ok(true)
        }

        fn hand_off(
            self: Box<Self>,
            _budget: &Arc<Budget>,
            _referenced: Option<Bytes>,
        ) -> Result<ResponseSender, Disconnected> {
            unreachable!("it takes everything")
        }
    }

    fn references(object: &Bound<'_, PyBytes>) -> isize {
        let sys = object.py().import("sys").unwrap();
        sys.call_method1("getrefcount", (object,))
            .unwrap()
            .extract()
            .unwrap()
    }

    fn started(target: ResponseTarget, content_length: &'static [u8]) -> Responder {
        started_for(b"GET", target, content_length)
    }

    fn started_for(
        method: &'static [u8],
        target: ResponseTarget,
        content_length: &'static [u8],
    ) -> Responder {
        let tag = RequestTag {
            request_id: Bytes::from_static(b"t-1"),
            method: Bytes::from_static(method),
            path: Bytes::from_static(b"/"),
        };
        let responder = Responder::new(target, tag, Arc::new(Budget::new(usize::MAX)));
        let head = ResponseHead::new(
            Bytes::from_static(b"200 OK"),
            vec![(
                Bytes::from_static(b"Content-Length"),
                Bytes::from_static(content_length),
            )],
        )
        .unwrap();
        responder.state.lock().unwrap().pending = Some(head);
        responder
    }

    #[test]
    fn a_python_lane_block_is_the_applications_own_and_keeps_it_alive() {
        crate::test_python::start();
        let kept = Arc::new(Mutex::new(Vec::new()));
        let target = ResponseTarget::PythonLane(Box::new(KeepingConnection(kept.clone())));
        // Over COALESCE_LIMIT (16 KiB): a block the encoders reference.
        let large = 20_000;
        assert!(large > COALESCE_LIMIT);
        let responder = started(target, b"20000");
        Python::attach(|py| {
            let block = PyBytes::new(py, &vec![b'x'; large + 5]);
            let before = references(&block);
            let sent = responder.send(py, Some(&block), false);
            assert!(
                matches!(sent, Ok((true, Room::Yes))),
                "the Content-Length is reached"
            );
            assert_eq!(
                kept.lock().unwrap()[0].len(),
                large,
                "cut at the Content-Length"
            );
            let kept_at = kept.lock().unwrap()[0].as_ptr();
            assert_eq!(kept_at, block.as_bytes().as_ptr(), "not a copy");
            assert_eq!(references(&block), before + 1, "held by the block");
            kept.lock().unwrap().clear();
            assert_eq!(references(&block), before, "released with it");
        });
    }

    #[test]
    fn a_small_python_lane_block_is_copied() {
        crate::test_python::start();
        let kept = Arc::new(Mutex::new(Vec::new()));
        let target = ResponseTarget::PythonLane(Box::new(KeepingConnection(kept.clone())));
        let responder = started(target, b"5");
        Python::attach(|py| {
            let block = PyBytes::new(py, b"hello, world");
            let before = references(&block);
            let sent = responder.send(py, Some(&block), false);
            assert!(
                matches!(sent, Ok((true, Room::Yes))),
                "the Content-Length is reached"
            );
            assert_eq!(kept.lock().unwrap()[..], [Bytes::from_static(b"hello")]);
            assert_eq!(references(&block), before, "a copy holds no reference");
        });
    }

    #[test]
    fn a_channel_block_is_a_copy_cut_at_the_content_length() {
        crate::test_python::start();
        let (sender, receiver) = response_channel(1 << 20);
        let responder = started(ResponseTarget::Channel(sender), b"5");
        Python::attach(|py| {
            let block = PyBytes::new(py, b"hello, world");
            let before = references(&block);
            let sent = responder.send(py, Some(&block), false);
            assert!(
                matches!(sent, Ok((true, Room::Yes))),
                "the Content-Length is reached"
            );
            assert_eq!(references(&block), before, "not held");
        });
        let mut events = Vec::new();
        {
            let received = std::pin::pin!(receiver.recv(&mut events));
            let mut context = std::task::Context::from_waker(std::task::Waker::noop());
            assert!(received.poll(&mut context).is_ready());
        }
        let bodies: Vec<_> = events
            .iter()
            .filter_map(|event| match event {
                ResponseEvent::Body(block) => Some(block.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(bodies, [Bytes::from_static(b"hello")]);
        assert!(matches!(events.last(), Some(ResponseEvent::End)));
    }

    #[test]
    fn a_body_short_of_its_content_length_ends_cut_except_for_head() {
        crate::test_python::start();
        for (method, last) in [(&b"GET"[..], "Abort"), (b"HEAD", "End")] {
            let (sender, receiver) = response_channel(1 << 20);
            let responder = started_for(method, ResponseTarget::Channel(sender), b"100");
            Python::attach(|py| {
                let block = PyBytes::new(py, b"0123456789");
                assert!(matches!(
                    responder.send(py, Some(&block), true),
                    Ok((false, _))
                ));
            });
            let mut events = Vec::new();
            {
                let received = std::pin::pin!(receiver.recv(&mut events));
                let mut context = std::task::Context::from_waker(std::task::Waker::noop());
                assert!(received.poll(&mut context).is_ready());
            }
            let ended = match events.last() {
                Some(ResponseEvent::Abort) => "Abort",
                Some(ResponseEvent::End) => "End",
                _ => "neither",
            };
            assert_eq!(ended, last, "{}", String::from_utf8_lossy(method));
        }
    }
}
