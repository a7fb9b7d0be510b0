//! The request body on its way from the connection to `wsgi.input`.
//!
//! The connection side pushes whatever arrives and never waits: past
//! `memory_limit` bytes the body spills into an unlinked temporary file. That
//! is what keeps a front server that sends the whole body before it reads the
//! response (nginx, Apache) from deadlocking against an app that writes
//! before it reads. The Python side blocks (with the GIL released) until
//! bytes, the end of the body, or a failure arrive.

use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::{Arc, Condvar, Mutex};

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
    /// The body's own framing (uwsgi's chunked encoding) is broken.
    Framing(String),
    /// The connection failed or was abandoned.
    Disconnected,
    /// Spilling to the temp file failed.
    Spool(String),
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
            BodyError::Framing(e) => write!(f, "request body is malformed: {e}"),
            BodyError::Disconnected => write!(f, "the connection closed while the body was read"),
            BodyError::Spool(e) => write!(f, "could not spool the request body: {e}"),
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
    reader_gone: bool,
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
            reader_gone: false,
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
        drop(spool);
        self.shared.ready.notify_one();
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
        if let Some(front) = spool.memory.front_mut() {
            let data = if front.len() <= max {
                spool.memory.pop_front().expect("front exists")
            } else {
                front.split_to(max)
            };
            spool.memory_bytes -= data.len();
            self.consumed += data.len() as u64;
            return Chunk::Data(data);
        }
        if spool.file_read < spool.file_written {
            return match read_spilled(&mut spool, max) {
                Ok(data) => {
                    self.consumed += data.len() as u64;
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
        let spool = self.shared.spool.lock().unwrap();
        let _unused = self
            .shared
            .ready
            .wait_while(spool, |s| {
                s.memory.is_empty()
                    && s.file_read == s.file_written
                    && s.failure.is_none()
                    && !s.finished
            })
            .unwrap();
    }
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
        spool.reader_gone = true;
        spool.memory.clear();
        spool.memory_bytes = 0;
        spool.file = None;
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
}
