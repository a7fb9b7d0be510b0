//! `wsgi.errors`: what an application writes there goes to the log, one
//! line per event, tagged with the request it came from.

use bytes::Bytes;
use pyo3::prelude::*;
use pyo3::types::PyIterator;

/// The request a log line belongs to.
#[derive(Clone, Debug)]
pub struct RequestTag {
    pub id: u64,
    pub method: Bytes,
    pub path: Bytes,
}

impl std::fmt::Display for RequestTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "#{} {} {}",
            self.id,
            String::from_utf8_lossy(&self.method),
            String::from_utf8_lossy(&self.path)
        )
    }
}

/// The `wsgi.errors` stream.
#[pyclass(module = "rustgi")]
pub struct WsgiErrors {
    tag: RequestTag,
    partial: String,
}

impl WsgiErrors {
    pub fn new(tag: RequestTag) -> Self {
        WsgiErrors {
            tag,
            partial: String::new(),
        }
    }

    fn emit(&self, line: &str) {
        tracing::warn!(target: "wsgi.errors", request = %self.tag, "{line}");
    }
}

#[pymethods]
impl WsgiErrors {
    fn write(&mut self, text: &str) {
        self.partial.push_str(text);
        while let Some(end) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=end).collect();
            self.emit(line.trim_end_matches(['\n', '\r']));
        }
    }

    fn writelines(&mut self, lines: &Bound<'_, PyAny>) -> PyResult<()> {
        for line in PyIterator::from_object(lines)? {
            self.write(line?.extract::<&str>()?);
        }
        Ok(())
    }

    fn flush(&mut self) {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.emit(&line);
        }
    }
}

impl Drop for WsgiErrors {
    fn drop(&mut self) {
        self.flush();
    }
}
