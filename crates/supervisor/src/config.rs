//! What the process is told to do, as the binary's flags decide it.

use crate::listener::SocketSpec;
use rustgi_core::{Mount, PythonSetup};
use rustgi_serve::ServeConfig;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// What each worker's serving needs (protocol, limits, timeouts).
    pub serve: ServeConfig,
    /// `None`: take the listening socket on fd 0.
    pub socket: Option<SocketSpec>,
    /// Mode of a Unix socket we create.
    pub socket_mode: u32,
    pub python: PythonSetup,
    pub chdir: Option<PathBuf>,
    /// `--env`, set before Python starts.
    pub env: Vec<(String, String)>,
    pub mount: Option<Mount>,
    /// `--timeout`: the longest a request may run (see timeout.rs).
    pub request_timeout: Option<Duration>,
    /// `--slow-request-log`: a request running longer is logged once,
    /// with its Python stack, and left to run.
    pub slow_request_log: Option<Duration>,
    /// `--processes` and what makes a worker retire (see master.rs).
    pub processes: ProcessOptions,
    /// `--user`, `--group`, `--chown` (see `privileges.rs`).
    pub privileges: crate::Privileges,
    /// `--pidfile`, written after binding (see `pidfile.rs`).
    pub pidfile: Option<PathBuf>,
    /// `--metrics`: the master's metrics and status endpoint (endpoint.rs).
    pub metrics: Option<crate::MetricsAddr>,
}

/// The worker processes (master.rs, worker.rs).
#[derive(Clone, Debug)]
pub struct ProcessOptions {
    /// `--processes`: workers forked by the master.
    pub count: usize,
    /// `--preload`: import the app once in the master, before forking.
    pub preload: bool,
    /// `--max-requests`: a worker retires after this many requests...
    pub max_requests: Option<u64>,
    /// ...plus a number in 0..=`--max-requests-jitter`, its own.
    pub max_requests_jitter: u64,
    /// `--reload-on-rss`: a worker whose RSS exceeds this retires.
    pub reload_on_rss_mib: Option<u64>,
    /// `--max-worker-lifetime`: a worker that has lived this long is
    /// replaced (decided by the master: policy.rs)...
    pub max_worker_lifetime: Option<Duration>,
    /// ...plus its share of 0..=`--max-worker-lifetime-jitter`.
    pub max_worker_lifetime_jitter: Duration,
    /// `--touch-reload`: reload when this file's mtime changes.
    pub touch_reload: Option<PathBuf>,
}

impl Default for ProcessOptions {
    fn default() -> Self {
        ProcessOptions {
            count: 1,
            preload: false,
            max_requests: None,
            max_requests_jitter: 0,
            reload_on_rss_mib: None,
            max_worker_lifetime: None,
            max_worker_lifetime_jitter: Duration::ZERO,
            touch_reload: None,
        }
    }
}
