//! What the server is told to do, as the binary's flags decide it.

use crate::listener::SocketSpec;
use rustgi_core::{Mount, PythonSetup, SpoolLimits};
use std::path::PathBuf;
use std::time::Duration;

/// The wire protocol spoken on the socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Scgi,
    Fastcgi,
    Uwsgi,
    /// Each connection's first byte picks FastCGI, SCGI or uwsgi.
    Auto,
    /// One request from the environment and stdin, then exit.
    Cgi,
}

/// What only FastCGI has.
#[derive(Clone, Copy, Debug)]
pub struct FastcgiOptions {
    /// Roles accepted; others get END_REQUEST/UNKNOWN_ROLE.
    pub roles: rustgi_fastcgi::Roles,
    /// Send `wsgi.errors` lines as FCGI_STDERR too (the front server's log).
    pub stderr: bool,
}

/// Each stage of a connection has its own limit, so a stalled front-server
/// connection never pins a Python thread.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// From accept to a complete request head.
    pub header: Duration,
    /// Longest wait for the next body bytes.
    pub body: Duration,
    /// Longest a write may make no progress.
    pub write: Duration,
}

#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// `None`: decided at start (see `server::run`).
    pub protocol: Option<Protocol>,
    pub fastcgi: FastcgiOptions,
    /// `None`: take the listening socket on fd 0.
    pub socket: Option<SocketSpec>,
    /// Mode of a Unix socket we create.
    pub socket_mode: u32,
    /// TCP peers allowed to connect (with FCGI_WEB_SERVER_ADDRS); empty: all.
    pub allow_from: Vec<crate::AllowedPeer>,
    pub python: PythonSetup,
    pub chdir: Option<PathBuf>,
    /// `--env`, set before Python starts.
    pub env: Vec<(String, String)>,
    pub threads: usize,
    pub mount: Option<Mount>,
    pub max_header_size: usize,
    pub timeouts: Timeouts,
    /// `--timeout`: the longest a request may run (see timeout.rs).
    pub request_timeout: Option<Duration>,
    /// How long SIGTERM waits for requests in flight.
    pub graceful_timeout: Duration,
    pub spool: SpoolLimits,
    /// Bound of each response channel, in bytes.
    pub response_buffer: usize,
    /// `--processes` and what makes a worker retire (see master.rs).
    pub processes: ProcessOptions,
    /// `--user`, `--group`, `--chown` (see `privileges.rs`).
    pub privileges: crate::Privileges,
    /// `--pidfile`, written after binding (see `pidfile.rs`).
    pub pidfile: Option<PathBuf>,
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
            touch_reload: None,
        }
    }
}
