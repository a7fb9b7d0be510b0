//! Writing the access log without making a request wait for the disk:
//! the line is rendered where the request ends (into a buffer of that
//! thread's own, no allocation) and appended to a queue of bytes (a lock
//! held for a copy, no system call); one thread of the worker writes what
//! has queued in one write, every 100 ms or sooner when much has queued.
//! The queue is bounded: when the disk is slow or stuck, lines are dropped
//! and counted, never waited for, and the count is reported.
//!
//! A file is opened with `O_APPEND`, so logrotate's `copytruncate` works
//! (writes go on at the new end); it is reopened when
//! [`crate::reopen::generation`] changes (SIGUSR1, for `create`).

use super::{Format, Record};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Where lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// `-`.
    Stderr,
    File(PathBuf),
}

impl Destination {
    /// `-` is stderr, anything else a file path.
    pub fn parse(spec: &str) -> Destination {
        if spec == "-" {
            Destination::Stderr
        } else {
            Destination::File(PathBuf::from(spec))
        }
    }

    fn open(&self) -> std::io::Result<Output> {
        match self {
            Destination::Stderr => Ok(Output::Stderr),
            Destination::File(path) => OpenOptions::new()
                .append(true)
                .create(true)
                .open(path)
                .map(Output::File),
        }
    }
}

enum Output {
    Stderr,
    File(File),
}

impl Output {
    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Output::Stderr => std::io::stderr().lock().write_all(bytes),
            Output::File(file) => file.write_all(bytes),
        }
    }
}

/// How a [`Writer`] runs.
pub struct WriterConfig {
    pub destination: Destination,
    pub format: Format,
    /// Most bytes of lines waiting; past it new lines are dropped and
    /// counted.
    pub queue: usize,
    /// Tells the operator about dropped lines and write errors (the
    /// daemon's log: this crate logs nothing itself).
    pub report: Box<dyn Fn(&str) + Send + Sync>,
}

/// Records waiting are written at the latest this long after they came.
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// This many bytes waiting wake the writer at once.
const BATCH: usize = 64 * 1024;

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    /// Lines dropped because the queue was full (all time).
    dropped: AtomicU64,
    limit: usize,
}

#[derive(Default)]
struct Queue {
    lines: Vec<u8>,
    stopping: bool,
}

/// See the module comment.
pub struct Writer {
    shared: Arc<Shared>,
    format: Format,
    thread: Mutex<Option<JoinHandle<()>>>,
}

thread_local! {
    /// Where a line is rendered before it is queued.
    static LINE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Writer {
    /// Opens the destination (an error here is the operator's to see at
    /// start) and starts the writing thread.
    pub fn start(config: WriterConfig) -> std::io::Result<Writer> {
        let output = config.destination.open()?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            dropped: AtomicU64::new(0),
            limit: config.queue.max(1),
        });
        let format = config.format.clone();
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("access-log".into())
                .spawn(move || run(&shared, config, output))?
        };
        Ok(Writer {
            shared,
            format,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Renders `record`'s line and queues it; never waits for the disk.
    pub fn submit(&self, record: &Record<'_>) {
        LINE.with_borrow_mut(|line| {
            line.clear();
            self.format.render(record, line);
            self.submit_line(line);
        });
    }

    /// Queues a rendered line (with its newline).
    pub fn submit_line(&self, line: &[u8]) {
        let mut queue = self.shared.queue.lock().unwrap();
        if queue.lines.len() + line.len() > self.shared.limit || queue.stopping {
            drop(queue);
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let before = queue.lines.len();
        queue.lines.extend_from_slice(line);
        let wake = before < BATCH && queue.lines.len() >= BATCH;
        drop(queue);
        if wake {
            self.shared.wake.notify_one();
        }
    }

    /// Lines dropped so far because the writer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Writes what is queued and stops the thread (as the worker exits).
    /// Waits at most `limit` for a stuck disk.
    pub fn stop(&self, limit: Duration) {
        self.shared.queue.lock().unwrap().stopping = true;
        self.shared.wake.notify_one();
        let Some(thread) = self.thread.lock().unwrap().take() else {
            return;
        };
        let deadline = std::time::Instant::now() + limit;
        while !thread.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        if thread.is_finished() {
            let _ = thread.join();
        }
    }
}

fn run(shared: &Shared, config: WriterConfig, output: Output) {
    let WriterConfig {
        destination,
        report,
        ..
    } = config;
    let mut output = Some(output);
    let mut generation = crate::reopen::generation();
    let mut reported_dropped = 0;
    let mut failing = false;
    let mut bytes = Vec::with_capacity(BATCH * 2);
    loop {
        bytes.clear();
        let stopping = {
            let mut queue = shared.queue.lock().unwrap();
            if queue.lines.is_empty() && !queue.stopping {
                queue = shared.wake.wait_timeout(queue, FLUSH_EVERY).unwrap().0;
            }
            // The buffers change places: both keep their capacity.
            std::mem::swap(&mut queue.lines, &mut bytes);
            queue.stopping
        };
        let now = crate::reopen::generation();
        if now != generation {
            generation = now;
            match destination.open() {
                Ok(reopened) => output = Some(reopened),
                Err(e) => report(&format!(
                    "reopening the access log {destination:?} failed: {e}; writing to the file open before"
                )),
            }
        }
        if !bytes.is_empty()
            && let Some(out) = output.as_mut()
        {
            match out.write_all(&bytes) {
                Ok(()) => failing = false,
                Err(e) => {
                    if !failing {
                        report(&format!(
                            "writing the access log {destination:?} failed: {e}; lines are lost until a write succeeds"
                        ));
                    }
                    failing = true;
                }
            }
        }
        let dropped = shared.dropped.load(Ordering::Relaxed);
        if dropped != reported_dropped {
            report(&format!(
                "{} access log line(s) dropped: the log could not keep up (slow or stuck disk); {dropped} in all",
                dropped - reported_dropped
            ));
            reported_dropped = dropped;
        }
        if stopping && shared.queue.lock().unwrap().lines.is_empty() {
            return;
        }
    }
}
