//! Serving: listeners, the connection driver that joins a protocol to the
//! WSGI core, limits, and signals. The binary hands a [`ServerConfig`] to
//! [`run`].

mod config;
mod connection;
mod fastcgi;
mod listener;
mod stream;

pub use config::{FastcgiOptions, Protocol, ServerConfig, Timeouts};
pub use listener::{BoundSocket, SocketSpec, bind, fd0_is_listening_socket};

use connection::Connection;
use fastcgi::FastcgiContext;
use rustgi_core::{EnvironSettings, Interpreter, PythonPool};
use rustgi_scgi::Scgi;
use rustgi_uwsgi::Uwsgi;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use stream::StreamContext;
use tokio::net::{TcpListener, UnixListener};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Semaphore;
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

/// Starts Python, loads the app, listens, and serves until SIGINT/SIGTERM.
pub fn run(config: ServerConfig) -> Result<(), RunError> {
    for (key, value) in &config.env {
        // SAFETY: no other thread exists yet (Python, tokio and the pool
        // all start below), so nothing can read the environment meanwhile.
        unsafe { std::env::set_var(key, value) };
    }
    if let Some(dir) = &config.chdir {
        std::env::set_current_dir(dir)
            .map_err(|e| RunError::Setup(format!("--chdir {}: {e}", dir.display())))?;
    }
    let interpreter = Interpreter::start(&config.python).map_err(RunError::Python)?;
    tracing::info!("Python {}", interpreter.description);
    tracing::info!("application: {}", config.python.app);

    let mut socket = bind(config.socket.as_ref(), config.socket_mode)?;
    let describe = socket.describe();
    let socket_file = socket.socket_file_guard();
    let settings = EnvironSettings {
        mount: config.mount.clone(),
        multithread: config.threads > 1,
        multiprocess: false,
        run_once: false,
    };
    let pool = Arc::new(PythonPool::start(
        interpreter.app(),
        config.threads,
        settings,
    )?);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let drained = runtime.block_on(serve(&config, socket, &describe, socket_file, pool.clone()))?;
    drop(runtime);
    if !drained {
        tracing::warn!(
            "requests still running after --graceful-timeout {:?}; exiting without waiting for them",
            config.graceful_timeout
        );
        return Ok(());
    }
    match Arc::try_unwrap(pool) {
        Ok(pool) => pool.shutdown(),
        Err(_) => unreachable!("every connection task has finished"),
    }
    interpreter.finalize();
    tracing::info!("stopped");
    Ok(())
}

/// Accepts until a stop signal; returns whether every request finished
/// within the graceful timeout.
async fn serve(
    config: &ServerConfig,
    socket: BoundSocket,
    describe: &str,
    socket_file: listener::SocketFileGuard,
    pool: Arc<PythonPool>,
) -> Result<bool, RunError> {
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let shutdown = CancellationToken::new();
    let service = Arc::new(Service::new(config, pool, shutdown.clone()));
    let slots = Arc::new(Semaphore::new(service.connection_limit(config)));
    let tracker = TaskTracker::new();
    let accept = async {
        match socket {
            BoundSocket::Unix { listener, .. } => {
                listener.set_nonblocking(true)?;
                let listener = UnixListener::from_std(listener)?;
                tracing::info!("listening on {describe} ({})", service.name());
                loop {
                    let slot = slots.clone().acquire_owned().await.expect("never closed");
                    match listener.accept().await {
                        Ok((stream, _)) => {
                            let service = service.clone();
                            tracker.spawn(async move {
                                service.serve(stream, "unix").await;
                                drop(slot);
                            });
                        }
                        Err(e) => accept_failed(e).await,
                    }
                }
            }
            BoundSocket::Tcp(listener) => {
                listener.set_nonblocking(true)?;
                let listener = TcpListener::from_std(listener)?;
                tracing::info!("listening on {describe} ({})", service.name());
                loop {
                    let slot = slots.clone().acquire_owned().await.expect("never closed");
                    match listener.accept().await {
                        Ok((stream, peer)) => {
                            let _ = stream.set_nodelay(true);
                            let service = service.clone();
                            tracker.spawn(async move {
                                service.serve(stream, &peer.to_string()).await;
                                drop(slot);
                            });
                        }
                        Err(e) => accept_failed(e).await,
                    }
                }
            }
        }
        #[allow(unreachable_code)]
        Ok::<(), std::io::Error>(())
    };
    tokio::select! {
        result = accept => result?,
        _ = sigterm.recv() => tracing::info!("SIGTERM: stopping gracefully"),
        _ = sigint.recv() => tracing::info!("SIGINT: stopping gracefully"),
    }
    // The listener is dropped: new connections are refused from here on.
    drop(socket_file);
    shutdown.cancel();
    tracker.close();
    let drained = tokio::time::timeout(config.graceful_timeout, tracker.wait())
        .await
        .is_ok();
    Ok(drained)
}

/// EMFILE and friends: log, pause, and keep serving.
async fn accept_failed(e: std::io::Error) {
    tracing::warn!("accept failed: {e}");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
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
}

impl Service {
    fn new(config: &ServerConfig, pool: Arc<PythonPool>, shutdown: CancellationToken) -> Service {
        // Requests beyond what the Python threads can take soon wait in
        // the kernel's listen backlog, not in our memory.
        let request_limit = config.threads * 2 + 8;
        match config.protocol {
            Protocol::Scgi => Service::Scgi(StreamContext::new(
                Scgi::new(config.max_header_size),
                config,
                pool,
                shutdown,
            )),
            // The vars block's size is a u16: 65535 is the most it can say.
            Protocol::Uwsgi => Service::Uwsgi(StreamContext::new(
                Uwsgi::new(config.max_header_size.min(usize::from(u16::MAX))),
                config,
                pool,
                shutdown,
            )),
            Protocol::Fastcgi => Service::Fastcgi(FastcgiContext {
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
                next_id: AtomicU64::new(1),
                shutdown,
            }),
        }
    }

    fn connection_limit(&self, config: &ServerConfig) -> usize {
        match self {
            Service::Scgi(_) | Service::Uwsgi(_) => config.threads * 2 + 8,
            Service::Fastcgi(_) => FASTCGI_MAX_CONNECTIONS,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Service::Scgi(ctx) => rustgi_model::StreamProtocol::name(&ctx.protocol),
            Service::Uwsgi(ctx) => rustgi_model::StreamProtocol::name(&ctx.protocol),
            Service::Fastcgi(_) => "fastcgi",
        }
    }

    async fn serve<C: Connection>(&self, stream: C, peer: &str) {
        match self {
            Service::Scgi(ctx) => stream::serve(ctx, stream, peer).await,
            Service::Uwsgi(ctx) => stream::serve(ctx, stream, peer).await,
            Service::Fastcgi(ctx) => fastcgi::serve(ctx, stream, peer).await,
        }
    }
}
