//! Running one request: environ, the application call, `start_response`
//! (with exc_info semantics and `write()`), iterating the result, `close()`,
//! and the tracebacks of what failed.
//!
//! The head is held back until the first non-empty block (or the first
//! `write()`), so an error before it can still become a 500.

use crate::body::{Answering, BodyReader};
use crate::environ::EnvironBuilder;
use crate::errors::WsgiErrors;
use crate::input::WsgiInput;
use crate::responder::{HeadProgress, Responder, Room, Stop};
use crate::response::{Budget, ResponseTarget};
use crate::running::ThreadSlot;
use crate::tag::RequestTag;
use bytes::Bytes;
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyIterator, PyList, PyString, PyTuple};
use rustgi_model::{Request, ResponseHead};
use rustgi_observe::access::Verdict;
use rustgi_observe::{Ended, Front, board};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One request handed to a Python thread.
pub struct Job {
    pub id: u64,
    /// The id every log line about the request shows, and the
    /// application sees as `RUSTGI_REQUEST_ID` (ASCII).
    pub request_id: Bytes,
    /// Where the access log learns how the request ended when the
    /// response's bytes cannot tell (a 504 of ours, an application error).
    pub verdict: Option<Arc<Verdict>>,
    /// The protocol it came in with, as the scoreboard shows it.
    pub front: Front,
    /// Shared with the connection, whose encoder may need it (uwsgi's
    /// status line follows the request's SERVER_PROTOCOL).
    pub request: Arc<Request>,
    pub body: BodyReader,
    /// More input streams, offered under these environ keys (FastCGI
    /// FILTER's `fastcgi.data`).
    pub streams: Vec<(&'static str, BodyReader)>,
    pub response: ResponseTarget,
    /// Also send `wsgi.errors` lines to the front server (FCGI_STDERR).
    pub errors_to_peer: bool,
}

/// The `start_response` callable; its `write` method is the PEP 3333
/// `write()` callable it returns.
#[pyclass(module = "rustgi", frozen)]
pub struct StartResponse {
    responder: Arc<Responder>,
    /// The request's input streams, read to their end from the first call
    /// on (see `crate::body`).
    bodies: Vec<Answering>,
}

#[pymethods]
impl StartResponse {
    #[pyo3(signature = (status, headers, exc_info = None))]
    fn __call__<'py>(
        slf: &Bound<'py, Self>,
        status: &Bound<'py, PyAny>,
        headers: &Bound<'py, PyAny>,
        exc_info: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        for body in &slf.get().bodies {
            body.begun();
        }
        let exc_info = exc_info.filter(|e| !e.is_none());
        match (exc_info, slf.get().responder.head_progress()) {
            (Some(exc), HeadProgress::Sent) => return Err(PyErr::from_value(exc.get_item(1)?)),
            (None, HeadProgress::Sent | HeadProgress::Pending) => {
                return Err(PyRuntimeError::new_err(
                    "start_response called a second time without exc_info",
                ));
            }
            _ => {}
        }
        let head = parse_head(status, headers)?;
        slf.get().responder.set_head(head);
        slf.getattr(intern!(py, "write"))
    }

    /// The `write()` callable: sends the head (even for an empty block) and
    /// the block, waiting for room like the iteration does.
    fn write(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let data = data
            .cast::<PyBytes>()
            .map_err(|_| PyTypeError::new_err("write() takes bytes"))?;
        match self.responder.send_waiting(py, data) {
            Ok(()) => Ok(()),
            Err(Stop::App(e)) => Err(e),
            Err(Stop::Gone) => Err(PyOSError::new_err("the client has disconnected")),
        }
    }
}

fn to_latin1(value: &Bound<'_, PyAny>, what: &str) -> PyResult<Bytes> {
    let text = value
        .cast::<PyString>()
        .map_err(|_| PyTypeError::new_err(format!("{what} must be a str")))?
        .to_str()?;
    text.chars()
        .map(u8::try_from)
        .collect::<Result<Vec<u8>, _>>()
        .map(Bytes::from)
        .map_err(|_| PyValueError::new_err(format!("{what} {text:?} is not latin-1")))
}

fn parse_head(status: &Bound<'_, PyAny>, headers: &Bound<'_, PyAny>) -> PyResult<ResponseHead> {
    let status = to_latin1(status, "the status")?;
    let headers = headers
        .cast::<PyList>()
        .map_err(|_| PyTypeError::new_err("the response headers must be a list"))?;
    let mut pairs = Vec::with_capacity(headers.len());
    for item in headers.iter() {
        let (name, value): (Bound<'_, PyAny>, Bound<'_, PyAny>) = item.extract().map_err(|_| {
            PyTypeError::new_err("each response header must be a (name, value) tuple")
        })?;
        pairs.push((
            to_latin1(&name, "a header name")?,
            to_latin1(&value, "a header value")?,
        ));
    }
    ResponseHead::new(status, pairs).map_err(|e| PyValueError::new_err(e.to_string()))
}

/// What a Python thread runs: a new request, or a parked response to go
/// on with.
pub(crate) enum Work {
    New(Job),
    Resume(Parked),
}

/// A response whose iteration waits, on no thread, for its connection to
/// write what it was given (see `crate::response`): the application's
/// iterator and what its end needs. Whichever Python thread is free goes
/// on with it ([`resume`]).
pub(crate) struct Parked {
    tag: RequestTag,
    shown: Shown,
    responder: Arc<Responder>,
    bodies: Vec<Answering>,
    errors: Option<Py<WsgiErrors>>,
    result: Py<PyAny>,
    iterator: Py<PyIterator>,
    /// How long the response has run on threads: `--timeout` counts only
    /// that (a parked response waits for its client, which
    /// `--write-timeout` bounds).
    ran: Duration,
}

/// Queues a parked response for the next free thread.
pub(crate) type Resumer = Arc<dyn Fn(Parked) + Send + Sync>;

/// What every request on a thread uses.
pub(crate) struct ThreadContext<'a> {
    pub(crate) slot: &'a ThreadSlot,
    pub(crate) budget: &'a Arc<Budget>,
    pub(crate) resumer: &'a Resumer,
}

/// How far an iteration went.
enum Advanced {
    Done,
    /// The connection is full: park.
    Full,
}

/// Serves one request on this (attached) Python thread, until its
/// response is whole or parks.
pub(crate) fn serve(
    py: Python<'_>,
    app: &Bound<'_, PyAny>,
    environ: &mut EnvironBuilder,
    ctx: &ThreadContext<'_>,
    job: Job,
) {
    let Job {
        id: _,
        request_id,
        verdict,
        front,
        request,
        body,
        streams,
        response,
        errors_to_peer,
    } = job;
    let tag = RequestTag {
        request_id,
        method: request
            .param(b"REQUEST_METHOD")
            .cloned()
            .unwrap_or_default(),
        path: request
            .param(b"REQUEST_URI")
            .or_else(|| request.param(b"DOCUMENT_URI"))
            .cloned()
            .unwrap_or_default(),
    };
    if response.client_gone() {
        if let Some(verdict) = &verdict {
            verdict.set(Ended::ClientGone);
        }
        tracing::info!(
            request = %tag,
            "not run: its client went away (the connection hung up, or ABORT_REQUEST came) before the application started"
        );
        return;
    }
    let shown = Shown::of(&request, front);
    let responder =
        Arc::new(Responder::new(response, tag.clone(), ctx.budget.clone()).with_verdict(verdict));
    let begun = ctx
        .slot
        .begin(tag.clone(), responder.clone(), Duration::ZERO);
    shown.begin(ctx.slot.index, &tag);
    let mut bodies = vec![body.answering()];
    bodies.extend(streams.iter().map(|(_, stream)| stream.answering()));
    let mut errors = None;
    let called = (|| -> PyResult<Bound<'_, PyAny>> {
        let input = Bound::new(py, WsgiInput::new(body))?.into_any();
        let peer = errors_to_peer.then(|| responder.clone());
        let stream = Bound::new(py, WsgiErrors::new(tag.clone(), peer))?;
        errors = Some(stream.clone().unbind());
        let environ = environ.build(py, &request, input, stream.into_any())?;
        // Generated ids are ASCII, a trusted header's were checked to be.
        let request_id = String::from_utf8_lossy(&tag.request_id);
        environ.set_item(intern!(py, "RUSTGI_REQUEST_ID"), request_id.as_ref())?;
        for (key, stream) in streams {
            environ.set_item(key, Bound::new(py, WsgiInput::new(stream))?)?;
        }
        let start_response = Bound::new(
            py,
            StartResponse {
                responder: responder.clone(),
                bodies: bodies.clone(),
            },
        )?;
        app.call1((environ, start_response))
    })();
    let result = match called {
        Ok(result) => result,
        Err(e) => {
            let ended = RequestEnd {
                tag: &tag,
                responder: &responder,
                bodies: &bodies,
                errors: errors.as_ref(),
            };
            return finish(py, ctx, ended, None, Err(e.into()));
        }
    };
    let ended = RequestEnd {
        tag: &tag,
        responder: &responder,
        bodies: &bodies,
        errors: errors.as_ref(),
    };
    match begin_iteration(py, &result, &responder) {
        Ok(Some(iterator)) => {
            let parked = Parked {
                tag,
                shown,
                responder,
                bodies,
                errors,
                result: result.unbind(),
                iterator: iterator.unbind(),
                ran: Duration::ZERO,
            };
            go_on(py, ctx, parked, begun);
        }
        Ok(None) => finish(py, ctx, ended, Some(&result), Ok(())),
        Err(stop) => finish(py, ctx, ended, Some(&result), Err(stop)),
    }
}

/// Goes on with a parked response on this thread.
pub(crate) fn resume(py: Python<'_>, ctx: &ThreadContext<'_>, parked: Parked) {
    let begun = ctx
        .slot
        .begin(parked.tag.clone(), parked.responder.clone(), parked.ran);
    parked.shown.begin(ctx.slot.index, &parked.tag);
    go_on(py, ctx, parked, begun);
}

/// Iterates until the response ends or the connection is full; then parks
/// it, for whichever thread is free once the connection has drained.
/// `begun`: when the response began, as `--timeout` counts.
fn go_on(py: Python<'_>, ctx: &ThreadContext<'_>, mut parked: Parked, begun: Instant) {
    let iterator = parked.iterator.bind(py).clone();
    let advanced = advance(py, iterator, &parked.responder);
    let result = parked.result.bind(py).clone();
    let outcome = match advanced {
        Ok(Advanced::Full) => {
            parked.ran = begun.elapsed();
            // Off this thread: no --timeout clock, no TimeoutError for it.
            ctx.slot.end(py);
            let responder = parked.responder.clone();
            let resumer = ctx.resumer.clone();
            if let Err(resume) = responder.park(Box::new(move || resumer(parked))) {
                // The connection drained meanwhile: a free thread goes on.
                resume();
            }
            return;
        }
        Ok(Advanced::Done) => Ok(()),
        Err(stop) => Err(stop),
    };
    let ended = RequestEnd {
        tag: &parked.tag,
        responder: &parked.responder,
        bodies: &parked.bodies,
        errors: parked.errors.as_ref(),
    };
    finish(py, ctx, ended, Some(&result), outcome);
}

/// What a request's end needs.
struct RequestEnd<'a> {
    tag: &'a RequestTag,
    responder: &'a Responder,
    bodies: &'a [Answering],
    /// Its `wsgi.errors`, whose held entry is logged as the request ends.
    errors: Option<&'a Py<WsgiErrors>>,
}

/// Ends a request: `close()` on the application's iterable (once, on
/// every path), what `wsgi.errors` still holds, the log line and our 500
/// or abort for what failed, then the thread and the connection are
/// released.
fn finish(
    py: Python<'_>,
    ctx: &ThreadContext<'_>,
    ended: RequestEnd<'_>,
    result: Option<&Bound<'_, PyAny>>,
    iterated: Result<(), Stop>,
) {
    let RequestEnd {
        tag,
        responder,
        bodies,
        errors,
    } = ended;
    let outcome = match result {
        None => iterated,
        Some(result) => match (iterated, close(result)) {
            (Err(stop), Err(close_error)) => {
                log_exception(py, tag, "close() failed", &close_error);
                Err(stop)
            }
            (Err(stop), Ok(())) => Err(stop),
            (Ok(()), closed) => closed.map_err(Stop::App),
        },
    };
    // Before our own lines about the request: the application wrote first.
    if let Some(errors) = errors
        && let Ok(mut errors) = errors.bind(py).try_borrow_mut()
    {
        errors.end(Some(py));
    }
    match outcome {
        Ok(()) => {}
        Err(Stop::Gone) => {
            responder.ended(Ended::ClientGone);
            tracing::info!(request = %tag, "the client went away before the response was complete")
        }
        Err(Stop::App(e)) => {
            responder.ended(Ended::AppError);
            // The OSError that `wsgi.input` raised when the body failed
            // (already logged, with why) is the client's doing, not an
            // application error: one line, no traceback.
            match bodies.iter().find_map(Answering::failure) {
                Some(failure) if e.is_instance_of::<PyOSError>(py) => tracing::info!(
                    request = %tag,
                    "the application stopped on its request body ({failure}): {}",
                    e.value(py)
                ),
                _ => log_exception(py, tag, "application error", &e),
            }
            responder.fail(py);
        }
    }
    // The application may keep `wsgi.input` alive (in a reference cycle, a
    // global): the connection must not wait for it to go.
    for body in bodies {
        body.request_ended();
    }
    // A timeout's verdict is the responder's (its 504 or cut): whether
    // this thread's clock expired adds nothing here.
    let _expired = ctx.slot.end(py);
    responder.release();
}

/// What the scoreboard shows of a request while a thread runs it (see
/// `rustgi_observe::board`); the counters of finished requests are the
/// connection's to add, from its record (`rustgi_serve::record`).
pub(crate) struct Shown {
    started_unix_us: u64,
    front: Front,
    query: Bytes,
    remote: Bytes,
}

impl Shown {
    fn of(request: &Request, front: Front) -> Shown {
        // One pass over the params (first value wins, as `param` does).
        let (mut query, mut remote) = (None, None);
        for param in &request.params {
            match param.name.as_ref() {
                b"QUERY_STRING" if query.is_none() => query = Some(param.value.clone()),
                b"REMOTE_ADDR" if remote.is_none() => remote = Some(param.value.clone()),
                _ => {}
            }
        }
        Shown {
            started_unix_us: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64),
            front,
            query: query.unwrap_or_default(),
            remote: remote.unwrap_or_default(),
        }
    }

    fn begin(&self, thread: usize, tag: &RequestTag) {
        let path = tag.path.split(|&b| b == b'?').next().unwrap_or_default();
        board::thread_begin(
            thread,
            &board::Begin {
                started_unix_us: self.started_unix_us,
                front: Some(self.front),
                method: &tag.method,
                path,
                query: &self.query,
                remote: &self.remote,
                request_id: &tag.request_id,
            },
        );
    }
}

/// Sends a response that is one bytes object in a list at once (`None`
/// then: nothing is left to iterate); otherwise the iterator to go on
/// with.
fn begin_iteration<'py>(
    py: Python<'py>,
    result: &Bound<'py, PyAny>,
    responder: &Responder,
) -> Result<Option<Bound<'py, PyIterator>>, Stop> {
    if let Ok(list) = result.cast::<PyList>()
        && list.len() == 1
        && let Ok(block) = list.get_item(0)?.cast_into::<PyBytes>()
    {
        // What the connection does not take goes to the I/O loop whole.
        responder.send(py, Some(&block), true)?;
        return Ok(None);
    }
    Ok(Some(result.try_iter()?))
}

fn advance(
    py: Python<'_>,
    mut iterator: Bound<'_, PyIterator>,
    responder: &Responder,
) -> Result<Advanced, Stop> {
    for block in iterator.by_ref() {
        let block = block?;
        let block = block.cast::<PyBytes>().map_err(|_| {
            let kind = block
                .get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default();
            PyTypeError::new_err(format!("the application yielded a {kind}, not bytes"))
        })?;
        if block.as_bytes().is_empty() {
            continue;
        }
        match responder.send(py, Some(block), false)? {
            (true, _) => break,
            (false, Room::Full) => return Ok(Advanced::Full),
            (false, Room::Yes) => {}
        }
    }
    responder.send(py, None, true)?;
    Ok(Advanced::Done)
}

fn close(result: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = result.py();
    // A list or tuple (what most applications return) has no close(), and
    // asking costs an AttributeError raised and caught (before 3.13).
    if result.is_exact_instance_of::<PyList>() || result.is_exact_instance_of::<PyTuple>() {
        return Ok(());
    }
    if result.hasattr(intern!(py, "close"))? {
        result.call_method0(intern!(py, "close"))?;
    }
    Ok(())
}

/// Logs an exception with its Python traceback.
pub(crate) fn log_exception(py: Python<'_>, tag: &RequestTag, what: &str, error: &PyErr) {
    tracing::error!(request = %tag, "{what}:\n{}", format_traceback(py, error));
}

/// The traceback Python would print for `error`.
pub fn format_traceback(py: Python<'_>, error: &PyErr) -> String {
    py.import("traceback")
        .and_then(|tb| {
            tb.call_method1(
                "format_exception",
                (error.get_type(py), error.value(py), error.traceback(py)),
            )
        })
        .and_then(|lines| lines.extract::<Vec<String>>())
        .map(|lines| lines.concat().trim_end().to_string())
        .unwrap_or_else(|_| error.to_string())
}
