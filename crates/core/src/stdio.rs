//! `sys.stdout` and `sys.stderr`: what the application prints goes to the
//! log, tagged with the request its thread runs.
//!
//! A daemon's fd 1 is wherever it was started from (often /dev/null), and
//! in CGI mode it is the response (DESIGN.md: fd 1 points at stderr
//! there). Python's own streams would also hold a partial print() in a
//! block buffer, untagged and mixed with other threads' output. These
//! streams are line-buffered, per thread: each `write()` that completes
//! lines logs them as one entry (a logging record written by a
//! `StreamHandler` stays whole), tagged with the thread's request
//! ([`enter`]); what is printed outside a request (at import, from a
//! thread of the application's own) is logged untagged. A line left
//! incomplete is logged when the request ends, on `flush()`, or past
//! [`crate::errors::ENTRY_CAP`].
//!
//! What the application sees is a text stream: `write()` returns the
//! count, `isatty()` is False, `encoding` is utf-8, and `fileno()` is the
//! real descriptor (1 or 2), so that `faulthandler.enable()` and a
//! subprocess given `stdout=sys.stdout` keep working: what they write
//! there goes around the log, as it would around Python's buffer.

use crate::errors::ENTRY_CAP;
use crate::tag::RequestTag;
use pyo3::prelude::*;
use pyo3::types::PyIterator;
use std::cell::RefCell;

thread_local! {
    /// The request this thread runs.
    static CURRENT: RefCell<Option<RequestTag>> = const { RefCell::new(None) };
    /// Each stream's incomplete line on this thread.
    static PARTIAL: RefCell<[String; 2]> = const { RefCell::new([String::new(), String::new()]) };
}

/// Which stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Which {
    Stdout = 0,
    Stderr = 1,
}

impl Which {
    const BOTH: [Which; 2] = [Which::Stdout, Which::Stderr];

    fn log(self, tag: Option<&RequestTag>, entry: &str) {
        let entry = entry.strip_suffix('\n').unwrap_or(entry);
        let entry = entry.strip_suffix('\r').unwrap_or(entry);
        match (self, tag) {
            (Which::Stdout, Some(tag)) => {
                tracing::info!(target: "app.stdout", request = %tag, "{entry}")
            }
            (Which::Stdout, None) => tracing::info!(target: "app.stdout", "{entry}"),
            (Which::Stderr, Some(tag)) => {
                tracing::warn!(target: "app.stderr", request = %tag, "{entry}")
            }
            (Which::Stderr, None) => tracing::warn!(target: "app.stderr", "{entry}"),
        }
    }

    /// Logs this thread's held text: its complete lines, or all of it.
    fn log_held(self, all: bool) {
        let entry = PARTIAL.with_borrow_mut(|partial| {
            let held = &mut partial[self as usize];
            let end = if all || held.len() >= ENTRY_CAP {
                held.rfind('\n').map_or(held.len(), |end| end + 1)
            } else {
                held.rfind('\n')? + 1
            };
            (end > 0).then(|| held.drain(..end).collect::<String>())
        });
        if let Some(entry) = entry {
            CURRENT.with_borrow(|tag| self.log(tag.as_ref(), &entry));
        }
    }
}

/// This thread now runs `tag`'s request: what it prints is tagged so.
pub(crate) fn enter(tag: &RequestTag) {
    CURRENT.set(Some(tag.clone()));
}

/// This thread's request ends (or parks): its incomplete lines are logged,
/// tagged with it, and what follows is untagged.
pub(crate) fn leave() {
    for which in Which::BOTH {
        which.log_held(true);
    }
    CURRENT.set(None);
}

/// `sys.stdout` or `sys.stderr`.
#[pyclass(module = "rustgi", frozen)]
pub struct AppStream {
    which: Which,
}

#[pymethods]
impl AppStream {
    fn write(&self, text: &str) -> usize {
        PARTIAL.with_borrow_mut(|partial| partial[self.which as usize].push_str(text));
        if text.contains('\n') || text.len() >= ENTRY_CAP {
            self.which.log_held(false);
        } else {
            // A long line without an end still leaves at the cap.
            let held = PARTIAL.with_borrow(|partial| partial[self.which as usize].len());
            if held >= ENTRY_CAP {
                self.which.log_held(true);
            }
        }
        text.chars().count()
    }

    fn writelines(&self, lines: &Bound<'_, PyAny>) -> PyResult<()> {
        for line in PyIterator::from_object(lines)? {
            self.write(line?.extract::<&str>()?);
        }
        Ok(())
    }

    /// Logs this thread's incomplete line.
    fn flush(&self) {
        self.which.log_held(true);
    }

    /// The real descriptor (see the module's comment).
    fn fileno(&self) -> i32 {
        match self.which {
            Which::Stdout => 1,
            Which::Stderr => 2,
        }
    }

    fn isatty(&self) -> bool {
        false
    }

    fn readable(&self) -> bool {
        false
    }

    fn writable(&self) -> bool {
        true
    }

    fn seekable(&self) -> bool {
        false
    }

    /// Closing it would only make later prints fail: it stays open.
    fn close(&self) {
        self.flush();
    }

    #[getter]
    fn closed(&self) -> bool {
        false
    }

    #[getter]
    fn encoding(&self) -> &'static str {
        "utf-8"
    }

    #[getter]
    fn errors(&self) -> &'static str {
        "strict"
    }

    #[getter]
    fn line_buffering(&self) -> bool {
        true
    }

    #[getter]
    fn newlines(&self) -> Option<&'static str> {
        None
    }

    #[getter]
    fn mode(&self) -> &'static str {
        "w"
    }

    #[getter]
    fn name(&self) -> &'static str {
        match self.which {
            Which::Stdout => "<stdout>",
            Which::Stderr => "<stderr>",
        }
    }

    fn __repr__(&self) -> String {
        format!("<rustgi log stream {}>", self.name())
    }
}

/// Puts the log streams in `sys.stdout` and `sys.stderr` (`sys.__stdout__`
/// and `sys.__stderr__` stay Python's own), registered as
/// `io.TextIOBase`s for code that checks.
pub(crate) fn install(py: Python<'_>) -> PyResult<()> {
    let sys = py.import("sys")?;
    let text_io = py.import("io")?.getattr("TextIOBase")?;
    text_io.call_method1("register", (py.get_type::<AppStream>(),))?;
    // What Python buffered before (nothing, usually) goes out first.
    for name in ["stdout", "stderr"] {
        let old = sys.getattr(name)?;
        if !old.is_none() {
            let _ = old.call_method0("flush");
        }
    }
    sys.setattr(
        "stdout",
        Bound::new(
            py,
            AppStream {
                which: Which::Stdout,
            },
        )?,
    )?;
    sys.setattr(
        "stderr",
        Bound::new(
            py,
            AppStream {
                which: Which::Stderr,
            },
        )?,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_python::{logged, start};
    use bytes::Bytes;
    use pyo3::types::PyDict;

    #[test]
    fn lines_are_tagged_with_the_threads_request() {
        start();
        let entries = logged(|| {
            Python::attach(|py| {
                let globals = PyDict::new(py);
                let out = Bound::new(
                    py,
                    AppStream {
                        which: Which::Stdout,
                    },
                )
                .unwrap();
                let err = Bound::new(
                    py,
                    AppStream {
                        which: Which::Stderr,
                    },
                )
                .unwrap();
                globals.set_item("out", out).unwrap();
                globals.set_item("err", err).unwrap();
                let run = |code: &std::ffi::CStr| py.run(code, Some(&globals), None).unwrap();
                run(c"print('before', file=out)");
                enter(&RequestTag {
                    request_id: Bytes::from_static(b"3"),
                    method: Bytes::from_static(b"POST"),
                    path: Bytes::from_static(b"/p"),
                });
                run(c"print('a', 'b', file=out); out.write('two\\nlines\\npart'); err.write('e')");
                leave();
                run(c"out.write('after'); out.flush()");
            })
        });
        let seen: Vec<(&str, &str, Option<&str>)> = entries
            .iter()
            .map(|(t, m, r)| (t.as_str(), m.as_str(), r.as_deref()))
            .collect();
        let tag = Some("#3 POST /p");
        assert_eq!(
            seen,
            [
                ("app.stdout", "before", None),
                ("app.stdout", "a b", tag),
                ("app.stdout", "two\nlines", tag),
                ("app.stdout", "part", tag),
                ("app.stderr", "e", tag),
                ("app.stdout", "after", None),
            ]
        );
    }
}
