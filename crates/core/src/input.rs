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
    /// The application has the body from here on: the connection starts
    /// reading it ([`BodyReader::start`]).
    pub fn new(body: BodyReader) -> Self {
        body.start();
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
    /// When nothing is waiting, waits until `max` bytes are (or the end):
    /// pass 1 when any byte will do.
    fn next_piece(&mut self, py: Python<'_>, max: usize, wait_for: usize) -> PyResult<Bytes> {
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
                    py.detach(|| body.wait_for(wait_for));
                }
            }
        }
    }

    /// Up to `n` bytes, fewer only at the end of the body. The pieces are
    /// kept as they come (slices of what the connection received, no copy)
    /// and copied once, into the bytes object of their total size: memory
    /// follows the bytes that really arrive, never the size asked for.
    fn read_growing<'py>(&mut self, py: Python<'py>, n: usize) -> PyResult<Bound<'py, PyBytes>> {
        let mut pieces = Vec::new();
        let mut total = 0;
        while total < n {
            let step = (n - total).min(STEP * 4);
            let piece = self.next_piece(py, step, step)?;
            if piece.is_empty() {
                break;
            }
            total += piece.len();
            pieces.push(piece);
        }
        joined(py, total, &pieces)
    }

    /// Exactly `n` bytes of a body known to hold them, each piece copied
    /// straight into the new bytes object as it arrives (which is never
    /// zero-filled first).
    fn read_exact<'py>(&mut self, py: Python<'py>, n: usize) -> PyResult<Bound<'py, PyBytes>> {
        if n > PREALLOCATE_LIMIT {
            return self.read_growing(py, n);
        }
        let bytes = PyBytes::new_with_writer(py, n, |out| {
            while out.len() < n {
                let left = n - out.len();
                let piece = self.next_piece(py, left, left)?;
                if piece.is_empty() {
                    break;
                }
                out.write_bytes(&piece)?;
            }
            Ok(())
        })?;
        if bytes.as_bytes().len() == n {
            Ok(bytes)
        } else {
            // Unreachable while CONTENT_LENGTH bounds `n`; refuse rather
            // than hand out a short read the caller did not expect.
            Err(PyOSError::new_err(
                "request body ended before CONTENT_LENGTH",
            ))
        }
    }

    /// The next line (with its `\n`), at most `limit` bytes; empty at the
    /// end of the body.
    fn read_line<'py>(&mut self, py: Python<'py>, limit: usize) -> PyResult<Bound<'py, PyBytes>> {
        let mut pieces = Vec::new();
        let mut total = 0;
        while total < limit {
            let mut piece = self.next_piece(py, STEP, 1)?;
            if piece.is_empty() {
                break;
            }
            let room = limit - total;
            let (end, complete) = match piece.iter().position(|&b| b == b'\n') {
                Some(i) if i < room => (i + 1, true),
                _ => (room.min(piece.len()), false),
            };
            self.leftover = piece.split_off(end);
            total += piece.len();
            pieces.push(piece);
            if complete {
                break;
            }
        }
        joined(py, total, &pieces)
    }
}

/// One bytes object of the `total` bytes in `pieces`, copied once.
fn joined<'py>(py: Python<'py>, total: usize, pieces: &[Bytes]) -> PyResult<Bound<'py, PyBytes>> {
    match pieces {
        [] => Ok(PyBytes::new(py, b"")),
        [one] => Ok(PyBytes::new(py, one)),
        _ => PyBytes::new_with_writer(py, total, |out| {
            pieces.iter().try_for_each(|piece| out.write_bytes(piece))
        }),
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
        self.read_line(py, size_arg(size).unwrap_or(usize::MAX))
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
            if line.as_bytes().is_empty() {
                break;
            }
            total += line.as_bytes().len();
            lines.append(line)?;
        }
        Ok(lines)
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let line = self.read_line(py, usize::MAX)?;
        Ok((!line.as_bytes().is_empty()).then_some(line))
    }

    fn readable(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::{BodyWriter, SpoolLimits, body_pipe};

    /// Runs `f` with a `wsgi.input` over `body`.
    fn with_input<T>(body: BodyReader, f: impl FnOnce(&Bound<'_, PyAny>) -> T) -> T {
        crate::test_python::start();
        Python::attach(|py| {
            let input = Bound::new(py, WsgiInput::new(body)).unwrap();
            f(input.as_any())
        })
    }

    fn call(input: &Bound<'_, PyAny>, method: &str, arg: Option<isize>) -> Vec<u8> {
        let result = match arg {
            Some(n) => input.call_method1(method, (n,)),
            None => input.call_method0(method),
        };
        result.unwrap().extract().unwrap()
    }

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8).collect()
    }

    /// Pushes `data` in pieces of `piece` bytes from another thread, as
    /// the connection does while the application reads.
    fn push_from_a_thread(
        writer: BodyWriter,
        data: Vec<u8>,
        piece: usize,
    ) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            for chunk in data.chunks(piece) {
                writer.push(Bytes::copy_from_slice(chunk));
            }
            writer.finish();
        })
    }

    #[test]
    fn a_body_that_arrived_whole_is_read_whole() {
        let data = pattern(300_000);
        let (writer, reader) = body_pipe(Some(data.len() as u64), SpoolLimits::default());
        writer.push(Bytes::from(data.clone()));
        with_input(reader, |input| {
            assert_eq!(call(input, "read", None), data);
            assert_eq!(call(input, "read", None), b"");
            assert_eq!(call(input, "read", Some(10)), b"");
        });
    }

    #[test]
    fn reads_in_pieces_return_exactly_the_size_asked_until_the_end() {
        let data = pattern(100_000);
        let (writer, reader) = body_pipe(Some(data.len() as u64), SpoolLimits::default());
        let pushing = push_from_a_thread(writer, data.clone(), 7777);
        let got = with_input(reader, |input| {
            let mut got = Vec::new();
            loop {
                let piece = call(input, "read", Some(10_000));
                if piece.is_empty() {
                    return got;
                }
                let left = data.len() - got.len();
                assert_eq!(piece.len(), left.min(10_000));
                got.extend(piece);
            }
        });
        pushing.join().unwrap();
        assert_eq!(got, data);
    }

    #[test]
    fn readline_joins_a_line_across_pieces() {
        let pieces: [&[u8]; 5] = [b"ab", b"c\nde", b"f", b"gh\nij\n", b"k"];
        let (writer, reader) = body_pipe(Some(14), SpoolLimits::default());
        for piece in pieces {
            writer.push(Bytes::from_static(piece));
        }
        with_input(reader, |input| {
            assert_eq!(call(input, "readline", None), b"abc\n");
            assert_eq!(call(input, "readline", Some(2)), b"de");
            assert_eq!(call(input, "readline", None), b"fgh\n");
            let rest: Vec<Vec<u8>> = input.call_method0("readlines").unwrap().extract().unwrap();
            assert_eq!(rest, [b"ij\n".to_vec(), b"k".to_vec()]);
            assert_eq!(call(input, "readline", None), b"");
        });
    }

    #[test]
    fn a_body_spilled_to_disk_reads_back_in_order() {
        let data = pattern(200_000);
        let limits = SpoolLimits { memory_limit: 5000 };
        let (writer, reader) = body_pipe(Some(data.len() as u64), limits);
        for chunk in data.chunks(3000) {
            writer.push(Bytes::copy_from_slice(chunk));
        }
        with_input(reader, |input| {
            let head = call(input, "read", Some(4000));
            let rest = call(input, "read", None);
            assert_eq!([head, rest].concat(), data);
        });
    }

    #[test]
    fn a_body_of_unknown_length_is_read_to_its_end() {
        let data = pattern(600_000);
        let limits = SpoolLimits {
            memory_limit: 100_000,
        };
        let (writer, reader) = body_pipe(None, limits);
        let pushing = push_from_a_thread(writer, data.clone(), 30_000);
        let got = with_input(reader, |input| {
            let head = call(input, "read", Some(1000));
            assert_eq!(head.len(), 1000);
            [head, call(input, "read", None)].concat()
        });
        pushing.join().unwrap();
        assert_eq!(got, data);
    }

    #[test]
    fn a_read_after_the_request_ended_fails() {
        let (writer, reader) = body_pipe(Some(10), SpoolLimits::default());
        writer.push(Bytes::from_static(b"abc"));
        let answering = reader.answering();
        with_input(reader, |input| {
            assert_eq!(call(input, "read", Some(2)), b"ab");
            answering.request_ended();
            let error = input.call_method1("read", (1,)).unwrap_err();
            assert!(
                error.to_string().contains("after its request had ended"),
                "{error}"
            );
        });
    }
}
