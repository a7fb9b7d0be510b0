//! Serving: the intake (idle Python threads accepting), the protocol
//! drivers that join a connection to the WSGI core, and CGI mode. The
//! supervisor (`rustgi-supervisor`) hands each worker's listener to
//! [`serve`].

#![deny(clippy::undocumented_unsafe_blocks)]

mod allow;
mod bad_input;
pub mod cgi;
mod config;

mod flow;
mod intake;
mod io_lane;
mod named;
mod python_lane;
mod record;
mod service;
mod sink;

pub use allow::{AllowedPeer, from_environment as allowed_from_environment};
pub use config::{
    AjpOptions, BodyLimits, FastcgiOptions, MinRate, Protocol, ServeConfig, Timeouts,
};
pub use intake::{Listener, drop_new_connections};
pub use record::{ObserveConfig, start as start_observing, stop as stop_observing};

use rustgi_core::PythonPool;
use service::Service;
use std::fmt;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Why the server stopped with an error.
#[derive(Debug)]
pub enum RunError {
    Setup(String),
    Python(rustgi_core::StartError),
    Io(std::io::Error),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Setup(msg) => f.write_str(msg),
            RunError::Python(e) => write!(f, "{e}"),
            RunError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for RunError {}

/// Request ids for the log, unique across the protocols of one process.
pub(crate) fn next_request_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl From<std::io::Error> for RunError {
    fn from(e: std::io::Error) -> Self {
        RunError::Io(e)
    }
}

/// Why serving stops, which decides what becomes of the connections still
/// waiting in the listen queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopping {
    /// The server stops: they are served too (accepted until the queue is
    /// empty, or quiet where new arrivals cannot be stopped, and at most
    /// for half the graceful timeout), since closing the last copy of the
    /// listener would reset them.
    Drain,
    /// This process is replaced or retires: the other workers serve them.
    Leave,
}

/// Accepts until `stop` resolves (a worker's stop signal or retirement,
/// worker.rs); with [`Stopping::Drain`] it goes on accepting what waits
/// in the listen queue (see `intake/drain.rs`). Then it closes this
/// process's listener and serves the connections it already accepted
/// (each still with its header deadline: the front server may have sent
/// a request on it already), closing only idle FastCGI kept connections
/// between requests. Returns whether every request finished within the
/// graceful timeout, counted from the stop.
pub async fn serve(
    config: &ServeConfig,
    listener: Listener,
    describe: &str,
    pool: Arc<PythonPool>,
    stop: impl std::future::Future<Output = Stopping>,
) -> Result<bool, RunError> {
    bad_input::set_limit(config.bad_input_warnings);
    record::start(&config.observe)
        .map_err(|e| RunError::Setup(format!("opening the access log failed: {e}")))?;
    let allowed = &config.allow_from;
    if !allowed.is_empty() {
        let list: Vec<String> = allowed.iter().map(ToString::to_string).collect();
        tracing::info!("TCP peers allowed: {}", list.join(", "));
    }
    pool.limit_response_memory(config.response_memory);
    let shutdown = CancellationToken::new();
    let service = Arc::new(Service::new(config, pool.clone(), shutdown.clone()));
    let tracker = TaskTracker::new();
    let (to_loop, mut handoffs) = tokio::sync::mpsc::unbounded_channel();
    let intake = Arc::new(intake::ListenerIntake::new(
        listener,
        service.clone(),
        to_loop,
        tracker.clone(),
        allowed.clone(),
        service.connection_limit(),
    )?);
    pool.set_intake(Some(intake.clone()));
    tracing::info!("listening on {describe} ({})", service.name());
    let serve_handoffs = async {
        while let Some(handoff) = handoffs.recv().await {
            service.spawn(handoff, &tracker);
        }
    };
    let keepalive = config.timeouts.keepalive;
    let close_idle = async {
        // Kept connections parked in the intake are closed within a tick
        // of their --keepalive-timeout (those in the I/O lane time out
        // there).
        let period = (keepalive / 2).clamp(
            std::time::Duration::from_millis(10),
            std::time::Duration::from_secs(1),
        );
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            intake.close_idle(keepalive);
        }
    };
    let summaries = async {
        let mut every = tokio::time::interval(bad_input::WINDOW);
        loop {
            every.tick().await;
            bad_input::flush(false);
        }
    };
    let stopping = tokio::select! {
        biased;
        stopping = stop => stopping,
        () = serve_handoffs => Stopping::Leave,
        () = close_idle => Stopping::Leave,
        () = summaries => Stopping::Leave,
    };
    let deadline = tokio::time::Instant::now() + config.graceful_timeout;
    if stopping == Stopping::Drain {
        drain_queue(config, &intake, &service, &tracker, &mut handoffs).await;
    }
    // This process's listener closes: what it accepted is served, the
    // other workers (or none) take the next connections.
    pool.set_intake(None);
    intake.close();
    // Connections passed on as the intake stopped: every one accepted is
    // served.
    while !intake.settled() {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    while let Ok(handoff) = handoffs.try_recv() {
        service.spawn(handoff, &tracker);
    }
    shutdown.cancel();
    tracker.close();
    // A kept connection whose response ended just before the stop comes
    // back for the grace (`Tether::park`), sent before its request lets
    // the tracker go: taken first.
    let wait_all = async {
        let mut all_done = std::pin::pin!(tracker.wait());
        loop {
            tokio::select! {
                biased;
                Some(handoff) = handoffs.recv() => service.spawn(handoff, &tracker),
                () = &mut all_done => break,
            }
        }
    };
    let drained = tokio::time::timeout_at(deadline, wait_all).await.is_ok();
    if !drained {
        tracing::warn!(
            "{} request(s) still running after --graceful-timeout {:?}: their connections are cut; exiting without waiting for them",
            tracker.len(),
            config.graceful_timeout
        );
    }
    bad_input::flush(true);
    record::stop();
    Ok(drained)
}

/// How often the drain looks at the listener (an accept that finds the
/// queue empty wakes it at once).
const DRAIN_TICK: std::time::Duration = std::time::Duration::from_millis(5);

/// Lets the Python threads accept what waits in the listen queue, and
/// the I/O loop take what they pass on, until the queue is done with or
/// half the graceful timeout has gone; logs how many were accepted.
async fn drain_queue(
    config: &ServeConfig,
    intake: &intake::ListenerIntake,
    service: &Arc<Service>,
    tracker: &TaskTracker,
    handoffs: &mut tokio::sync::mpsc::UnboundedReceiver<intake::Handoff>,
) {
    intake.begin_drain();
    let half = config.graceful_timeout / 2;
    let accept_until = tokio::time::Instant::now() + half;
    let ended = loop {
        if let Some(how) = intake.drained() {
            break Some(how);
        }
        tokio::select! {
            biased;
            Some(handoff) = handoffs.recv() => service.spawn(handoff, tracker),
            () = intake.found_empty() => {}
            () = tokio::time::sleep(DRAIN_TICK) => {}
            () = tokio::time::sleep_until(accept_until) => break None,
        }
    };
    let accepted = intake.accepted_while_draining();
    match ended {
        Some(intake::Drained::Empty) => tracing::info!(
            "stopping: {accepted} connection(s) that waited in the listen queue accepted; it is empty and no new connection can join it"
        ),
        Some(intake::Drained::Quiet) => tracing::info!(
            "stopping: {accepted} connection(s) that waited in the listen queue accepted; it stayed empty for {:?}",
            intake::QUIET
        ),
        None => tracing::warn!(
            "stopping: {accepted} connection(s) from the listen queue accepted; stopped accepting at half of --graceful-timeout ({half:?}) with connections still waiting"
        ),
    }
}
