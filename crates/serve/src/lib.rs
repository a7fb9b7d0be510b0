//! Serving: the intake (idle Python threads accepting), the protocol
//! drivers that join a connection to the WSGI core, and CGI mode. The
//! supervisor (`rustgi-supervisor`) hands each worker's listener to
//! [`serve`].

mod allow;
pub mod cgi;
mod config;

/// Request ids for the log, unique across the protocols of one process.
pub(crate) fn next_request_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}
mod connection;
mod direct;
mod fastcgi;
mod intake;
mod stream;

pub use allow::{AllowedPeer, from_environment as allowed_from_environment};
pub use config::{FastcgiOptions, Protocol, ServeConfig, Timeouts};
pub use intake::Listener;

use bytes::BytesMut;
use connection::Connection;
use fastcgi::FastcgiContext;
use rustgi_core::PythonPool;
use rustgi_scgi::Scgi;
use rustgi_uwsgi::Uwsgi;
use std::fmt;
use std::sync::Arc;
use stream::StreamContext;
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
        service.connection_limit(config),
    )?);
    pool.set_intake(Some(intake.clone()));
    tracing::info!("listening on {describe} ({})", service.name());
    let serve_handoffs = async {
        while let Some(handoff) = handoffs.recv().await {
            service.spawn(handoff, &tracker);
        }
    };
    tokio::select! {
        biased;
        () = stop => {}
        () = serve_handoffs => {}
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
    Ok(drained)
}

/// Most FastCGI connections a process keeps open (reported as
/// FCGI_MAX_CONNS). Kept connections idle between requests, so they are not
/// bounded by the Python threads as one-request connections are.
const FASTCGI_MAX_CONNECTIONS: usize = 1024;

/// The protocol a listener serves, with what its connections share.
enum Service {
    Scgi(StreamContext<Scgi>),
    Uwsgi(StreamContext<Uwsgi>),
    Fastcgi(FastcgiContext),
    /// `--proto auto`: each connection's first byte says which.
    Auto(Box<AutoService>),
}

struct AutoService {
    scgi: StreamContext<Scgi>,
    uwsgi: StreamContext<Uwsgi>,
    fastcgi: FastcgiContext,
    header_timeout: std::time::Duration,
}

impl Service {
    fn new(config: &ServeConfig, pool: Arc<PythonPool>, shutdown: CancellationToken) -> Service {
        let scgi = || StreamContext::new(Scgi::new(config.max_header_size), config, pool.clone());
        // The vars block's size is a u16: 65535 is the most it can say.
        let uwsgi = || {
            let limit = config.max_header_size.min(usize::from(u16::MAX));
            StreamContext::new(Uwsgi::new(limit), config, pool.clone())
        };
        let fastcgi = || fastcgi_context(config, pool.clone(), shutdown.clone());
        match config.protocol.unwrap_or(Protocol::Auto) {
            Protocol::Scgi => Service::Scgi(scgi()),
            Protocol::Uwsgi => Service::Uwsgi(uwsgi()),
            Protocol::Fastcgi => Service::Fastcgi(fastcgi()),
            Protocol::Auto | Protocol::Cgi => Service::Auto(Box::new(AutoService {
                scgi: scgi(),
                uwsgi: uwsgi(),
                fastcgi: fastcgi(),
                header_timeout: config.timeouts.header,
            })),
        }
    }

    fn connection_limit(&self, config: &ServeConfig) -> usize {
        match self {
            Service::Scgi(_) | Service::Uwsgi(_) => config.threads * 2 + 8,
            Service::Fastcgi(_) | Service::Auto(_) => FASTCGI_MAX_CONNECTIONS,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Service::Scgi(ctx) => rustgi_model::StreamProtocol::name(&ctx.protocol),
            Service::Uwsgi(ctx) => rustgi_model::StreamProtocol::name(&ctx.protocol),
            Service::Fastcgi(_) => "fastcgi",
            Service::Auto(_) => "auto: fastcgi, scgi or uwsgi by the first byte",
        }
    }

    /// Where a connection that brought `buf` goes: a whole request on a
    /// connection that carries only it is answered by the Python thread that
    /// accepted it.
    fn lane(&self, conn: direct::Accepted, tracker: &TaskTracker) -> direct::Lane {
        match (self, conn.buf.first()) {
            (Service::Scgi(ctx), _) => direct::start(ctx, conn, tracker),
            (Service::Uwsgi(ctx), _) => direct::start(ctx, conn, tracker),
            (Service::Auto(auto), Some(b'0'..=b'9')) => direct::start(&auto.scgi, conn, tracker),
            (Service::Auto(auto), Some(0 | 30)) => direct::start(&auto.uwsgi, conn, tracker),
            (Service::Fastcgi(ctx), _) => direct::start_fastcgi(ctx, conn, tracker),
            (Service::Auto(auto), Some(1)) => direct::start_fastcgi(&auto.fastcgi, conn, tracker),
            _ => direct::Lane::Async { conn, head: None },
        }
    }

    /// Serves a connection the intake passed on, on the I/O loop.
    fn spawn(self: &Arc<Self>, handoff: intake::Handoff, tracker: &TaskTracker) {
        let intake::Handoff {
            conn,
            head,
            accepted,
            counted,
        } = handoff;
        let direct::Accepted {
            socket, buf, peer, ..
        } = conn;
        let service = self.clone();
        match socket {
            direct::Socket::Unix(stream) => match tokio::net::UnixStream::from_std(stream) {
                Ok(stream) => {
                    tracker.spawn(async move {
                        service.serve(stream, buf, head, accepted, &peer).await;
                        drop(counted);
                    });
                }
                Err(e) => tracing::warn!("registering a connection failed: {e}"),
            },
            direct::Socket::Tcp(stream) => match tokio::net::TcpStream::from_std(stream) {
                Ok(stream) => {
                    tracker.spawn(async move {
                        service.serve(stream, buf, head, accepted, &peer).await;
                        drop(counted);
                    });
                }
                Err(e) => tracing::warn!("registering a connection failed: {e}"),
            },
        }
    }

    async fn serve<C: Connection>(
        &self,
        stream: C,
        buf: BytesMut,
        head: Option<direct::Decoded>,
        accepted: tokio::time::Instant,
        peer: &str,
    ) {
        match (self, head) {
            (Service::Scgi(ctx), head) => {
                stream::serve(ctx, stream, buf, head, accepted, peer).await
            }
            (Service::Uwsgi(ctx), head) => {
                stream::serve(ctx, stream, buf, head, accepted, peer).await
            }
            (Service::Auto(auto), Some(head)) if head.protocol == "scgi" => {
                stream::serve(&auto.scgi, stream, buf, Some(head), accepted, peer).await
            }
            (Service::Auto(auto), Some(head)) => {
                stream::serve(&auto.uwsgi, stream, buf, Some(head), accepted, peer).await
            }
            (Service::Fastcgi(ctx), _) => fastcgi::serve(ctx, stream, buf, accepted, peer).await,
            (Service::Auto(auto), None) => auto.serve(stream, buf, accepted, peer).await,
        }
    }
}

impl AutoService {
    /// Reads the first bytes (which the protocol's driver then takes over,
    /// so telling protocols apart costs no extra syscall) and dispatches:
    /// 0x01 is FastCGI's version, an ASCII digit starts an SCGI netstring,
    /// 0x00 or 30 is a uwsgi modifier1.
    async fn serve<C: Connection>(
        &self,
        mut stream: C,
        mut buf: BytesMut,
        accepted: tokio::time::Instant,
        peer: &str,
    ) {
        use tokio::io::AsyncReadExt;
        if buf.is_empty() {
            let deadline = accepted + self.header_timeout;
            // Also while the worker stops: the first byte may be on its way.
            match tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                Ok(_) => return,
                Err(_) => {
                    tracing::warn!(%peer, "timed out after {:?} waiting for the first byte", self.header_timeout);
                    return;
                }
            }
        }
        match buf[0] {
            1 => fastcgi::serve(&self.fastcgi, stream, buf, accepted, peer).await,
            b'0'..=b'9' => stream::serve(&self.scgi, stream, buf, None, accepted, peer).await,
            0 | 30 => stream::serve(&self.uwsgi, stream, buf, None, accepted, peer).await,
            other => {
                let start = &buf[..buf.len().min(8)];
                let hint = match other {
                    b'A'..=b'Z' => " (an HTTP request? point HTTP clients at the front server)",
                    0x16 => " (a TLS handshake? front servers speak to rustgi in the clear)",
                    _ => "",
                };
                tracing::warn!(
                    %peer,
                    "unrecognised protocol: first bytes \"{}\"{hint}; --proto auto takes FastCGI (0x01), SCGI (a digit) or uwsgi (0x00); closing the connection",
                    start.escape_ascii()
                );
                let (_, mut writer) = stream.halves();
                use tokio::io::AsyncWriteExt;
                let _ = writer.shutdown().await;
            }
        }
    }
}

fn fastcgi_context(
    config: &ServeConfig,
    pool: Arc<PythonPool>,
    shutdown: CancellationToken,
) -> FastcgiContext {
    // Requests beyond what the Python threads can take soon wait in the
    // kernel's listen backlog, not in our memory.
    let request_limit = config.threads * 2 + 8;
    FastcgiContext {
        protocol: rustgi_fastcgi::Config {
            roles: config.fastcgi.roles,
            max_params_size: config.max_header_size,
            max_requests_per_connection: request_limit,
            max_connections: FASTCGI_MAX_CONNECTIONS,
            max_requests: request_limit,
            multiplex: true,
        },
        pool,
        timeouts: config.timeouts,
        spool: config.spool,
        response_buffer: config.response_buffer,
        errors_to_peer: config.fastcgi.stderr,
        shutdown,
    }
}
