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
//! - A worker that has lived --max-worker-lifetime (plus its share of
//!   --max-worker-lifetime-jitter) is replaced as a reload replaces the
//!   workers: the master starts its replacement while it serves on, and
//!   tells it to stop (SIGUSR2) once that one is ready; one such
//!   replacement at a time.
//! - A worker that dies is replaced, at once unless workers keep dying
//!   within a second of their start (then 0.1 s, 0.2 s, … up to 10 s).
//! - SIGHUP (or a touch of --touch-reload) starts a new generation of
//!   workers, which import the app afresh; once all of them are ready the
//!   old ones are told to stop (SIGUSR2: they close their listener, finish
//!   what they accepted and exit). The listening socket stays open all the
//!   while, so no connection is refused or lost. A new generation that
//!   cannot load the app is given up and the old one keeps serving.
//! - With --preload a reload re-executes the master (the app is imported
//!   in the master, so only a new image imports it afresh). The listening
//!   socket passes across the execve as fd 3 with LISTEN_FDS=1 and
//!   LISTEN_PID (listener.rs takes it, and RUSTGI_SOCKET_FILE_OWNED keeps
//!   the duty to remove the socket file), and the old workers, which stay
//!   our children (execve keeps the pid), are listed in RUSTGI_OLD_WORKERS:
//!   the new image stops them once its own workers are ready. Those
//!   already draining (a reload storm: the previous reload's old workers)
//!   are listed in RUSTGI_DRAINING_WORKERS: their exit is expected, not a
//!   crash to replace or back off from. Before the execve the master
//!   runs the program once with [`RELOAD_CHECK_ENV`] set, which reads the
//!   settings again (files and variables may have changed) and exits: if
//!   they are refused, the reload fails with that message and the old
//!   workers keep serving, as for an app that no longer imports.
//!
//! - SIGTERM/SIGINT stop the server: the master stops new connections
//!   from arriving where the socket allows it (removes the socket file,
//!   shuts a Unix listener it bound down for reading), sends the workers
//!   SIGTERM (they serve what waits in the listen queue, then finish), and
//!   keeps its own copy of the listener until they have exited, so that
//!   it can count what they left queued before its close resets it.
//!
//! These rules are decided in policy.rs, which makes no syscall; this
//! module is the shell around it: it polls, forks, signals, reaps and
//! re-executes, turning what happens into the policy's events and
//! carrying out its actions.

use crate::config::ServerConfig;
use crate::endpoint::Endpoint;
use crate::listener::{BoundSocket, SOCKET_FILE_OWNED_ENV, SOCKET_OURS_ENV, SocketFileGuard};
use crate::observing::{BOARD_FD_ENV, Observer};
use crate::policy::{
    Action, Ending, Event, MasterSignal, OldWorkers, Pid, Policy, Settings, Stop, pid_list,
};
use crate::worker::{self, EXIT_PANIC, Launch};
use crate::{RunError, proc, systemd};
use nix::poll::{PollFd, PollFlags, poll};
use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;
use rustgi_core::Interpreter;
use std::collections::{HashMap, VecDeque};
use std::ffi::{CString, OsString};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

/// Workers of the previous image of this master (pids, comma-separated).
const OLD_WORKERS_ENV: &str = "RUSTGI_OLD_WORKERS";
/// Set for the run that checks the settings before a --preload re-exec:
/// the program reads its settings as a start would, says why they are
/// refused on stderr (exit status not 0), and exits without serving.
pub const RELOAD_CHECK_ENV: &str = "RUSTGI_RELOAD_CHECK";
/// The longest the settings check may take before the reload is given up.
const RELOAD_CHECK_DEADLINE: Duration = Duration::from_secs(30);
/// Workers of the previous image that were already told to stop.
const DRAINING_WORKERS_ENV: &str = "RUSTGI_DRAINING_WORKERS";
/// The worker count as SIGTTIN/SIGTTOU left it.
/// (Not RUSTGI_PROCESSES: that is --processes' environment variable.)
const PROCESSES_ENV: &str = "RUSTGI_REEXEC_PROCESSES";
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
    old_workers: OldWorkers,
    processes: Option<usize>,
    /// The scoreboard's descriptor, from a previous image.
    board_fd: Option<i32>,
}

/// A comma-separated pid list from the environment (empty if unset).
fn pids_from_env(key: &str) -> Vec<Pid> {
    std::env::var(key)
        .unwrap_or_default()
        .split(',')
        .filter_map(|pid| pid.trim().parse().ok())
        .collect()
}

static START: OnceLock<Start> = OnceLock::new();

/// Remembers argv and the working directory (a re-exec needs both as they
/// were) and takes a previous image's hand-over out of the environment.
/// Call it first in `run`, before any thread starts.
pub(crate) fn remember_start() {
    START.get_or_init(|| {
        let old_workers = OldWorkers {
            serving: pids_from_env(OLD_WORKERS_ENV),
            draining: pids_from_env(DRAINING_WORKERS_ENV),
        };
        let processes = std::env::var(PROCESSES_ENV)
            .ok()
            .and_then(|n| n.parse().ok());
        // The board's descriptor is only ours to take after our own
        // --preload re-exec: it sets RUSTGI_REEXEC_PROCESSES and passes the
        // listener with LISTEN_PID naming this very process. On any other
        // start the number is someone else's (fd 0 is the listener when
        // spawned), and it is ignored.
        let reexecuted =
            processes.is_some() && crate::listener::activation_present().unwrap_or(false);
        let board_fd = std::env::var(BOARD_FD_ENV)
            .ok()
            .and_then(|n| n.parse().ok())
            .filter(|_| reexecuted);
        // SAFETY: no other thread exists yet (documented above).
        unsafe {
            std::env::remove_var(BOARD_FD_ENV);
            std::env::remove_var(OLD_WORKERS_ENV);
            std::env::remove_var(DRAINING_WORKERS_ENV);
            std::env::remove_var(PROCESSES_ENV);
        }
        Start {
            argv: std::env::args_os().collect(),
            cwd: std::env::current_dir().ok(),
            old_workers,
            processes,
            board_fd,
        }
    });
}

/// --touch-reload's file: when to look at it next (the policy decides
/// what a change means).
struct Touch {
    path: PathBuf,
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
    /// None only in a worker, which closes it.
    signals: Option<SignalFd>,
    /// Read ends of the workers' status pipes (not for a worker of a
    /// previous image, nor once it closed).
    status: HashMap<Pid, OwnedFd>,
    /// What a worker said after `E` on its pipe: why its app could not
    /// load (worker.rs), handed to the policy with its exit.
    load_errors: HashMap<Pid, Vec<u8>>,
    touch: Option<Touch>,
    policy: Policy,
    /// The scoreboard, the endpoint, the history (observing.rs).
    observer: Observer,
}

/// Serves `socket` with `--processes` workers until a stop signal.
pub(crate) fn run(
    config: &ServerConfig,
    socket: BoundSocket,
    socket_file: SocketFileGuard,
    endpoint: Endpoint,
) -> Result<(), RunError> {
    remember_start();
    // First: from here on no signal can kill the master by its default
    // action, not even during a long --preload import.
    let signals = proc::block_master_signals()?;
    proc::ignore_sent_faults();
    let start = START.get().expect("remembered above");
    let app = crate::title::app_label(&config.python.app);
    // SAFETY: the master is single-threaded (module comment), and argv
    // was copied into START (remember_start) before: nothing reads it
    // through std from here on (a re-exec uses the copy).
    unsafe {
        crate::title::set(
            crate::title::MASTER_COMM,
            &format!("rustgi-gateway: master [{app}]"),
            &start.argv,
        );
    }
    let owned_file = socket.created_path().map(PathBuf::from);
    let describe = socket.describe();
    let pid = std::process::id() as libc::pid_t;
    // A worker that ended during the execve is reaped below as an
    // unknown process: it was adopted by nobody.
    let live = |pids: &[Pid]| -> Vec<Pid> {
        pids.iter()
            .copied()
            .filter(|&pid| proc::is_live_child(pid))
            .collect()
    };
    let old_workers = OldWorkers {
        serving: live(&start.old_workers.serving),
        draining: live(&start.old_workers.draining),
    };
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
            Err(e) if !old_workers.serving.is_empty() => {
                tracing::error!(
                    "reload failed: {}\nthe {} old worker(s) keep serving; fix the application and reload again",
                    crate::python_failed(e, config),
                    old_workers.serving.len()
                );
            }
            Err(e) => return Err(crate::python_failed(e, config)),
        }
    }
    let now = Instant::now();
    let (touch, watched) = match &config.processes.touch_reload {
        Some(path) => {
            let path = std::path::absolute(path).unwrap_or_else(|_| path.clone());
            let watched = (path.clone(), mtime(&path));
            let touch = Touch {
                path,
                next_check: now + TOUCH_INTERVAL,
            };
            (Some(touch), Some(watched))
        }
        None => (None, None),
    };
    let processes = start
        .processes
        .filter(|_| !old_workers.serving.is_empty())
        .unwrap_or(config.processes.count);
    let policy = Policy::new(
        Settings {
            processes,
            preload,
            preloaded: interpreter.is_some(),
            stop_deadline: config.serve.graceful_timeout + EXIT_MARGIN,
            describe: describe.clone(),
            touch: watched,
            lifetime: config.processes.max_worker_lifetime,
            lifetime_jitter: config.processes.max_worker_lifetime_jitter,
        },
        now,
    );
    let mut observer = Observer::new(
        start.board_fd,
        endpoint,
        processes,
        config.serve.threads,
        describe.clone(),
        &old_workers.draining,
        config.serve.observe.access_log.clone().map(|destination| {
            let format = config.serve.observe.access_log_format.clone();
            (destination, format.unwrap_or_default())
        }),
    )
    .map_err(|e| RunError::Setup(format!("could not make the scoreboard: {e}")))?;
    let adopted: Vec<Pid> = old_workers
        .serving
        .iter()
        .chain(&old_workers.draining)
        .copied()
        .collect();
    observer.forget_gone(&adopted);
    let mut master = Master {
        config,
        pid,
        socket: Some(socket),
        describe,
        socket_file: Some(socket_file),
        owned_file,
        interpreter,
        signals: Some(signals),
        status: HashMap::new(),
        load_errors: HashMap::new(),
        touch,
        policy,
        observer,
    };
    tracing::info!(
        "master {pid}: {} worker(s), {} thread(s) each{}",
        master.policy.target(),
        config.serve.threads,
        if preload { ", app preloaded" } else { "" }
    );
    master.handle(Event::Adopted(old_workers));
    master.supervise()
}

/// The most of a worker's load error the master keeps: a traceback is a
/// few KiB; a runaway one must not grow the master.
const LOAD_ERROR_LIMIT: usize = 256 * 1024;

fn add_capped(text: &mut Vec<u8>, more: &[u8]) {
    let room = LOAD_ERROR_LIMIT.saturating_sub(text.len());
    text.extend_from_slice(&more[..more.len().min(room)]);
}

impl Master<'_> {
    /// Runs until the policy says the master is done: each turn reaps the
    /// workers that ended, looks at --touch-reload's file when due, lets
    /// the policy act on the time, and sleeps in poll(2).
    fn supervise(&mut self) -> Result<(), RunError> {
        loop {
            while let Some((pid, status)) = proc::reap_one() {
                // What it said before it ended (an `R` just before dying).
                self.read_status(pid);
                self.status.remove(&pid);
                let ending = Ending {
                    code: proc::exit_code(status),
                    how: proc::describe_wait_status(status),
                    load_error: self
                        .load_errors
                        .remove(&pid)
                        .map(|text| String::from_utf8_lossy(&text).into_owned()),
                };
                self.observer
                    .reaped(pid, &ending.how, self.policy.stopping());
                if let Some(done) = self.handle(Event::Exited { pid, ending }) {
                    return done;
                }
            }
            self.check_touch();
            if let Some(done) = self.handle(Event::Tick) {
                return done;
            }
            self.observer
                .tick(self.socket.as_ref(), self.policy.target());
            self.wait();
        }
    }

    /// Hands `event` to the policy and carries out its actions, with the
    /// events they give rise to. Returns the result of the run once the
    /// policy says the master is done.
    fn handle(&mut self, event: Event) -> Option<Result<(), RunError>> {
        let mut queue = VecDeque::from(self.policy.handle(Instant::now(), event));
        // After a failed fork, the other forks asked for at the same time
        // wait for the retry.
        let mut forks_fail = false;
        while let Some(action) = queue.pop_front() {
            let followed = match action {
                Action::Spawn { .. } if forks_fail => continue,
                Action::Spawn { generation } => {
                    let slot = self.observer.claim(generation);
                    match self.spawn(slot) {
                        Ok(pid) => {
                            self.observer.spawned(slot, Some(pid));
                            Event::Spawned { pid, generation }
                        }
                        Err(e) => {
                            self.observer.spawned(slot, None);
                            forks_fail = true;
                            Event::SpawnFailed(e.to_string())
                        }
                    }
                }
                Action::Stop { pid, how } => {
                    let signal = match how {
                        Stop::Drain => Signal::SIGTERM,
                        Stop::Retire => Signal::SIGUSR2,
                        Stop::Kill => Signal::SIGKILL,
                    };
                    self.observer.told_to_stop(pid);
                    proc::kill(pid, signal);
                    continue;
                }
                Action::Reloading => {
                    self.observer.reloading();
                    continue;
                }
                Action::Expired(pid) => {
                    self.observer.expired(pid);
                    continue;
                }
                Action::Notify(state) => {
                    systemd::notify(&state);
                    continue;
                }
                Action::StopArrivals => {
                    self.stop_arrivals();
                    continue;
                }
                Action::Reexec { workers, processes } => match self.reexec(&workers, processes) {
                    Some(error) => Event::ReexecFailed(error.to_string()),
                    None => continue,
                },
                Action::Exit { fatal } => return Some(self.finish(fatal)),
            };
            queue.extend(self.policy.handle(Instant::now(), followed));
        }
        None
    }

    /// The stop: the socket file goes (connects by path fail from here),
    /// and a Unix listener is shut down for reading (connects are refused,
    /// the queue stays for the workers to serve); a TCP one drops new
    /// SYNs (the queue stays too). Not for an inherited
    /// socket, which others may hold (systemd, for the next start; the
    /// other children of spawn-fcgi -F).
    fn stop_arrivals(&mut self) {
        drop(self.socket_file.take());
        let Some(socket) = &self.socket else { return };
        if crate::listener::inherited() {
            tracing::info!(
                "the listening socket is inherited, and others may hold it: it stays open; the workers accept until its queue stays empty"
            );
            return;
        }
        match socket.stop_arrivals() {
            Ok(how) => {
                tracing::info!("{how}; the workers serve what waits in the listen queue")
            }
            Err(e) => tracing::warn!(
                "could not stop new connections to the listening socket: {e}; the workers accept until its queue stays empty"
            ),
        }
    }

    fn finish(&mut self, fatal: Option<String>) -> Result<(), RunError> {
        if let Some(message) = fatal {
            return Err(RunError::Setup(message));
        }
        self.close_listener();
        if let Some(interpreter) = self.interpreter.take() {
            interpreter.finalize();
        }
        drop(self.socket_file.take());
        tracing::info!("stopped");
        Ok(())
    }

    /// The master holds the last copy of a listener it bound: what the
    /// workers left in its queue would be reset by the close. Counted and
    /// logged. (An inherited one's queue is its other holders'.)
    fn close_listener(&mut self) {
        let Some(socket) = self.socket.take() else {
            return;
        };
        if crate::listener::inherited() {
            return;
        }
        let dropped = socket.reset_leftovers();
        if dropped > 0 {
            tracing::warn!(
                "{dropped} connection(s) still waiting in the listen queue were dropped unserved (--graceful-timeout {:?})",
                self.config.serve.graceful_timeout
            );
        } else {
            tracing::info!("no connection was left in the listen queue");
        }
    }

    /// Sleeps in poll(2) until a signal, a worker's status byte, or the
    /// next deadline; then hands what came to the policy.
    fn wait(&mut self) {
        let now = Instant::now();
        let mut deadline = self.policy.next_deadline(now).min(self.observer.deadline());
        if let Some(touch) = &self.touch {
            deadline = deadline.min(touch.next_check);
        }
        let timeout = deadline.saturating_duration_since(now);
        let timeout_ms = timeout.as_millis().min(1000) as u16 + 1;
        let signals = self.signals.as_ref().expect("the master's");
        let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        let mut pids = Vec::new();
        for (&pid, status) in &self.status {
            fds.push(PollFd::new(status.as_fd(), PollFlags::POLLIN));
            pids.push(pid);
        }
        let first_endpoint = fds.len();
        fds.extend(self.observer.poll_fds());
        let polled = poll(&mut fds, timeout_ms);
        for signal in proc::take_sent_faults() {
            tracing::warn!(
                "signal {signal} ({}) sent by another process: it means nothing to rustgi-gateway; ignored",
                proc::signal_name(signal)
            );
        }
        if !matches!(polled, Ok(ready) if ready > 0) {
            drop(fds);
            // Endpoint connections past their deadline expire on every
            // pass, not only when another endpoint socket is ready (an
            // expired one made the timeout 1 ms: a busy loop).
            self.observer
                .ready(&[], self.socket.as_ref(), self.policy.target());
            return;
        }
        let signalled = fds[0].any() != Some(false);
        let said: Vec<Pid> = fds[1..first_endpoint]
            .iter()
            .zip(pids)
            .filter(|(fd, _)| fd.any() != Some(false))
            .map(|(_, pid)| pid)
            .collect();
        let endpoint_ready: Vec<bool> = fds[first_endpoint..]
            .iter()
            .map(|fd| fd.any() != Some(false))
            .collect();
        drop(fds);
        self.observer
            .ready(&endpoint_ready, self.socket.as_ref(), self.policy.target());
        for pid in said {
            self.read_status(pid);
        }
        if signalled {
            let signals = self.signals.as_ref().expect("the master's");
            for signal in proc::read_signals(signals) {
                let signal = match signal {
                    libc::SIGTERM => MasterSignal::Term,
                    libc::SIGINT => MasterSignal::Int,
                    libc::SIGQUIT => MasterSignal::Quit,
                    libc::SIGHUP => MasterSignal::Hup,
                    libc::SIGTTIN => MasterSignal::Ttin,
                    libc::SIGTTOU => MasterSignal::Ttou,
                    libc::SIGCHLD => continue, // reaped at the top of the loop
                    libc::SIGUSR1 => {
                        self.reopen_logs();
                        continue;
                    }
                    libc::SIGUSR2 => {
                        self.observer
                            .log_status(self.socket.as_ref(), self.policy.target());
                        continue;
                    }
                    other => {
                        tracing::warn!(
                            "{} received: it means nothing to rustgi-gateway; ignored",
                            proc::signal_name(other)
                        );
                        continue;
                    }
                };
                // Exit comes only from a tick.
                let _ = self.handle(Event::Signal(signal));
            }
        }
    }

    /// Reads a worker's status bytes: `R` ready, `r` retiring.
    fn read_status(&mut self, pid: Pid) {
        let Some(fd) = self.status.get(&pid) else {
            return;
        };
        let mut buf = [0u8; 4096];
        let mut got = Vec::new();
        loop {
            match proc::read_available(fd, &mut buf) {
                Ok(Some(0)) => break,
                Ok(Some(n)) => got.extend_from_slice(&buf[..n]),
                Ok(None) | Err(_) => {
                    self.status.remove(&pid);
                    break;
                }
            }
        }
        let mut bytes = got.as_slice();
        if let Some(text) = self.load_errors.get_mut(&pid) {
            add_capped(text, bytes);
            return;
        }
        while let Some((&byte, rest)) = bytes.split_first() {
            bytes = rest;
            let event = match byte {
                b'R' => Event::Ready(pid),
                b'r' => Event::Retiring(pid),
                // The rest, to its exit, is why its app could not load.
                b'E' => {
                    add_capped(self.load_errors.entry(pid).or_default(), bytes);
                    return;
                }
                _ => continue,
            };
            let _ = self.handle(event);
        }
    }

    fn check_touch(&mut self) {
        let Some(touch) = &mut self.touch else {
            return;
        };
        let now = Instant::now();
        if now < touch.next_check {
            return;
        }
        touch.next_check = now + TOUCH_INTERVAL;
        let seen = mtime(&touch.path);
        let _ = self.handle(Event::TouchSeen(seen));
    }

    /// SIGUSR1 (logrotate): this process's log files are reopened, and
    /// the workers are told to reopen theirs.
    fn reopen_logs(&self) {
        rustgi_observe::reopen::request();
        let mut workers: Vec<Pid> = self.status.keys().copied().collect();
        workers.extend(self.observer.board.pids().into_iter().map(|pid| pid as Pid));
        workers.sort_unstable();
        workers.dedup();
        tracing::info!(
            "SIGUSR1: reopening the log files (and telling {} worker(s))",
            workers.len()
        );
        for pid in workers {
            proc::kill(pid, Signal::SIGUSR1);
        }
    }

    fn spawn(&mut self, slot: Option<usize>) -> std::io::Result<Pid> {
        let (read, write) = proc::pipe()?;
        proc::set_nonblocking(&read)?;
        let pid = match &self.interpreter {
            // SAFETY: the master never starts a thread (module comment),
            // and with --preload this is the thread that started Python.
            Some(interpreter) => unsafe { interpreter.fork() }?,
            // SAFETY: as above: the master is single-threaded.
            None => unsafe { proc::fork() }?,
        };
        if pid == 0 {
            drop(read);
            self.become_worker(write, slot);
        }
        drop(write);
        self.status.insert(pid, read);
        Ok(pid)
    }

    /// The child side of [`Master::spawn`]: never returns into the master.
    fn become_worker(&mut self, status: OwnedFd, slot: Option<usize>) -> ! {
        proc::die_with_parent(self.pid);
        let app = crate::title::app_label(&self.config.python.app);
        let start = START.get().expect("remembered at start");
        // SAFETY: a forked child has one thread, this one, until
        // worker::run starts others; argv was copied into START before.
        unsafe {
            crate::title::set(
                crate::title::WORKER_COMM,
                // The worker's number is its scoreboard slot's, as the
                // metrics and the status page show it: the smallest free
                // when it was forked (a reload's new workers take new
                // ones). Without a slot (every one taken) it has none.
                &match slot {
                    Some(slot) => format!("rustgi-gateway: worker {} [{app}]", slot + 1),
                    None => format!("rustgi-gateway: worker [{app}]"),
                },
                &start.argv,
            );
        }
        // What is the master's alone: its signalfd and the other workers'
        // pipes. The socket file stays (the guard is the master's).
        drop(self.signals.take());
        self.status.clear();
        self.observer.close_in_child();
        std::mem::forget(self.socket_file.take());
        // SIGUSR1 is ignored before the mask that kept it pending is
        // lifted: one the master forwarded right after the fork would
        // otherwise kill the worker before worker::run handles it.
        proc::ignore_sigusr1_until_handled();
        proc::default_faults();
        proc::unblock_all_signals();
        proc::die_of_sent_faults();
        let launch = Launch {
            config: self.config,
            socket: self.socket.take().expect("workers start while serving"),
            describe: self.describe.clone(),
            interpreter: self.interpreter.take(),
            status,
            multiprocess: self.policy.target() > 1,
            board: slot.map(|slot| (self.observer.board, slot)),
        };
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| worker::run(launch)))
            .unwrap_or(EXIT_PANIC);
        std::process::exit(code)
    }

    /// --preload: execve(/proc/self/exe) with the same argv, handing over
    /// the listening socket (fd 3, LISTEN_FDS=1), the `workers` and their
    /// count. Returns only if it failed: why.
    fn reexec(&mut self, workers: &OldWorkers, processes: usize) -> Option<std::io::Error> {
        let socket = self.socket.as_ref()?;
        let start = START.get().expect("remembered at start");
        if let Err(refused) = check_settings(start) {
            return Some(std::io::Error::other(refused));
        }
        let mut env: Vec<CString> = std::env::vars_os()
            .filter(|(key, _)| {
                !matches!(
                    key.to_str(),
                    Some(
                        "LISTEN_FDS"
                            | "LISTEN_PID"
                            | "LISTEN_FDNAMES"
                            | SOCKET_FILE_OWNED_ENV
                            | SOCKET_OURS_ENV
                            | OLD_WORKERS_ENV
                            | DRAINING_WORKERS_ENV
                            | PROCESSES_ENV
                            | BOARD_FD_ENV
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
        let mut extra = vec![
            "LISTEN_FDS=1".to_string(),
            format!("LISTEN_PID={}", self.pid),
            format!("{OLD_WORKERS_ENV}={}", pid_list(&workers.serving)),
            format!("{DRAINING_WORKERS_ENV}={}", pid_list(&workers.draining)),
            format!("{PROCESSES_ENV}={processes}"),
            format!("{BOARD_FD_ENV}={}", self.observer.board_fd_for_exec(true)),
        ];
        if let Some(path) = &self.owned_file
            && self.socket_file.is_some()
        {
            extra.push(format!("{SOCKET_FILE_OWNED_ENV}={}", path.display()));
        }
        if !crate::listener::inherited() {
            extra.push(format!("{SOCKET_OURS_ENV}=1"));
        }
        env.extend(extra.into_iter().filter_map(|e| CString::new(e).ok()));
        let argv: Vec<CString> = start
            .argv
            .iter()
            .filter_map(|a| CString::new(a.as_bytes()).ok())
            .collect();
        let fd = socket.as_raw_fd();
        // SAFETY: these calls act on descriptor numbers only and touch no
        // memory; the descriptors are ours or free. fd 3 may belong to
        // someone else in this process (a file the preloaded app opened):
        // it is saved on a close-on-exec copy and put back if the exec
        // fails. The listener is put on fd 3 without close-on-exec (or,
        // already on fd 3, loses close-on-exec), and gets it back after a
        // failure.
        let saved = unsafe {
            if fd != 3 && libc::fcntl(3, libc::F_GETFD) >= 0 {
                libc::fcntl(3, libc::F_DUPFD_CLOEXEC, 4)
            } else {
                -1
            }
        };
        let placed = if fd == 3 {
            proc::set_cloexec(socket, false)
        } else {
            // SAFETY: as above.
            match unsafe { libc::dup2(fd, 3) } {
                3 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            }
        };
        if let Some(cwd) = &start.cwd {
            let _ = std::env::set_current_dir(cwd);
        }
        let error = match placed {
            Ok(()) => match nix::unistd::execve(c"/proc/self/exe", &argv, &env) {
                Err(errno) => std::io::Error::from(errno),
            },
            Err(e) => e,
        };
        if fd == 3 {
            let _ = proc::set_cloexec(socket, true);
        } else if saved >= 0 {
            // SAFETY: as above; `saved` is the copy made above, ours.
            unsafe {
                libc::dup2(saved, 3);
                libc::close(saved);
            }
        } else {
            // SAFETY: as above; fd 3 is the copy of the listener put there.
            unsafe { libc::close(3) };
        }
        self.observer.board_fd_for_exec(false);
        if let Some(dir) = &self.config.chdir {
            let _ = std::env::set_current_dir(dir);
        }
        Some(error)
    }
}

/// Runs this program with `start`'s argv, from its directory, with this
/// environment and [`RELOAD_CHECK_ENV`]: the settings the re-executed
/// master would read. Err: why they are refused (or the check failed).
fn check_settings(start: &Start) -> Result<(), String> {
    use std::process::{Command, Stdio};
    let mut command = Command::new("/proc/self/exe");
    command
        .args(start.argv.iter().skip(1))
        .env(RELOAD_CHECK_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(arg0) = start.argv.first() {
        std::os::unix::process::CommandExt::arg0(&mut command, arg0);
    }
    if let Some(cwd) = &start.cwd {
        command.current_dir(cwd);
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("could not check the settings: {e}"))?;
    let mut stderr = child.stderr.take().expect("piped");
    // Read once it has ended: what it says (a message and clap's usage)
    // is far less than a pipe holds, so it cannot block on a full pipe.
    let deadline = Instant::now() + RELOAD_CHECK_DEADLINE;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "the settings check did not end within {} s",
                    RELOAD_CHECK_DEADLINE.as_secs()
                ));
            }
            Err(e) => return Err(format!("could not check the settings: {e}")),
        }
    };
    if status.success() {
        return Ok(());
    }
    let mut said = String::new();
    let _ = std::io::Read::read_to_string(&mut stderr, &mut said);
    Err(format!(
        "the settings are refused ({status}): {}",
        said.trim_end()
    ))
}

fn mtime(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}
