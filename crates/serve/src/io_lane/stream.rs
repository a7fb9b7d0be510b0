//! The connection driver for protocols with one request per connection
//! (SCGI, uwsgi): read the head, hand the request to Python, then pump the
//! body into the spool while the response streams out, and close with
//! shutdown + drain so no unread byte turns into an RST.

use super::body_rate::{RateCheck, TooSlow};
use super::connection::{Connection, TryRead};
use super::gate::{Admission, JobGate};
use super::shared::LaneShared;
use crate::bad_input::bad_input;
use crate::flow::{Ending, ResponseFlow};
use crate::intake::{Tether, Waiting};
use crate::named::Named;
use crate::record::Trail;
use crate::sink::{PeerSending, Who, async_io, log_for};
use bytes::BytesMut;
use rustgi_core::{
    BodyError, BodyWriter, Job, PythonPool, ResponseCloser, ResponseReceiver, ResponseTarget,
    body_pipe, response_channel,
};
use rustgi_model::{BodyDecoder, BodyFraming, Request, ResponseEncoder, StreamProtocol, Unframed};
use rustgi_observe::Ended;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::Notify;
use tokio::time::{Instant, timeout, timeout_at};

/// Bytes read from the socket at a time (DESIGN.md: read ahead ~64 KiB).
pub(crate) const READ_SIZE: usize = 64 * 1024;

/// What every connection of a listener shares.
pub struct StreamContext<P> {
    pub protocol: P,
    /// Its name in the access log.
    pub(crate) front: rustgi_observe::Front,
    pub shared: LaneShared,
}

impl<P> StreamContext<P> {
    /// Call it on the I/O loop.
    pub(crate) fn new(
        protocol: P,
        front: rustgi_observe::Front,
        config: &crate::ServeConfig,
        pool: Arc<PythonPool>,
        gate: JobGate,
    ) -> Self {
        StreamContext {
            protocol,
            front,
            shared: LaneShared::new(config, pool, gate),
        }
    }
}

/// Serves the single request of one connection.
///
/// The body is read before a Python thread is taken, up to
/// `--buffer-body` bytes (a body that size or smaller is then whole): a
/// client that trickles it holds a connection, not a thread. The rest of
/// a larger body streams while the application runs, under
/// `--body-min-rate`.
pub async fn serve<P, C>(
    ctx: &StreamContext<P>,
    mut stream: C,
    mut buf: BytesMut,
    head: Option<Request>,
    accepted: Instant,
    peer: &str,
    tether: &Tether,
) where
    P: StreamProtocol,
    C: Connection,
{
    let (mut reader, mut writer) = stream.halves();
    let request = match head {
        Some(request) => request,
        None => match read_head(ctx, &mut reader, &mut buf, accepted, (peer, tether)).await {
            Some(request) => request,
            None => {
                async_io::close(
                    &mut reader,
                    &mut writer,
                    PeerSending::Done,
                    ctx.shared.timeouts.write,
                )
                .await;
                return;
            }
        },
    };
    // The request's record and its id begin here, as its head is
    // decoded: a request dropped before a Python thread takes it still
    // gets its line, and every log line about it names it by that id.
    let id = crate::next_request_id();
    let request_id = crate::record::request_id(&request, id);
    let request = Arc::new(request);
    let trail = Trail::begin(&request, ctx.front, &request_id);
    let named = Named::new(&request, id);
    for warning in &request.warnings {
        bad_input!(peer, "request", %peer, request = %named, "{warning}");
    }
    let who = Who {
        peer,
        request: Some(named),
    };
    let framing = ctx.protocol.body_framing(&request);
    let (body, body_reader) = match framing {
        BodyFraming::Length(length) => body_pipe(Some(length), ctx.shared.spool),
        BodyFraming::Chunked => body_pipe(None, ctx.shared.spool),
    };
    let progress = Progress::default();
    let mut body_pump = BodyPump {
        body,
        buf,
        decoder: BodyDecoder::new(framing),
        body_timeout: ctx.shared.timeouts.body,
        rate: RateCheck::new(ctx.shared.body.min_rate),
        peer,
        named,
    };
    let buffered = if ctx.shared.body.buffer > 0 {
        body_pump
            .read(&mut reader, &progress, Some(ctx.shared.body.buffer as u64))
            .await
    } else {
        Pumped::Buffered
    };
    // A client that closed its connection (both ways: POLLHUP) waits for
    // no answer. One that only shut down its sending side (plain EOF) may
    // still read one: its request runs (see `TryRead::hung_up`).
    if reader.hung_up() {
        not_run(
            who,
            &body_pump,
            trail,
            Ended::ClientGone,
            "the client closed its connection",
        );
        return;
    }
    if let Pumped::Failed(BodyError::TooSlow { .. } | BodyError::TimedOut { .. }) = buffered {
        // The client stopped sending (logged with why) and is cut: nobody
        // waits for the application's answer to that. A body cut short
        // otherwise (a client that half-closed after part of it) still
        // runs: that client reads the application's answer to the
        // OSError.
        not_run(
            who,
            &body_pump,
            trail,
            Ended::Aborted,
            "its request body was cut for being too slow",
        );
        return;
    }
    let (sender, receiver) = response_channel(ctx.shared.response_buffer);
    let closer = receiver.closer();
    let job = Job {
        id,
        request_id,
        verdict: trail.as_ref().map(|t| t.verdict()),
        front: ctx.front,
        request: request.clone(),
        body: body_reader,
        streams: Vec::new(),
        response: ResponseTarget::Channel(sender),
        errors_to_peer: false,
    };
    // Beyond the requests the gate admits, this one waits unsubmitted.
    let admission = ctx.shared.gate.admit().await;
    if reader.hung_up() {
        not_run(
            who,
            &body_pump,
            trail,
            Ended::ClientGone,
            "the client closed its connection",
        );
        return;
    }
    ctx.shared.pool.submit(job);

    *progress.admission.lock().unwrap() = admission;
    // Bytes that came after the body, or `None` when the body failed
    // (what follows it is then no body's).
    let mut pump = Box::pin(async {
        let extra = match buffered {
            Pumped::Buffered => match body_pump.read(&mut reader, &progress, None).await {
                Pumped::Ended { past_end } => Some(past_end),
                _ => None,
            },
            Pumped::Ended { past_end } => {
                progress.arrived();
                Some(past_end + watch_hangup(&mut reader, &closer, who).await)
            }
            Pumped::Failed(_) => None,
        };
        progress.arrived();
        extra
    });
    let mut pumped = None;
    let ending = {
        let encoder = ctx.protocol.encoder(&request);
        let respond = respond(
            &mut writer,
            receiver,
            encoder,
            &progress,
            ctx.shared.timeouts.write,
            who,
            trail,
        );
        tokio::pin!(respond);
        loop {
            tokio::select! {
                extra = &mut pump, if pumped.is_none() => pumped = Some(extra),
                ending = &mut respond => break ending,
            }
        }
    };
    if let Ending::Complete = ending {
        progress.response_complete.store(true, Ordering::Relaxed);
        // The close, as async_io::close does it, with the body pump's end
        // (it may still be reading) between the shutdown and the drain.
        async_io::shutdown(&mut writer, ctx.shared.timeouts.write).await;
        let in_body = match pumped {
            Some(extra) => {
                drop(pump);
                extra
            }
            None => pump.await,
        };
        let drained = async_io::drain(&mut reader, PeerSending::Done).await;
        if let Some(extra) = in_body.map(|extra| extra + drained)
            && extra > 0
        {
            bad_input!(
                peer,
                "bytes after the body",
                %peer,
                request = %named,
                "the front server sent {extra} bytes after the request body; they were discarded. \
                 nginx 1.22 does this over SCGI with scgi_request_buffering off, when it sends the length it had read so far"
            );
        }
    }
}

/// Logs a request dropped before it went to a Python thread, and ends
/// its record with `ended` (no status: nothing was answered).
fn not_run(who: Who<'_>, body: &BodyPump<'_>, trail: Option<Trail>, ended: Ended, why: &str) {
    log_for!(
        info,
        who,
        "not run: {why} before the request went to a Python thread ({} body bytes had arrived)",
        body.body.received()
    );
    if let Some(trail) = trail {
        trail.not_run(ended);
    }
}

/// What the body pump and the response writer of one connection tell each
/// other (both run in the connection's task).
#[derive(Default)]
struct Progress {
    /// The body is all in the spool, or will never be.
    body_done: AtomicBool,
    body_arrived: Notify,
    /// The application's response went out whole.
    response_complete: AtomicBool,
    /// The request's place in the `JobGate`, until its response begins.
    admission: std::sync::Mutex<Option<Admission>>,
}

impl Progress {
    fn arrived(&self) {
        self.body_done.store(true, Ordering::Relaxed);
        self.body_arrived.notify_one();
    }
}

async fn read_head<P, R>(
    ctx: &StreamContext<P>,
    reader: &mut R,
    buf: &mut BytesMut,
    accepted: Instant,
    (peer, tether): (&str, &Tether),
) -> Option<Request>
where
    P: StreamProtocol,
    R: AsyncRead + Unpin,
{
    let deadline = accepted + ctx.shared.timeouts.header;
    let name = ctx.protocol.name();
    // At --max-connections, the connection waiting longest for its head
    // is closed to admit a new one.
    let mut place = None;
    loop {
        match ctx.protocol.decode_head(buf) {
            Ok(Some(request)) => return Some(request),
            Ok(None) => {}
            Err(e) => {
                bad_input!(peer, "bad request head", %peer, "bad {name} request: {e}; closing the connection");
                return None;
            }
        }
        buf.reserve(8 * 1024);
        let place = place.get_or_insert_with(|| tether.waiting(Waiting::Head, accepted));
        // Also while the worker stops: the front server may have sent this
        // request already (a reload must not fail it).
        let read = tokio::select! {
            read = timeout_at(deadline, reader.read_buf(buf)) => read,
            () = place.evicted() => {
                bad_input!(
                    peer,
                    "closed for room",
                    %peer,
                    "closing a connection that waited {:?} for its {name} request head ({} bytes arrived): \
                     --max-connections {} reached, and it had waited longest",
                    accepted.elapsed(),
                    buf.len(),
                    tether.limit()
                );
                return None;
            }
        };
        match read {
            Ok(Ok(0)) => {
                if !buf.is_empty() {
                    bad_input!(
                        peer,
                        "incomplete head",
                        %peer,
                        "the connection closed after {} bytes, before the {name} request head was complete",
                        buf.len()
                    );
                }
                return None;
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::debug!(%peer, "reading the {name} request head failed: {e}");
                return None;
            }
            Err(_) => {
                bad_input!(
                    peer,
                    "head timeout",
                    %peer,
                    "timed out after {:?} waiting for the {name} request head ({} bytes arrived)",
                    ctx.shared.timeouts.header,
                    buf.len()
                );
                return None;
            }
        }
    }
}

/// How a stretch of body reading ended.
enum Pumped {
    /// The whole body is in the spool; `past_end` bytes came after it (to
    /// be discarded).
    Ended { past_end: u64 },
    /// The limit asked for has arrived, and more of the body is to come.
    Buffered,
    /// The body failed (the reader was told why, as here).
    Failed(BodyError),
}

/// Moves a body from the socket into the spool.
struct BodyPump<'p> {
    body: BodyWriter,
    /// Read but not yet decoded.
    buf: BytesMut,
    decoder: BodyDecoder,
    body_timeout: Duration,
    rate: RateCheck,
    peer: &'p str,
    named: Named<'p>,
}

impl BodyPump<'_> {
    /// With `limit`: reads until the body ends or `limit` bytes of it have
    /// arrived, before a Python thread has the request. Without: reads the
    /// rest as the application wants it (see `BodyWriter::wanted`), and to
    /// its end whether or not the application reads it.
    async fn read<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
        progress: &Progress,
        limit: Option<u64>,
    ) -> Pumped {
        let (peer, named) = (self.peer, self.named);
        loop {
            // Hand over what is buffered; stop at the body's end.
            loop {
                match self.decoder.decode(&mut self.buf) {
                    Ok(Unframed::Data(data)) => self.body.push(data),
                    Ok(Unframed::NeedMore) => break,
                    Ok(Unframed::End { past_end }) => {
                        self.body.finish();
                        return Pumped::Ended { past_end };
                    }
                    Err(e) => {
                        bad_input!(peer, "bad body", %peer, request = %named, "bad chunked request body: {e}");
                        let error = BodyError::Framing(e.to_string());
                        self.body.fail(error.clone());
                        return Pumped::Failed(error);
                    }
                }
            }
            match limit {
                Some(limit) if self.body.received() >= limit => return Pumped::Buffered,
                Some(_) => {}
                // The rest stays in the socket until a Python thread takes
                // the request (at once, unless the pool is busy).
                None => self.body.wanted().await,
            }
            self.buf.reserve(READ_SIZE);
            let (received, expected) = (self.body.received(), self.body.expected());
            let wait = self
                .rate
                .time_left()
                .map_or(self.body_timeout, |left| left.min(self.body_timeout));
            let began = Instant::now();
            let read = timeout(wait, reader.read_buf(&mut self.buf)).await;
            let waited = began.elapsed();
            let error = match read {
                Ok(Ok(0)) => {
                    let error = BodyError::Truncated { received, expected };
                    if progress.response_complete.load(Ordering::Relaxed) {
                        // nginx stops sending a body once the response has
                        // started; with the response whole, that is no error.
                        tracing::debug!(%peer, request = %named, "{error}");
                    } else {
                        bad_input!(peer, "bad body", %peer, request = %named, "{error}");
                    }
                    error
                }
                Ok(Ok(n)) => match self.rate.record(waited, n as u64) {
                    Ok(()) => continue,
                    Err(slow) => self.too_slow(slow),
                },
                Ok(Err(e)) => {
                    tracing::info!(%peer, request = %named, "reading the request body failed: {e}");
                    BodyError::Disconnected
                }
                Err(_) if wait < self.body_timeout => match self.rate.record(waited, 0) {
                    Ok(()) => continue,
                    Err(slow) => self.too_slow(slow),
                },
                Err(_) => {
                    let error = BodyError::TimedOut { received, expected };
                    let body_timeout = self.body_timeout;
                    bad_input!(peer, "body timeout", %peer, request = %named, "{error} (--body-timeout {body_timeout:?})");
                    error
                }
            };
            self.body.fail(error.clone());
            return Pumped::Failed(error);
        }
    }

    /// The error for a body below `--body-min-rate`, logged.
    fn too_slow(&self, slow: TooSlow) -> BodyError {
        let error = BodyError::TooSlow {
            received: self.body.received(),
            expected: self.body.expected(),
            rate: slow.rate,
            limit: slow.limit,
            window_secs: slow.window_secs,
        };
        bad_input!(self.peer, "body too slow", peer = %self.peer, request = %self.named, "{error}; closing the connection");
        error
    }
}

/// After a whole body, while the request waits for its thread and runs:
/// reads what else comes (to be discarded; returns how much) until the
/// client closes. A client that closed both ways (POLLHUP) or whose
/// connection failed waits for no answer: the response channel is closed,
/// so that a request still queued is not run and a running one stops at
/// its next block.
async fn watch_hangup<R: AsyncRead + TryRead + Unpin>(
    reader: &mut R,
    closer: &ResponseCloser,
    who: Who<'_>,
) -> u64 {
    let mut extra = 0;
    let mut scratch = BytesMut::new();
    loop {
        scratch.clear();
        scratch.reserve(16 * 1024);
        match reader.read_buf(&mut scratch).await {
            Ok(0) => {
                if reader.hung_up() {
                    log_for!(debug, who, "the client closed its connection");
                    closer.close();
                }
                return extra;
            }
            Ok(n) => extra += n as u64,
            Err(e) => {
                log_for!(debug, who, "the connection failed: {e}");
                closer.close();
                return extra;
            }
        }
    }
}

/// Streams the response out through the flow, which holds it back while
/// the request body is still arriving (see `crate::flow`).
async fn respond<E, W>(
    writer: &mut W,
    receiver: ResponseReceiver,
    mut encoder: E,
    progress: &Progress,
    write_timeout: Duration,
    who: Who<'_>,
    trail: Option<Trail>,
) -> Ending
where
    E: ResponseEncoder,
    W: AsyncWrite + Unpin,
{
    let mut flow = ResponseFlow::new(false).traced(trail);
    let mut events = Vec::new();
    let mut first = true;
    loop {
        if progress.body_done.load(Ordering::Relaxed) {
            flow.body_arrived();
        }
        if let Some(out) = flow.writable()
            && let Err(e) = async_io::write_all(writer, out, write_timeout).await
        {
            e.log(who, false);
            flow.discard();
            return Ending::Aborted;
        }
        if let Some(ending) = flow.ending() {
            return ending;
        }
        if flow.hold_full() {
            progress.body_arrived.notified().await;
            continue;
        }
        events.clear();
        let received = if flow.held() && flow.pending() > 0 {
            tokio::select! {
                received = receiver.recv(&mut events) => received,
                () = progress.body_arrived.notified() => continue,
            }
        } else {
            receiver.recv(&mut events).await
        };
        if received.is_none() {
            return Ending::Aborted;
        }
        if first {
            // Answering: the request no longer waits for a Python thread.
            first = false;
            progress.admission.lock().unwrap().take();
        }
        flow.encode(&mut encoder, events.drain(..));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use rustgi_core::ResponseEvent;
    use rustgi_model::ResponseHead;
    use rustgi_scgi::ScgiEncoder;
    use tokio::net::UnixStream;

    const WHO: Who<'static> = Who {
        peer: "test",
        request: None,
    };

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn head() -> ResponseEvent {
        ResponseEvent::Head(ResponseHead::from_static("200 OK", &[]).unwrap())
    }

    /// What the peer has received within `wait`.
    async fn received(theirs: &mut UnixStream, wait: Duration) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = [0u8; 64 * 1024];
        while let Ok(Ok(n)) = timeout(wait, theirs.read(&mut buf)).await {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        got
    }

    #[test]
    fn the_response_is_held_until_the_body_is_in_then_goes_out_whole() {
        runtime().block_on(async {
            let (mut ours, mut theirs) = UnixStream::pair().unwrap();
            let (sender, receiver) = response_channel(1 << 20);
            let progress = Progress::default();
            let (_, mut writer) = ours.split();
            let second = Duration::from_secs(1);
            let respond = respond(
                &mut writer,
                receiver,
                ScgiEncoder,
                &progress,
                second,
                WHO,
                None,
            );
            let peer = async {
                sender.send_now(vec![
                    head(),
                    ResponseEvent::Body(Bytes::from_static(b"early")),
                ]);
                let early = received(&mut theirs, Duration::from_millis(100)).await;
                assert!(early.is_empty(), "held while the body arrives: {early:?}");
                progress.body_done.store(true, Ordering::Relaxed);
                progress.body_arrived.notify_one();
                let released = received(&mut theirs, Duration::from_millis(200)).await;
                assert_eq!(released, b"Status: 200 OK\r\n\r\nearly");
                sender.send_now(vec![
                    ResponseEvent::Body(Bytes::from_static(b"!")),
                    ResponseEvent::End,
                ]);
                received(&mut theirs, Duration::from_millis(200)).await
            };
            let (ending, rest) = tokio::join!(respond, peer);
            assert_eq!(ending, Ending::Complete);
            assert_eq!(rest, b"!");
        });
    }

    #[test]
    fn an_ended_response_goes_out_while_the_body_still_arrives() {
        runtime().block_on(async {
            let (mut ours, mut theirs) = UnixStream::pair().unwrap();
            let (sender, receiver) = response_channel(1 << 20);
            let progress = Progress::default();
            let (_, mut writer) = ours.split();
            sender.send_now(vec![head(), ResponseEvent::End]);
            let second = Duration::from_secs(1);
            let ending = respond(
                &mut writer,
                receiver,
                ScgiEncoder,
                &progress,
                second,
                WHO,
                None,
            )
            .await;
            assert_eq!(ending, Ending::Complete);
            let got = received(&mut theirs, Duration::from_millis(100)).await;
            assert_eq!(got, b"Status: 200 OK\r\n\r\n");
        });
    }

    #[test]
    fn the_application_gone_without_an_end_is_a_cut_response() {
        runtime().block_on(async {
            let (mut ours, _theirs) = UnixStream::pair().unwrap();
            let (sender, receiver) = response_channel(1 << 20);
            let progress = Progress::default();
            let (_, mut writer) = ours.split();
            sender.send_now(vec![head()]);
            drop(sender);
            let second = Duration::from_secs(1);
            let ending = respond(
                &mut writer,
                receiver,
                ScgiEncoder,
                &progress,
                second,
                WHO,
                None,
            )
            .await;
            assert_eq!(ending, Ending::Aborted);
        });
    }

    #[test]
    fn a_peer_gone_mid_response_cuts_it() {
        runtime().block_on(async {
            let (mut ours, theirs) = UnixStream::pair().unwrap();
            drop(theirs);
            let (sender, receiver) = response_channel(1 << 20);
            let progress = Progress::default();
            progress.body_done.store(true, Ordering::Relaxed);
            let (_, mut writer) = ours.split();
            sender.send_now(vec![
                head(),
                ResponseEvent::Body(Bytes::from(vec![0; 1 << 16])),
            ]);
            let second = Duration::from_secs(1);
            let ending = respond(
                &mut writer,
                receiver,
                ScgiEncoder,
                &progress,
                second,
                WHO,
                None,
            )
            .await;
            assert_eq!(ending, Ending::Aborted);
        });
    }
}
