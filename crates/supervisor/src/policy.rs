//! What the master decides, apart from how it does it (master.rs does the
//! poll, fork, exec and reaping): which workers to start, when to give up,
//! when a generation takes over from the one before, and when to stop.
//!
//! [`Policy::handle`] takes one [`Event`] and answers with [`Action`]s. It
//! makes no syscall and reads no clock: the time is the `now` it is
//! given, so that the rules (see master.rs's module notes) are tested
//! with a fake clock. It logs what it decides.

use crate::worker::{EXIT_APP_LOAD, EXIT_PANIC};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

pub(crate) type Pid = libc::pid_t;

/// The master's decisions are logged as the master's: the same log lines
/// as before the policy was split out, and RUST_LOG filters on
/// `rustgi_supervisor::master` keep working.
const LOG_TARGET: &str = "rustgi_supervisor::master";

macro_rules! log {
    ($level:ident, $($arg:tt)+) => {
        tracing::$level!(target: LOG_TARGET, $($arg)+)
    };
}

/// A worker that lived less than this died "at once".
const QUICK_DEATH: Duration = Duration::from_secs(1);
/// The wait after the second quick death in a row; it doubles with each.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// After a fork that failed.
const SPAWN_RETRY: Duration = Duration::from_secs(1);
/// The master looks around at least this often, even with nothing due.
const LONGEST_SLEEP: Duration = Duration::from_secs(1);

/// What the policy starts from.
pub(crate) struct Settings {
    /// `--processes`, or the count SIGTTIN/SIGTTOU left before a re-exec.
    pub processes: usize,
    /// `--preload`: a reload re-executes the master.
    pub preload: bool,
    /// With `--preload`: the app is imported in this image. False after a
    /// re-exec whose import failed: the old workers keep serving.
    pub preloaded: bool,
    /// How long a worker told to stop may take before it is killed
    /// (`--graceful-timeout` plus a margin).
    pub stop_deadline: Duration,
    /// The listening socket, for the status line.
    pub describe: String,
    /// `--touch-reload`: its path and its mtime at start.
    pub touch: Option<(PathBuf, Option<SystemTime>)>,
    /// `--max-worker-lifetime`: a worker that has lived this long is
    /// replaced, the replacement ready before it stops.
    pub lifetime: Option<Duration>,
    /// `--max-worker-lifetime-jitter`: each worker lives its own share of
    /// this longer ([`lifetime_share`]).
    pub lifetime_jitter: Duration,
}

/// Signals the master acts on (SIGCHLD only wakes it up to reap).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum MasterSignal {
    Term,
    Int,
    Quit,
    Hup,
    Ttin,
    Ttou,
}

/// How a worker ended.
#[derive(Clone, Debug)]
pub(crate) struct Ending {
    /// The exit code, when it exited rather than being killed.
    pub code: Option<i32>,
    /// "exited with code 3", "killed by signal 9 (…)".
    pub how: String,
    /// Why it could not load the application (its traceback), as it told
    /// the master before exiting with [`EXIT_APP_LOAD`].
    pub load_error: Option<String>,
}

#[derive(Clone, Debug)]
pub(crate) enum Event {
    /// Workers a previous image of this master started (it re-executed).
    Adopted(OldWorkers),
    /// A worker of `generation` was forked, as a [`Action::Spawn`] asked.
    Spawned {
        pid: Pid,
        generation: u64,
    },
    /// The fork for a [`Action::Spawn`] failed (its error).
    SpawnFailed(String),
    /// `R` on its status pipe: the app is loaded and it accepts.
    Ready(Pid),
    /// `r`: it retires on its own and drains.
    Retiring(Pid),
    Exited {
        pid: Pid,
        ending: Ending,
    },
    Signal(MasterSignal),
    /// `--touch-reload`'s file was looked at: its mtime now.
    TouchSeen(Option<SystemTime>),
    /// The execve of an [`Action::Reexec`] failed (its error).
    ReexecFailed(String),
    /// Time passed: the moment to start, stop and kill what is due.
    Tick,
}

/// What a re-executing master hands over about its workers, which stay
/// its children across the execve.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct OldWorkers {
    /// Serving (or still starting): they serve on until the new image's
    /// workers are ready.
    pub serving: Vec<Pid>,
    /// Already told to stop, or retiring: they finish their requests and
    /// exit 0, which is no crash and no reason to back off (a SIGHUP storm
    /// re-executes while the previous reload's old workers drain).
    pub draining: Vec<Pid>,
}

/// How a worker is told to stop.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Stop {
    /// SIGTERM, the server stops: serve what waits in the listen queue
    /// too, finish what was accepted, exit.
    Drain,
    /// SIGUSR2, the worker is replaced (a reload, SIGTTOU): close the
    /// listener at once (the others serve the queue), finish what was
    /// accepted, exit.
    Retire,
    /// SIGKILL.
    Kill,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Fork a worker; answer with [`Event::Spawned`] or
    /// [`Event::SpawnFailed`] (and then skip the other `Spawn`s of the
    /// same answer).
    Spawn {
        generation: u64,
    },
    Stop {
        pid: Pid,
        how: Stop,
    },
    /// A reload begins (SIGHUP, --touch-reload): counted in the metrics.
    Reloading,
    /// The worker's `--max-worker-lifetime` is over and its replacement
    /// starts: the cause, for the metrics' respawn counters.
    Expired(Pid),
    /// Send to systemd's notify socket.
    Notify(String),
    /// Stop new connections from arriving where the socket allows it
    /// (remove the socket file we created; shut a Unix listener down for
    /// reading). The master keeps its copy of the listener until it exits,
    /// so that the workers can serve what waits in the queue and the
    /// master can count what they left there.
    StopArrivals,
    /// `--preload` reload: execve this program afresh, handing over the
    /// listener, the `workers` and the worker count; answer with
    /// [`Event::ReexecFailed`] if it returns.
    Reexec {
        workers: OldWorkers,
        processes: usize,
    },
    /// The master is done: every worker has ended.
    Exit {
        fatal: Option<String>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    /// Loading the app; not yet accepting.
    Booting,
    Ready,
    /// Told to stop, or retiring on its own: draining, not counted.
    Stopping,
    /// Past its `--max-worker-lifetime`: it serves on, not counted, so that
    /// a replacement starts; it is told to stop once that one is ready.
    Expired,
}

struct Worker {
    generation: u64,
    started: Instant,
    state: State,
    /// When to SIGKILL it if it has not exited (it was told to stop).
    kill_at: Option<Instant>,
    /// When its `--max-worker-lifetime` is over.
    retire_at: Option<Instant>,
}

pub(crate) struct Policy {
    settings: Settings,
    /// Ordered, so that decisions do not depend on hashing.
    workers: BTreeMap<Pid, Worker>,
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
    /// The last load error logged in full: (generation, worker, text). A
    /// worker of the same generation failing the same way is logged as
    /// "the same error as worker N", so that a reload of broken code
    /// shows one traceback, not one per worker.
    last_load_error: Option<(u64, Pid, String)>,
    /// Workers given a lifetime so far: the next one's share of the
    /// jitter ([`lifetime_share`]).
    lifetimes: u64,
}

impl Policy {
    pub(crate) fn new(settings: Settings, now: Instant) -> Policy {
        Policy {
            target: settings.processes.max(1),
            settings,
            workers: BTreeMap::new(),
            generation: 1,
            starting: true,
            reloading: false,
            quick_deaths: 0,
            next_spawn: now,
            stopping: false,
            fatal: None,
            last_load_error: None,
            lifetimes: 0,
        }
    }

    /// The worker count wanted now.
    pub(crate) fn target(&self) -> usize {
        self.target
    }

    /// The server is stopping: workers that end now were told to.
    pub(crate) fn stopping(&self) -> bool {
        self.stopping
    }

    /// When [`Event::Tick`] next has something to do (at the latest a
    /// second from `now`).
    pub(crate) fn next_deadline(&self, now: Instant) -> Instant {
        let mut deadline = now + LONGEST_SLEEP;
        if self.next_spawn > now {
            deadline = deadline.min(self.next_spawn);
        }
        // A lifetime that ends is acted on at once; one that is over but
        // waits for another replacement is looked at again by the next
        // tick (at most a second later).
        let lifetimes = self
            .workers
            .values()
            .filter(|w| w.state == State::Ready)
            .filter_map(|w| w.retire_at)
            .filter(|&at| at > now);
        self.workers
            .values()
            .filter_map(|w| w.kill_at)
            .chain(lifetimes)
            .fold(deadline, Instant::min)
    }

    /// When a worker that starts `now` has lived its lifetime.
    fn retire_at(&mut self, now: Instant) -> Option<Instant> {
        let lifetime = self.settings.lifetime?;
        let share = lifetime_share(self.lifetimes, self.settings.lifetime_jitter);
        self.lifetimes += 1;
        // Beyond what an Instant can hold: never.
        now.checked_add(lifetime.saturating_add(share))
    }

    pub(crate) fn handle(&mut self, now: Instant, event: Event) -> Vec<Action> {
        let mut actions = Vec::new();
        match event {
            Event::Adopted(old) => self.adopt(now, &old, &mut actions),
            Event::Spawned { pid, generation } => {
                let retire_at = self.retire_at(now);
                self.workers.insert(
                    pid,
                    Worker {
                        generation,
                        started: now,
                        state: State::Booting,
                        kill_at: None,
                        retire_at,
                    },
                );
                log!(info, "worker {pid} started (generation {generation})");
            }
            Event::SpawnFailed(error) => {
                log!(error, "could not start a worker: {error}");
                self.next_spawn = now + SPAWN_RETRY;
            }
            Event::Ready(pid) => self.ready(now, pid),
            Event::Retiring(pid) => self.retiring(now, pid),
            Event::Exited { pid, ending } => self.exited(now, pid, &ending, &mut actions),
            Event::Signal(signal) => self.on_signal(now, signal, &mut actions),
            Event::TouchSeen(mtime) => self.touch_seen(now, mtime, &mut actions),
            Event::ReexecFailed(error) => {
                log!(
                    error,
                    "reload failed: could not re-execute the master: {error}; the workers keep serving"
                );
                actions.push(self.notify_ready("reload failed; "));
            }
            Event::Tick => self.tick(now, &mut actions),
        }
        actions
    }

    /// The workers a previous image of this master started: the serving
    /// ones serve on until this image's own are ready; the draining ones
    /// only finish (their exit is the end they were told to reach).
    fn adopt(&mut self, now: Instant, old: &OldWorkers, actions: &mut Vec<Action>) {
        for &pid in &old.draining {
            self.workers.insert(
                pid,
                Worker {
                    generation: 0,
                    started: now,
                    state: State::Stopping,
                    kill_at: Some(now + self.settings.stop_deadline),
                    retire_at: None,
                },
            );
        }
        let serving = &old.serving;
        if serving.is_empty() && old.draining.is_empty() {
            return;
        }
        self.starting = false;
        for &pid in serving {
            // Their start is not known here: their lifetime counts from
            // the re-exec (they are replaced by then unless the new image
            // could not import the app).
            let retire_at = self.retire_at(now);
            self.workers.insert(
                pid,
                Worker {
                    generation: 0,
                    started: now,
                    state: State::Ready,
                    kill_at: None,
                    retire_at,
                },
            );
        }
        if self.settings.preload && !self.settings.preloaded {
            // The new code does not import: the old workers stay the ones
            // that should serve (replaced, if they die, by workers that
            // import the app themselves).
            self.generation = 0;
            actions.push(self.notify_ready("reload failed; "));
        } else {
            self.reloading = true;
            log!(
                info,
                "re-executed: starting {} new worker(s); the {} old one(s) ({}) stop once these are ready{}",
                self.target,
                serving.len(),
                pid_list(serving),
                if old.draining.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; {} still finishing their requests ({})",
                        old.draining.len(),
                        pid_list(&old.draining)
                    )
                }
            );
        }
    }

    fn ready(&mut self, now: Instant, pid: Pid) {
        if let Some(worker) = self.workers.get_mut(&pid)
            && worker.state == State::Booting
        {
            worker.state = State::Ready;
            log!(
                info,
                "worker {pid} ready (generation {}, {:.0?} to start)",
                worker.generation,
                now.saturating_duration_since(worker.started)
            );
        }
    }

    fn retiring(&mut self, now: Instant, pid: Pid) {
        if let Some(worker) = self.workers.get_mut(&pid)
            && worker.state != State::Stopping
        {
            worker.state = State::Stopping;
            worker.kill_at = Some(now + self.settings.stop_deadline);
            log!(info, "worker {pid} is retiring; starting its replacement");
        }
    }

    fn exited(&mut self, now: Instant, pid: Pid, ending: &Ending, actions: &mut Vec<Action>) {
        let Some(worker) = self.workers.remove(&pid) else {
            log!(debug, "reaped process {pid}: {}", ending.how);
            return;
        };
        let how = &ending.how;
        match worker.state {
            State::Stopping if ending.code == Some(0) => log!(info, "worker {pid} exited"),
            State::Stopping => log!(info, "worker {pid} {how}"),
            State::Booting => {
                let why = match ending.code {
                    Some(EXIT_APP_LOAD) if ending.load_error.is_some() => {
                        "could not load the application"
                    }
                    Some(EXIT_APP_LOAD) => "could not load the application (its error is above)",
                    Some(EXIT_PANIC) => "panicked (its message is above)",
                    _ => "died while starting",
                };
                let detail = self.load_error_detail(pid, worker.generation, ending);
                // A reload sent while the first workers still start: the
                // new code is what failed, and a worker of the old serves.
                let old_serving = self.workers.values().any(|w| {
                    w.generation < self.generation
                        && matches!(w.state, State::Ready | State::Expired)
                });
                if self.stopping {
                    log!(info, "worker {pid} {how}");
                } else if self.reloading
                    && worker.generation == self.generation
                    && (old_serving || !self.starting)
                {
                    self.reload_failed(now, pid, why, how, &detail, actions);
                } else if self.starting {
                    log!(error, "worker {pid} {why} ({how}){detail}");
                    self.fatal = Some(format!(
                        "worker {pid} {why}; stopping instead of starting it again and again"
                    ));
                    self.stop_all(now, Stop::Kill, actions);
                } else {
                    log!(error, "worker {pid} {why} ({how}){detail}");
                    self.count_quick_death(now, worker.started);
                }
            }
            State::Ready => {
                if self.stopping {
                    log!(info, "worker {pid} {how}");
                } else {
                    log!(warn, "worker {pid} died: {how}; starting another");
                    self.count_quick_death(now, worker.started);
                }
            }
            // Its replacement is already on the way.
            State::Expired if self.stopping => log!(info, "worker {pid} {how}"),
            State::Expired => log!(
                warn,
                "worker {pid} died: {how}, while its replacement (--max-worker-lifetime) was starting"
            ),
        }
    }

    /// What follows "could not load the application" in the log line:
    /// the worker's traceback, the first time it is seen in a generation.
    fn load_error_detail(&mut self, pid: Pid, generation: u64, ending: &Ending) -> String {
        let Some(text) = &ending.load_error else {
            return String::new();
        };
        match &self.last_load_error {
            Some((seen_in, first, seen)) if *seen_in == generation && seen == text => {
                format!(" (the same error as worker {first})")
            }
            _ => {
                self.last_load_error = Some((generation, pid, text.clone()));
                format!(":\n{text}")
            }
        }
    }

    /// Backs off when workers keep dying within a second of their start.
    fn count_quick_death(&mut self, now: Instant, started: Instant) {
        if now.saturating_duration_since(started) >= QUICK_DEATH {
            self.quick_deaths = 0;
            return;
        }
        self.quick_deaths += 1;
        if self.quick_deaths < 2 {
            return;
        }
        let delay = FIRST_BACKOFF
            .saturating_mul(1 << (self.quick_deaths - 2).min(10))
            .min(MAX_BACKOFF);
        self.next_spawn = now + delay;
        log!(
            warn,
            "{} workers in a row died within a second of starting; waiting {delay:?} before starting another",
            self.quick_deaths
        );
    }

    fn on_signal(&mut self, now: Instant, signal: MasterSignal, actions: &mut Vec<Action>) {
        match signal {
            MasterSignal::Term | MasterSignal::Int if !self.stopping => {
                let name = if signal == MasterSignal::Term {
                    "SIGTERM"
                } else {
                    "SIGINT"
                };
                log!(info, "{name}: stopping gracefully");
                self.stop(now, Stop::Drain, actions);
            }
            MasterSignal::Quit => {
                log!(info, "SIGQUIT: stopping at once");
                self.stop(now, Stop::Kill, actions);
            }
            _ if self.stopping => {}
            MasterSignal::Hup => self.reload(now, "SIGHUP", actions),
            MasterSignal::Ttin => {
                self.target += 1;
                log!(info, "SIGTTIN: one worker more: {}", self.target);
            }
            MasterSignal::Ttou if self.target > 1 => {
                self.target -= 1;
                log!(info, "SIGTTOU: one worker fewer: {}", self.target);
            }
            MasterSignal::Ttou => log!(info, "SIGTTOU: already down to one worker"),
            MasterSignal::Term | MasterSignal::Int => {}
        }
    }

    fn touch_seen(&mut self, now: Instant, mtime: Option<SystemTime>, actions: &mut Vec<Action>) {
        if self.stopping || self.fatal.is_some() {
            return;
        }
        let Some((path, seen)) = &mut self.settings.touch else {
            return;
        };
        if *seen == mtime {
            return;
        }
        *seen = mtime;
        let why = format!("--touch-reload {} changed", path.display());
        self.reload(now, &why, actions);
    }

    /// SIGTERM/SIGINT (`Stop::Drain`): stop arrivals and let the workers
    /// serve the listen queue and finish; SIGQUIT (`Stop::Kill`): kill
    /// them.
    fn stop(&mut self, now: Instant, how: Stop, actions: &mut Vec<Action>) {
        if !self.stopping {
            actions.push(Action::Notify("STOPPING=1".into()));
        }
        self.stopping = true;
        // New connections are refused from here where the socket allows
        // it; the workers serve what already waits.
        actions.push(Action::StopArrivals);
        self.stop_all(now, how, actions);
    }

    fn reload(&mut self, now: Instant, why: &str, actions: &mut Vec<Action>) {
        actions.push(Action::Reloading);
        if self.settings.preload {
            log!(
                info,
                "{why}: reloading: re-executing the master (--preload), which imports the application afresh"
            );
            actions.push(Action::Notify("RELOADING=1\nSTATUS=re-executing".into()));
            let (draining, serving): (Vec<_>, Vec<_>) = self
                .workers
                .iter()
                .partition(|(_, w)| w.state == State::Stopping);
            actions.push(Action::Reexec {
                workers: OldWorkers {
                    serving: serving.into_iter().map(|(&pid, _)| pid).collect(),
                    draining: draining.into_iter().map(|(&pid, _)| pid).collect(),
                },
                processes: self.target,
            });
            return;
        }
        self.generation += 1;
        self.reloading = true;
        self.quick_deaths = 0;
        self.next_spawn = now;
        log!(
            info,
            "{why}: reloading: starting {} new worker(s) (generation {}); the old ones stop once these are ready",
            self.target,
            self.generation
        );
        actions.push(Action::Notify(format!(
            "RELOADING=1\nSTATUS=reloading; {}",
            self.status()
        )));
    }

    fn reload_failed(
        &mut self,
        now: Instant,
        pid: Pid,
        why: &str,
        how: &str,
        detail: &str,
        actions: &mut Vec<Action>,
    ) {
        log!(
            error,
            "reload failed: new worker {pid} {why} ({how}); the old workers keep serving{detail}"
        );
        let new: Vec<Pid> = self
            .workers
            .iter()
            .filter(|(_, w)| w.generation == self.generation)
            .map(|(&pid, _)| pid)
            .collect();
        for pid in new {
            self.stop_worker(now, pid, Stop::Retire, actions);
        }
        self.generation = self
            .workers
            .values()
            .filter(|w| w.state != State::Stopping)
            .map(|w| w.generation)
            .max()
            .unwrap_or(self.generation);
        self.reloading = false;
        actions.push(self.notify_ready("reload failed; "));
    }

    fn tick(&mut self, now: Instant, actions: &mut Vec<Action>) {
        self.kill_overdue(now, actions);
        if self.stopping || self.fatal.is_some() {
            if self.workers.is_empty() {
                actions.push(Action::Exit {
                    fatal: self.fatal.take(),
                });
            }
        } else {
            self.maintain(now, actions);
        }
    }

    /// SIGKILLs the workers that were told to stop and have not.
    fn kill_overdue(&mut self, now: Instant, actions: &mut Vec<Action>) {
        for (&pid, worker) in &mut self.workers {
            if worker.kill_at.is_some_and(|at| at <= now) {
                log!(
                    warn,
                    "worker {pid} still running {:?} after it was told to stop; killing it",
                    self.settings.stop_deadline
                );
                actions.push(Action::Stop {
                    pid,
                    how: Stop::Kill,
                });
                worker.kill_at = None;
            }
        }
    }

    /// Starts missing workers, stops extra ones, and notices when a
    /// generation is ready.
    fn maintain(&mut self, now: Instant, actions: &mut Vec<Action>) {
        self.expire(now, actions);
        let mut serving: Vec<(Pid, Instant, State)> = self
            .workers
            .iter()
            .filter(|(_, w)| w.generation == self.generation && w.counted())
            .map(|(&pid, w)| (pid, w.started, w.state))
            .collect();
        let mut spawning = 0;
        if serving.len() < self.target && now >= self.next_spawn {
            spawning = self.target - serving.len();
            actions.extend((0..spawning).map(|_| Action::Spawn {
                generation: self.generation,
            }));
        }
        if serving.len() > self.target {
            // SIGTTOU: the newest go first.
            serving.sort_by_key(|&(_, started, _)| std::cmp::Reverse(started));
            let extra: Vec<Pid> = serving
                .drain(..serving.len() - self.target)
                .map(|(pid, ..)| pid)
                .collect();
            for pid in extra {
                self.stop_worker(now, pid, Stop::Retire, actions);
            }
        }
        // Workers being spawned are booting: not ready.
        let ready = spawning == 0
            && serving.len() >= self.target
            && serving.iter().all(|w| w.2 == State::Ready);
        if !ready {
            return;
        }
        let expired: Vec<Pid> = self
            .workers
            .iter()
            .filter(|(_, w)| w.state == State::Expired)
            .map(|(&pid, _)| pid)
            .collect();
        for pid in expired {
            log!(
                info,
                "worker {pid}: its replacement is ready; telling it to stop (--max-worker-lifetime)"
            );
            self.stop_worker(now, pid, Stop::Retire, actions);
        }
        if self.starting {
            self.starting = false;
            log!(info, "{} worker(s) ready", self.target);
            actions.push(self.notify_ready(""));
        }
        if self.reloading {
            self.reloading = false;
            let old: Vec<Pid> = self
                .workers
                .iter()
                .filter(|(_, w)| w.generation < self.generation && w.state != State::Stopping)
                .map(|(&pid, _)| pid)
                .collect();
            log!(
                info,
                "reloaded: generation {} is serving; stopping the {} old worker(s)",
                self.generation,
                old.len()
            );
            for pid in old {
                self.stop_worker(now, pid, Stop::Retire, actions);
            }
            actions.push(self.notify_ready(""));
        }
    }

    /// `--max-worker-lifetime`: sets aside the worker whose lifetime is
    /// over, so that [`Policy::maintain`] starts its replacement; it serves
    /// on until that one is ready. One at a time: while any worker of this
    /// generation boots, or waits for its replacement, no other expires, so
    /// that workers started together are replaced one after another even
    /// with no jitter, and each import has the CPU to itself. During a
    /// reload nothing expires: every worker is being replaced anyway.
    fn expire(&mut self, now: Instant, actions: &mut Vec<Action>) {
        if self.settings.lifetime.is_none() || self.reloading {
            return;
        }
        let generation = self.generation;
        let current = || self.workers.values().filter(|w| w.generation == generation);
        if current().any(|w| matches!(w.state, State::Booting | State::Expired)) {
            return;
        }
        let due = self
            .workers
            .iter_mut()
            .filter(|(_, w)| w.generation == generation && w.state == State::Ready)
            .filter(|(_, w)| w.retire_at.is_some_and(|at| at <= now))
            .min_by_key(|(_, w)| w.retire_at);
        let Some((&pid, worker)) = due else {
            return;
        };
        worker.state = State::Expired;
        log!(
            info,
            "worker {pid} has lived {:.0?} (--max-worker-lifetime): starting its replacement; it serves until that one is ready",
            now.saturating_duration_since(worker.started)
        );
        actions.push(Action::Expired(pid));
    }

    fn stop_worker(&mut self, now: Instant, pid: Pid, how: Stop, actions: &mut Vec<Action>) {
        let Some(worker) = self.workers.get_mut(&pid) else {
            return;
        };
        actions.push(Action::Stop { pid, how });
        worker.state = State::Stopping;
        if worker.kill_at.is_none() || how == Stop::Kill {
            worker.kill_at = Some(now + self.settings.stop_deadline);
        }
    }

    fn stop_all(&mut self, now: Instant, how: Stop, actions: &mut Vec<Action>) {
        let pids: Vec<Pid> = self.workers.keys().copied().collect();
        for pid in pids {
            self.stop_worker(now, pid, how, actions);
        }
    }

    fn notify_ready(&self, prefix: &str) -> Action {
        Action::Notify(format!("READY=1\nSTATUS={prefix}{}", self.status()))
    }

    fn status(&self) -> String {
        let serving = self
            .workers
            .values()
            .filter(|w| w.generation == self.generation && w.state != State::Stopping)
            .count();
        format!(
            "{serving} of {} workers serving on {} (generation {})",
            self.target, self.settings.describe, self.generation
        )
    }
}

impl Worker {
    /// Counted among the workers the target asks for (an expired one
    /// serves, but its replacement is the one counted).
    fn counted(&self) -> bool {
        !matches!(self.state, State::Stopping | State::Expired)
    }
}

/// The `k`-th worker's share of `jitter`: `jitter` × the fractional part
/// of k/φ (a Weyl sequence). Deterministic, so that the policy stays a
/// function of its events, and evenly spread: the first shares are 0,
/// 0.62, 0.24, 0.85, 0.47 × `jitter`, so that workers started together
/// never draw the same lifetime, as random draws can.
pub(crate) fn lifetime_share(k: u64, jitter: Duration) -> Duration {
    // 2^64 / φ: k × STEP mod 2^64 is frac(k/φ) in 64-bit fixed point.
    const STEP: u64 = 0x9E37_79B9_7F4A_7C15;
    let fraction = u128::from(k.wrapping_mul(STEP));
    let nanos = (jitter.as_nanos().saturating_mul(fraction)) >> 64;
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

pub(crate) fn pid_list(pids: &[Pid]) -> String {
    pids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(32);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn settings(processes: usize) -> Settings {
        Settings {
            processes,
            preload: false,
            preloaded: false,
            stop_deadline: GRACE,
            describe: "unix:/run/app.sock".into(),
            touch: None,
            lifetime: None,
            lifetime_jitter: Duration::ZERO,
        }
    }

    fn exit_code(code: i32) -> Ending {
        Ending {
            code: Some(code),
            how: format!("exited with code {code}"),
            load_error: None,
        }
    }

    fn killed() -> Ending {
        Ending {
            code: None,
            how: "killed by signal 9".into(),
            load_error: None,
        }
    }

    /// A policy driven by a fake clock: `base` plus `elapsed`.
    struct Master {
        policy: Policy,
        base: Instant,
        elapsed: Duration,
        next_pid: Pid,
    }

    impl Master {
        fn new(settings: Settings) -> Master {
            let base = Instant::now();
            Master {
                policy: Policy::new(settings, base),
                base,
                elapsed: Duration::ZERO,
                next_pid: 100,
            }
        }

        fn now(&self) -> Instant {
            self.base + self.elapsed
        }

        fn at(&mut self, elapsed: Duration) -> &mut Self {
            self.elapsed = elapsed;
            self
        }

        fn handle(&mut self, event: Event) -> Vec<Action> {
            self.policy.handle(self.now(), event)
        }

        /// A tick, with every Spawn carried out; returns the pids forked
        /// and the other actions.
        fn tick(&mut self) -> (Vec<Pid>, Vec<Action>) {
            let mut pids = Vec::new();
            let mut rest = Vec::new();
            for action in self.handle(Event::Tick) {
                match action {
                    Action::Spawn { generation } => {
                        let pid = self.next_pid;
                        self.next_pid += 1;
                        assert!(self.handle(Event::Spawned { pid, generation }).is_empty());
                        pids.push(pid);
                    }
                    other => rest.push(other),
                }
            }
            (pids, rest)
        }

        /// Starts `processes` workers and makes them ready.
        fn serving(&mut self) -> Vec<Pid> {
            let (pids, _) = self.tick();
            for &pid in &pids {
                self.handle(Event::Ready(pid));
            }
            let (none, actions) = self.tick();
            assert!(none.is_empty());
            assert!(matches!(&actions[..], [Action::Notify(s)] if s.starts_with("READY=1")));
            pids
        }
    }

    fn serving(pids: &[Pid]) -> OldWorkers {
        OldWorkers {
            serving: pids.to_vec(),
            draining: vec![],
        }
    }

    fn stops(actions: &[Action], how: Stop) -> Vec<Pid> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Stop { pid, how: h } if *h == how => Some(*pid),
                _ => None,
            })
            .collect()
    }

    fn notes(actions: &[Action]) -> Vec<&str> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Notify(s) => Some(s.as_str()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn workers_start_and_readiness_is_notified_once_all_are_ready() {
        let mut m = Master::new(settings(2));
        let (pids, rest) = m.tick();
        assert_eq!(pids, [100, 101]);
        assert!(rest.is_empty());
        m.at(ms(300)).handle(Event::Ready(100));
        assert_eq!(m.tick(), (vec![], vec![]), "one of two is not ready");
        m.handle(Event::Ready(101));
        let (_, actions) = m.tick();
        assert_eq!(
            notes(&actions),
            ["READY=1\nSTATUS=2 of 2 workers serving on unix:/run/app.sock (generation 1)"]
        );
        assert_eq!(m.tick(), (vec![], vec![]), "READY=1 only once");
    }

    #[test]
    fn a_first_start_that_fails_is_fatal() {
        let mut m = Master::new(settings(2));
        m.tick();
        let actions = m.at(ms(500)).handle(Event::Exited {
            pid: 100,
            ending: exit_code(EXIT_APP_LOAD),
        });
        assert_eq!(stops(&actions, Stop::Kill), [101]);
        assert_eq!(m.tick(), (vec![], vec![]), "no retry; waits for 101");
        m.handle(Event::Exited {
            pid: 101,
            ending: killed(),
        });
        let (pids, actions) = m.tick();
        assert!(pids.is_empty());
        let [
            Action::Exit {
                fatal: Some(message),
            },
        ] = &actions[..]
        else {
            panic!("{actions:?}")
        };
        assert!(
            message.starts_with("worker 100 could not load the application"),
            "{message}"
        );
    }

    #[test]
    fn a_ready_worker_that_dies_is_replaced_at_once() {
        let mut m = Master::new(settings(2));
        m.serving();
        m.at(ms(5000)).handle(Event::Exited {
            pid: 100,
            ending: killed(),
        });
        let (pids, _) = m.tick();
        assert_eq!(pids, [102]);
        // A worker dying after the first start is not fatal.
        m.handle(Event::Exited {
            pid: 102,
            ending: exit_code(EXIT_APP_LOAD),
        });
        assert_eq!(m.tick().0, [103]);
    }

    #[test]
    fn quick_deaths_back_off_doubling_up_to_ten_seconds() {
        let mut m = Master::new(settings(1));
        let mut pid = m.serving()[0];
        let mut t = ms(10_000);
        // The first worker lived long; the first quick death is replaced
        // at once too; then 0.1 s, 0.2 s, …
        let mut expected = vec![0, 0, 100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000];
        expected.reverse();
        while let Some(delay) = expected.pop() {
            m.at(t).handle(Event::Ready(pid));
            t += ms(500); // less than a second after its start
            m.at(t).handle(Event::Exited {
                pid,
                ending: killed(),
            });
            if delay > 0 {
                let sleep = ms(delay).min(LONGEST_SLEEP);
                assert_eq!(m.policy.next_deadline(m.now()), m.now() + sleep);
                assert!(m.at(t + ms(delay - 1)).tick().0.is_empty(), "{delay} ms");
            }
            t += ms(delay);
            let (pids, _) = m.at(t).tick();
            assert_eq!(pids.len(), 1, "after {delay} ms");
            pid = pids[0];
        }
        // One that lives past a second resets the count.
        m.at(t).handle(Event::Ready(pid));
        t += ms(1000);
        m.at(t).handle(Event::Exited {
            pid,
            ending: killed(),
        });
        let (pids, _) = m.tick();
        assert_eq!(pids.len(), 1, "replaced at once");
        t += ms(100);
        m.at(t).handle(Event::Exited {
            pid: pids[0],
            ending: killed(),
        });
        assert_eq!(m.tick().0.len(), 1, "the first quick death again");
    }

    #[test]
    fn a_reload_stops_the_old_generation_once_all_of_the_new_is_ready() {
        let mut m = Master::new(settings(2));
        let old = m.serving();
        let actions = m.at(ms(5000)).handle(Event::Signal(MasterSignal::Hup));
        assert_eq!(
            notes(&actions),
            [
                "RELOADING=1\nSTATUS=reloading; 0 of 2 workers serving on unix:/run/app.sock (generation 2)"
            ]
        );
        let (new, rest) = m.tick();
        assert_eq!(new, [102, 103]);
        assert!(rest.is_empty());
        m.handle(Event::Ready(102));
        assert_eq!(m.tick(), (vec![], vec![]), "old ones serve on");
        m.handle(Event::Ready(103));
        let (_, actions) = m.tick();
        assert_eq!(stops(&actions, Stop::Retire), old);
        assert_eq!(
            notes(&actions),
            ["READY=1\nSTATUS=2 of 2 workers serving on unix:/run/app.sock (generation 2)"]
        );
        // Old workers exiting as told start nothing.
        for pid in old {
            m.handle(Event::Exited {
                pid,
                ending: exit_code(0),
            });
        }
        assert_eq!(m.tick(), (vec![], vec![]));
    }

    #[test]
    fn a_load_error_is_told_in_full_once_per_generation() {
        let mut m = Master::new(settings(3));
        let failed = |text: &str| Ending {
            load_error: Some(text.into()),
            ..exit_code(EXIT_APP_LOAD)
        };
        let traceback = "Traceback (most recent call last):\nImportError: no";
        assert_eq!(
            m.policy.load_error_detail(100, 2, &failed(traceback)),
            format!(":\n{traceback}")
        );
        for pid in [101, 102] {
            assert_eq!(
                m.policy.load_error_detail(pid, 2, &failed(traceback)),
                " (the same error as worker 100)"
            );
        }
        // Another error, or the next reload's: in full again.
        assert_eq!(
            m.policy.load_error_detail(103, 2, &failed("other")),
            ":\nother"
        );
        assert_eq!(
            m.policy.load_error_detail(104, 3, &failed("other")),
            ":\nother"
        );
        assert_eq!(m.policy.load_error_detail(105, 3, &exit_code(4)), "");
    }

    #[test]
    fn a_new_generation_that_cannot_load_is_given_up() {
        let mut m = Master::new(settings(2));
        let old = m.serving();
        m.handle(Event::Signal(MasterSignal::Hup));
        let (new, _) = m.tick();
        m.handle(Event::Ready(new[0]));
        let actions = m.at(ms(800)).handle(Event::Exited {
            pid: new[1],
            ending: exit_code(EXIT_APP_LOAD),
        });
        assert_eq!(stops(&actions, Stop::Retire), [new[0]]);
        assert_eq!(
            notes(&actions),
            [
                "READY=1\nSTATUS=reload failed; 2 of 2 workers serving on unix:/run/app.sock (generation 1)"
            ]
        );
        assert_eq!(m.tick(), (vec![], vec![]), "the old keep serving");
        // A later reload tries again, as generation 2.
        m.handle(Event::Signal(MasterSignal::Hup));
        let (again, _) = m.tick();
        assert_eq!(again.len(), 2);
        assert!(!again.iter().any(|p| old.contains(p)));
    }

    #[test]
    fn a_reload_during_the_first_start_that_fails_keeps_the_ready_old_worker() {
        let mut m = Master::new(settings(2));
        let (first, _) = m.tick();
        m.handle(Event::Ready(first[0]));
        m.handle(Event::Signal(MasterSignal::Hup));
        let (new, _) = m.tick();
        let actions = m.handle(Event::Exited {
            pid: new[0],
            ending: exit_code(EXIT_APP_LOAD),
        });
        assert_eq!(stops(&actions, Stop::Retire), [new[1]]);
        assert!(m.tick().1.iter().all(|a| !matches!(a, Action::Exit { .. })));
    }

    #[test]
    fn a_retiring_worker_is_replaced_at_once_and_killed_if_it_never_exits() {
        let mut m = Master::new(settings(2));
        m.serving();
        m.at(ms(3000)).handle(Event::Retiring(101));
        let (pids, _) = m.tick();
        assert_eq!(pids, [102]);
        assert_eq!(m.policy.next_deadline(m.now()), m.now() + ms(1000));
        let (_, actions) = m.at(ms(3000) + GRACE).tick();
        assert_eq!(stops(&actions, Stop::Kill), [101]);
        m.handle(Event::Exited {
            pid: 101,
            ending: killed(),
        });
        assert_eq!(m.tick(), (vec![], vec![]), "no second replacement");
    }

    #[test]
    fn sigterm_drains_all_then_kills_the_overdue() {
        let mut m = Master::new(settings(2));
        m.serving();
        let actions = m.at(ms(2000)).handle(Event::Signal(MasterSignal::Term));
        assert_eq!(notes(&actions), ["STOPPING=1"]);
        assert!(actions.contains(&Action::StopArrivals));
        assert_eq!(stops(&actions, Stop::Drain), [100, 101]);
        m.handle(Event::Exited {
            pid: 100,
            ending: exit_code(0),
        });
        assert_eq!(m.tick(), (vec![], vec![]), "no replacement while stopping");
        assert!(m.handle(Event::Signal(MasterSignal::Hup)).is_empty());
        assert!(m.handle(Event::Signal(MasterSignal::Term)).is_empty());
        assert_eq!(m.policy.next_deadline(m.now()), m.now() + ms(1000));
        assert_eq!(m.at(ms(2000) + GRACE - ms(1)).tick(), (vec![], vec![]));
        let (_, actions) = m.at(ms(2000) + GRACE).tick();
        assert_eq!(
            actions,
            [Action::Stop {
                pid: 101,
                how: Stop::Kill
            }]
        );
        m.handle(Event::Exited {
            pid: 101,
            ending: killed(),
        });
        assert_eq!(m.tick().1, [Action::Exit { fatal: None }]);
    }

    #[test]
    fn sigquit_kills() {
        let mut m = Master::new(settings(2));
        m.serving();
        let actions = m.handle(Event::Signal(MasterSignal::Quit));
        assert_eq!(notes(&actions), ["STOPPING=1"]);
        assert_eq!(stops(&actions, Stop::Kill), [100, 101]);
        assert!(stops(&actions, Stop::Drain).is_empty());
        // Also after a SIGTERM.
        let mut m = Master::new(settings(1));
        m.serving();
        m.handle(Event::Signal(MasterSignal::Term));
        let actions = m.handle(Event::Signal(MasterSignal::Quit));
        assert!(notes(&actions).is_empty());
        assert_eq!(stops(&actions, Stop::Kill), [100]);
    }

    #[test]
    fn ttin_and_ttou_change_the_count_the_newest_going_first() {
        let mut m = Master::new(settings(2));
        m.serving();
        m.at(ms(5000)).handle(Event::Signal(MasterSignal::Ttin));
        assert_eq!(m.policy.target(), 3);
        let (added, _) = m.tick();
        assert_eq!(added, [102]);
        m.handle(Event::Ready(102));
        m.tick();
        m.handle(Event::Signal(MasterSignal::Ttou));
        let (_, actions) = m.tick();
        assert_eq!(stops(&actions, Stop::Retire), [102]);
        m.handle(Event::Signal(MasterSignal::Ttou));
        m.handle(Event::Signal(MasterSignal::Ttou));
        assert_eq!(m.policy.target(), 1, "never below one");
        let (_, actions) = m.tick();
        assert_eq!(stops(&actions, Stop::Retire).len(), 1);
    }

    #[test]
    fn a_failed_fork_is_retried_a_second_later() {
        let mut m = Master::new(settings(1));
        assert!(matches!(
            m.handle(Event::Tick)[..],
            [Action::Spawn { generation: 1 }]
        ));
        m.handle(Event::SpawnFailed("EAGAIN".into()));
        assert!(m.handle(Event::Tick).is_empty());
        assert_eq!(m.at(ms(1000)).tick().0.len(), 1);
    }

    #[test]
    fn a_preload_reload_reexecutes_with_the_workers() {
        let mut m = Master::new(Settings {
            preload: true,
            preloaded: true,
            ..settings(2)
        });
        m.serving();
        let actions = m.handle(Event::Signal(MasterSignal::Hup));
        assert_eq!(
            actions,
            [
                Action::Reloading,
                Action::Notify("RELOADING=1\nSTATUS=re-executing".into()),
                Action::Reexec {
                    workers: OldWorkers {
                        serving: vec![100, 101],
                        draining: vec![]
                    },
                    processes: 2
                }
            ]
        );
        let actions = m.handle(Event::ReexecFailed("ENOENT".into()));
        assert_eq!(
            notes(&actions),
            [
                "READY=1\nSTATUS=reload failed; 2 of 2 workers serving on unix:/run/app.sock (generation 1)"
            ]
        );
        assert_eq!(m.tick(), (vec![], vec![]));
    }

    #[test]
    fn after_a_reexec_the_old_workers_serve_until_the_new_are_ready() {
        let mut m = Master::new(Settings {
            preload: true,
            preloaded: true,
            ..settings(2)
        });
        assert!(m.handle(Event::Adopted(serving(&[7, 8]))).is_empty());
        let (new, _) = m.tick();
        assert_eq!(new, [100, 101]);
        // A new worker failing here is a failed reload, not a fatal start.
        m.handle(Event::Ready(100));
        m.handle(Event::Ready(101));
        let (_, actions) = m.tick();
        assert_eq!(stops(&actions, Stop::Retire), [7, 8]);
    }

    #[test]
    fn a_reload_storm_hands_over_the_draining_workers_whose_exits_are_no_crash() {
        let preload = || Settings {
            preload: true,
            preloaded: true,
            ..settings(2)
        };
        // The first image: 100 and 101 drain (retiring here; told to stop
        // by a reload is the same state) and 102, 103 serve when the next
        // SIGHUP comes.
        let mut m = Master::new(preload());
        m.serving();
        m.at(ms(5000)).handle(Event::Retiring(100));
        m.handle(Event::Retiring(101));
        let (new, _) = m.tick();
        assert_eq!(new, [102, 103]);
        let actions = m.handle(Event::Signal(MasterSignal::Hup));
        let Some(Action::Reexec { workers, .. }) = actions.last() else {
            panic!("{actions:?}")
        };
        assert_eq!(
            workers,
            &OldWorkers {
                serving: vec![102, 103],
                draining: vec![100, 101]
            }
        );
        // The next image adopts them (its own pids from 200), and the
        // draining ones exit 0 at once, before its own workers are ready.
        let mut m = Master::new(preload());
        m.next_pid = 200;
        m.handle(Event::Adopted(workers.clone()));
        let (mine, _) = m.at(ms(10)).tick();
        assert_eq!(mine, [200, 201]);
        for pid in [100, 101] {
            let actions = m.at(ms(20)).handle(Event::Exited {
                pid,
                ending: exit_code(0),
            });
            assert!(actions.is_empty(), "{actions:?}");
        }
        // No replacement for them and no back-off: the next spawn would
        // come at once (nothing is missing, so nothing is spawned).
        assert_eq!(m.policy.quick_deaths, 0);
        assert!(m.policy.next_spawn <= m.now());
        assert_eq!(m.at(ms(30)).tick(), (vec![], vec![]));
        m.handle(Event::Ready(200));
        m.handle(Event::Ready(201));
        let (_, actions) = m.tick();
        assert_eq!(stops(&actions, Stop::Retire), [102, 103]);
        // One that dies of a crash is still one.
        let mut m = Master::new(preload());
        m.next_pid = 200;
        m.handle(Event::Adopted(workers.clone()));
        m.tick();
        m.at(ms(20)).handle(Event::Exited {
            pid: 102,
            ending: killed(),
        });
        assert_eq!(m.policy.quick_deaths, 1);
    }

    #[test]
    fn after_a_reexec_that_could_not_import_the_old_workers_serve_on() {
        let mut m = Master::new(Settings {
            preload: true,
            preloaded: false,
            ..settings(2)
        });
        let actions = m.handle(Event::Adopted(serving(&[7, 8])));
        assert_eq!(
            notes(&actions),
            [
                "READY=1\nSTATUS=reload failed; 2 of 2 workers serving on unix:/run/app.sock (generation 0)"
            ]
        );
        assert_eq!(m.tick(), (vec![], vec![]));
        // One that dies is replaced (in the same generation).
        m.at(ms(3000)).handle(Event::Exited {
            pid: 7,
            ending: killed(),
        });
        assert!(matches!(
            m.handle(Event::Tick)[..],
            [Action::Spawn { generation: 0 }]
        ));
    }

    #[test]
    fn a_touched_file_reloads() {
        let then = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let mut m = Master::new(Settings {
            touch: Some(("/srv/app/reload".into(), Some(then))),
            ..settings(1)
        });
        m.serving();
        assert!(m.handle(Event::TouchSeen(Some(then))).is_empty());
        let later = then + Duration::from_secs(5);
        let actions = m.handle(Event::TouchSeen(Some(later)));
        assert!(notes(&actions)[0].starts_with("RELOADING=1"), "{actions:?}");
        assert_eq!(m.tick().0, [101]);
        assert!(m.handle(Event::TouchSeen(Some(later))).is_empty(), "once");
    }

    fn with_lifetime(processes: usize, lifetime_s: u64, jitter_s: u64) -> Settings {
        Settings {
            lifetime: Some(Duration::from_secs(lifetime_s)),
            lifetime_jitter: Duration::from_secs(jitter_s),
            ..settings(processes)
        }
    }

    fn expired(actions: &[Action]) -> Vec<Pid> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Expired(pid) => Some(*pid),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_worker_past_its_lifetime_is_stopped_only_once_its_replacement_is_ready() {
        let mut m = Master::new(with_lifetime(2, 60, 0));
        assert_eq!(m.serving(), [100, 101]);
        assert_eq!(m.at(ms(59_999)).tick(), (vec![], vec![]));
        // Both are due; one is replaced at a time.
        let (pids, actions) = m.at(ms(60_000)).tick();
        assert_eq!(pids, [102]);
        assert_eq!(actions, [Action::Expired(100)]);
        // 100 serves on while 102 boots: not stopped, not replaced twice.
        assert_eq!(m.at(ms(61_000)).tick(), (vec![], vec![]));
        m.handle(Event::Ready(102));
        let (pids, actions) = m.tick();
        assert!(pids.is_empty());
        assert_eq!(stops(&actions, Stop::Retire), [100]);
        assert!(expired(&actions).is_empty(), "101 waits for the next turn");
        // Then 101, the same way.
        let (pids, actions) = m.at(ms(61_100)).tick();
        assert_eq!(pids, [103]);
        assert_eq!(actions, [Action::Expired(101)]);
        m.handle(Event::Exited {
            pid: 100,
            ending: exit_code(0),
        });
        m.handle(Event::Ready(103));
        let (pids, actions) = m.tick();
        assert!(pids.is_empty());
        assert_eq!(
            actions,
            [Action::Stop {
                pid: 101,
                how: Stop::Retire
            }]
        );
        m.handle(Event::Exited {
            pid: 101,
            ending: exit_code(0),
        });
        // The replacements live their own lifetime, from their start.
        assert_eq!(m.at(ms(119_999)).tick(), (vec![], vec![]));
        let (pids, actions) = m.at(ms(120_000)).tick();
        assert_eq!((pids, actions), (vec![104], vec![Action::Expired(102)]));
    }

    #[test]
    fn the_jitter_spreads_the_lifetimes_of_workers_started_together() {
        // Shares of 10 s: 0, 6.18 s, 2.36 s.
        let mut m = Master::new(with_lifetime(3, 60, 10));
        assert_eq!(m.serving(), [100, 101, 102]);
        let (pids, actions) = m.at(ms(60_000)).tick();
        assert_eq!((pids, actions), (vec![103], vec![Action::Expired(100)]));
        m.handle(Event::Ready(103));
        assert_eq!(stops(&m.tick().1, Stop::Retire), [100]);
        assert_eq!(m.at(ms(62_359)).tick(), (vec![], vec![]));
        let (pids, actions) = m.at(ms(62_361)).tick();
        assert_eq!((pids, actions), (vec![104], vec![Action::Expired(102)]));
        m.handle(Event::Ready(104));
        assert_eq!(stops(&m.tick().1, Stop::Retire), [102]);
        assert_eq!(m.at(ms(66_179)).tick(), (vec![], vec![]));
        let (pids, actions) = m.at(ms(66_181)).tick();
        assert_eq!((pids, actions), (vec![105], vec![Action::Expired(101)]));
    }

    #[test]
    fn the_master_wakes_up_when_a_lifetime_ends() {
        let mut m = Master::new(with_lifetime(1, 60, 0));
        m.serving();
        let now = m.at(ms(59_500)).now();
        assert_eq!(m.policy.next_deadline(now), m.base + ms(60_000));
        // Over, and its replacement booting: no busy loop on a past time.
        m.at(ms(60_000)).tick();
        let now = m.now();
        assert_eq!(m.policy.next_deadline(now), now + ms(1000));
    }

    #[test]
    fn an_expired_worker_serves_on_while_its_replacement_cannot_start() {
        let mut m = Master::new(with_lifetime(1, 60, 0));
        assert_eq!(m.serving(), [100]);
        let (pids, _) = m.at(ms(60_000)).tick();
        assert_eq!(pids, [101]);
        let actions = m.at(ms(60_500)).handle(Event::Exited {
            pid: 101,
            ending: exit_code(EXIT_APP_LOAD),
        });
        assert!(actions.is_empty(), "{actions:?}");
        let (pids, actions) = m.tick();
        assert_eq!(pids, [102], "another try");
        assert!(stops(&actions, Stop::Retire).is_empty(), "100 still serves");
        m.handle(Event::Ready(102));
        assert_eq!(stops(&m.tick().1, Stop::Retire), [100]);
    }

    #[test]
    fn an_expired_worker_that_dies_is_not_replaced_twice() {
        let mut m = Master::new(with_lifetime(2, 60, 0));
        m.serving();
        let (pids, _) = m.at(ms(60_000)).tick();
        assert_eq!(pids, [102]);
        m.handle(Event::Exited {
            pid: 100,
            ending: killed(),
        });
        assert_eq!(m.tick(), (vec![], vec![]), "102 is already its replacement");
    }

    #[test]
    fn a_reload_stops_an_expired_worker_with_the_old_generation() {
        let mut m = Master::new(with_lifetime(2, 60, 0));
        m.serving();
        let (pids, _) = m.at(ms(60_000)).tick();
        assert_eq!(pids, [102]);
        m.handle(Event::Signal(MasterSignal::Hup));
        let (new, actions) = m.tick();
        assert_eq!(new, [103, 104]);
        assert!(
            expired(&actions).is_empty(),
            "nothing expires during a reload"
        );
        for pid in [102, 103, 104] {
            m.handle(Event::Ready(pid));
        }
        let (_, actions) = m.tick();
        let mut stopped = stops(&actions, Stop::Retire);
        stopped.sort_unstable();
        assert_eq!(stopped, [100, 101, 102]);
    }

    #[test]
    fn without_a_lifetime_workers_are_never_expired() {
        let mut m = Master::new(settings(1));
        m.serving();
        assert_eq!(
            m.at(Duration::from_secs(86_400 * 365)).tick(),
            (vec![], vec![])
        );
    }

    #[test]
    fn a_lifetime_too_long_for_the_clock_is_never() {
        let mut m = Master::new(Settings {
            lifetime: Some(Duration::from_secs(u64::MAX)),
            lifetime_jitter: Duration::from_secs(u64::MAX),
            ..settings(2)
        });
        m.serving();
        assert_eq!(m.at(ms(60_000)).tick(), (vec![], vec![]));
    }

    #[test]
    fn lifetime_shares_are_spread_over_the_jitter() {
        let jitter = Duration::from_secs(100);
        let shares: Vec<u64> = (0..5)
            .map(|k| lifetime_share(k, jitter).as_secs())
            .collect();
        assert_eq!(shares, [0, 61, 23, 85, 47]);
        assert!((0..10_000).all(|k| lifetime_share(k, jitter) < jitter));
        assert_eq!(lifetime_share(7, Duration::ZERO), Duration::ZERO);
        // No overflow on an absurd jitter.
        assert!(lifetime_share(3, Duration::from_secs(u64::MAX)) > Duration::ZERO);
    }
}
