//! One worker process: forked by the master (master.rs), it has its own
//! interpreter (imported after the fork, or the master's preloaded one),
//! its own Python threads and its own tokio runtime, and accepts on the
//! listening socket it shares with the other workers.
//!
//! It tells the master two things through a pipe: `R` once the app is
//! loaded and it is about to accept, and `r` when it retires on its own
//! (--max-requests, --reload-on-rss; [`Retirement::retire`] is the one way
//! in, for any future reason), so that the master starts its replacement
//! at once. SIGTERM and SIGINT mean the server stops (the master's stop,
//! the master's death, systemd's stop): the worker serves what waits in
//! the listen queue too, then closes its listener, finishes what it
//! accepted and exits 0. Retiring, and SIGUSR2 (the master's word for a
//! worker that is replaced: a reload, SIGTTOU), leave the queue to the
//! other workers: it closes its listener at once.

use crate::RunError;
use crate::config::ServerConfig;
use crate::listener::BoundSocket;
use rustgi_core::{EnvironSettings, Interpreter, PythonPool};
use rustgi_observe::board::{Board, Retired};
use rustgi_serve::{Stopping, serve};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// A worker that could not start Python or load the application exits with
/// this code (gunicorn's APP_LOAD_ERROR): the master then stops trying when
/// it is a first start, and keeps the old workers when it is a reload.
pub(crate) const EXIT_APP_LOAD: i32 = 4;
/// A worker that panicked.
pub(crate) const EXIT_PANIC: i32 = 70;

/// What the master hands a worker it has just forked.
pub(crate) struct Launch<'a> {
    pub config: &'a ServerConfig,
    pub socket: BoundSocket,
    pub describe: String,
    /// The master's interpreter with the app loaded (--preload), else None:
    /// the worker starts its own.
    pub interpreter: Option<Interpreter>,
    /// The write end of the status pipe to the master.
    pub status: OwnedFd,
    /// `wsgi.multiprocess`.
    pub multiprocess: bool,
    /// The scoreboard and this worker's slot in it (None: no slot was free).
    pub board: Option<(&'static Board, usize)>,
}

/// Runs the worker; returns its exit code.
pub(crate) fn run(launch: Launch<'_>) -> i32 {
    let Launch {
        config,
        socket,
        describe,
        interpreter,
        status,
        multiprocess,
        board,
    } = launch;
    // Before any Python thread runs a request.
    if let Some((board, slot)) = board {
        rustgi_observe::board::attach(board.writer(slot));
    }
    // Lines this process logs from its main thread name it.
    let _span = tracing::info_span!("worker", pid = std::process::id()).entered();
    let interpreter = match interpreter {
        Some(interpreter) => interpreter,
        None => match Interpreter::start(&config.python) {
            Ok(interpreter) => {
                tracing::info!("Python {}", interpreter.description);
                tracing::info!("application: {}", config.python.app);
                interpreter
            }
            Err(e) => {
                report_load_error(status, &crate::python_failed(e, config).to_string());
                return EXIT_APP_LOAD;
            }
        },
    };
    if let Some((board, _)) = board {
        let version = interpreter.description.split_whitespace().next();
        board.set_python(version.unwrap_or_default());
    }
    let status = std::fs::File::from(status);
    let retirement = Arc::new(Retirement::new(config));
    let settings = EnvironSettings {
        mount: config.mount.clone(),
        multithread: config.serve.threads > 1,
        multiprocess,
        run_once: false,
        paths_as_sent: false,
        forwarded: config.serve.forwarded.clone(),
    };
    let pool = match PythonPool::start(interpreter.app(), config.serve.threads, settings) {
        Ok(pool) => pool,
        Err(e) => {
            tracing::error!("could not start the Python threads: {e}");
            return 1;
        }
    };
    if retirement.has_limits() {
        let retirement = retirement.clone();
        pool.on_request(Arc::new(move || retirement.on_request()));
    }
    let pool = Arc::new(pool);
    if let Some(limit) = config.request_timeout {
        let retirement = retirement.clone();
        if let Err(e) = crate::timeout::watch(&pool, limit, move |why| {
            retirement.retire(Retired::Timeout, why.into())
        }) {
            tracing::error!("could not start the --timeout watch: {e}");
            return 1;
        }
    }
    if let Some(limit) = config.slow_request_log
        && let Err(e) = crate::timeout::watch_slow(&pool, limit)
    {
        tracing::error!("could not start the --slow-request-log watch: {e}");
        return 1;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("could not start the I/O runtime: {e}");
            return 1;
        }
    };
    // Listening before saying ready: the master's READY=1 (sd_notify) must
    // not come before connections are accepted (listener.rs binds without
    // listening until an app is loaded).
    if let Err(e) = socket.listen() {
        tracing::error!("could not listen: {e}");
        return 1;
    }
    let served = runtime.block_on(async {
        let stop = stop_signal(retirement.clone(), status)?;
        serve(
            &config.serve,
            socket.into_listener(),
            &describe,
            pool.clone(),
            stop,
        )
        .await
    });
    drop(runtime);
    // Responses parked for clients that did not read in time: their
    // connections closed with the loop, the application's close() runs.
    if !pool.close_parked(std::time::Duration::from_secs(1)) {
        tracing::warn!("parked responses not closed within 1s of the stop");
    }
    let drained = match served {
        Ok(drained) => drained,
        Err(e) => {
            tracing::error!("{e}");
            return 1;
        }
    };
    if !drained {
        // serve() said how many it leaves.
        return 0;
    }
    let stuck = pool.stuck_threads();
    if stuck > 0 {
        tracing::warn!(
            "{stuck} Python thread(s) still run a request that timed out; exiting without waiting for them"
        );
        return 0;
    }
    pool.shutdown();
    interpreter.finalize();
    tracing::info!("stopped");
    0
}

/// Hands why the app could not load to the master (`E` and the text, on
/// the status pipe), which logs it once: with several new workers failing
/// on the same broken code, one traceback, not one per worker. Logged here
/// only when the master cannot be told.
fn report_load_error(status: OwnedFd, message: &str) {
    let mut pipe = std::fs::File::from(status);
    let said = pipe
        .write_all(b"E")
        .and_then(|()| pipe.write_all(message.as_bytes()));
    if said.is_err() {
        tracing::error!("{message}");
    }
}

/// Resolves when the worker should stop accepting: SIGTERM or SIGINT (the
/// server stops: from the master, the master's death, or systemd), SIGUSR2
/// (replaced), or its own retirement, which it announces to the master.
/// SIGQUIT exits at once. The master's other signals are caught and
/// ignored, so that one sent to the whole process group (a terminal's
/// hangup, SIGTTIN/SIGTTOU) never stops a worker.
fn stop_signal(
    retirement: Arc<Retirement>,
    mut status: std::fs::File,
) -> Result<impl std::future::Future<Output = Stopping>, RunError> {
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigusr2 = signal(SignalKind::user_defined2())?;
    let mut sigquit = signal(SignalKind::quit())?;
    let mut sigusr1 = signal(SignalKind::user_defined1())?;
    let ignored = [libc::SIGHUP, libc::SIGTTIN, libc::SIGTTOU]
        .map(|s| signal(SignalKind::from_raw(s)))
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    // Ready, with the signals handled: the master may now stop the workers
    // this one replaces (or this one, with SIGTERM).
    let _ = status.write_all(b"R");
    tokio::spawn(async move {
        // logrotate's word (from the master, or sent here): every log
        // file of this worker is reopened (`rustgi_observe::reopen`).
        while sigusr1.recv().await.is_some() {
            // First: this line then goes to the new file.
            rustgi_observe::reopen::request();
            tracing::info!("SIGUSR1: reopening the log files");
        }
    });
    tokio::spawn(async move {
        sigquit.recv().await;
        tracing::info!("SIGQUIT: exiting at once");
        crate::proc::exit_at_once(0);
    });
    if retirement.max_rss.is_some() {
        // Also between requests: a long request can grow it too.
        let retirement = retirement.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                retirement.check_rss();
            }
        });
    }
    Ok(async move {
        let _ignored = ignored;
        tokio::select! {
            _ = sigterm.recv() => {
                tracing::info!("SIGTERM: stopping gracefully");
                Stopping::Drain
            }
            _ = sigint.recv() => {
                tracing::info!("SIGINT: stopping gracefully");
                Stopping::Drain
            }
            _ = sigusr2.recv() => {
                tracing::info!("replaced (SIGUSR2): finishing the requests in flight");
                Stopping::Leave
            }
            () = retirement.token.cancelled() => {
                let reason = retirement.reason.get().map_or("", String::as_str);
                tracing::info!("retiring: {reason}; finishing the requests in flight");
                // The master starts the replacement now; it may be gone
                // (re-executed), which is no error.
                let _ = status.write_all(b"r");
                Stopping::Leave
            }
        }
    })
}

/// When a worker retires on its own.
pub(crate) struct Retirement {
    served: AtomicU64,
    /// --max-requests plus this worker's share of --max-requests-jitter.
    max_requests: Option<u64>,
    /// --reload-on-rss, in bytes.
    max_rss: Option<u64>,
    statm: Option<std::fs::File>,
    token: CancellationToken,
    reason: OnceLock<String>,
}

impl Retirement {
    fn new(config: &ServerConfig) -> Retirement {
        let limits = &config.processes;
        let max_requests = limits
            .max_requests
            .map(|n| n.saturating_add(jitter(limits.max_requests_jitter)));
        if let Some(n) = max_requests {
            tracing::info!("this worker retires after {n} requests (--max-requests)");
        }
        let max_rss = limits.reload_on_rss_mib.map(|mib| mib << 20);
        Retirement {
            served: AtomicU64::new(0),
            max_requests,
            max_rss,
            statm: max_rss.and_then(|_| std::fs::File::open("/proc/self/statm").ok()),
            token: CancellationToken::new(),
            reason: OnceLock::new(),
        }
    }

    fn has_limits(&self) -> bool {
        self.max_requests.is_some() || self.max_rss.is_some()
    }

    /// Stops accepting, finishes the requests in flight, exits 0; the
    /// master starts a replacement as soon as it hears of it. The first
    /// reason given is the one logged.
    pub(crate) fn retire(&self, why: Retired, reason: String) {
        if self.reason.set(reason).is_ok() {
            // Before the master hears of it: its respawn counters read it.
            rustgi_observe::board::retiring(why);
            self.token.cancel();
        }
    }

    /// Each request, as a Python thread starts it.
    fn on_request(&self) {
        let served = self.served.fetch_add(1, Ordering::Relaxed) + 1;
        if self.max_requests == Some(served) {
            self.retire(
                Retired::MaxRequests,
                format!("served {served} requests (--max-requests)"),
            );
        }
        self.check_rss();
    }

    fn check_rss(&self) {
        let (Some(limit), Some(statm)) = (self.max_rss, &self.statm) else {
            return;
        };
        if self.token.is_cancelled() {
            return;
        }
        if let Some(rss) = rss_bytes(statm)
            && rss > limit
        {
            self.retire(
                Retired::Rss,
                format!(
                    "RSS {} MiB is above --reload-on-rss {} MiB",
                    rss >> 20,
                    limit >> 20
                ),
            );
        }
    }
}

/// The resident set size, from /proc/self/statm (kept open: one pread).
fn rss_bytes(statm: &std::fs::File) -> Option<u64> {
    let mut buf = [0u8; 128];
    let n = statm.read_at(&mut buf, 0).ok()?;
    crate::proc::rss_from_statm(std::str::from_utf8(&buf[..n]).ok()?)
}

/// A number in 0..=max, different in each worker.
fn jitter(max: u64) -> u64 {
    if max == 0 {
        return 0;
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut x = nanos ^ (u64::from(std::process::id())).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    // splitmix64's finaliser: spreads the bits of a poor seed.
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    x % (max + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_in_range() {
        assert_eq!(jitter(0), 0);
        for _ in 0..1000 {
            assert!(jitter(7) <= 7);
        }
    }

    #[test]
    fn rss_is_read_from_statm() {
        let statm = std::fs::File::open("/proc/self/statm").unwrap();
        let rss = rss_bytes(&statm).unwrap();
        assert!(rss > 1 << 20, "{rss}");
    }
}
