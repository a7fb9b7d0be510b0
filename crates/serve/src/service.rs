//! What a listener serves: its protocol (or, under `--proto auto`, each
//! connection's, told by its first byte), and which lane a connection
//! takes.

use crate::bad_input::bad_input;
use crate::config::{Protocol, ServeConfig, Timeouts};
use crate::intake::{Handoff, Tether, Waiting};
use crate::io_lane::ajp::{self, AjpContext};
use crate::io_lane::connection::Connection;
use crate::io_lane::fastcgi::{self, FastcgiContext};
use crate::io_lane::gate::JobGate;
use crate::io_lane::shared::LaneShared;
use crate::io_lane::stream::{self, StreamContext};
use crate::io_lane::to_python;
use crate::python_lane::{self, Accepted, Decoded, Lane, Socket};
use bytes::BytesMut;
use rustgi_core::PythonPool;
use rustgi_model::Request;
use rustgi_scgi::Scgi;
use rustgi_uwsgi::Uwsgi;
use std::borrow::Cow;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The environment variable that forces a lane, for tests: `python` (the
/// Python threads answer every request they can carry, the I/O lane
/// reading for them what has not arrived) or `io` (everything through the
/// I/O lane). Unset or `auto`: a request that arrived whole is answered
/// by the Python thread that accepted it, anything else by the I/O lane.
pub(crate) const LANE_ENV: &str = "RUSTGI_LANE";

/// Which lane connections take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LaneChoice {
    Auto,
    Python,
    Io,
}

impl LaneChoice {
    fn from_environment() -> LaneChoice {
        let value = std::env::var(LANE_ENV).unwrap_or_default();
        let choice = match value.as_str() {
            "" | "auto" => LaneChoice::Auto,
            "python" => LaneChoice::Python,
            "io" => LaneChoice::Io,
            other => {
                tracing::warn!("{LANE_ENV}={other} is not python, io or auto; using auto");
                LaneChoice::Auto
            }
        };
        match choice {
            LaneChoice::Auto => {}
            LaneChoice::Python => tracing::info!(
                "{LANE_ENV}=python: the Python threads answer every request they can carry \
                 (interleaved FastCGI requests and uwsgi chunked bodies stay in the I/O lane)"
            ),
            LaneChoice::Io => {
                tracing::info!("{LANE_ENV}=io: every request goes through the I/O lane")
            }
        }
        choice
    }
}

/// Tells the protocols apart by a connection's first byte: 0x01 is
/// FastCGI's version, an ASCII digit starts an SCGI netstring, 0x00 or 30
/// is a uwsgi modifier1, 0x12 (of 0x12 0x34) AJP's magic.
pub(crate) fn sniff(first: u8) -> Option<Protocol> {
    match first {
        1 => Some(Protocol::Fastcgi),
        0x12 => Some(Protocol::Ajp),
        b'0'..=b'9' => Some(Protocol::Scgi),
        0 | 30 => Some(Protocol::Uwsgi),
        _ => None,
    }
}

/// What every connection of a listener shares.
pub(crate) struct Service {
    /// `--proto`: one protocol, or `Auto`.
    protocol: Protocol,
    pub(crate) scgi: StreamContext<Scgi>,
    pub(crate) uwsgi: StreamContext<Uwsgi>,
    pub(crate) fastcgi: FastcgiContext,
    pub(crate) ajp: AjpContext,
    pool: Arc<PythonPool>,
    timeouts: Timeouts,
    lane: LaneChoice,
    connection_limit: usize,
}

impl Service {
    pub(crate) fn new(
        config: &ServeConfig,
        pool: Arc<PythonPool>,
        shutdown: CancellationToken,
    ) -> Service {
        let protocol = match config.protocol {
            Some(p @ (Protocol::Scgi | Protocol::Uwsgi | Protocol::Fastcgi | Protocol::Ajp)) => p,
            _ => Protocol::Auto,
        };
        // Requests beyond what the Python threads can take soon wait
        // unsubmitted (`JobGate`), or in the kernel's listen backlog.
        let request_limit = config.threads * 2 + 8;
        let connection_limit = config.max_connections;
        let gate = JobGate::new(request_limit);
        let lane = LaneChoice::from_environment();
        // The vars block's size is a u16: 65535 is the most it can say.
        let uwsgi_limit = config.max_header_size.min(usize::from(u16::MAX));
        Service {
            protocol,
            scgi: StreamContext::new(
                Scgi::new(config.max_header_size),
                rustgi_observe::Front::Scgi,
                config,
                pool.clone(),
                gate.clone(),
            ),
            uwsgi: StreamContext::new(
                Uwsgi::new(uwsgi_limit),
                rustgi_observe::Front::Uwsgi,
                config,
                pool.clone(),
                gate.clone(),
            ),
            ajp: AjpContext {
                protocol: ajp_protocol(config),
                shared: LaneShared::new(config, pool.clone(), gate.clone()),
                shutdown: shutdown.clone(),
                park_idle: lane != LaneChoice::Io,
            },
            fastcgi: FastcgiContext {
                protocol: rustgi_fastcgi::Config {
                    roles: config.fastcgi.roles,
                    max_params_size: config.max_header_size,
                    max_requests_per_connection: request_limit,
                    max_connections: connection_limit,
                    max_requests: request_limit,
                    multiplex: true,
                },
                shared: LaneShared::new(config, pool.clone(), gate),
                errors_to_peer: config.fastcgi.stderr,
                shutdown,
                park_idle: lane != LaneChoice::Io,
            },
            pool,
            timeouts: config.timeouts,
            lane,
            connection_limit,
        }
    }

    /// Connections the I/O lane holds before the intake stops accepting.
    pub(crate) fn connection_limit(&self) -> usize {
        self.connection_limit
    }

    pub(crate) fn name(&self) -> &'static str {
        match self.protocol {
            Protocol::Scgi => "scgi",
            Protocol::Uwsgi => "uwsgi",
            Protocol::Fastcgi => "fastcgi",
            Protocol::Ajp => "ajp",
            _ => "auto: fastcgi, scgi, uwsgi or ajp by the first byte",
        }
    }

    /// The protocol of a connection whose bytes so far are `buf` (after
    /// `head`, when that was decoded already): `Ok(None)` under auto until
    /// a byte has come; `Err` with a first byte no protocol starts with.
    fn protocol_of(&self, buf: &[u8], head: Option<&Decoded>) -> Result<Option<Protocol>, u8> {
        if let Some(head) = head {
            return Ok(Some(head.protocol));
        }
        match (self.protocol, buf.first()) {
            (Protocol::Auto, None) => Ok(None),
            (Protocol::Auto, Some(&byte)) => sniff(byte).map(Some).ok_or(byte),
            (fixed, _) => Ok(Some(fixed)),
        }
    }

    pub(crate) fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// Where a connection that brought `conn.buf` goes: a whole request on
    /// a connection that carries only it is answered by the Python thread
    /// that accepted it.
    pub(crate) fn lane(&self, conn: Accepted, tracker: &TaskTracker) -> Lane {
        if self.lane == LaneChoice::Io {
            return Lane::Io { conn, head: None };
        }
        match self.protocol_of(&conn.buf, None) {
            Ok(Some(protocol)) => self.python_lane(protocol, conn, None, tracker),
            _ => Lane::Io { conn, head: None },
        }
    }

    /// Runs a Python-lane job on a Python thread.
    pub(crate) fn submit(&self, job: rustgi_core::Job) {
        self.log_forced_python_lane(&job);
        self.pool.submit(job);
    }

    /// Under `RUSTGI_LANE=python`, each request the Python lane answers is
    /// logged, so that a test can see the lane it meant to test.
    pub(crate) fn log_forced_python_lane(&self, job: &rustgi_core::Job) {
        if self.lane == LaneChoice::Python {
            let uri = job
                .request
                .param(b"REQUEST_URI")
                .map(|u| rustgi_model::show::request_field(u));
            tracing::info!(
                request = %crate::named::Named::new(&job.request, job.id),
                "{LANE_ENV}=python: answered in the Python lane: {}",
                uri.as_deref().unwrap_or("")
            );
        }
    }

    /// The Python lane's job for a whole request of `protocol` in
    /// `conn.buf` (after `head`, when that was decoded already); the I/O
    /// lane's otherwise.
    pub(crate) fn python_lane(
        &self,
        protocol: Protocol,
        conn: Accepted,
        head: Option<Request>,
        tracker: &TaskTracker,
    ) -> Lane {
        match protocol {
            Protocol::Scgi => python_lane::start(&self.scgi, protocol, conn, head, tracker),
            Protocol::Uwsgi => python_lane::start(&self.uwsgi, protocol, conn, head, tracker),
            Protocol::Fastcgi => python_lane::start_fastcgi(&self.fastcgi, conn, tracker),
            Protocol::Ajp => python_lane::start_ajp(&self.ajp, conn, tracker),
            _ => Lane::Io {
                conn,
                head: head.map(|request| Decoded { protocol, request }),
            },
        }
    }

    /// Serves a connection the intake passed on, in the I/O lane.
    pub(crate) fn spawn(self: &Arc<Self>, handoff: Handoff, tracker: &TaskTracker) {
        let Handoff {
            conn,
            head,
            accepted,
        } = handoff;
        let service = self.clone();
        let tracked = tracker.clone();
        tracker.spawn(async move {
            service
                .serve_accepted(conn, head, accepted, Some(&tracked))
                .await;
        });
    }

    /// Serves an accepted connection on this task, in the I/O lane. With
    /// `tracker`, a forced Python lane takes it when it can (without: this
    /// is that lane's way back).
    pub(crate) async fn serve_accepted(
        &self,
        conn: Accepted,
        head: Option<Decoded>,
        accepted: Instant,
        tracker: Option<&TaskTracker>,
    ) {
        let Accepted {
            socket,
            buf,
            peer,
            tether,
            ..
        } = conn;
        // Each kind of socket is its own stream type under tokio.
        macro_rules! serve_registered {
            ($registered:expr) => {
                match $registered {
                    Ok(stream) => {
                        return self
                            .serve(stream, buf, head, accepted, (&peer, tether), tracker)
                            .await;
                    }
                    Err(e) => e,
                }
            };
        }
        let failed = match socket {
            Socket::Unix(stream) => serve_registered!(tokio::net::UnixStream::from_std(stream)),
            Socket::Tcp(stream) => serve_registered!(tokio::net::TcpStream::from_std(stream)),
        };
        tracing::warn!(%peer, "registering a connection failed: {failed}");
    }

    async fn serve<C: Connection>(
        &self,
        mut stream: C,
        mut buf: BytesMut,
        head: Option<Decoded>,
        accepted: Instant,
        (peer, tether): (&str, Tether),
        tracker: Option<&TaskTracker>,
    ) {
        if buf.is_empty() && self.protocol == Protocol::Auto {
            // Also while the worker stops: the first byte may be on its way.
            let deadline = accepted + self.timeouts.header;
            let place = tether.waiting(Waiting::Head, accepted);
            let read = tokio::select! {
                read = tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)) => read,
                () = place.evicted() => {
                    bad_input!(
                        peer,
                        "closed for room",
                        %peer,
                        "closing a connection that sent nothing for {:?}: --max-connections {} reached, \
                         and it had waited longest for its request head",
                        accepted.elapsed(),
                        tether.limit()
                    );
                    return;
                }
            };
            drop(place);
            match read {
                Ok(Ok(n)) if n > 0 => {}
                Ok(_) => return,
                Err(_) => {
                    bad_input!(peer, "head timeout", %peer, "timed out after {:?} waiting for the first byte", self.timeouts.header);
                    return;
                }
            }
        }
        if self.lane == LaneChoice::Python
            && let Some(tracker) = tracker
            && let Ok(Some(protocol)) = self.protocol_of(&buf, head.as_ref())
        {
            let partial = to_python::Partial {
                stream,
                buf,
                head: head.map(|decoded| decoded.request),
            };
            return to_python::serve(self, protocol, partial, accepted, (peer, tether), tracker)
                .await;
        }
        self.serve_here(stream, buf, head, accepted, (peer, tether))
            .await
    }

    /// Serves a connection in the I/O lane until it closes, or until it
    /// is a kept FastCGI connection idle between requests: that one goes
    /// back to the intake through `tether`.
    pub(crate) async fn serve_here<C: Connection>(
        &self,
        mut stream: C,
        buf: BytesMut,
        head: Option<Decoded>,
        accepted: Instant,
        (peer, tether): (&str, Tether),
    ) {
        let protocol = self.protocol_of(&buf, head.as_ref());
        let head = head.map(|decoded| decoded.request);
        match protocol {
            Ok(Some(Protocol::Scgi)) => {
                stream::serve(&self.scgi, stream, buf, head, accepted, peer, &tether).await
            }
            Ok(Some(Protocol::Uwsgi)) => {
                stream::serve(&self.uwsgi, stream, buf, head, accepted, peer, &tether).await
            }
            Ok(Some(Protocol::Fastcgi)) => {
                let idle =
                    fastcgi::serve(&self.fastcgi, stream, buf, accepted, peer, &tether).await;
                match idle.map(Connection::into_socket) {
                    Some(Ok(socket)) => tether.park(socket, Cow::Owned(peer.to_owned())),
                    Some(Err(e)) => {
                        tracing::warn!(%peer, "taking a kept connection off the I/O loop failed: {e}")
                    }
                    None => {}
                }
            }
            Ok(Some(Protocol::Ajp)) => {
                let idle = ajp::serve(&self.ajp, stream, buf, accepted, peer, &tether).await;
                match idle.map(Connection::into_socket) {
                    Some(Ok(socket)) => tether.park(socket, Cow::Owned(peer.to_owned())),
                    Some(Err(e)) => {
                        tracing::warn!(%peer, "taking a kept connection off the I/O loop failed: {e}")
                    }
                    None => {}
                }
            }
            Ok(_) => {}
            Err(first) => {
                let start = &buf[..buf.len().min(8)];
                let hint = match first {
                    b'A'..=b'Z' => " (an HTTP request? point HTTP clients at the front server)",
                    0x16 => " (a TLS handshake? front servers speak to rustgi in the clear)",
                    _ => "",
                };
                bad_input!(
                    peer,
                    "unrecognised protocol",
                    %peer,
                    "unrecognised protocol: first bytes \"{}\"{hint}; --proto auto takes FastCGI (0x01), SCGI (a digit), uwsgi (0x00) or AJP (0x12 0x34); closing the connection",
                    start.escape_ascii()
                );
                let (_, mut writer) = stream.halves();
                let _ = writer.shutdown().await;
            }
        }
    }
}

/// The AJP protocol as configured; `None` when AJP is refused: no secret
/// and no `--ajp-secret-optional` (under `--proto auto`; `--proto ajp`
/// refuses to start so).
fn ajp_protocol(config: &ServeConfig) -> Option<rustgi_ajp::Ajp> {
    let secret = config.ajp.secret.clone().map(rustgi_ajp::Secret::new);
    if secret.is_none() && !config.ajp.secret_optional {
        return None;
    }
    if secret.is_none() {
        tracing::warn!(
            "AJP is served without a secret (--ajp-secret-optional): anyone who can connect can set REMOTE_USER and HTTPS"
        );
    }
    Some(rustgi_ajp::Ajp::new(config.ajp.packet_size, secret))
}
