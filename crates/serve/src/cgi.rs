//! `--proto cgi`: one request from the process environment (RFC 3875) and
//! stdin, the response to stdout, then exit. The response goes through a
//! private copy of fd 1, and fd 1 (so `sys.stdout`) points at stderr, so an
//! application's print() cannot corrupt it.

use crate::flow::{Ending, ResponseFlow};
use crate::sink::WriteError;
use crate::sink::blocking::BlockingSink;
use crate::{RunError, ServeConfig};
use bytes::Bytes;
use rustgi_core::{
    BodyError, BodyWriter, EnvironSettings, Interpreter, Job, Mount, PythonPool, PythonSetup,
    ResponseTarget, body_pipe, response_channel,
};
use rustgi_model::{LengthError, Param, Request, ResponseEvent, ResponseHead, content_length};
use rustgi_scgi::ScgiEncoder;
use std::fs::File;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::sync::Arc;

/// Serves the one request. `Ok` once a response was written, an app error
/// turned 500 included; an error only when no response could be written.
pub fn run(
    config: &ServeConfig,
    python: &PythonSetup,
    mount: Option<Mount>,
) -> Result<(), RunError> {
    let out = File::from(private_stdout()?);
    let mut sink = BlockingSink::new(out, config.timeouts.write);
    let request = match request_from_environment() {
        Ok(request) => request,
        Err(e) => {
            tracing::error!("bad request from the web server: CONTENT_LENGTH {e}; answering 400");
            return answer_bad_request(&mut sink);
        }
    };
    crate::record::start(&config.observe)
        .map_err(|e| RunError::Setup(format!("opening the access log failed: {e}")))?;
    let interpreter = Interpreter::start(python).map_err(RunError::Python)?;
    tracing::debug!("Python {}", interpreter.description);
    let settings = EnvironSettings {
        mount,
        multithread: false,
        multiprocess: true,
        run_once: true,
        paths_as_sent: true,
        forwarded: config.forwarded.clone(),
    };
    let pool = PythonPool::start(interpreter.app(), 1, settings)?;
    let length = request.content_length;
    let (body, body_reader) = body_pipe(Some(length), config.spool);
    let stdin = std::thread::Builder::new()
        .name("cgi-stdin".into())
        .spawn(move || read_stdin(body, length))?;
    let id = crate::next_request_id();
    let request_id = crate::record::request_id(&request, id);
    let request = Arc::new(request);
    let trail = crate::record::Trail::begin(&request, rustgi_observe::Front::Cgi, &request_id);
    let verdict = trail.as_ref().map(|t| t.verdict());
    let (sender, receiver) = response_channel(config.response_buffer);
    pool.submit(Job {
        id,
        request_id,
        verdict,
        front: rustgi_observe::Front::Cgi,
        request: request.clone(),
        body: body_reader,
        streams: Vec::new(),
        response: ResponseTarget::Channel(sender),
        errors_to_peer: false,
    });
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let written = runtime.block_on(async {
        let mut flow = ResponseFlow::new(true).traced(trail);
        let mut encoder = ScgiEncoder;
        let mut events = Vec::new();
        loop {
            events.clear();
            if receiver.recv(&mut events).await.is_none() {
                return Err(RunError::Setup("the response was cut short".into()));
            }
            flow.encode(&mut encoder, events.drain(..));
            let out = flow.writable().expect("nothing is held back");
            if let Err(e) = sink.write_all(out) {
                flow.discard();
                return Err(unwritten(e));
            }
            match flow.ending() {
                None => {}
                Some(Ending::Complete) => return Ok(()),
                Some(Ending::Aborted) => {
                    return Err(RunError::Setup(
                        "the application failed after its response head was sent".into(),
                    ));
                }
            }
        }
    });
    drop(receiver);
    // Close the response now: the web server waits for EOF, and Python's
    // shutdown below would otherwise add milliseconds to every request.
    drop(sink);
    pool.shutdown();
    // The stdin thread may still wait on a client that sends no more.
    drop(stdin);
    interpreter.finalize();
    crate::record::stop();
    written
}

/// The one failure CGI mode exits non-zero for.
fn unwritten(e: WriteError) -> RunError {
    let why = match e {
        WriteError::Failed(e) => e.to_string(),
        WriteError::Stalled(limit) => format!("nothing was taken for {limit:?} (--write-timeout)"),
    };
    RunError::Setup(format!("could not write the response to stdout: {why}"))
}

/// A private copy of fd 1 for the response; fd 1 itself then points at
/// stderr, before Python creates `sys.stdout` on it.
fn private_stdout() -> std::io::Result<OwnedFd> {
    // SAFETY: fcntl/dup2 on the process's own standard descriptors; the
    // new descriptor is owned by the returned OwnedFd.
    unsafe {
        let copy = libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3);
        if copy < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::dup2(2, 1) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(OwnedFd::from_raw_fd(copy))
    }
}

/// Every environment variable is a CGI parameter (RFC 3875: the server
/// passes the request's meta-variables that way). CONTENT_LENGTH follows
/// the one policy of every protocol (`rustgi_model::content_length`).
fn request_from_environment() -> Result<Request, LengthError> {
    let params: Vec<Param> = std::env::vars_os()
        .map(|(name, value)| Param::new(name.into_vec(), value.into_vec()))
        .collect();
    let content_length = content_length(&params)?.unwrap_or(0);
    Ok(Request {
        params,
        content_length,
        warnings: Vec::new(),
    })
}

/// A request the application must not see (its body length is unknown):
/// a 400 of our own.
fn answer_bad_request(sink: &mut BlockingSink<File>) -> Result<(), RunError> {
    let body = "Bad Request\n";
    let head = ResponseHead::from_static(
        "400 Bad Request",
        &[("Content-Type", "text/plain"), ("Content-Length", "12")],
    )
    .expect("a valid fixed head");
    let mut flow = ResponseFlow::new(true);
    let events = [
        ResponseEvent::Head(head),
        ResponseEvent::Body(Bytes::from_static(body.as_bytes())),
        ResponseEvent::End,
    ];
    flow.encode(&mut ScgiEncoder, events);
    let out = flow.writable().expect("nothing is held back");
    sink.write_all(out).map_err(unwritten)
}

fn read_stdin(body: BodyWriter, length: u64) {
    let mut stdin = std::io::stdin().lock();
    let mut buf = vec![0u8; 64 * 1024];
    while body.remaining() > 0 {
        let want = buf
            .len()
            .min(usize::try_from(body.remaining()).unwrap_or(usize::MAX));
        match stdin.read(&mut buf[..want]) {
            Ok(0) => {
                body.fail(BodyError::Truncated {
                    received: length - body.remaining(),
                    expected: Some(length),
                });
                return;
            }
            Ok(n) => body.push(Bytes::copy_from_slice(&buf[..n])),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => {
                body.fail(BodyError::Disconnected);
                return;
            }
        }
    }
}
