//! `wsgi.errors`: what an application writes there goes to the log, one
//! line per event, tagged with the request it came from.

use crate::responder::Responder;
use crate::tag::RequestTag;
use bytes::Bytes;
use pyo3::prelude::*;
use pyo3::types::PyIterator;
use std::sync::Arc;

/// The `wsgi.errors` stream.
#[pyclass(module = "rustgi")]
pub struct WsgiErrors {
    tag: RequestTag,
    partial: String,
    /// Where lines also go when the front server takes them (FastCGI).
    peer: Option<Arc<Responder>>,
}

impl WsgiErrors {
    pub(crate) fn new(tag: RequestTag, peer: Option<Arc<Responder>>) -> Self {
        WsgiErrors {
            tag,
            partial: String::new(),
            peer,
        }
    }

    fn emit(&self, py: Option<Python<'_>>, line: &str) {
        tracing::warn!(target: "wsgi.errors", request = %self.tag, "{line}");
        if let (Some(py), Some(peer)) = (py, &self.peer) {
            peer.send_stderr(py, Bytes::from(format!("{line}\n")));
        }
    }
}

#[pymethods]
impl WsgiErrors {
    fn write(&mut self, py: Python<'_>, text: &str) {
        self.partial.push_str(text);
        while let Some(end) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=end).collect();
            self.emit(Some(py), line.trim_end_matches(['\n', '\r']));
        }
    }

    fn writelines(&mut self, lines: &Bound<'_, PyAny>) -> PyResult<()> {
        for line in PyIterator::from_object(lines)? {
            self.write(lines.py(), line?.extract::<&str>()?);
        }
        Ok(())
    }

    fn flush(&mut self, py: Python<'_>) {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.emit(Some(py), &line);
        }
    }
}

impl Drop for WsgiErrors {
    fn drop(&mut self) {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.emit(None, &line);
        }
    }
}
