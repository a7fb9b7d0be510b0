//! What each Python thread is running, and since when: for `--timeout`,
//! a request that runs too long is answered (504) without its thread, and
//! the thread's Python stack is logged and interrupted.

use crate::responder::{Responder, TimeoutAnswer};
use crate::tag::RequestTag;
use pyo3::prelude::*;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Entry {
    started: Instant,
    tag: RequestTag,
    /// The thread's `threading.get_ident()`.
    thread: u64,
    responder: Arc<Responder>,
    expired: bool,
}

/// One slot per Python thread.
#[derive(Default)]
pub(crate) struct Running {
    slots: Mutex<Vec<Option<Entry>>>,
}

impl Running {
    pub(crate) fn new(threads: usize) -> Self {
        Running {
            slots: Mutex::new((0..threads).map(|_| None).collect()),
        }
    }

    pub(crate) fn begin(
        &self,
        slot: usize,
        thread: u64,
        tag: RequestTag,
        responder: Arc<Responder>,
    ) {
        self.slots.lock().unwrap()[slot] = Some(Entry {
            started: Instant::now(),
            tag,
            thread,
            responder,
            expired: false,
        });
    }

    pub(crate) fn end(&self, slot: usize) {
        self.slots.lock().unwrap()[slot] = None;
    }

    /// Requests that timed out and still hold their thread.
    pub(crate) fn stuck(&self) -> usize {
        self.slots
            .lock()
            .unwrap()
            .iter()
            .flatten()
            .filter(|e| e.expired)
            .count()
    }

    /// Answers every request running longer than `limit` (504, or a cut
    /// connection once its head is out), once each. Needs no GIL.
    pub(crate) fn expire(&self, limit: Duration) -> Vec<Overdue> {
        let overdue: Vec<_> = self
            .slots
            .lock()
            .unwrap()
            .iter_mut()
            .flatten()
            .filter(|e| !e.expired && e.started.elapsed() > limit)
            .map(|e| {
                e.expired = true;
                (
                    e.tag.clone(),
                    e.started.elapsed(),
                    e.thread,
                    e.responder.clone(),
                )
            })
            .collect();
        overdue
            .into_iter()
            .map(|(tag, elapsed, thread, responder)| Overdue {
                request: tag.to_string(),
                elapsed,
                answer: responder.time_out(),
                thread,
            })
            .collect()
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
    pub(crate) fn begin(&self, tag: RequestTag, responder: Arc<Responder>) {
        self.running.begin(self.index, self.thread, tag, responder);
    }

    pub(crate) fn end(&self) {
        self.running.end(self.index);
    }
}

/// A request that ran past `--timeout`.
pub struct Overdue {
    /// `#id METHOD path`, as in the log.
    pub request: String,
    pub elapsed: Duration,
    pub answer: TimeoutAnswer,
    thread: u64,
}

impl Overdue {
    /// The Python stack of the request's thread, and an exception
    /// (TimeoutError) raised in it at its next bytecode: code stuck in a C
    /// call (a sleep, a socket read) sees it only when that call returns.
    /// Takes the GIL: call it from a thread that nothing else waits on.
    pub fn stack_and_interrupt(&self) -> String {
        Python::attach(|py| {
            let stack =
                thread_stack(py, self.thread).unwrap_or_else(|e| format!("(no stack: {e})"));
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
