//! What the server is told to do, as the binary's flags decide it.

use rustgi_core::SpoolLimits;
use std::time::Duration;

/// The wire protocol spoken on the socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Scgi,
    Fastcgi,
    Uwsgi,
    /// AJP 1.3 (Apache mod_proxy_ajp, mod_jk, lighttpd mod_ajp13).
    Ajp,
    /// Each connection's first byte picks FastCGI, SCGI, uwsgi or AJP.
    Auto,
    /// One request from the environment and stdin, then exit.
    Cgi,
}

impl Protocol {
    /// The name the access log and the metrics give it (`Auto` is never
    /// a request's: each connection's is told apart first).
    pub(crate) fn front(self) -> rustgi_observe::Front {
        use rustgi_observe::Front;
        match self {
            Protocol::Scgi => Front::Scgi,
            Protocol::Uwsgi => Front::Uwsgi,
            Protocol::Ajp => Front::Ajp,
            Protocol::Fastcgi | Protocol::Auto => Front::Fastcgi,
            Protocol::Cgi => Front::Cgi,
        }
    }
}

/// What only FastCGI has.
#[derive(Clone, Copy, Debug)]
pub struct FastcgiOptions {
    /// Roles accepted; others get END_REQUEST/UNKNOWN_ROLE.
    pub roles: rustgi_fastcgi::Roles,
    /// Send `wsgi.errors` lines as FCGI_STDERR too (the front server's log).
    pub stderr: bool,
}

/// What only AJP has: the shared secret (Apache's `secret=`).
#[derive(Clone, Debug, Default)]
pub struct AjpOptions {
    /// `--ajp-secret`: every forward request must carry it.
    pub secret: Option<String>,
    /// `--ajp-secret-optional`: serve AJP without a secret (without it and
    /// without a secret, AJP connections are refused).
    pub secret_optional: bool,
    /// `--ajp-packet-size`: the largest packet either way (Tomcat's
    /// `packetSize`; it must match the web server's buffer).
    pub packet_size: usize,
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
    /// Longest a kept FastCGI connection may sit idle between requests
    /// (above nginx's 60 s, so that the front server closes first).
    pub keepalive: Duration,
}

/// How request bodies are read: what is read before a Python thread is
/// taken, and how slowly a client may send the rest.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimits {
    /// Bytes of a body read before its request goes to a Python thread
    /// (`--buffer-body`): a body this size or smaller is read whole first,
    /// so that a client trickling it holds no thread, only a connection.
    pub buffer: usize,
    /// `--body-min-rate`; `None`: off.
    pub min_rate: Option<MinRate>,
}

impl Default for BodyLimits {
    fn default() -> Self {
        BodyLimits {
            buffer: 64 * 1024,
            min_rate: Some(MinRate {
                bytes_per_sec: 1024,
                window: Duration::from_secs(10),
            }),
        }
    }
}

/// The slowest a request body may arrive: `bytes_per_sec` on average over
/// each `window` of waiting for it, after a first `window` of grace (as
/// Apache's mod_reqtimeout gives `body=10,MinRate=1000`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MinRate {
    pub bytes_per_sec: u64,
    pub window: Duration,
}

/// What serving needs to know: the protocol, the limits, the timeouts.
/// The supervisor's `ServerConfig` carries it with what only processes
/// need (sockets, privileges, worker counts).
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// `None`: decided at start (see `rustgi_supervisor::run`).
    pub protocol: Option<Protocol>,
    pub fastcgi: FastcgiOptions,
    pub ajp: AjpOptions,
    /// TCP peers allowed to connect (with FCGI_WEB_SERVER_ADDRS); empty: all.
    pub allow_from: Vec<crate::AllowedPeer>,
    /// `--trusted-proxy-header` with `--forwarded-allow-from`; `None`: the
    /// scheme is the front server's alone.
    pub forwarded: Option<rustgi_core::ForwardedScheme>,
    /// Python threads per process.
    pub threads: usize,
    pub max_header_size: usize,
    /// Connections a worker holds beyond those its Python threads are
    /// answering (waiting for a head, kept, in the I/O lane); also what
    /// FCGI_MAX_CONNS reports. At the limit, the oldest waiting for a head
    /// are closed first, then the longest idle kept ones.
    pub max_connections: usize,
    pub timeouts: Timeouts,
    /// How long a stop waits for requests in flight.
    pub graceful_timeout: Duration,
    pub spool: SpoolLimits,
    pub body: BodyLimits,
    /// Bound of each response channel, in bytes.
    pub response_buffer: usize,
    /// Bad-input warnings logged per peer and kind every 10 s (0: all);
    /// see `bad_input`.
    pub bad_input_warnings: u32,
    /// `--response-memory`: the bytes held for responses on their way to
    /// clients (slow or not reading), past which new requests wait.
    pub response_memory: usize,
    /// The access log and request ids.
    pub observe: crate::record::ObserveConfig,
}
