//! `wsgi.input`: the request body as a file-like object that streams from
//! the connection. Reads wait for bytes with the GIL released; reading past
//! the body's end returns `b''` (hence `wsgi.input_terminated`).

use crate::body::{BodyReader, Chunk};
use bytes::Bytes;
use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

/// How much is taken from the body per step when a caller gives no size.
const STEP: usize = 64 * 1024;

/// Reads up to this size are allocated at once; larger ones grow with the
/// bytes that really arrive, so a CONTENT_LENGTH a client made up cannot
/// size an allocation.
const PREALLOCATE_LIMIT: usize = 4 << 20;

#[pyclass(module = "rustgi")]
pub struct WsgiInput {
    body: BodyReader,
    /// Bytes already taken from the body but not yet returned (readline).
    leftover: Bytes,
}

impl WsgiInput {
    pub fn new(body: BodyReader) -> Self {
        WsgiInput {
            body,
            leftover: Bytes::new(),
        }
    }

    /// Bytes left in a body of known length.
    fn remaining(&self) -> Option<u64> {
        self.body.unread().map(|u| u + self.leftover.len() as u64)
    }

    /// The next piece of at most `max` bytes; empty at the end of the body.
    fn next_piece(&mut self, py: Python<'_>, max: usize) -> PyResult<Bytes> {
        if !self.leftover.is_empty() {
            let n = max.min(self.leftover.len());
            return Ok(self.leftover.split_to(n));
        }
        loop {
            match self.body.try_read(max) {
                Chunk::Data(data) => return Ok(data),
                Chunk::End => return Ok(Bytes::new()),
                Chunk::Failed(e) => return Err(PyOSError::new_err(e.to_string())),
                Chunk::Pending => {
                    let body = &self.body;
                    py.detach(|| body.wait());
                }
            }
        }
    }

    /// Up to `n` bytes, fewer only at the end of the body; the buffer grows
    /// with the bytes that really arrive.
    fn read_growing<'py>(&mut self, py: Python<'py>, n: usize) -> PyResult<Bound<'py, PyBytes>> {
        let mut out = Vec::new();
        while out.len() < n {
            let piece = self.next_piece(py, (n - out.len()).min(STEP * 4))?;
            if piece.is_empty() {
                break;
            }
            out.extend_from_slice(&piece);
        }
        Ok(PyBytes::new(py, &out))
    }

    /// Exactly `n` bytes of a body known to hold them, written straight
    /// into the new bytes object.
    fn read_exact<'py>(&mut self, py: Python<'py>, n: usize) -> PyResult<Bound<'py, PyBytes>> {
        if n > PREALLOCATE_LIMIT {
            return self.read_growing(py, n);
        }
        let mut failure = None;
        let bytes = PyBytes::new_with(py, n, |buf| {
            let mut filled = 0;
            while filled < n {
                match self.next_piece(py, n - filled) {
                    Ok(piece) if piece.is_empty() => break,
                    Ok(piece) => {
                        buf[filled..filled + piece.len()].copy_from_slice(&piece);
                        filled += piece.len();
                    }
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            Ok(())
        })?;
        match failure {
            Some(e) => Err(e),
            None if bytes.len()? == n => Ok(bytes),
            // Unreachable while CONTENT_LENGTH bounds `n`; refuse rather
            // than hand out zero padding.
            None => Err(PyOSError::new_err(
                "request body ended before CONTENT_LENGTH",
            )),
        }
    }

    fn read_line(&mut self, py: Python<'_>, limit: usize) -> PyResult<Vec<u8>> {
        let mut line = Vec::new();
        while line.len() < limit {
            let piece = self.next_piece(py, STEP)?;
            if piece.is_empty() {
                break;
            }
            let room = limit - line.len();
            let end = match piece.iter().position(|&b| b == b'\n') {
                Some(i) if i < room => i + 1,
                _ => room.min(piece.len()),
            };
            line.extend_from_slice(&piece[..end]);
            self.leftover = piece.slice(end..);
            if line.last() == Some(&b'\n') {
                break;
            }
        }
        Ok(line)
    }
}

fn size_arg(size: Option<isize>) -> Option<usize> {
    size.and_then(|s| usize::try_from(s).ok())
}

#[pymethods]
impl WsgiInput {
    /// read(size=-1): `size` bytes, or the rest of the body.
    #[pyo3(signature = (size = None))]
    fn read<'py>(&mut self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        let size = size_arg(size);
        match self.remaining() {
            Some(rest) => {
                let rest = usize::try_from(rest).unwrap_or(usize::MAX);
                self.read_exact(py, size.map_or(rest, |s| s.min(rest)))
            }
            None => self.read_growing(py, size.unwrap_or(usize::MAX)),
        }
    }

    #[pyo3(signature = (size = None))]
    fn readline<'py>(
        &mut self,
        py: Python<'py>,
        size: Option<isize>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let line = self.read_line(py, size_arg(size).unwrap_or(usize::MAX))?;
        Ok(PyBytes::new(py, &line))
    }

    /// readlines(hint=-1): lines until the end, or until `hint` bytes.
    #[pyo3(signature = (hint = None))]
    fn readlines<'py>(
        &mut self,
        py: Python<'py>,
        hint: Option<isize>,
    ) -> PyResult<Bound<'py, PyList>> {
        let hint = size_arg(hint).filter(|&h| h > 0).unwrap_or(usize::MAX);
        let lines = PyList::empty(py);
        let mut total = 0;
        while total < hint {
            let line = self.read_line(py, usize::MAX)?;
            if line.is_empty() {
                break;
            }
            total += line.len();
            lines.append(PyBytes::new(py, &line))?;
        }
        Ok(lines)
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let line = self.read_line(py, usize::MAX)?;
        Ok((!line.is_empty()).then(|| PyBytes::new(py, &line)))
    }

    fn readable(&self) -> bool {
        true
    }
}
