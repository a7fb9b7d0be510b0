//! The request body on its way from the connection to `wsgi.input`.
//!
//! The connection side pushes whatever arrives and never waits: past
//! `memory_limit` bytes the body spills into an unlinked temporary file. That
//! is what keeps a front server that sends the whole body before it reads the
//! response (nginx, Apache) from deadlocking against an app that writes
//! before it reads. The Python side blocks (with the GIL released) until
//! bytes, the end of the body, or a failure arrive.
//!
//! That deadlock needs an application that answers before it has read the
//! body. Until then the connection reads only what the application is about
//! to ask for ([`BodyWriter::wanted`]): nothing while the request waits for
//! a Python thread, and [`READ_AHEAD`] bytes ahead of the application's
//! reads while it runs. The rest stays in the socket, where it costs this
//! process nothing, instead of in one spool per queued request. From
//! `start_response` on, the connection reads the body to its end, into the
//! spool.

use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::future::poll_fn;
use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Poll, Waker};

/// How far the connection reads ahead of an application that reads its
/// body: enough that its next reads find their bytes waiting, small enough
/// to stay in the CPU's cache between the copy in and the copy out.
pub const READ_AHEAD: usize = 128 * 1024;

/// How much of a body may wait in memory before it spills to a temp file.
#[derive(Clone, Copy, Debug)]
pub struct SpoolLimits {
    pub memory_limit: usize,
}

impl Default for SpoolLimits {
    fn default() -> Self {
        SpoolLimits {
            memory_limit: 1 << 20,
        }
    }
}

/// Why the body could not be read to its end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BodyError {
    /// The peer closed the connection before CONTENT_LENGTH bytes arrived.
    Truncated {
        received: u64,
        expected: Option<u64>,
    },
    /// The stream ended (FastCGI's empty STDIN record) before CONTENT_LENGTH.
    EndedEarly { received: u64, expected: u64 },
    /// No body bytes arrived within the body timeout.
    TimedOut {
        received: u64,
        expected: Option<u64>,
    },
    /// The client sent the body more slowly than `--body-min-rate`: `rate`
    /// bytes/s over the last `window_secs` seconds, under `limit`.
    TooSlow {
        received: u64,
        expected: Option<u64>,
        rate: u64,
        limit: u64,
        window_secs: u64,
    },
    /// The body's own framing (uwsgi's chunked encoding) is broken.
    Framing(String),
    /// The connection failed or was abandoned.
    Disconnected,
    /// Spilling to the temp file failed.
    Spool(String),
    /// Read after its request ended (an application that kept
    /// `wsgi.input`).
    RequestEnded,
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::Truncated {
                received,
                expected: Some(expected),
            } => write!(
                f,
                "request body ended early: the client closed the connection after {received} of {expected} bytes (CONTENT_LENGTH)"
            ),
            BodyError::Truncated {
                received,
                expected: None,
            } => write!(
                f,
                "request body ended early: the client closed the connection after {received} bytes, before the chunked body's last chunk"
            ),
            BodyError::EndedEarly { received, expected } => write!(
                f,
                "request body ended after {received} of {expected} bytes (CONTENT_LENGTH)"
            ),
            BodyError::TimedOut {
                received,
                expected: Some(expected),
            } => write!(
                f,
                "request body timed out after {received} of {expected} bytes"
            ),
            BodyError::TimedOut {
                received,
                expected: None,
            } => write!(f, "request body timed out after {received} bytes"),
            BodyError::TooSlow {
                received,
                expected,
                rate,
                limit,
                window_secs,
            } => {
                write!(
                    f,
                    "request body too slow: {rate} bytes/s over the last {window_secs} s, under --body-min-rate {limit} bytes/s; cut after {received}"
                )?;
                match expected {
                    Some(expected) => write!(f, " of {expected} bytes"),
                    None => write!(f, " bytes"),
                }
            }
            BodyError::Framing(e) => write!(f, "request body is malformed: {e}"),
            BodyError::Disconnected => write!(f, "the connection closed while the body was read"),
            BodyError::Spool(e) => write!(f, "could not spool the request body: {e}"),
            BodyError::RequestEnded => write!(
                f,
                "wsgi.input was read after its request had ended: the body is gone"
            ),
        }
    }
}

impl std::error::Error for BodyError {}

/// What a non-blocking read found.
pub enum Chunk {
    Data(Bytes),
    /// Nothing yet: wait with [`BodyReader::wait`].
    Pending,
    /// The whole body has been read.
    End,
    Failed(BodyError),
}

struct Spool {
    /// Bytes received before any spill, in order.
    memory: VecDeque<Bytes>,
    memory_bytes: usize,
    /// Once a spill starts, everything new goes to the file until the reader
    /// has caught up with it; that keeps the byte order without bookkeeping.
    file: Option<File>,
    file_written: u64,
    file_read: u64,
    /// Bytes handed to the spool so far.
    received: u64,
    /// The connection said the body is complete (needed when its length
    /// is not known in advance).
    finished: bool,
    failure: Option<BodyError>,
    /// A Python thread has taken the request ([`BodyReader::start`]).
    started: bool,
    /// The application has begun its answer ([`Answering::begun`]).
    answering: bool,
    /// The request has ended ([`Answering::request_ended`]).
    ended: bool,
    reader_gone: bool,
    /// The connection waiting in [`Demand::wanted`].
    waker: Option<Waker>,
    /// What the reader waits for in [`BodyReader::wait_for`] (0: it does
    /// not wait).
    reader_wants: u64,
}

struct Shared {
    /// CONTENT_LENGTH when known; otherwise the body ends at `finish`.
    expected: Option<u64>,
    limits: SpoolLimits,
    spool: Mutex<Spool>,
    ready: Condvar,
}

/// Creates the two ends of a body of `expected` bytes, or of a body whose
/// end the connection will announce with [`BodyWriter::finish`].
pub fn body_pipe(expected: Option<u64>, limits: SpoolLimits) -> (BodyWriter, BodyReader) {
    let shared = Arc::new(Shared {
        expected,
        limits,
        spool: Mutex::new(Spool {
            memory: VecDeque::new(),
            memory_bytes: 0,
            file: None,
            file_written: 0,
            file_read: 0,
            received: 0,
            finished: false,
            failure: None,
            started: false,
            answering: false,
            ended: false,
            reader_gone: false,
            waker: None,
            reader_wants: 0,
        }),
        ready: Condvar::new(),
    });
    (
        BodyWriter {
            shared: shared.clone(),
        },
        BodyReader {
            shared,
            consumed: 0,
        },
    )
}

/// The connection's end: pushes bytes as they arrive, never blocks.
pub struct BodyWriter {
    shared: Arc<Shared>,
}

impl BodyWriter {
    /// CONTENT_LENGTH of this body, when known.
    pub fn expected(&self) -> Option<u64> {
        self.shared.expected
    }

    /// Bytes handed over so far.
    pub fn received(&self) -> u64 {
        self.shared.spool.lock().unwrap().received
    }

    /// Bytes of a body of known length the connection still has to read
    /// (0 for a body whose end is announced with [`BodyWriter::finish`]).
    pub fn remaining(&self) -> u64 {
        let spool = self.shared.spool.lock().unwrap();
        self.shared.expected.map_or(0, |e| e - spool.received)
    }

    /// Hands over body bytes; bytes past `expected` are the caller's bug and
    /// are cut off. Once the reader is gone, bytes are dropped (discarded).
    pub fn push(&self, mut data: Bytes) {
        let mut spool = self.shared.spool.lock().unwrap();
        if let Some(expected) = self.shared.expected {
            let room = expected - spool.received;
            if data.len() as u64 > room {
                data.truncate(room as usize);
            }
        }
        spool.received += data.len() as u64;
        if spool.reader_gone || data.is_empty() || spool.failure.is_some() {
            return;
        }
        if spool.file.is_none()
            && spool.memory_bytes + data.len() <= self.shared.limits.memory_limit
        {
            spool.memory_bytes += data.len();
            spool.memory.push_back(data);
        } else if let Err(e) = spill(&mut spool, &data) {
            spool.failure = Some(BodyError::Spool(e.to_string()));
        }
        // Wake the reader only once it can have what it waits for.
        let wake = spool.reader_wants > 0
            && (spool.unread() >= spool.reader_wants || spool.failure.is_some());
        drop(spool);
        if wake {
            self.shared.ready.notify_one();
        }
    }

    /// The stream carrying the body has ended. A body shorter than its
    /// CONTENT_LENGTH then fails with [`BodyError::EndedEarly`].
    pub fn finish(&self) {
        let mut spool = self.shared.spool.lock().unwrap();
        spool.finished = true;
        if let Some(expected) = self.shared.expected
            && spool.received < expected
            && spool.failure.is_none()
        {
            spool.failure = Some(BodyError::EndedEarly {
                received: spool.received,
                expected,
            });
        }
        drop(spool);
        self.shared.ready.notify_all();
    }

    /// Ends the body with an error that pending and later reads report.
    pub fn fail(&self, error: BodyError) {
        let mut spool = self.shared.spool.lock().unwrap();
        if spool.failure.is_none() {
            spool.failure = Some(error);
        }
        drop(spool);
        self.shared.ready.notify_all();
    }

    /// True once the application no longer reads (its request ended).
    pub fn reader_gone(&self) -> bool {
        self.shared.spool.lock().unwrap().reader_gone
    }

    /// Resolves when the connection should read more of the body: the
    /// application runs and has less than [`READ_AHEAD`] bytes waiting for
    /// it, or it has begun its answer, or the request is gone (the rest is
    /// then read and discarded). Until then reading would only move the
    /// body from the socket into this process. A request the pool has
    /// queued behind busy threads keeps its body in the socket (and the
    /// front server's buffers), as with a server that accepts only when a
    /// worker is free.
    pub async fn wanted(&self) {
        self.demand().wanted().await
    }

    /// [`BodyWriter::wanted`], for a driver that keeps the writer
    /// elsewhere.
    pub fn demand(&self) -> Demand {
        Demand {
            shared: self.shared.clone(),
            read_ahead: true,
        }
    }
}

/// Whether the connection should read more of a body; see
/// [`BodyWriter::wanted`].
#[derive(Clone)]
pub struct Demand {
    shared: Arc<Shared>,
    /// Bounded by [`READ_AHEAD`] while the application runs; otherwise
    /// the whole body is wanted from the moment a thread takes it.
    read_ahead: bool,
}

impl Demand {
    /// The body is wanted whole once a Python thread has taken the
    /// request, without the [`READ_AHEAD`] bound: for a connection that
    /// may carry other requests behind this body (FastCGI with
    /// FCGI_KEEP_CONN may multiplex), which must not wait for this
    /// application to read.
    pub fn whole_once_taken(self) -> Demand {
        Demand {
            read_ahead: false,
            ..self
        }
    }

    /// Whether [`Demand::wanted`] would resolve now.
    pub fn is_wanted(&self) -> bool {
        self.shared
            .spool
            .lock()
            .unwrap()
            .wants_more(self.read_ahead)
    }

    /// See [`BodyWriter::wanted`].
    pub async fn wanted(&self) {
        poll_fn(|cx| {
            let mut spool = self.shared.spool.lock().unwrap();
            if spool.wants_more(self.read_ahead) {
                return Poll::Ready(());
            }
            spool.waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

impl Spool {
    /// Bytes received that the application has not taken yet.
    fn unread(&self) -> u64 {
        self.memory_bytes as u64 + self.file_written - self.file_read
    }

    fn wants_more(&self, read_ahead: bool) -> bool {
        self.reader_gone
            || self.answering
            || (self.started && (!read_ahead || self.unread() < READ_AHEAD as u64))
    }
}

/// Wakes the connection waiting in [`Demand::wanted`], after the change
/// that ends its wait.
fn wake_demand(mut spool: std::sync::MutexGuard<'_, Spool>) {
    let waker = spool.waker.take();
    drop(spool);
    if let Some(waker) = waker {
        waker.wake();
    }
}

impl Drop for BodyWriter {
    fn drop(&mut self) {
        let complete = {
            let spool = self.shared.spool.lock().unwrap();
            spool.finished || Some(spool.received) == self.shared.expected
        };
        if !complete {
            self.fail(BodyError::Disconnected);
        }
    }
}

fn spill(spool: &mut Spool, data: &[u8]) -> std::io::Result<()> {
    if spool.file.is_none() {
        spool.file = Some(tempfile::tempfile()?);
    }
    let file = spool.file.as_mut().expect("just created");
    file.seek(SeekFrom::Start(spool.file_written))?;
    file.write_all(data)?;
    spool.file_written += data.len() as u64;
    Ok(())
}

/// The application's end, read by `wsgi.input` on a Python thread.
pub struct BodyReader {
    shared: Arc<Shared>,
    consumed: u64,
}

impl BodyReader {
    /// A Python thread has taken the request: the connection reads the
    /// body from now on, whether or not the application reads it (see the
    /// module's doc for why).
    pub fn start(&self) {
        let mut spool = self.shared.spool.lock().unwrap();
        spool.started = true;
        wake_demand(spool);
    }

    /// What the response side uses to tell the body that the application
    /// has begun its answer.
    pub(crate) fn answering(&self) -> Answering {
        Answering {
            shared: self.shared.clone(),
        }
    }

    /// Bytes the application has not read yet, when the length is known.
    pub fn unread(&self) -> Option<u64> {
        self.shared.expected.map(|e| e - self.consumed)
    }

    /// Takes up to `max` bytes that are already here, without waiting.
    pub fn try_read(&mut self, max: usize) -> Chunk {
        if Some(self.consumed) == self.shared.expected {
            return Chunk::End;
        }
        if max == 0 {
            return Chunk::Data(Bytes::new());
        }
        let mut spool = self.shared.spool.lock().unwrap();
        if spool.ended {
            return Chunk::Failed(BodyError::RequestEnded);
        }
        if let Some(front) = spool.memory.front_mut() {
            let data = if front.len() <= max {
                spool.memory.pop_front().expect("front exists")
            } else {
                front.split_to(max)
            };
            spool.memory_bytes -= data.len();
            self.consumed += data.len() as u64;
            wake_if_drained(spool);
            return Chunk::Data(data);
        }
        if spool.file_read < spool.file_written {
            return match read_spilled(&mut spool, max) {
                Ok(data) => {
                    self.consumed += data.len() as u64;
                    wake_if_drained(spool);
                    Chunk::Data(data)
                }
                Err(e) => Chunk::Failed(BodyError::Spool(e.to_string())),
            };
        }
        match &spool.failure {
            Some(e) => Chunk::Failed(e.clone()),
            None if spool.finished => Chunk::End,
            None => Chunk::Pending,
        }
    }

    /// Waits until [`BodyReader::try_read`] has something to say. Call it
    /// with the GIL released.
    pub fn wait(&self) {
        self.wait_for(1)
    }

    /// Waits until `bytes` bytes are waiting (at most [`READ_AHEAD`]: the
    /// connection reads no further ahead), or the body has ended or
    /// failed. A reader that needs many bytes then wakes once for them,
    /// not once for each piece the connection received. Call it with the
    /// GIL released.
    pub fn wait_for(&self, bytes: usize) {
        let want = bytes.clamp(1, READ_AHEAD) as u64;
        let mut spool = self.shared.spool.lock().unwrap();
        spool.reader_wants = want;
        let mut spool = self
            .shared
            .ready
            .wait_while(spool, |s| {
                s.unread() < want && s.failure.is_none() && !s.finished && !s.ended
            })
            .unwrap();
        spool.reader_wants = 0;
    }
}

/// Once the application has taken half of what was read ahead, the
/// connection reads on: in steps of half the read-ahead, not one wake-up
/// per read.
fn wake_if_drained(spool: std::sync::MutexGuard<'_, Spool>) {
    if spool.waker.is_some() && spool.unread() <= READ_AHEAD as u64 / 2 {
        wake_demand(spool);
    }
}

/// The response side's hold on a body: once the application answers, the
/// body is read to its end whatever the application reads, so that a front
/// server that sends the whole body before it reads the response never
/// waits on an application that waits on it.
#[derive(Clone)]
pub(crate) struct Answering {
    shared: Arc<Shared>,
}

impl Answering {
    pub(crate) fn begun(&self) {
        let mut spool = self.shared.spool.lock().unwrap();
        if !spool.answering {
            spool.answering = true;
            wake_demand(spool);
        }
    }

    /// Why the body could not be read to its end (the client went away,
    /// was too slow, broke its framing), if it could not.
    pub(crate) fn failure(&self) -> Option<BodyError> {
        self.shared.spool.lock().unwrap().failure.clone()
    }

    /// The request is over, whether or not the application let go of its
    /// `wsgi.input`: what is left of the body is discarded, and a later
    /// read fails.
    pub(crate) fn request_ended(&self) {
        let mut spool = self.shared.spool.lock().unwrap();
        spool.ended = true;
        discard(&mut spool);
        wake_demand(spool);
        self.shared.ready.notify_all();
    }
}

/// Nobody will read the body any more: drop what waits, and drop what comes.
fn discard(spool: &mut Spool) {
    spool.reader_gone = true;
    spool.memory.clear();
    spool.memory_bytes = 0;
    spool.file = None;
    spool.file_read = 0;
    spool.file_written = 0;
}

fn read_spilled(spool: &mut Spool, max: usize) -> std::io::Result<Bytes> {
    let available = (spool.file_written - spool.file_read) as usize;
    let mut buf = BytesMut::zeroed(available.min(max).min(256 * 1024));
    let file = spool.file.as_mut().expect("spilled bytes imply a file");
    file.seek(SeekFrom::Start(spool.file_read))?;
    file.read_exact(&mut buf)?;
    spool.file_read += buf.len() as u64;
    if spool.file_read == spool.file_written {
        // Caught up: drop the file and go back to memory.
        spool.file = None;
        spool.file_read = 0;
        spool.file_written = 0;
    }
    Ok(buf.freeze())
}

impl Drop for BodyReader {
    fn drop(&mut self) {
        let mut spool = self.shared.spool.lock().unwrap();
        discard(&mut spool);
        wake_demand(spool);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(reader: &mut BodyReader) -> Result<Vec<u8>, BodyError> {
        let mut out = Vec::new();
        loop {
            match reader.try_read(7) {
                Chunk::Data(d) => out.extend_from_slice(&d),
                Chunk::End => return Ok(out),
                Chunk::Failed(e) => return Err(e),
                Chunk::Pending => reader.wait(),
            }
        }
    }

    #[test]
    fn spills_past_the_memory_limit_and_keeps_order() {
        let (writer, mut reader) = body_pipe(Some(100), SpoolLimits { memory_limit: 10 });
        let expected: Vec<u8> = (0..100u8).collect();
        for piece in expected.chunks(9) {
            writer.push(Bytes::copy_from_slice(piece));
        }
        assert_eq!(read_all(&mut reader).unwrap(), expected);
    }

    #[test]
    fn interleaved_reads_and_spills() {
        let (writer, mut reader) = body_pipe(Some(60), SpoolLimits { memory_limit: 8 });
        let data: Vec<u8> = (0..60u8).collect();
        let mut got = Vec::new();
        for piece in data.chunks(6) {
            writer.push(Bytes::copy_from_slice(piece));
            writer.push(Bytes::new());
            if let Chunk::Data(d) = reader.try_read(5) {
                got.extend_from_slice(&d);
            }
        }
        got.extend(read_all(&mut reader).unwrap());
        assert_eq!(got, data);
    }

    #[test]
    fn a_reader_waits_across_threads() {
        let (writer, mut reader) = body_pipe(Some(4), SpoolLimits::default());
        let t = std::thread::spawn(move || read_all(&mut reader));
        std::thread::sleep(std::time::Duration::from_millis(20));
        writer.push(Bytes::from_static(b"ab"));
        writer.push(Bytes::from_static(b"cdEXTRA"));
        assert_eq!(t.join().unwrap().unwrap(), b"abcd");
    }

    #[test]
    fn a_truncated_body_fails_after_what_arrived() {
        let (writer, mut reader) = body_pipe(Some(10), SpoolLimits::default());
        writer.push(Bytes::from_static(b"abc"));
        writer.fail(BodyError::Truncated {
            received: 3,
            expected: Some(10),
        });
        let err = read_all(&mut reader).unwrap_err();
        assert_eq!(
            err,
            BodyError::Truncated {
                received: 3,
                expected: Some(10)
            }
        );
    }

    #[test]
    fn dropping_the_writer_early_disconnects() {
        let (writer, mut reader) = body_pipe(Some(10), SpoolLimits::default());
        drop(writer);
        assert_eq!(read_all(&mut reader).unwrap_err(), BodyError::Disconnected);
    }

    #[test]
    fn a_body_of_unknown_length_ends_at_finish() {
        let (writer, mut reader) = body_pipe(None, SpoolLimits { memory_limit: 4 });
        writer.push(Bytes::from_static(b"abc"));
        writer.push(Bytes::from_static(b"defgh"));
        writer.finish();
        assert_eq!(read_all(&mut reader).unwrap(), b"abcdefgh");
    }

    #[test]
    fn finishing_short_of_content_length_fails() {
        let (writer, mut reader) = body_pipe(Some(10), SpoolLimits::default());
        writer.push(Bytes::from_static(b"abc"));
        writer.finish();
        assert_eq!(
            read_all(&mut reader).unwrap_err(),
            BodyError::EndedEarly {
                received: 3,
                expected: 10
            }
        );
    }

    #[test]
    fn an_empty_body_ends_at_once() {
        let (_writer, mut reader) = body_pipe(Some(0), SpoolLimits::default());
        assert!(matches!(reader.try_read(10), Chunk::End));
    }

    /// Counts its wake-ups.
    #[derive(Default)]
    struct Woken(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Woken {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    impl Woken {
        fn count(&self) -> usize {
            self.0.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    /// Polls `demand.wanted()` once: whether it resolved.
    fn poll_wanted(demand: &Demand, woken: &Arc<Woken>) -> bool {
        let waker = Waker::from(woken.clone());
        let mut cx = std::task::Context::from_waker(&waker);
        let future = std::pin::pin!(demand.wanted());
        future.poll(&mut cx).is_ready()
    }

    /// Runs `future` on this thread, parking between polls.
    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        struct Unpark(std::thread::Thread);
        impl std::task::Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut cx = std::task::Context::from_waker(&waker);
        let mut future = std::pin::pin!(future);
        loop {
            if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                return output;
            }
            std::thread::park();
        }
    }

    fn push_bytes(writer: &BodyWriter, mut n: usize) {
        while n > 0 {
            let piece = n.min(16 * 1024);
            writer.push(Bytes::from(vec![7u8; piece]));
            n -= piece;
        }
    }

    /// Takes what is waiting, without waiting; returns how much.
    fn take_waiting(reader: &mut BodyReader, max: usize) -> usize {
        let mut taken = 0;
        while taken < max {
            match reader.try_read(max - taken) {
                Chunk::Data(d) => taken += d.len(),
                _ => break,
            }
        }
        taken
    }

    #[test]
    fn a_queued_request_leaves_its_body_unread_until_a_thread_takes_it() {
        let (writer, reader) = body_pipe(Some(1 << 20), SpoolLimits::default());
        let demand = writer.demand();
        let woken = Arc::new(Woken::default());
        assert!(!poll_wanted(&demand, &woken));
        reader.start();
        assert_eq!(woken.count(), 1, "the waiting connection is woken");
        assert!(poll_wanted(&demand, &woken));
    }

    #[test]
    fn the_connection_reads_ahead_of_the_application_then_waits_for_it() {
        let (writer, mut reader) = body_pipe(Some(1 << 20), SpoolLimits::default());
        let demand = writer.demand();
        reader.start();
        push_bytes(&writer, READ_AHEAD);
        let woken = Arc::new(Woken::default());
        assert!(!poll_wanted(&demand, &woken), "{READ_AHEAD} bytes wait");
        // Less than half read: the connection is not woken for so little.
        assert_eq!(take_waiting(&mut reader, READ_AHEAD / 4), READ_AHEAD / 4);
        assert_eq!(woken.count(), 0);
        assert_eq!(take_waiting(&mut reader, READ_AHEAD / 4), READ_AHEAD / 4);
        assert_eq!(woken.count(), 1);
        assert!(poll_wanted(&demand, &woken));
    }

    #[test]
    fn a_body_wanted_whole_is_not_held_to_the_read_ahead() {
        let (writer, reader) = body_pipe(Some(1 << 20), SpoolLimits::default());
        let demand = writer.demand().whole_once_taken();
        let woken = Arc::new(Woken::default());
        assert!(
            !poll_wanted(&demand, &woken),
            "not before a thread takes it"
        );
        reader.start();
        assert_eq!(woken.count(), 1);
        push_bytes(&writer, 2 * READ_AHEAD);
        assert!(poll_wanted(&demand, &woken));
        assert!(!writer.demand().is_wanted(), "bounded in the other mode");
    }

    #[test]
    fn once_the_application_answers_the_body_is_read_to_its_end() {
        let (writer, reader) = body_pipe(Some(1 << 20), SpoolLimits { memory_limit: 1024 });
        let demand = writer.demand();
        reader.start();
        push_bytes(&writer, READ_AHEAD);
        let woken = Arc::new(Woken::default());
        assert!(!poll_wanted(&demand, &woken));
        reader.answering().begun();
        assert_eq!(woken.count(), 1);
        assert!(poll_wanted(&demand, &woken));
        push_bytes(&writer, 4 * READ_AHEAD);
        assert!(demand.is_wanted(), "spooled to disk, never held up");
    }

    #[test]
    fn a_reader_gone_lets_the_connection_drain_the_body() {
        let (writer, reader) = body_pipe(Some(1 << 20), SpoolLimits::default());
        let demand = writer.demand();
        let woken = Arc::new(Woken::default());
        assert!(!poll_wanted(&demand, &woken));
        drop(reader);
        assert_eq!(woken.count(), 1);
        assert!(poll_wanted(&demand, &woken));
    }

    #[test]
    fn an_ended_request_drains_and_refuses_later_reads() {
        let (writer, mut reader) = body_pipe(Some(1 << 20), SpoolLimits::default());
        let demand = writer.demand();
        reader.start();
        push_bytes(&writer, READ_AHEAD);
        assert!(!demand.is_wanted());
        reader.answering().request_ended();
        assert!(demand.is_wanted());
        writer.push(Bytes::from_static(b"dropped"));
        assert!(matches!(
            reader.try_read(10),
            Chunk::Failed(BodyError::RequestEnded)
        ));
        reader.wait();
    }

    #[test]
    fn a_reader_waking_for_many_bytes_wakes_once_they_are_all_here() {
        let (writer, mut reader) = body_pipe(Some(100), SpoolLimits::default());
        reader.start();
        let (waiting_tx, waiting_rx) = std::sync::mpsc::channel();
        let reading = std::thread::spawn(move || {
            waiting_tx.send(()).unwrap();
            reader.wait_for(10);
            take_waiting(&mut reader, 100)
        });
        waiting_rx.recv().unwrap();
        writer.push(Bytes::from_static(b"abc"));
        writer.push(Bytes::from_static(b"defghij"));
        assert_eq!(reading.join().unwrap(), 10);
    }

    #[test]
    fn a_reader_asking_for_more_than_the_read_ahead_gets_it_all() {
        let size = 4 * READ_AHEAD + 123;
        let (writer, mut reader) = body_pipe(Some(size as u64), SpoolLimits::default());
        // The connection's side: reads on only when wanted.
        let pump = std::thread::spawn(move || {
            let mut sent = 0;
            while sent < size {
                block_on(writer.wanted());
                let piece = (size - sent).min(5000);
                writer.push(Bytes::from(vec![(sent % 251) as u8; piece]));
                sent += piece;
            }
        });
        reader.start();
        let mut got = 0;
        loop {
            match reader.try_read(size) {
                Chunk::Data(d) => got += d.len(),
                Chunk::End => break,
                Chunk::Failed(e) => panic!("{e}"),
                Chunk::Pending => reader.wait_for(size - got),
            }
        }
        pump.join().unwrap();
        assert_eq!(got, size);
    }
}
