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
        self.held.push_str(text);
        if let Some(end) = self.held.rfind('\n') {
            self.lines = end + 1;
        }
        if self.held.len() >= ENTRY_CAP {
            // Cut at the last line's end, or, for one huge line, whole.
            let all = self.lines == 0;
            self.log_held(all);
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
