//! The AJP connection driver, for what the Python lane cannot carry: a
//! body that needs GET_BODY_CHUNK round trips, a packet that straddles
//! reads, CPING, and the grace of a stopping worker. One request at a
//! time (AJP never multiplexes); between requests a connection goes back
//! to the intake, as a kept FastCGI one does (`Tether::park`).
//!
//! The body is pulled, not pumped: the web server sends a packet only
//! when asked (the first one of a Content-Length body excepted), so the
//! driver asks for `--buffer-body` bytes before the request takes a
//! Python thread, and for the rest as the application reads. The web
//! server reads the response all the while, so nothing is held back.

use super::body_rate::{RateCheck, TooSlow};
use super::connection::{Connection, Stop, TryRead};
use super::shared::LaneShared;
use crate::bad_input::bad_input;
use crate::flow::{Ending, ResponseFlow};
use crate::intake::{Tether, Waiting};
use crate::named::Named;
use crate::record::Trail;
use crate::sink::{Who, async_io, log_for};
use bytes::BytesMut;
use rustgi_ajp::{Ajp, AjpError, BodyReader, Chunk, Command, Forward};
use rustgi_core::{BodyError, BodyWriter, Job, ResponseTarget, body_pipe, response_channel};
use rustgi_model::{ResponseEncoder, Segments};
use rustgi_observe::{Ended, Front};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::time::{Instant, timeout_at};
use tokio_util::sync::CancellationToken;

/// What every AJP connection of a listener shares.
pub struct AjpContext {
    /// `None`: AJP is refused (no `--ajp-secret` and no
    /// `--ajp-secret-optional`, under `--proto auto`).
    pub protocol: Option<Ajp>,
    pub shared: LaneShared,
    /// Cancelled when the worker stops (see `fastcgi::STOP_GRACE`).
    pub shutdown: CancellationToken,
    /// An idle connection goes back to the intake (false under
    /// `RUSTGI_LANE=io`).
    pub park_idle: bool,
}

/// Serves one AJP connection until it closes, or until it is idle between
/// requests (with `park_idle`): then it is returned, for the intake.
pub(crate) async fn serve<C: Connection>(
    ctx: &AjpContext,
    mut stream: C,
    buf: BytesMut,
    accepted: Instant,
    peer: &str,
    tether: &Tether,
) -> Option<C> {
    let Some(ajp) = ctx.protocol.as_ref() else {
        bad_input!(
            peer,
            "AJP without a secret",
            %peer,
            "refused an AJP connection: give --ajp-secret SECRET (Apache: ProxyPass ... secret=SECRET), \
             or --ajp-secret-optional to serve AJP without one; closing the connection"
        );
        return None;
    };
    let (mut reader, mut writer) = stream.halves();
    let mut driver = Driver {
        ctx,
        ajp,
        peer,
        tether,
        served: tether.kept(),
        out: Segments::default(),
    };
    let stop = driver.run(&mut reader, &mut writer, buf, accepted).await;
    drop((reader, writer));
    stop.settle(stream, ctx.shared.timeouts.write).await
}

struct Driver<'a> {
    ctx: &'a AjpContext,
    ajp: &'a Ajp,
    peer: &'a str,
    tether: &'a Tether,
    /// The connection has served a request (here, or before it was parked).
    served: bool,
    out: Segments,
}

/// How a request ended, for the connection.
enum Served {
    /// Whole; the connection serves the next one.
    Kept,
    /// Whole, with END_RESPONSE reuse=0 (the worker stops): close.
    Last,
    /// Cut, or the connection failed: close it at once.
    Broken,
}

impl Driver<'_> {
    fn who(&self) -> Who<'_> {
        Who {
            peer: self.peer,
            request: None,
        }
    }

    fn stopping(&self) -> bool {
        self.ctx.shutdown.is_cancelled() || self.tether.stopping()
    }

    async fn run<R, W>(
        &mut self,
        reader: &mut R,
        writer: &mut W,
        mut buf: BytesMut,
        accepted: Instant,
    ) -> Stop
    where
        R: AsyncRead + TryRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        loop {
            if self.served && buf.is_empty() && self.ctx.park_idle && !self.stopping() {
                return Stop::Idle;
            }
            let command = match self.next_command(reader, writer, &mut buf, accepted).await {
                Ok(command) => command,
                Err(clean) => return Stop::Closed { clean },
            };
            match command {
                Command::Cping => {
                    self.out.small().extend_from_slice(&rustgi_ajp::cpong());
                    if self.flush(writer).await.is_err() {
                        return Stop::Closed { clean: false };
                    }
                }
                Command::Ping | Command::Empty => {}
                Command::Shutdown => {
                    bad_input!(
                        self.peer,
                        "AJP shutdown",
                        peer = %self.peer,
                        "refused an AJP shutdown request (only a signal stops rustgi); closing the connection"
                    );
                    return Stop::Closed { clean: true };
                }
                Command::Forward(forward) => {
                    let served = self.request(reader, writer, &mut buf, *forward).await;
                    self.served = true;
                    match served {
                        Served::Kept => {}
                        Served::Last => return Stop::Closed { clean: true },
                        Served::Broken => return Stop::Closed { clean: false },
                    }
                }
            }
        }
    }

    /// Reads until a command is whole. `Err(clean)`: the connection is to
    /// be closed (after bad input, logged; a timeout; the peer's EOF).
    async fn next_command<R, W>(
        &mut self,
        reader: &mut R,
        writer: &mut W,
        buf: &mut BytesMut,
        accepted: Instant,
    ) -> Result<Command, bool>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        // A new connection has --header-timeout from accept; a kept one
        // --keepalive-timeout until its next request begins, then
        // --header-timeout from there.
        let mut deadline = (!self.served).then(|| accepted + self.ctx.shared.timeouts.header);
        let idle_until = Instant::now() + self.ctx.shared.timeouts.keepalive;
        let mut place = None;
        loop {
            match self.ajp.decode_command(buf) {
                Ok(Some(command)) => return Ok(command),
                Ok(None) => {}
                Err(e) => {
                    // A refused secret is answered (403) before the close.
                    if e.answer_into(self.out.small()) {
                        bad_input!(self.peer, "bad AJP input", peer = %self.peer, "refused: {e}; answering 403 and closing the connection");
                        return Err(self.flush(writer).await.is_ok());
                    }
                    self.bad(&e);
                    return Err(true);
                }
            }
            if !buf.is_empty() && deadline.is_none() {
                deadline = Some(Instant::now() + self.ctx.shared.timeouts.header);
            }
            let waiting = if buf.is_empty() && self.served {
                Waiting::Idle
            } else {
                Waiting::Head
            };
            let since = if waiting == Waiting::Idle {
                Instant::now()
            } else {
                accepted
            };
            let place = place.get_or_insert_with(|| self.tether.waiting(waiting, since));
            let until = deadline.unwrap_or(idle_until);
            let idle = buf.is_empty() && self.served;
            buf.reserve(16 * 1024);
            let read = tokio::select! {
                read = timeout_at(until, reader.read_buf(buf)) => read,
                () = place.evicted() => {
                    tracing::info!(peer = %self.peer, "--max-connections {} reached: closing an AJP connection that waited longest", self.tether.limit());
                    return Err(false);
                }
                () = super::fastcgi::after_stop(&self.ctx.shutdown), if idle => return Err(true),
            };
            match read {
                Ok(Ok(0)) => {
                    if !buf.is_empty() {
                        bad_input!(self.peer, "incomplete head", peer = %self.peer, "the connection closed after {} bytes, before the AJP packet was whole", buf.len());
                    }
                    return Err(false);
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::debug!(peer = %self.peer, "reading failed: {e}");
                    return Err(false);
                }
                Err(_) if idle => {
                    tracing::info!(peer = %self.peer, "closing an AJP connection idle for {:?} (--keepalive-timeout)", self.ctx.shared.timeouts.keepalive);
                    return Err(true);
                }
                Err(_) => {
                    bad_input!(self.peer, "head timeout", peer = %self.peer, "--header-timeout: no complete AJP request arrived in time ({} bytes); closing the connection", buf.len());
                    return Err(false);
                }
            }
        }
    }

    fn bad(&self, e: &AjpError) {
        bad_input!(self.peer, "bad AJP input", peer = %self.peer, "bad AJP input: {e}; closing the connection");
    }

    async fn flush<W: AsyncWrite + Unpin>(&mut self, writer: &mut W) -> Result<(), ()> {
        async_io::write_all(writer, &mut self.out, self.ctx.shared.timeouts.write)
            .await
            .map_err(|e| e.log(self.who(), false))
    }

    /// Serves one forward request: its body, its job, its response.
    async fn request<R, W>(
        &mut self,
        reader: &mut R,
        writer: &mut W,
        buf: &mut BytesMut,
        forward: Forward,
    ) -> Served
    where
        R: AsyncRead + TryRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let Forward { request, body } = forward;
        let id = crate::next_request_id();
        let request_id = crate::record::request_id(&request, id);
        let request = Arc::new(request);
        let trail = Trail::begin(&request, Front::Ajp, &request_id);
        let named = Named::new(&request, id);
        for warning in &request.warnings {
            bad_input!(self.peer, "request", peer = %self.peer, request = %named, "{warning}");
        }
        let mut pull = Pull {
            body: self.ajp.body(body),
            writer: None,
            named,
            peer: self.peer,
            body_timeout: self.ctx.shared.timeouts.body,
            rate: RateCheck::new(self.ctx.shared.body.min_rate),
            due_since: None,
        };
        let (body_writer, body_reader) = body_pipe(pull.body.length(), self.ctx.shared.spool);
        if pull.body.ended() {
            body_writer.finish();
        } else {
            pull.writer = Some(body_writer);
        }
        // Up to --buffer-body before a Python thread is taken.
        let buffer = self.ctx.shared.body.buffer as u64;
        while !pull.body.ended() && pull.body.received() < buffer {
            if let Err(failed) = pull
                .next(reader, writer, buf, &mut self.out, self.ctx)
                .await
            {
                let who = Who {
                    peer: self.peer,
                    request: Some(named),
                };
                log_for!(info, who, "not run: its request body failed ({failed})");
                if let Some(trail) = trail {
                    trail.not_run(Ended::Aborted);
                }
                return Served::Broken;
            }
        }
        let (sender, receiver) = response_channel(self.ctx.shared.response_buffer);
        let closer = receiver.closer();
        let job = Job {
            id,
            request_id,
            verdict: trail.as_ref().map(|t| t.verdict()),
            front: Front::Ajp,
            request: request.clone(),
            body: body_reader,
            streams: Vec::new(),
            response: ResponseTarget::Channel(sender),
            errors_to_peer: false,
        };
        let mut admission = self.ctx.shared.gate.admit().await;
        self.ctx.shared.pool.submit(job);

        let mut flow = ResponseFlow::new(true).traced(trail);
        let mut encoder = self.ajp.encoder();
        let mut last = false;
        let mut events = Vec::new();
        let who = Who {
            peer: self.peer,
            request: Some(named),
        };
        let ending = loop {
            if let Some(out) = flow.writable()
                && !out.is_empty()
            {
                self.out.append(out);
            }
            if !self.out.is_empty() && self.flush(writer).await.is_err() {
                flow.discard();
                break Ending::Aborted;
            }
            if let Some(ending) = flow.ending() {
                break ending;
            }
            let wanted = pull
                .writer
                .as_ref()
                .filter(|_| !pull.body.ended() && !pull.body.due())
                .map(BodyWriter::demand);
            let due = pull.body.due();
            events.clear();
            let mut ask = false;
            let woke = tokio::select! {
                received = receiver.recv(&mut events) => Woke::Events(received.is_some()),
                () = async { wanted.as_ref().expect("checked").wanted().await }, if wanted.is_some() => {
                    ask = true;
                    Woke::Nothing
                }
                input = async {
                    if due {
                        Woke::Body(pull.next(reader, writer, buf, &mut self.out, self.ctx).await)
                    } else if buf.is_empty() {
                        Woke::Watched(watch(reader, buf).await)
                    } else {
                        // Kept for after the response: read no more.
                        std::future::pending().await
                    }
                } => input,
            };
            match woke {
                Woke::Nothing => {}
                Woke::Events(open) => {
                    if !open {
                        events.push(rustgi_core::ResponseEvent::Abort);
                    }
                    admission = None;
                    if !last && self.stopping() && encoder.last_on_connection() {
                        last = true;
                    }
                    flow.encode(&mut encoder, events.drain(..));
                }
                Woke::Body(Ok(())) => {}
                Woke::Body(Err(failed)) => {
                    log_for!(
                        info,
                        who,
                        "the request body failed while the application ran ({failed})"
                    );
                    closer.close();
                    flow.discard();
                    break Ending::Aborted;
                }
                Woke::Watched(Watched::Kept(n)) => {
                    log_for!(
                        debug,
                        who,
                        "{n} bytes from the front server during the response: kept for after it"
                    );
                }
                Woke::Watched(Watched::Gone) => {
                    log_for!(
                        info,
                        who,
                        "the front server closed the connection during the response"
                    );
                    closer.close();
                    flow.discard();
                    break Ending::Aborted;
                }
            }
            if ask {
                pull.body.ask(self.out.small());
            }
        };
        drop(admission);
        if ending != Ending::Complete {
            if ending == Ending::Aborted {
                log_for!(debug, who, "response cut: closing the connection");
            }
            return Served::Broken;
        }
        // The unasked first packet (or one asked for) is still to come:
        // read and dropped, so that the next request starts clean. The
        // rest of an unread body is never asked for.
        if pull.body.due() {
            pull.writer = None;
            if pull
                .next(reader, writer, buf, &mut self.out, self.ctx)
                .await
                .is_err()
            {
                return Served::Broken;
            }
        }
        if last { Served::Last } else { Served::Kept }
    }
}

/// A request body pulled from the web server.
struct Pull<'a> {
    body: BodyReader,
    /// `None` once the body is whole, or no longer wanted.
    writer: Option<BodyWriter>,
    named: Named<'a>,
    peer: &'a str,
    body_timeout: std::time::Duration,
    /// `--body-min-rate`, counted over the time a packet is due.
    rate: RateCheck,
    /// While a packet is due: when it became due (its `--body-timeout`
    /// runs from there) and how far its waiting is counted in `rate`.
    /// Kept here, not in `next`: the response loop drops a `next` whenever
    /// the application's events come first, and a streaming application
    /// must not restart the packet's clock.
    due_since: Option<(Instant, Instant)>,
}

impl Pull<'_> {
    /// Asks for a packet if none is due, and reads it into the body.
    /// `Err`: the body failed (the reader was told, the log too).
    async fn next<R, W>(
        &mut self,
        reader: &mut R,
        writer: &mut W,
        buf: &mut BytesMut,
        out: &mut Segments,
        ctx: &AjpContext,
    ) -> Result<(), BodyError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        if self.body.ask(out.small()) {
            async_io::write_all(writer, out, ctx.shared.timeouts.write)
                .await
                .map_err(|_| self.fail(BodyError::Disconnected))?;
        }
        let now = Instant::now();
        let (due, _) = *self.due_since.get_or_insert((now, now));
        let deadline = due + self.body_timeout;
        loop {
            match self.body.decode(buf) {
                Ok(None) => {}
                Ok(Some(Chunk::Data(data))) => {
                    self.due_since = None;
                    if let Some(writer) = &self.writer {
                        writer.push(data);
                        if self.body.ended() {
                            writer.finish();
                        }
                    }
                    return Ok(());
                }
                Ok(Some(Chunk::End)) => {
                    self.due_since = None;
                    if let Some(writer) = &self.writer {
                        writer.finish();
                    }
                    return Ok(());
                }
                Ok(Some(Chunk::Cut { received, length })) => {
                    return Err(self.fail(BodyError::EndedEarly {
                        received,
                        expected: length,
                    }));
                }
                Err(e) => {
                    let (peer, named) = (self.peer, self.named);
                    bad_input!(peer, "bad AJP input", %peer, request = %named, "bad AJP body: {e}; closing the connection");
                    return Err(self.fail(BodyError::Framing(e.to_string())));
                }
            }
            buf.reserve(16 * 1024);
            let (_, counted) = self.due_since.expect("due until the packet is whole");
            // A read also ends when the rate's window does, to be checked.
            let until = self
                .rate
                .time_left()
                .map_or(deadline, |left| deadline.min(counted + left));
            let read = timeout_at(until, reader.read_buf(buf)).await;
            // Waiting counts from where it was last counted: time the
            // response loop spent elsewhere with the packet due counts too.
            let now = Instant::now();
            let waited = now - counted;
            self.due_since = Some((due, now));
            match read {
                Ok(Ok(0)) => {
                    let received = self.body.received();
                    let expected = self.body.length();
                    return Err(self.fail(BodyError::Truncated { received, expected }));
                }
                Ok(Ok(n)) => {
                    if let Err(slow) = self.rate.record(waited, n as u64) {
                        return Err(self.too_slow(slow));
                    }
                }
                Ok(Err(_)) => return Err(self.fail(BodyError::Disconnected)),
                Err(_) if now < deadline => {
                    if let Err(slow) = self.rate.record(waited, 0) {
                        return Err(self.too_slow(slow));
                    }
                }
                Err(_) => {
                    let received = self.body.received();
                    let expected = self.body.length();
                    let (peer, named) = (self.peer, self.named);
                    bad_input!(peer, "body timeout", %peer, request = %named, "no AJP body packet within --body-timeout {:?}", self.body_timeout);
                    return Err(self.fail(BodyError::TimedOut { received, expected }));
                }
            }
        }
    }

    /// The error for a body below `--body-min-rate`, logged.
    fn too_slow(&mut self, slow: TooSlow) -> BodyError {
        let error = BodyError::TooSlow {
            received: self.body.received(),
            expected: self.body.length(),
            rate: slow.rate,
            limit: slow.limit,
            window_secs: slow.window_secs,
        };
        let (peer, named) = (self.peer, self.named);
        bad_input!(peer, "body too slow", %peer, request = %named, "{error}; closing the connection");
        self.fail(error)
    }

    fn fail(&mut self, error: BodyError) -> BodyError {
        if let Some(writer) = self.writer.take() {
            writer.fail(error.clone());
        }
        error
    }
}

/// What woke the response loop.
enum Woke {
    Nothing,
    /// A batch of events; false: the channel closed.
    Events(bool),
    Body(Result<(), BodyError>),
    Watched(Watched),
}

enum Watched {
    Gone,
    /// Bytes that are not an empty packet, kept for after the response.
    Kept(usize),
}

/// While the response runs and no body packet is due: the web server's
/// EOF ends the request. An empty packet (lighttpd's after a request
/// without a body, in a read of its own) is dropped; anything else is kept
/// in `buf` for after the response, as the Python lane keeps it, and
/// nothing more is read meanwhile.
async fn watch<R: AsyncRead + Unpin>(reader: &mut R, buf: &mut BytesMut) -> Watched {
    loop {
        buf.reserve(4096);
        match reader.read_buf(buf).await {
            Ok(0) | Err(_) => return Watched::Gone,
            Ok(_) => {}
        }
        rustgi_ajp::skip_empty_packets(buf);
        if !buf.is_empty() {
            return Watched::Kept(buf.len());
        }
    }
}
