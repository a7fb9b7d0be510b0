//! `wsgi.errors`: what an application writes there goes to the log, tagged
//! with the request it came from, one log entry per thing it wrote.
//!
//! A traceback or a logging record reaches the stream in many `write()`
//! calls: `traceback.print_exc(file=...)` writes each line on its own, a
//! `logging.StreamHandler` writes its record and then calls `flush()`. Each
//! line as an entry of its own would tag every frame of a traceback and
//! interleave them with other threads' lines; so complete lines are held
//! until the application flushes, the request ends, or [`ENTRY_CAP`] bytes
//! are held, and then logged as one entry (the log indents an entry's
//! lines after the first). The front server's copy (FCGI_STDERR) still
//! goes line by line, as it is written: it must leave before the response
//! ends.

use crate::responder::Responder;
use crate::tag::RequestTag;
use bytes::Bytes;
use pyo3::prelude::*;
use pyo3::types::PyIterator;
use std::sync::Arc;

/// Held text past which an entry is logged without waiting for a flush:
/// an application that writes much and never flushes still shows up, in
/// pieces of about this size (cut at a line's end where there is one).
pub(crate) const ENTRY_CAP: usize = 64 * 1024;

/// The `wsgi.errors` stream.
#[pyclass(module = "rustgi")]
pub struct WsgiErrors {
    tag: RequestTag,
    /// Complete lines not yet logged, then the incomplete one.
    held: String,
    /// Where `held[..lines]` ends: the complete lines in it.
    lines: usize,
    /// Lines the front server has not been sent yet (the incomplete one).
    peer_partial: String,
    /// Where lines also go when the front server takes them (FastCGI).
    peer: Option<Arc<Responder>>,
}

impl WsgiErrors {
    pub(crate) fn new(tag: RequestTag, peer: Option<Arc<Responder>>) -> Self {
        WsgiErrors {
            tag,
            held: String::new(),
            lines: 0,
            peer_partial: String::new(),
            peer,
        }
    }

    /// Logs what is held, the incomplete line too when `all`, as one entry.
    fn log_held(&mut self, all: bool) {
        let end = if all { self.held.len() } else { self.lines };
        if end == 0 {
            return;
        }
        let entry: String = self.held.drain(..end).collect();
        self.lines = 0;
        let entry = entry.strip_suffix('\n').unwrap_or(&entry);
        let entry = entry.strip_suffix('\r').unwrap_or(entry);
        tracing::warn!(target: "wsgi.errors", request = %self.tag, "{entry}");
    }

    /// Logs everything held: the request ended (or the stream went away).
    pub(crate) fn end(&mut self, py: Option<Python<'_>>) {
        self.log_held(true);
        if !self.peer_partial.is_empty() {
            let line = std::mem::take(&mut self.peer_partial) + "\n";
            if let (Some(py), Some(peer)) = (py, &self.peer) {
                peer.send_stderr(py, Bytes::from(line));
            }
        }
    }

    fn send_to_peer(&mut self, py: Python<'_>, text: &str) {
        let Some(peer) = &self.peer else { return };
        self.peer_partial.push_str(text);
        if let Some(end) = self.peer_partial.rfind('\n') {
            let lines: String = self.peer_partial.drain(..=end).collect();
            peer.send_stderr(py, Bytes::from(lines));
        }
    }
}

#[pymethods]
impl WsgiErrors {
    /// Returns the number of characters written, as a text stream does.
    fn write(&mut self, py: Python<'_>, text: &str) -> usize {
        self.send_to_peer(py, text);
        // An entry stays within the cap (unless one write is larger): cut
        // before what would pass it, at the last line's end, or whole when
        // all it holds is one long line.
        if !self.held.is_empty() && self.held.len() + text.len() > ENTRY_CAP {
            self.log_held(self.lines == 0);
        }
        let before = self.held.len();
        self.held.push_str(text);
        if let Some(end) = text.rfind('\n') {
            self.lines = before + end + 1;
        }
        if self.held.len() >= ENTRY_CAP {
            self.log_held(self.lines == 0);
        }
        text.chars().count()
    }

    fn writelines(&mut self, lines: &Bound<'_, PyAny>) -> PyResult<()> {
        for line in PyIterator::from_object(lines)? {
            self.write(lines.py(), line?.extract::<&str>()?);
        }
        Ok(())
    }

    /// Ends an entry: what was written since the last flush is logged as
    /// one (logging's StreamHandler flushes after each record).
    fn flush(&mut self, py: Python<'_>) {
        self.end(Some(py));
    }
}

impl Drop for WsgiErrors {
    fn drop(&mut self) {
        self.end(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_python::{logged, start};
    use pyo3::types::PyDict;

    fn tag() -> RequestTag {
        RequestTag {
            request_id: Bytes::from_static(b"7"),
            method: Bytes::from_static(b"GET"),
            path: Bytes::from_static(b"/x"),
        }
    }

    /// Runs `code` with `errors` bound to a fresh stream, then ends the
    /// request; returns the messages logged.
    fn run(code: &str) -> Vec<String> {
        start();
        logged(|| {
            Python::attach(|py| {
                let stream = Bound::new(py, WsgiErrors::new(tag(), None)).unwrap();
                let globals = PyDict::new(py);
                globals.set_item("errors", &stream).unwrap();
                let code = std::ffi::CString::new(code).unwrap();
                py.run(&code, Some(&globals), None).unwrap();
                stream.borrow_mut().end(Some(py));
            })
        })
        .into_iter()
        .map(|(target, message, request)| {
            assert_eq!(target, "wsgi.errors");
            assert_eq!(request.as_deref(), Some("#7 GET /x"));
            message
        })
        .collect()
    }

    #[test]
    fn a_printed_traceback_is_one_entry() {
        let logged = run("import traceback\n\
             def f(n):\n    if n == 0: 1/0\n    f(n - 1)\n\
             try:\n    f(3)\n\
             except ZeroDivisionError:\n    traceback.print_exc(file=errors)\n");
        assert_eq!(logged.len(), 1, "{logged:?}");
        assert!(logged[0].starts_with("Traceback (most recent call last):\n"));
        assert!(logged[0].ends_with("\nZeroDivisionError: division by zero"));
        assert_eq!(logged[0].matches("File ").count(), 5, "{}", logged[0]);
    }

    #[test]
    fn a_logging_record_is_one_entry_each() {
        let logged = run("import logging\n\
             log = logging.getLogger('errors-test')\n\
             log.propagate = False\n\
             log.addHandler(logging.StreamHandler(errors))\n\
             log.warning('one')\n\
             try:\n    1/0\n\
             except ZeroDivisionError:\n    log.exception('two')\n\
             print('held', file=errors)\n\
             errors.write('unfinished')\n");
        assert_eq!(logged.len(), 3, "{logged:?}");
        assert_eq!(logged[0], "one");
        assert!(logged[1].starts_with("two\nTraceback"), "{}", logged[1]);
        // What was not flushed is logged as the request ends.
        assert_eq!(logged[2], "held\nunfinished");
    }

    #[test]
    fn an_entry_never_grows_past_the_cap() {
        let logged = run("for i in range(200):\n    errors.write('x' * 1000 + '\\n')\n");
        assert!(logged.len() >= 3, "{}", logged.len());
        assert!(
            logged.iter().all(|e| e.len() <= ENTRY_CAP),
            "an entry past the cap"
        );
        let lines: usize = logged.iter().map(|e| e.lines().count()).sum();
        assert_eq!(lines, 200);
        // One line longer than the cap leaves whole, in one piece.
        let logged = run("errors.write('y' * 100000)\n");
        assert_eq!(logged.len(), 1);
        assert_eq!(logged[0].len(), 100000);
    }
}
