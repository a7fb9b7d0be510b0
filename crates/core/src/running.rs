//! What each Python thread is running, and since when: for `--timeout`,
//! a request that runs too long is answered (504) without its thread, and
//! the thread's Python stack is logged and interrupted.
//!
//! The interruption (a TimeoutError) is for that request only. It is raised
//! with the GIL held and only while the request still holds its thread,
//! and a request that timed out clears any interruption still pending as it
//! ends: a thread that has moved on to another request never gets it.
//!
//! Each thread has a slot of its own: a request's begin and end lock only
//! that slot, and the request's number counts that thread's requests, so
//! threads share nothing per request. The timer's scan (`expire`), which
//! is rare, locks the slots one at a time; a request is known by its slot
//! and its number.

use crate::responder::{Responder, TimeoutAnswer};
use crate::tag::RequestTag;
use pyo3::prelude::*;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Entry {
    /// Tells this request from the next one on the same thread.
    request: u64,
    started: Instant,
    tag: RequestTag,
    /// The thread's `threading.get_ident()`.
    thread: u64,
    responder: Arc<Responder>,
    expired: bool,
}

#[derive(Default)]
struct SlotState {
    /// The request the thread runs, if any.
    entry: Option<Entry>,
    /// The next request's [`Entry::request`] on this thread.
    next_request: u64,
}

/// One thread's slot, alone on its cache lines (128 bytes: two lines, as
/// the adjacent-line prefetcher pulls them in pairs): a request's begin and
/// end write only their own thread's slot, so threads that run requests at
/// the same time neither wait for each other nor pass a line back and
/// forth. Only the timer's rare scan reads them all.
#[repr(align(128))]
#[derive(Default)]
struct Slot(Mutex<SlotState>);

/// One slot per Python thread.
#[derive(Default)]
pub(crate) struct Running {
    slots: Vec<Slot>,
}

impl Running {
    pub(crate) fn new(threads: usize) -> Self {
        Running {
            slots: (0..threads).map(|_| Slot::default()).collect(),
        }
    }

    pub(crate) fn begin(
        &self,
        slot: usize,
        thread: u64,
        tag: RequestTag,
        responder: Arc<Responder>,
        ran: Duration,
    ) -> Instant {
        let now = Instant::now();
        let started = now.checked_sub(ran).unwrap_or(now);
        let mut state = self.slots[slot].0.lock().unwrap();
        let request = state.next_request;
        state.next_request += 1;
        state.entry = Some(Entry {
            request,
            started,
            tag,
            thread,
            responder,
            expired: false,
        });
        started
    }

    /// Frees the slot; true if its request had timed out.
    pub(crate) fn end(&self, slot: usize) -> bool {
        let entry = self.slots[slot].0.lock().unwrap().entry.take();
        entry.is_some_and(|e| e.expired)
    }

    /// Whether `request` still holds the thread of `slot`.
    fn is_running(&self, slot: usize, request: u64) -> bool {
        self.slots[slot]
            .0
            .lock()
            .unwrap()
            .entry
            .as_ref()
            .is_some_and(|e| e.request == request)
    }

    /// Requests that timed out and still hold their thread.
    pub(crate) fn stuck(&self) -> usize {
        self.slots
            .iter()
            .filter(|slot| {
                let state = slot.0.lock().unwrap();
                state.entry.as_ref().is_some_and(|e| e.expired)
            })
            .count()
    }

    /// Answers every request running longer than `limit` (504, or a cut
    /// connection once its head is out), once each. Needs no GIL. Each slot
    /// is locked alone, and not while its request is answered: a thread is
    /// never kept from beginning or ending a request for longer than its
    /// own slot's check.
    pub(crate) fn expire(self: &Arc<Self>, limit: Duration) -> Vec<Overdue> {
        let mut overdue = Vec::new();
        for (slot, state) in self.slots.iter().enumerate() {
            let found = {
                let mut state = state.0.lock().unwrap();
                state
                    .entry
                    .as_mut()
                    .filter(|e| !e.expired && e.started.elapsed() > limit)
                    .map(|e| {
                        e.expired = true;
                        (
                            e.request,
                            e.tag.clone(),
                            e.started.elapsed(),
                            e.thread,
                            e.responder.clone(),
                        )
                    })
            };
            let Some((request, tag, elapsed, thread, responder)) = found else {
                continue;
            };
            overdue.push(Overdue {
                request: tag.to_string(),
                elapsed,
                answer: responder.time_out(),
                thread,
                running: self.clone(),
                slot,
                sequence: request,
            });
        }
        overdue
    }
}

/// One Python thread's place in [`Running`].
pub(crate) struct ThreadSlot {
    pub(crate) running: Arc<Running>,
    pub(crate) index: usize,
    /// `threading.get_ident()` of the thread.
    pub(crate) thread: u64,
}

impl ThreadSlot {
    /// Begins (or, after `ran` on threads before, resumes) a request:
    /// `--timeout` counts the time it runs on threads. Returns when it
    /// began, as `--timeout` sees it (`ran` before now).
    pub(crate) fn begin(
        &self,
        tag: RequestTag,
        responder: Arc<Responder>,
        ran: Duration,
    ) -> Instant {
        self.running
            .begin(self.index, self.thread, tag, responder, ran)
    }

    /// Ends the request; a TimeoutError raised for it and not yet seen by
    /// its code (the thread was in Rust or C since) is dropped, or it would
    /// meet the thread's next request. The GIL (`_py`) keeps
    /// [`Overdue::stack_and_interrupt`] from raising between the two.
    /// Returns whether it had timed out.
    pub(crate) fn end(&self, _py: Python<'_>) -> bool {
        rustgi_observe::board::thread_end(self.index);
        let expired = self.running.end(self.index);
        if expired {
            // SAFETY: the GIL is held; a NULL exception clears what is
            // pending for the thread (this one), as the C API documents.
            unsafe {
                pyo3::ffi::PyThreadState_SetAsyncExc(
                    self.thread as std::ffi::c_long,
                    std::ptr::null_mut(),
                );
            }
        }
        expired
    }
}

/// A request that ran past `--timeout`.
pub struct Overdue {
    /// `#id METHOD path`, as in the log.
    pub request: String,
    pub elapsed: Duration,
    pub answer: TimeoutAnswer,
    thread: u64,
    running: Arc<Running>,
    slot: usize,
    /// The request's [`Entry::request`].
    sequence: u64,
}

impl Overdue {
    /// The Python stack of the request's thread, and an exception
    /// (TimeoutError) raised in it at its next bytecode: code stuck in a C
    /// call (a sleep, a socket read) sees it only when that call returns.
    /// Neither if the request has ended by then: the thread may be serving
    /// another one. Takes the GIL: call it from a thread that nothing else
    /// waits on.
    pub fn stack_and_interrupt(&self) -> String {
        Python::attach(|py| {
            let stack =
                thread_stack(py, self.thread).unwrap_or_else(|e| format!("(no stack: {e})"));
            // From here to the raise no Python code runs, so this thread
            // keeps the GIL; the request's thread begins and ends requests
            // only with the GIL: the request found here is the one
            // interrupted. (The stack, taken with Python code, may be the
            // next request's when this one has ended: it is not shown.)
            if !self.running.is_running(self.slot, self.sequence) {
                return "(none: the request ended before its thread could be interrupted)".into();
            }
            // SAFETY: the GIL is held; the exception type is a valid
            // borrowed reference to a built-in that lives for ever.
            unsafe {
                pyo3::ffi::PyThreadState_SetAsyncExc(
                    self.thread as std::ffi::c_long,
                    pyo3::ffi::PyExc_TimeoutError,
                );
            }
            stack
        })
    }
}

fn thread_stack(py: Python<'_>, thread: u64) -> PyResult<String> {
    let frames = py.import("sys")?.call_method0("_current_frames")?;
    let Some(frame) = frames.get_item(thread).ok() else {
        return Ok("(the thread has finished)".into());
    };
    let lines: Vec<String> = py
        .import("traceback")?
        .call_method1("format_stack", (frame,))?
        .extract()?;
    Ok(lines.concat().trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::response::{ResponseTarget, response_channel};
    use bytes::Bytes;
    use pyo3::exceptions::PyTimeoutError;

    /// Python code that sees a pending interruption (a loop checks for one
    /// at each turn).
    const SOME_CODE: &std::ffi::CStr = c"for _ in range(3): pass";

    fn tag(id: u64) -> RequestTag {
        RequestTag {
            id,
            method: Bytes::from_static(b"GET"),
            path: Bytes::from_static(b"/"),
        }
    }

    fn responder() -> Arc<Responder> {
        let (sender, _gone) = response_channel(1024);
        Arc::new(Responder::new(
            ResponseTarget::Channel(sender),
            tag(0),
            Arc::new(crate::response::Budget::new(usize::MAX)),
        ))
    }

    /// Runs `test` with Python attached and this thread's slot, in a pool
    /// of one thread, where request 1 has begun.
    fn on_this_thread(test: impl FnOnce(Python<'_>, &ThreadSlot)) {
        crate::test_python::start();
        Python::attach(|py| {
            let ident = py.import("threading").unwrap().call_method0("get_ident");
            let slot = ThreadSlot {
                running: Arc::new(Running::new(1)),
                index: 0,
                thread: ident.unwrap().extract().unwrap(),
            };
            slot.begin(tag(1), responder(), Duration::ZERO);
            test(py, &slot);
        });
    }

    fn expire_now(running: &Arc<Running>) -> Overdue {
        std::thread::sleep(Duration::from_millis(1));
        let mut overdue = running.expire(Duration::ZERO);
        assert_eq!(overdue.len(), 1);
        overdue.remove(0)
    }

    #[test]
    fn a_request_is_told_from_the_next_on_its_thread() {
        let running = Arc::new(Running::new(2));
        running.begin(1, 7, tag(1), responder(), Duration::ZERO);
        let overdue = expire_now(&running);
        assert!(running.is_running(overdue.slot, overdue.sequence));
        assert!(running.end(1), "it had timed out");
        running.begin(1, 7, tag(1), responder(), Duration::ZERO);
        assert!(!running.is_running(overdue.slot, overdue.sequence));
        assert!(!running.end(1), "the next one has not timed out");
    }

    #[test]
    fn each_slot_is_expired_once_and_alone() {
        let running = Arc::new(Running::new(3));
        running.begin(0, 7, tag(1), responder(), Duration::ZERO);
        running.begin(2, 9, tag(2), responder(), Duration::ZERO);
        let mut overdue = running.expire(Duration::ZERO);
        overdue.sort_by_key(|o| o.slot);
        let slots: Vec<_> = overdue.iter().map(|o| (o.slot, o.thread)).collect();
        assert_eq!(slots, [(0, 7), (2, 9)]);
        assert!(running.expire(Duration::ZERO).is_empty(), "each once");
        assert_eq!(running.stuck(), 2);
        // A request that begins later on a free slot is its own.
        running.begin(1, 8, tag(3), responder(), Duration::ZERO);
        assert_eq!(running.expire(Duration::ZERO).len(), 1);
        assert!(running.end(0));
        assert_eq!(running.stuck(), 2, "slots 1 and 2");
        // Both slots' first requests have the same number: the slot tells
        // them apart.
        assert_eq!(overdue[0].sequence, overdue[1].sequence);
        running.begin(0, 7, tag(4), responder(), Duration::ZERO);
        assert!(!running.is_running(overdue[0].slot, overdue[0].sequence));
        assert!(running.is_running(overdue[1].slot, overdue[1].sequence));
    }

    #[test]
    fn slots_do_not_share_cache_lines() {
        let running = Running::new(2);
        let [a, b] = [&running.slots[0], &running.slots[1]].map(|s| s as *const Slot as usize);
        assert!(b - a >= 128 && a % 128 == 0, "{a:#x} {b:#x}");
    }

    #[test]
    fn a_request_still_running_is_interrupted() {
        on_this_thread(|py, slot| {
            let stack = expire_now(&slot.running).stack_and_interrupt();
            assert!(!stack.contains("ended"), "{stack}");
            let error = py.run(SOME_CODE, None, None).unwrap_err();
            assert!(error.is_instance_of::<PyTimeoutError>(py), "{error}");
            slot.end(py);
        });
    }

    #[test]
    fn a_thread_that_moved_on_is_not_interrupted() {
        on_this_thread(|py, slot| {
            let overdue = expire_now(&slot.running);
            slot.end(py);
            slot.begin(tag(2), responder(), Duration::ZERO);
            let stack = overdue.stack_and_interrupt();
            assert!(stack.contains("ended"), "{stack}");
            py.run(SOME_CODE, None, None).expect("no TimeoutError");
        });
    }

    #[test]
    fn an_interruption_unseen_when_its_request_ends_is_dropped() {
        on_this_thread(|py, slot| {
            expire_now(&slot.running).stack_and_interrupt();
            slot.end(py);
            slot.begin(tag(2), responder(), Duration::ZERO);
            py.run(SOME_CODE, None, None).expect("no TimeoutError");
        });
    }
}
