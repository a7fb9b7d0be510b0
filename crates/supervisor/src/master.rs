//! The master process (DESIGN.md, "Concurrency" and "Processes").
//!
//! In daemon mode rustgi-gateway is a master that forks `--processes`
//! workers (worker.rs) and looks after them. The master stays
//! single-threaded all its life, because it forks on every respawn: no
//! tokio runtime, no logging thread, no Python thread (with `--preload` it
//! initialises Python and imports the app, and starts no thread). It waits
//! in poll(2) on a signalfd and on one status pipe per worker.
//!
//! - A worker writes `R` on its pipe once its app is loaded, and `r` when
//!   it retires on its own (--max-requests, --reload-on-rss): its
//!   replacement starts at once while it drains.
//! - A worker that dies is replaced, at once unless workers keep dying
//!   within a second of their start (then 0.1 s, 0.2 s, … up to 10 s).
//! - SIGHUP (or a touch of --touch-reload) starts a new generation of
//!   workers, which import the app afresh; once all of them are ready the
//!   old ones are told to stop (SIGTERM: they close their listener, finish
//!   what they accepted and exit). The listening socket stays open all the
//!   while, so no connection is refused or lost. A new generation that
//!   cannot load the app is given up and the old one keeps serving.
//! - With --preload a reload re-executes the master (the app is imported
//!   in the master, so only a new image imports it afresh). The listening
//!   socket passes across the execve as fd 3 with LISTEN_FDS=1 and
//!   LISTEN_PID (listener.rs takes it, and RUSTGI_SOCKET_FILE_OWNED keeps
//!   the duty to remove the socket file), and the old workers, which stay
//!   our children (execve keeps the pid), are listed in RUSTGI_OLD_WORKERS:
//!   the new image stops them once its own workers are ready.

use crate::config::ServerConfig;
use crate::listener::{BoundSocket, SOCKET_FILE_OWNED_ENV, SocketFileGuard};
use crate::worker::{self, EXIT_APP_LOAD, EXIT_PANIC, Launch};
use crate::{RunError, proc, systemd};
use rustgi_core::Interpreter;
use std::collections::HashMap;
use std::ffi::{CString, OsString};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

/// Workers of the previous image of this master (pids, comma-separated).
const OLD_WORKERS_ENV: &str = "RUSTGI_OLD_WORKERS";
/// The worker count as SIGTTIN/SIGTTOU left it.
const PROCESSES_ENV: &str = "RUSTGI_PROCESSES";
/// A worker that lived less than this died "at once".
const QUICK_DEATH: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How often --touch-reload's file is looked at.
const TOUCH_INTERVAL: Duration = Duration::from_secs(1);
/// Beyond --graceful-timeout, how long a worker told to stop has to exit
/// before it is killed (it gives up on its own requests at the timeout).
const EXIT_MARGIN: Duration = Duration::from_secs(2);

/// What the process was started with, and what a previous image of this
/// master handed over.
struct Start {
    argv: Vec<OsString>,
    cwd: Option<PathBuf>,
    old_workers: Vec<libc::pid_t>,
    processes: Option<usize>,
}

static START: OnceLock<Start> = OnceLock::new();

/// Remembers argv and the working directory (a re-exec needs both as they
/// were) and takes a previous image's hand-over out of the environment.
/// Call it first in `run`, before any thread starts.
pub(crate) fn remember_start() {
    START.get_or_init(|| {
        let old_workers = std::env::var(OLD_WORKERS_ENV)
            .unwrap_or_default()
            .split(',')
            .filter_map(|pid| pid.trim().parse().ok())
            .collect();
        let processes = std::env::var(PROCESSES_ENV)
            .ok()
            .and_then(|n| n.parse().ok());
        // SAFETY: no other thread exists yet (documented above).
        unsafe {
            std::env::remove_var(OLD_WORKERS_ENV);
            std::env::remove_var(PROCESSES_ENV);
        }
        Start {
            argv: std::env::args_os().collect(),
            cwd: std::env::current_dir().ok(),
            old_workers,
            processes,
        }
    });
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    /// Loading the app; not yet accepting.
    Booting,
    Ready,
    /// Told to stop, or retiring on its own: draining, not counted.
    Stopping,
}

struct Worker {
    generation: u64,
    started: Instant,
    state: State,
    /// Read end of its status pipe; None for a worker of a previous image.
    status: Option<OwnedFd>,
    /// When to SIGKILL it if it has not exited (it was told to stop).
    kill_at: Option<Instant>,
}

struct Touch {
    path: PathBuf,
    mtime: Option<SystemTime>,
    next_check: Instant,
}

struct Master<'a> {
    config: &'a ServerConfig,
    pid: libc::pid_t,
    /// None once stopping.
    socket: Option<BoundSocket>,
    describe: String,
    socket_file: Option<SocketFileGuard>,
    owned_file: Option<PathBuf>,
    /// --preload: the interpreter with the app imported.
    interpreter: Option<Interpreter>,
    preload: bool,
    signals: OwnedFd,
    workers: HashMap<libc::pid_t, Worker>,
    target: usize,
    /// Workers of this generation are the ones that should be serving.
    generation: u64,
    /// No worker has been ready yet: one that fails to start is fatal.
    starting: bool,
    /// A new generation is starting; the older ones stop once it is ready.
    reloading: bool,
    quick_deaths: u32,
    next_spawn: Instant,
    stopping: bool,
    fatal: Option<String>,
    touch: Option<Touch>,
}

/// Serves `socket` with `--processes` workers until a stop signal.
pub(crate) fn run(
    config: &ServerConfig,
    socket: BoundSocket,
    socket_file: SocketFileGuard,
) -> Result<(), RunError> {
    remember_start();
    // First: from here on no signal can kill the master by its default
    // action, not even during a long --preload import.
    let signals = proc::block_master_signals()?;
    let start = START.get().expect("remembered above");
    let owned_file = socket.created_path().map(PathBuf::from);
    let describe = socket.describe();
    let pid = std::process::id() as libc::pid_t;
    let old_workers: Vec<libc::pid_t> = start
        .old_workers
        .iter()
        .copied()
        .filter(|&pid| proc::is_live_child(pid))
        .collect();
    let preload = config.processes.preload;
    let mut interpreter = None;
    if preload {
        match Interpreter::start(&config.python) {
            Ok(loaded) => {
                tracing::info!("Python {}", loaded.description);
                tracing::info!(
                    "application: {} (preloaded in the master)",
                    config.python.app
                );
                if let Err(traceback) = loaded.freeze_gc() {
                    tracing::warn!("gc.freeze() failed:\n{traceback}");
                }
                interpreter = Some(loaded);
            }
            Err(e) if !old_workers.is_empty() => {
                tracing::error!(
                    "reload failed: {}\nthe {} old worker(s) keep serving; fix the application and reload again",
                    crate::python_failed(e, config),
                    old_workers.len()
                );
            }
            Err(e) => return Err(crate::python_failed(e, config)),
        }
    }
    let touch = match &config.processes.touch_reload {
        Some(path) => {
            let path = std::path::absolute(path).unwrap_or_else(|_| path.clone());
            Some(Touch {
                mtime: mtime(&path),
                path,
                next_check: Instant::now() + TOUCH_INTERVAL,
            })
        }
        None => None,
    };
    let target = start
        .processes
        .filter(|_| !old_workers.is_empty())
        .unwrap_or(config.processes.count)
        .max(1);
    let mut master = Master {
        config,
        pid,
        socket: Some(socket),
        describe,
        socket_file: Some(socket_file),
        owned_file,
        preload,
        interpreter,
        signals,
        workers: HashMap::new(),
        target,
        generation: 1,
        starting: old_workers.is_empty(),
        reloading: false,
        quick_deaths: 0,
        next_spawn: Instant::now(),
        stopping: false,
        fatal: None,
        touch,
    };
    tracing::info!(
        "master {pid}: {} worker(s), {} thread(s) each{}",
        master.target,
        config.serve.threads,
        if preload { ", app preloaded" } else { "" }
    );
    if !old_workers.is_empty() {
        master.adopt(old_workers);
    }
    master.supervise()
}

impl Master<'_> {
    /// The workers a previous image of this master started: they serve on
    /// until this image's own are ready.
    fn adopt(&mut self, old: Vec<libc::pid_t>) {
        let now = Instant::now();
        for &pid in &old {
            self.workers.insert(
                pid,
                Worker {
                    generation: 0,
                    started: now,
                    state: State::Ready,
                    status: None,
                    kill_at: None,
                },
            );
        }
        if self.preload && self.interpreter.is_none() {
            // The new code does not import: the old workers stay the ones
            // that should serve (replaced, if they die, by workers that
            // import the app themselves).
            self.generation = 0;
            systemd::notify(&format!("READY=1\nSTATUS=reload failed; {}", self.status()));
        } else {
            self.reloading = true;
            tracing::info!(
                "re-executed: starting {} new worker(s); the {} old one(s) ({}) stop once these are ready",
                self.target,
                old.len(),
                pid_list(&old)
            );
        }
    }

    fn supervise(&mut self) -> Result<(), RunError> {
        loop {
            self.reap();
            let now = Instant::now();
            self.kill_overdue(now);
            if self.stopping || self.fatal.is_some() {
                if self.workers.is_empty() {
                    break;
                }
            } else {
                self.check_touch(now);
                self.maintain(now);
            }
            self.wait(now);
        }
        if let Some(message) = self.fatal.take() {
            return Err(RunError::Setup(message));
        }
        if let Some(interpreter) = self.interpreter.take() {
            interpreter.finalize();
        }
        drop(self.socket_file.take());
        tracing::info!("stopped");
        Ok(())
    }

    /// Sleeps in poll(2) until a signal, a worker's status byte, or the
    /// next deadline; then handles what came.
    fn wait(&mut self, now: Instant) {
        let mut deadline = now + Duration::from_secs(1);
        if let Some(touch) = &self.touch {
            deadline = deadline.min(touch.next_check);
        }
        if self.next_spawn > now {
            deadline = deadline.min(self.next_spawn);
        }
        for worker in self.workers.values() {
            if let Some(at) = worker.kill_at {
                deadline = deadline.min(at);
            }
        }
        let timeout = deadline.saturating_duration_since(now);
        let timeout_ms = timeout.as_millis().min(1000) as libc::c_int + 1;
        let mut fds = vec![libc::pollfd {
            fd: self.signals.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        let mut pids = Vec::new();
        for (&pid, worker) in &self.workers {
            if let Some(status) = &worker.status {
                fds.push(libc::pollfd {
                    fd: status.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
                pids.push(pid);
            }
        }
        // SAFETY: `fds` is a valid array of fds.len() pollfd structs.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if ready <= 0 {
            return;
        }
        for (fd, pid) in fds[1..].iter().zip(pids) {
            if fd.revents != 0 {
                self.read_status(pid);
            }
        }
        if fds[0].revents != 0 {
            for signal in proc::read_signals(&self.signals) {
                self.on_signal(signal);
            }
        }
    }

    fn on_signal(&mut self, signal: libc::c_int) {
        match signal {
            libc::SIGCHLD => {} // reaped at the top of the loop
            libc::SIGTERM | libc::SIGINT if !self.stopping => {
                let name = if signal == libc::SIGTERM {
                    "SIGTERM"
                } else {
                    "SIGINT"
                };
                tracing::info!("{name}: stopping gracefully");
                self.stop(libc::SIGTERM);
            }
            libc::SIGQUIT => {
                tracing::info!("SIGQUIT: stopping at once");
                self.stop(libc::SIGKILL);
            }
            _ if self.stopping => {}
            libc::SIGHUP => self.reload("SIGHUP"),
            libc::SIGTTIN => {
                self.target += 1;
                tracing::info!("SIGTTIN: one worker more: {}", self.target);
            }
            libc::SIGTTOU if self.target > 1 => {
                self.target -= 1;
                tracing::info!("SIGTTOU: one worker fewer: {}", self.target);
            }
            libc::SIGTTOU => tracing::info!("SIGTTOU: already down to one worker"),
            _ => {}
        }
    }

    /// Reads a worker's status bytes: `R` ready, `r` retiring.
    fn read_status(&mut self, pid: libc::pid_t) {
        let Some(worker) = self.workers.get_mut(&pid) else {
            return;
        };
        let Some(fd) = &worker.status else {
            return;
        };
        let mut buf = [0u8; 16];
        let mut got = Vec::new();
        let mut closed = false;
        loop {
            match proc::read_available(fd, &mut buf) {
                Ok(Some(0)) => break,
                Ok(Some(n)) => got.extend_from_slice(&buf[..n]),
                Ok(None) | Err(_) => {
                    closed = true;
                    break;
                }
            }
        }
        if closed {
            worker.status = None;
        }
        for byte in got {
            match byte {
                b'R' if worker.state == State::Booting => {
                    worker.state = State::Ready;
                    tracing::info!(
                        "worker {pid} ready (generation {}, {:.0?} to start)",
                        worker.generation,
                        worker.started.elapsed()
                    );
                }
                b'r' if worker.state != State::Stopping => {
                    worker.state = State::Stopping;
                    worker.kill_at =
                        Some(Instant::now() + self.config.serve.graceful_timeout + EXIT_MARGIN);
                    tracing::info!("worker {pid} is retiring; starting its replacement");
                }
                _ => {}
            }
        }
    }

    /// Waits for every worker that has ended, and says why it did.
    fn reap(&mut self) {
        while let Some((pid, status)) = proc::reap_one() {
            self.read_status(pid);
            let Some(worker) = self.workers.remove(&pid) else {
                tracing::debug!(
                    "reaped process {pid}: {}",
                    proc::describe_wait_status(status)
                );
                continue;
            };
            self.on_exit(pid, worker, status);
        }
    }

    fn on_exit(&mut self, pid: libc::pid_t, worker: Worker, status: libc::c_int) {
        let how = proc::describe_wait_status(status);
        let code = proc::exit_code(status);
        match worker.state {
            State::Stopping if code == Some(0) => tracing::info!("worker {pid} exited"),
            State::Stopping => tracing::info!("worker {pid} {how}"),
            State::Booting => {
                let why = match code {
                    Some(EXIT_APP_LOAD) => "could not load the application (its error is above)",
                    Some(EXIT_PANIC) => "panicked (its message is above)",
                    _ => "died while starting",
                };
                // A reload sent while the first workers still start: the
                // new code is what failed, and a worker of the old serves.
                let old_serving = self
                    .workers
                    .values()
                    .any(|w| w.generation < self.generation && matches!(w.state, State::Ready));
                if self.stopping {
                    tracing::info!("worker {pid} {how}");
                } else if self.reloading
                    && worker.generation == self.generation
                    && (old_serving || !self.starting)
                {
                    self.reload_failed(pid, why, &how);
                } else if self.starting {
                    tracing::error!("worker {pid} {why}: {how}");
                    self.fatal = Some(format!(
                        "worker {pid} {why}; stopping instead of starting it again and again"
                    ));
                    self.kill_all(libc::SIGKILL);
                } else {
                    tracing::error!("worker {pid} {why}: {how}");
                    self.count_quick_death(worker.started);
                }
            }
            State::Ready => {
                if self.stopping {
                    tracing::info!("worker {pid} {how}");
                } else {
                    tracing::warn!("worker {pid} died: {how}; starting another");
                    self.count_quick_death(worker.started);
                }
            }
        }
    }

    /// Backs off when workers keep dying within a second of their start.
    fn count_quick_death(&mut self, started: Instant) {
        if started.elapsed() >= QUICK_DEATH {
            self.quick_deaths = 0;
            return;
        }
        self.quick_deaths += 1;
        if self.quick_deaths < 2 {
            return;
        }
        let delay = Duration::from_millis(100)
            .saturating_mul(1 << (self.quick_deaths - 2).min(10))
            .min(MAX_BACKOFF);
        self.next_spawn = Instant::now() + delay;
        tracing::warn!(
            "{} workers in a row died within a second of starting; waiting {delay:?} before starting another",
            self.quick_deaths
        );
    }

    /// Starts missing workers, stops extra ones, and notices when a
    /// generation is ready.
    fn maintain(&mut self, now: Instant) {
        let mut serving: Vec<(libc::pid_t, Instant, State)> = self
            .workers
            .iter()
            .filter(|(_, w)| w.generation == self.generation && w.state != State::Stopping)
            .map(|(&pid, w)| (pid, w.started, w.state))
            .collect();
        if serving.len() < self.target && now >= self.next_spawn {
            for _ in serving.len()..self.target {
                match self.spawn() {
                    Ok(pid) => serving.push((pid, Instant::now(), State::Booting)),
                    Err(e) => {
                        tracing::error!("could not start a worker: {e}");
                        self.next_spawn = now + Duration::from_secs(1);
                        break;
                    }
                }
            }
        }
        if serving.len() > self.target {
            // SIGTTOU: the newest go first.
            serving.sort_by_key(|&(_, started, _)| std::cmp::Reverse(started));
            let extra: Vec<libc::pid_t> = serving
                .drain(..serving.len() - self.target)
                .map(|(pid, ..)| pid)
                .collect();
            for pid in extra {
                self.stop_worker(pid, libc::SIGTERM);
            }
        }
        let ready = serving.len() >= self.target && serving.iter().all(|w| w.2 == State::Ready);
        if !ready {
            return;
        }
        if self.starting {
            self.starting = false;
            tracing::info!("{} worker(s) ready", self.target);
            systemd::notify(&format!("READY=1\nSTATUS={}", self.status()));
        }
        if self.reloading {
            self.reloading = false;
            let old: Vec<libc::pid_t> = self
                .workers
                .iter()
                .filter(|(_, w)| w.generation < self.generation && w.state != State::Stopping)
                .map(|(&pid, _)| pid)
                .collect();
            tracing::info!(
                "reloaded: generation {} is serving; stopping the {} old worker(s)",
                self.generation,
                old.len()
            );
            for pid in old {
                self.stop_worker(pid, libc::SIGTERM);
            }
            systemd::notify(&format!("READY=1\nSTATUS={}", self.status()));
        }
    }

    fn status(&self) -> String {
        let serving = self
            .workers
            .values()
            .filter(|w| w.generation == self.generation && w.state != State::Stopping)
            .count();
        format!(
            "{serving} of {} workers serving on {} (generation {})",
            self.target, self.describe, self.generation
        )
    }

    fn spawn(&mut self) -> std::io::Result<libc::pid_t> {
        let (read, write) = proc::pipe()?;
        proc::set_nonblocking(read.as_raw_fd())?;
        let pid = match &self.interpreter {
            Some(interpreter) => interpreter.fork()?,
            None => proc::fork()?,
        };
        if pid == 0 {
            drop(read);
            self.become_worker(write);
        }
        drop(write);
        self.workers.insert(
            pid,
            Worker {
                generation: self.generation,
                started: Instant::now(),
                state: State::Booting,
                status: Some(read),
                kill_at: None,
            },
        );
        tracing::info!("worker {pid} started (generation {})", self.generation);
        Ok(pid)
    }

    /// The child side of [`Master::spawn`]: never returns into the master.
    fn become_worker(&mut self, status: OwnedFd) -> ! {
        proc::die_with_parent(self.pid);
        // What is the master's alone: its signalfd and the other workers'
        // pipes. The socket file stays (the guard is the master's).
        // SAFETY: closing our copy of the signalfd; its OwnedFd is never
        // dropped in this process (we exit below).
        unsafe { libc::close(self.signals.as_raw_fd()) };
        for worker in self.workers.values_mut() {
            drop(worker.status.take());
        }
        std::mem::forget(self.socket_file.take());
        proc::unblock_all_signals();
        proc::die_of_sent_faults();
        let launch = Launch {
            config: self.config,
            socket: self.socket.take().expect("workers start while serving"),
            describe: self.describe.clone(),
            interpreter: self.interpreter.take(),
            status,
            multiprocess: self.target > 1,
        };
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| worker::run(launch)))
            .unwrap_or(EXIT_PANIC);
        std::process::exit(code)
    }

    /// Tells a worker to stop (SIGTERM: drain; SIGKILL: at once).
    fn stop_worker(&mut self, pid: libc::pid_t, signal: libc::c_int) {
        let Some(worker) = self.workers.get_mut(&pid) else {
            return;
        };
        proc::kill(pid, signal);
        worker.state = State::Stopping;
        if worker.kill_at.is_none() || signal == libc::SIGKILL {
            worker.kill_at =
                Some(Instant::now() + self.config.serve.graceful_timeout + EXIT_MARGIN);
        }
    }

    fn kill_all(&mut self, signal: libc::c_int) {
        let pids: Vec<libc::pid_t> = self.workers.keys().copied().collect();
        for pid in pids {
            self.stop_worker(pid, signal);
        }
    }

    /// SIGKILLs the workers that were told to stop and have not.
    fn kill_overdue(&mut self, now: Instant) {
        for (pid, worker) in &mut self.workers {
            if worker.kill_at.is_some_and(|at| at <= now) {
                tracing::warn!(
                    "worker {pid} still running {:?} after it was told to stop; killing it",
                    self.config.serve.graceful_timeout + EXIT_MARGIN
                );
                proc::kill(*pid, libc::SIGKILL);
                worker.kill_at = None;
            }
        }
    }

    /// SIGTERM/SIGINT (`signal` SIGTERM): stop accepting and let the
    /// workers finish; SIGQUIT (`signal` SIGKILL): kill them.
    fn stop(&mut self, signal: libc::c_int) {
        if !self.stopping {
            systemd::notify("STOPPING=1");
        }
        self.stopping = true;
        // The master's copy of the listener, and the file: new connections
        // are refused from here (each worker closes its own copy).
        self.socket = None;
        drop(self.socket_file.take());
        self.kill_all(signal);
    }

    fn reload(&mut self, why: &str) {
        if self.preload {
            self.reexec(why);
            return;
        }
        self.generation += 1;
        self.reloading = true;
        self.quick_deaths = 0;
        self.next_spawn = Instant::now();
        tracing::info!(
            "{why}: reloading: starting {} new worker(s) (generation {}); the old ones stop once these are ready",
            self.target,
            self.generation
        );
        systemd::notify(&format!("RELOADING=1\nSTATUS=reloading; {}", self.status()));
    }

    fn reload_failed(&mut self, pid: libc::pid_t, why: &str, how: &str) {
        tracing::error!(
            "reload failed: new worker {pid} {why} ({how}); the old workers keep serving"
        );
        let new: Vec<libc::pid_t> = self
            .workers
            .iter()
            .filter(|(_, w)| w.generation == self.generation)
            .map(|(&pid, _)| pid)
            .collect();
        for pid in new {
            self.stop_worker(pid, libc::SIGTERM);
        }
        self.generation = self
            .workers
            .values()
            .filter(|w| w.state != State::Stopping)
            .map(|w| w.generation)
            .max()
            .unwrap_or(self.generation);
        self.reloading = false;
        systemd::notify(&format!("READY=1\nSTATUS=reload failed; {}", self.status()));
    }

    fn check_touch(&mut self, now: Instant) {
        let Some(touch) = &mut self.touch else {
            return;
        };
        if now < touch.next_check {
            return;
        }
        touch.next_check = now + TOUCH_INTERVAL;
        let seen = mtime(&touch.path);
        if seen == touch.mtime {
            return;
        }
        touch.mtime = seen;
        let why = format!("--touch-reload {} changed", touch.path.display());
        self.reload(&why);
    }

    /// --preload: execve(/proc/self/exe) with the same argv, handing over
    /// the listening socket (fd 3, LISTEN_FDS=1) and the workers.
    fn reexec(&mut self, why: &str) {
        let Some(socket) = &self.socket else {
            return;
        };
        tracing::info!(
            "{why}: reloading: re-executing the master (--preload), which imports the application afresh"
        );
        systemd::notify("RELOADING=1\nSTATUS=re-executing");
        let start = START.get().expect("remembered at start");
        let mut env: Vec<CString> = std::env::vars_os()
            .filter(|(key, _)| {
                !matches!(
                    key.to_str(),
                    Some(
                        "LISTEN_FDS"
                            | "LISTEN_PID"
                            | "LISTEN_FDNAMES"
                            | SOCKET_FILE_OWNED_ENV
                            | OLD_WORKERS_ENV
                            | PROCESSES_ENV
                    )
                )
            })
            .filter_map(|(key, value)| {
                let mut pair = key.as_bytes().to_vec();
                pair.push(b'=');
                pair.extend_from_slice(value.as_bytes());
                CString::new(pair).ok()
            })
            .collect();
        let pids: Vec<libc::pid_t> = self.workers.keys().copied().collect();
        let mut extra = vec![
            "LISTEN_FDS=1".to_string(),
            format!("LISTEN_PID={}", self.pid),
            format!("{OLD_WORKERS_ENV}={}", pid_list(&pids)),
            format!("{PROCESSES_ENV}={}", self.target),
        ];
        if let Some(path) = &self.owned_file
            && self.socket_file.is_some()
        {
            extra.push(format!("{SOCKET_FILE_OWNED_ENV}={}", path.display()));
        }
        env.extend(extra.into_iter().filter_map(|e| CString::new(e).ok()));
        let argv: Vec<CString> = start
            .argv
            .iter()
            .filter_map(|a| CString::new(a.as_bytes()).ok())
            .collect();
        let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let mut env_ptrs: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
        env_ptrs.push(std::ptr::null());

        let fd = socket.as_raw_fd();
        // SAFETY: descriptor juggling on fds we own: fd 3's current
        // occupant (if any) is saved close-on-exec and put back if the
        // exec fails; the listener is put on fd 3 without close-on-exec.
        let error = unsafe {
            let saved = if fd != 3 && libc::fcntl(3, libc::F_GETFD) >= 0 {
                libc::fcntl(3, libc::F_DUPFD_CLOEXEC, 4)
            } else {
                -1
            };
            let placed = if fd == 3 {
                proc::set_cloexec(3, false).is_ok()
            } else {
                libc::dup2(fd, 3) == 3
            };
            if let Some(cwd) = &start.cwd {
                let _ = std::env::set_current_dir(cwd);
            }
            if placed {
                libc::execve(
                    c"/proc/self/exe".as_ptr(),
                    argv_ptrs.as_ptr(),
                    env_ptrs.as_ptr(),
                );
            }
            let error = std::io::Error::last_os_error();
            if fd == 3 {
                let _ = proc::set_cloexec(3, true);
            } else if saved >= 0 {
                libc::dup2(saved, 3);
                libc::close(saved);
            } else {
                libc::close(3);
            }
            error
        };
        if let Some(dir) = &self.config.chdir {
            let _ = std::env::set_current_dir(dir);
        }
        tracing::error!(
            "reload failed: could not re-execute the master: {error}; the workers keep serving"
        );
        systemd::notify(&format!("READY=1\nSTATUS=reload failed; {}", self.status()));
    }
}

fn mtime(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn pid_list(pids: &[libc::pid_t]) -> String {
    pids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}
