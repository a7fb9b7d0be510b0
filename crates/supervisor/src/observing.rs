//! What the master does for operators (issue 14), beside supervising: it
//! keeps the scoreboard's slots (claimed before a fork, released after a
//! reap, with the counters of why workers ended), serves the endpoint
//! (endpoint.rs) from its poll loop, keeps the 5 s history, updates
//! systemd's `STATUS=` and writes the live status to the log on SIGUSR2.
//! Single-threaded, like the rest of the master: each scrape is a read of
//! shared memory and a few /proc reads, never a question to a worker.

use crate::endpoint::{Endpoint, Page};
use crate::listener::BoundSocket;
use crate::policy::Pid;
use crate::systemd;
use nix::poll::PollFd;
use rustgi_observe::access::{Destination, Format, HeaderList, Record};
use rustgi_observe::board::{Board, Counter, Released, Retired, Running};
use rustgi_observe::history::History;
use rustgi_observe::metrics::{self, Respawns, Snapshot, Worker};
use rustgi_observe::{Ended, Front};
use std::collections::HashSet;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant, SystemTime};

/// The board's descriptor, handed to a re-executed master.
pub(crate) const BOARD_FD_ENV: &str = "RUSTGI_BOARD_FD";
/// How often the history takes a sample (the status page's resolution).
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// How often systemd's STATUS= line is refreshed.
const STATUS_EVERY: Duration = Duration::from_secs(5);

pub(crate) struct Observer {
    pub(crate) board: &'static Board,
    endpoint: Option<Endpoint>,
    history: History,
    next_sample: Instant,
    next_status: Instant,
    started: Instant,
    /// Workers the master told to stop: their end is no crash.
    told_to_stop: HashSet<Pid>,
    describe: String,
    /// `--access-log` and its format: the master writes the lines of the
    /// requests a dead worker was running.
    access: Option<(Destination, Format)>,
}

/// The board a previous image handed over (`fd`), or a new one.
/// `handed` is only given after our own --preload re-exec (master.rs,
/// `remember_start`); even then the descriptor is checked, borrowed, to
/// be a sealed memfd before it is taken, and one that is not is left
/// alone (it may be someone else's).
fn board_for(handed: Option<i32>, workers: usize, threads: usize) -> std::io::Result<Board> {
    // SAFETY: fcntl(F_GETFD) only asks whether the number is open.
    if let Some(raw) = handed.filter(|&raw| unsafe { libc::fcntl(raw, libc::F_GETFD) } >= 0) {
        // SAFETY: `raw` is open (above), and the borrow lives only for the
        // checks below, during which nothing closes it (the master is
        // single-threaded).
        let borrowed = unsafe { BorrowedFd::borrow_raw(raw) };
        match Board::check_handed(borrowed) {
            Ok(()) => {
                // SAFETY: a sealed memfd at `raw`, named by our previous
                // image in RUSTGI_BOARD_FD, which is read once, at start
                // (remember_start): nothing else in this process owns it.
                let fd = unsafe { OwnedFd::from_raw_fd(raw) };
                match Board::open(fd) {
                    Ok(board) => return Ok(board),
                    Err(e) => tracing::warn!(
                        "the scoreboard handed over by the previous image is unusable ({e}); starting a new one: totals restart from 0"
                    ),
                }
            }
            Err(e) => tracing::warn!(
                "{BOARD_FD_ENV}={raw} is no scoreboard ({e}); the descriptor is left alone and a new board started: totals restart from 0"
            ),
        }
    }
    Board::create(workers, threads)
}

impl Observer {
    pub(crate) fn new(
        handed_board: Option<i32>,
        endpoint: Endpoint,
        processes: usize,
        threads: usize,
        describe: String,
        draining: &[Pid],
        access: Option<(Destination, Format)>,
    ) -> std::io::Result<Observer> {
        let board = board_for(
            handed_board,
            rustgi_observe::board::slots_for(processes),
            threads,
        )?;
        let now = Instant::now();
        Ok(Observer {
            board: Box::leak(Box::new(board)),
            endpoint: Some(endpoint),
            history: History::new(),
            next_sample: now,
            next_status: now + STATUS_EVERY,
            started: now,
            told_to_stop: draining.iter().copied().collect(),
            describe,
            access,
        })
    }

    /// Frees the slots of workers that ended while the master was being
    /// re-executed (nobody reaped them as ours).
    pub(crate) fn forget_gone(&mut self, live: &[Pid]) {
        for pid in self.board.pids() {
            if !live.contains(&(pid as Pid))
                && let Some(slot) = self.board.find(pid)
            {
                self.board.release(slot);
            }
        }
    }

    /// Before a fork: the new worker's slot.
    pub(crate) fn claim(&self, generation: u64) -> Option<usize> {
        let slot = self.board.claim(generation);
        if slot.is_none() {
            tracing::warn!(
                "the scoreboard has no free slot: the new worker's requests are not counted in the metrics (more workers than it was sized for)"
            );
        }
        slot
    }

    pub(crate) fn spawned(&self, slot: Option<usize>, pid: Option<Pid>) {
        let Some(slot) = slot else { return };
        match pid {
            Some(pid) => {
                self.board.count(Counter::Spawns);
                self.board.started(slot, pid as u32, unix_ms());
            }
            None => {
                self.board.release(slot);
            }
        }
    }

    pub(crate) fn told_to_stop(&mut self, pid: Pid) {
        self.told_to_stop.insert(pid);
    }

    /// The master replaces `pid` for its lifetime: counted as that
    /// cause when it is reaped.
    pub(crate) fn expired(&self, pid: Pid) {
        if let Some(slot) = self.board.find(pid as u32) {
            self.board.retired(slot, Retired::Lifetime);
        }
    }

    pub(crate) fn reloading(&self) {
        self.board.count(Counter::Reloads);
    }

    /// A worker was reaped: its counters are kept, why it ended counted,
    /// and what it was running when it ended is logged.
    pub(crate) fn reaped(&mut self, pid: Pid, how: &str, stopping: bool) {
        let told = self.told_to_stop.remove(&pid);
        let Some(slot) = self.board.find(pid as u32) else {
            return;
        };
        let index = self.board.worker(slot).index;
        let Released { in_flight, retired } = self.board.release(slot);
        let counter = match retired {
            Some(Retired::MaxRequests) => Some(Counter::RespawnMaxRequests),
            Some(Retired::Rss) => Some(Counter::RespawnRss),
            Some(Retired::Timeout) => Some(Counter::RespawnTimeout),
            Some(Retired::Lifetime) => Some(Counter::RespawnLifetime),
            None if told || stopping => None,
            None => Some(Counter::RespawnCrash),
        };
        if let Some(counter) = counter {
            self.board.count(counter);
        }
        for running in &in_flight {
            log_killed(pid, index, how, running);
            if let Some((destination, format)) = &self.access {
                write_killed_line(destination, format, pid, running);
            }
        }
    }

    /// The descriptors to poll; [`Observer::ready`] takes their results in
    /// this order.
    pub(crate) fn poll_fds(&self) -> Vec<PollFd<'_>> {
        self.endpoint
            .as_ref()
            .map(Endpoint::poll_fds)
            .unwrap_or_default()
    }

    /// When the master must look in next for us.
    pub(crate) fn deadline(&self) -> Instant {
        let mut at = self.next_sample.min(self.next_status);
        if let Some(conn) = self.endpoint.as_ref().and_then(Endpoint::deadline) {
            at = at.min(conn);
        }
        at
    }

    pub(crate) fn ready(&mut self, ready: &[bool], socket: Option<&BoundSocket>, target: usize) {
        let Some(mut endpoint) = self.endpoint.take() else {
            return;
        };
        endpoint.ready(ready, &mut |page| self.page(page, socket, target));
        self.endpoint = Some(endpoint);
    }

    fn page(&self, page: Page, socket: Option<&BoundSocket>, target: usize) -> Vec<u8> {
        let snap = self.snapshot(socket, target);
        match page {
            Page::Metrics => metrics::prometheus(&snap).into_bytes(),
            Page::StatusJson => metrics::status_json(&snap, &self.history.to_json()).into_bytes(),
            Page::StatusText => metrics::status_text(&snap).into_bytes(),
            Page::Html => rustgi_observe::page::HTML.as_bytes().to_vec(),
        }
    }

    /// Samples the history and refreshes STATUS= when due.
    pub(crate) fn tick(&mut self, socket: Option<&BoundSocket>, target: usize) {
        let now = Instant::now();
        if now >= self.next_sample {
            self.next_sample = now + SAMPLE_EVERY;
            self.history.push(unix_ms(), &self.board.totals());
        }
        if now >= self.next_status {
            self.next_status = now + STATUS_EVERY;
            let snap = self.snapshot(socket, target);
            systemd::notify(&format!(
                "STATUS={} on {}",
                metrics::status_line(&snap),
                self.describe
            ));
        }
    }

    /// SIGUSR2: the live status, to the log.
    pub(crate) fn log_status(&self, socket: Option<&BoundSocket>, target: usize) {
        let text = metrics::status_text(&self.snapshot(socket, target));
        tracing::info!("SIGUSR2: live status:\n{}", text.trim_end());
    }

    pub(crate) fn snapshot(&self, socket: Option<&BoundSocket>, target: usize) -> Snapshot {
        let board = self.board;
        let workers = board
            .pids()
            .into_iter()
            .filter_map(|pid| board.find(pid))
            .map(|slot| {
                let view = board.worker(slot);
                let rss_bytes = rss_of(view.pid);
                Worker { view, rss_bytes }
            })
            .collect();
        Snapshot {
            version: env!("CARGO_PKG_VERSION").to_string(),
            python: board.python(),
            now_unix_ms: unix_ms(),
            uptime_s: self.started.elapsed().as_secs_f64(),
            totals: board.totals(),
            backlog: socket.map(crate::backlog::of).unwrap_or_default(),
            workers_target: target,
            workers,
            respawns: Respawns {
                crash: board.counter(Counter::RespawnCrash),
                max_requests: board.counter(Counter::RespawnMaxRequests),
                reload_on_rss: board.counter(Counter::RespawnRss),
                timeout: board.counter(Counter::RespawnTimeout),
                max_worker_lifetime: board.counter(Counter::RespawnLifetime),
            },
            reloads: board.counter(Counter::Reloads),
        }
    }

    /// A forked worker's copy: the endpoint's sockets are the master's.
    pub(crate) fn close_in_child(&mut self) {
        if let Some(endpoint) = self.endpoint.take() {
            endpoint.close_in_child();
        }
    }

    /// The board's descriptor, made inheritable for an execve (`true`) or
    /// close-on-exec again after a failed one.
    pub(crate) fn board_fd_for_exec(&self, exec: bool) -> i32 {
        let fd = self.board.fd();
        let _ = crate::proc::set_cloexec(fd.as_fd(), !exec);
        fd.as_raw_fd()
    }
}

/// The access log's line for a killed worker's request is lane A's
/// (`observe::access`, Ended::Killed); until then the master says what
/// it was.
fn log_killed(pid: Pid, index: u64, how: &str, running: &Running) {
    let show = |b: &[u8]| String::from_utf8_lossy(b).escape_debug().to_string();
    let ran_ms =
        (u128::from(unix_ms()) * 1000).saturating_sub(u128::from(running.started_unix_us)) / 1000;
    tracing::warn!(
        "worker {index} (pid {pid}) {how} while running request {} {} {}{}{} from {} ({} ms){}",
        show(&running.request_id),
        show(&running.method),
        show(&running.path),
        if running.query.is_empty() { "" } else { "?" },
        show(&running.query),
        show(&running.remote),
        ran_ms,
        if running.torn {
            " (read while it was being written: may mix two requests)"
        } else {
            ""
        }
    );
}

/// The access-log line of a request its worker died running (`killed`),
/// from what the worker put on the board when the request began. Written
/// at once (the master has no writer thread, and this is rare): appended
/// to the file, opened for it, so that it follows logrotate's moves.
fn write_killed_line(destination: &Destination, format: &Format, pid: Pid, running: &Running) {
    use std::io::Write;
    let started = SystemTime::UNIX_EPOCH + Duration::from_micros(running.started_unix_us);
    let record = Record {
        time: started,
        request_id: &running.request_id,
        remote: &running.remote,
        method: &running.method,
        path: &running.path,
        query: &running.query,
        protocol: b"",
        status: None,
        response_bytes: 0,
        request_bytes: 0,
        duration: SystemTime::now()
            .duration_since(started)
            .unwrap_or_default(),
        first_byte: None,
        pid: pid as u32,
        front: running.front.unwrap_or(Front::Cgi),
        ended: Ended::Killed,
        headers: &HeaderList::default(),
    };
    let mut line = Vec::new();
    format.render(&record, &mut line);
    if line.last() != Some(&b'\n') {
        line.push(b'\n');
    }
    let written = match destination {
        Destination::Stderr => std::io::stderr().write_all(&line),
        Destination::File(path) => std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .and_then(|mut file| file.write_all(&line)),
    };
    if let Err(e) = written {
        tracing::warn!("could not write the access log line of a killed worker's request: {e}");
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A worker's resident set size, from /proc/PID/statm.
fn rss_of(pid: u32) -> Option<u64> {
    crate::proc::rss_from_statm(&std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?)
}
