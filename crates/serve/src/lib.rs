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
mod python_lane;
mod service;
mod sink;

pub use allow::{AllowedPeer, from_environment as allowed_from_environment};
pub use config::{FastcgiOptions, Protocol, ServeConfig, Timeouts};
pub use intake::Listener;

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

/// Accepts until `stop` resolves (a worker's stop signal or retirement,
/// worker.rs); then closes this process's listener first and serves the
/// connections it already accepted (each still with its header deadline:
/// the front server may have sent a request on it already), closing only
/// idle FastCGI kept connections between requests. Returns whether every
/// request finished within the graceful timeout.
pub async fn serve(
    config: &ServeConfig,
    listener: Listener,
    describe: &str,
    pool: Arc<PythonPool>,
    stop: impl std::future::Future<Output = ()>,
) -> Result<bool, RunError> {
    bad_input::set_limit(config.bad_input_warnings);
    let allowed = &config.allow_from;
    if !allowed.is_empty() {
        let list: Vec<String> = allowed.iter().map(ToString::to_string).collect();
        tracing::info!("TCP peers allowed: {}", list.join(", "));
    }
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
    let summaries = async {
        let mut every = tokio::time::interval(bad_input::WINDOW);
        loop {
            every.tick().await;
            bad_input::flush(false);
        }
    };
    tokio::select! {
        biased;
        () = stop => {}
        () = serve_handoffs => {}
        () = summaries => {}
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
    let drained = tokio::time::timeout(config.graceful_timeout, tracker.wait())
        .await
        .is_ok();
    bad_input::flush(true);
    Ok(drained)
}
