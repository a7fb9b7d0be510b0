//! Writing the access log off the request's thread: records are queued
//! (a lock held for a push, no system call), and one thread of the
//! worker renders them in batches and writes each batch at once. The
//! queue is bounded: when the disk is slow or stuck, lines are dropped and
//! counted, never waited for, and the count is reported.
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
    /// Most records waiting; past it new ones are dropped and counted.
    pub queue: usize,
    /// Tells the operator about dropped lines and write errors (the
    /// daemon's log: this crate logs nothing itself).
    pub report: Box<dyn Fn(&str) + Send + Sync>,
}

/// Records waiting are written at the latest this long after they came.
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// A batch this big wakes the writer at once.
const BATCH: usize = 256;

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    /// Lines dropped because the queue was full (all time).
    dropped: AtomicU64,
    limit: usize,
}

#[derive(Default)]
struct Queue {
    records: Vec<Record>,
    stopping: bool,
}

/// See the module comment.
pub struct Writer {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
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
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("access-log".into())
                .spawn(move || run(&shared, config, output))?
        };
        Ok(Writer {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues a record; never waits for the disk.
    pub fn submit(&self, record: Record) {
        let mut queue = self.shared.queue.lock().unwrap();
        if queue.records.len() >= self.shared.limit || queue.stopping {
            drop(queue);
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        queue.records.push(record);
        let wake = queue.records.len() == BATCH;
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
        format,
        report,
        ..
    } = config;
    let mut output = Some(output);
    let mut generation = crate::reopen::generation();
    let mut reported_dropped = 0;
    let mut failing = false;
    let mut batch = Vec::new();
    let mut bytes = Vec::with_capacity(64 * 1024);
    loop {
        let stopping = {
            let mut queue = shared.queue.lock().unwrap();
            if queue.records.is_empty() && !queue.stopping {
                queue = shared.wake.wait_timeout(queue, FLUSH_EVERY).unwrap().0;
            }
            std::mem::swap(&mut queue.records, &mut batch);
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
        bytes.clear();
        for record in batch.drain(..) {
            format.render(&record, &mut bytes);
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
        if stopping && shared.queue.lock().unwrap().records.is_empty() {
            return;
        }
    }
}
