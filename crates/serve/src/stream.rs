//! The connection driver for protocols with one request per connection
//! (SCGI, uwsgi): read the head, hand the request to Python, then pump the
//! body into the spool while the response streams out, and close with
//! shutdown + drain so no unread byte turns into an RST.

use crate::config::Timeouts;
use crate::connection::{Connection, TryRead};
use bytes::{Bytes, BytesMut};
use rustgi_core::{
    BodyError, BodyWriter, Job, PythonPool, ResponseEvent, ResponseReceiver, ResponseTarget,
    SpoolLimits, body_pipe, response_channel,
};
use rustgi_model::chunked::{Chunked, ChunkedDecoder};
use rustgi_model::{BodyFraming, Request, StreamProtocol};
use std::io::IoSlice;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use tokio::time::{Instant, timeout, timeout_at};

/// Bytes read from the socket at a time (DESIGN.md: read ahead ~64 KiB).
const READ_SIZE: usize = 64 * 1024;
/// Body blocks up to this size are copied next to the head; larger ones
/// are written from where they are.
const COALESCE_LIMIT: usize = 16 * 1024;
/// Response bytes held back while the request body is still arriving.
const HOLD_LIMIT: usize = 256 * 1024;
/// How long to wait for the peer's EOF after our response is complete.
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// What every connection of a listener shares.
pub struct StreamContext<P> {
    pub protocol: P,
    pub pool: Arc<PythonPool>,
    pub timeouts: Timeouts,
    pub spool: SpoolLimits,
    /// Bound of the response channel, in bytes.
    pub response_buffer: usize,
}

impl<P> StreamContext<P> {
    pub fn new(protocol: P, config: &crate::ServeConfig, pool: Arc<PythonPool>) -> Self {
        StreamContext {
            protocol,
            pool,
            timeouts: config.timeouts,
            spool: config.spool,
            response_buffer: config.response_buffer,
        }
    }
}

enum Ending {
    /// The response is whole: shut down our side and drain.
    Complete,
    /// The response could not be completed: cut the connection.
    Aborted,
}

/// Serves the single request of one connection.
pub async fn serve<P, C>(
    ctx: &StreamContext<P>,
    mut stream: C,
    mut buf: BytesMut,
    head: Option<crate::direct::Decoded>,
    accepted: Instant,
    peer: &str,
) where
    P: StreamProtocol,
    C: Connection,
{
    let (mut reader, mut writer) = stream.halves();
    let request = match head {
        Some(head) => head.request,
        None => match read_head(ctx, &mut reader, &mut buf, accepted, peer).await {
            Some(request) => request,
            None => {
                let _ = timeout(ctx.timeouts.write, writer.shutdown()).await;
                drain(&mut reader, PeerSending::Done).await;
                return;
            }
        },
    };
    let id = crate::next_request_id();
    for warning in &request.warnings {
        tracing::warn!(%peer, request = id, "{warning}");
    }
    let framing = ctx.protocol.body_framing(&request);
    let (body, body_reader) = match framing {
        BodyFraming::Length(length) => body_pipe(Some(length), ctx.spool),
        BodyFraming::Chunked => body_pipe(None, ctx.spool),
    };
    let request = Arc::new(request);
    let (sender, receiver) = response_channel(ctx.response_buffer);
    ctx.pool.submit(Job {
        id,
        request: request.clone(),
        body: body_reader,
        streams: Vec::new(),
        response: ResponseTarget::Channel(sender),
        errors_to_peer: false,
    });

    let progress = Progress::default();
    let unframe = match framing {
        BodyFraming::Length(_) => Unframe::Length,
        BodyFraming::Chunked => Unframe::Chunked(ChunkedDecoder::new()),
    };
    let mut pump = Box::pin(pump_body(
        &mut reader,
        body,
        buf,
        unframe,
        ctx.timeouts.body,
        &progress,
        peer,
        id,
    ));
    let mut pumped = None;
    let ending = {
        let respond = write_response(ctx, &mut writer, receiver, &request, &progress, peer, id);
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
        let _ = timeout(ctx.timeouts.write, writer.shutdown()).await;
        let in_body = match pumped {
            Some(extra) => {
                drop(pump);
                extra
            }
            None => pump.await,
        };
        let extra = in_body + drain(&mut reader, PeerSending::Done).await;
        if extra > 0 {
            tracing::warn!(
                %peer,
                request = id,
                "the front server sent {extra} bytes after the request body; they were discarded. \
                 nginx 1.22 does this over SCGI with scgi_request_buffering off, when it sends the length it had read so far"
            );
        }
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
}

async fn read_head<P, R>(
    ctx: &StreamContext<P>,
    reader: &mut R,
    buf: &mut BytesMut,
    accepted: Instant,
    peer: &str,
) -> Option<Request>
where
    P: StreamProtocol,
    R: AsyncRead + Unpin,
{
    let deadline = accepted + ctx.timeouts.header;
    let name = ctx.protocol.name();
    loop {
        match ctx.protocol.decode_head(buf) {
            Ok(Some(request)) => return Some(request),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(%peer, "bad {name} request: {e}; closing the connection");
                return None;
            }
        }
        buf.reserve(8 * 1024);
        // Also while the worker stops: the front server may have sent this
        // request already (a reload must not fail it).
        match timeout_at(deadline, reader.read_buf(buf)).await {
            Ok(Ok(0)) => {
                if !buf.is_empty() {
                    tracing::warn!(
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
                tracing::warn!(
                    %peer,
                    "timed out after {:?} waiting for the {name} request head ({} bytes arrived)",
                    ctx.timeouts.header,
                    buf.len()
                );
                return None;
            }
        }
    }
}

/// How the bytes after the head become the body.
enum Unframe {
    /// Exactly CONTENT_LENGTH bytes.
    Length,
    /// uwsgi's chunked extension.
    Chunked(ChunkedDecoder),
}

/// Moves the body from the socket into the spool until it is complete,
/// whether or not the application reads it. Returns how many bytes came
/// past its end (to be discarded).
#[allow(clippy::too_many_arguments)]
async fn pump_body<R: AsyncRead + Unpin>(
    reader: &mut R,
    body: BodyWriter,
    buffered: BytesMut,
    unframe: Unframe,
    body_timeout: Duration,
    progress: &Progress,
    peer: &str,
    id: u64,
) -> u64 {
    let extra = read_body(
        reader,
        &body,
        buffered,
        unframe,
        body_timeout,
        progress,
        peer,
        id,
    )
    .await;
    progress.body_done.store(true, Ordering::Relaxed);
    progress.body_arrived.notify_one();
    extra
}

#[allow(clippy::too_many_arguments)]
async fn read_body<R: AsyncRead + Unpin>(
    reader: &mut R,
    body: &BodyWriter,
    mut buf: BytesMut,
    mut unframe: Unframe,
    body_timeout: Duration,
    progress: &Progress,
    peer: &str,
    id: u64,
) -> u64 {
    loop {
        // Hand over what is buffered; stop at the body's end.
        match &mut unframe {
            Unframe::Length => {
                let remaining = body.remaining();
                let extra = (buf.len() as u64).saturating_sub(remaining);
                if !buf.is_empty() {
                    body.push(buf.split().freeze());
                }
                if body.remaining() == 0 {
                    return extra;
                }
            }
            Unframe::Chunked(decoder) => loop {
                match decoder.decode(&mut buf) {
                    Ok(Chunked::Data(data)) => body.push(data),
                    Ok(Chunked::NeedMore) => break,
                    Ok(Chunked::End) => {
                        body.finish();
                        return buf.len() as u64;
                    }
                    Err(e) => {
                        tracing::warn!(%peer, request = id, "bad chunked request body: {e}");
                        body.fail(BodyError::Framing(e.to_string()));
                        return 0;
                    }
                }
            },
        }
        buf.reserve(READ_SIZE);
        let (received, expected) = (body.received(), body.expected());
        match timeout(body_timeout, reader.read_buf(&mut buf)).await {
            Ok(Ok(0)) => {
                let error = BodyError::Truncated { received, expected };
                if progress.response_complete.load(Ordering::Relaxed) {
                    // nginx stops sending a body once the response has
                    // started; with the response whole, that is no error.
                    tracing::debug!(%peer, request = id, "{error}");
                } else {
                    tracing::warn!(%peer, request = id, "{error}");
                }
                body.fail(error);
                return 0;
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::info!(%peer, request = id, "reading the request body failed: {e}");
                body.fail(BodyError::Disconnected);
                return 0;
            }
            Err(_) => {
                let error = BodyError::TimedOut { received, expected };
                tracing::warn!(%peer, request = id, "{error} (--body-timeout {body_timeout:?})");
                body.fail(error);
                return 0;
            }
        }
    }
}

/// Streams the response out, but holds it back (up to [`HOLD_LIMIT`])
/// while the request body is still arriving: nginx stops sending the body
/// once a response has started, so an application that writes before it
/// reads would wait for ever. Held back, such an application blocks on the
/// full channel while the body drains into the spool, then carries on.
async fn write_response<P, W>(
    ctx: &StreamContext<P>,
    writer: &mut W,
    receiver: ResponseReceiver,
    request: &Request,
    progress: &Progress,
    peer: &str,
    id: u64,
) -> Ending
where
    P: StreamProtocol,
    W: AsyncWrite + Unpin,
{
    let mut events = Vec::new();
    let mut segments: Vec<Bytes> = Vec::new();
    let mut held = 0;
    let mut head = Vec::new();
    let mut small = Vec::new();
    loop {
        let body_done = progress.body_done.load(Ordering::Relaxed);
        if body_done && !segments.is_empty() {
            if let Err(ending) = write_segments(ctx, writer, &mut segments, peer, id).await {
                return ending;
            }
            held = 0;
        }
        if held >= HOLD_LIMIT {
            progress.body_arrived.notified().await;
            continue;
        }
        events.clear();
        let received = if segments.is_empty() || body_done {
            receiver.recv(&mut events).await
        } else {
            tokio::select! {
                received = receiver.recv(&mut events) => received,
                () = progress.body_arrived.notified() => continue,
            }
        };
        if received.is_none() {
            return Ending::Aborted;
        }
        let mut ending = None;
        for event in events.drain(..) {
            match event {
                ResponseEvent::Head(h) => ctx.protocol.encode_head(request, &h, &mut head),
                ResponseEvent::Body(data) if data.len() <= COALESCE_LIMIT => {
                    small.extend_from_slice(&data)
                }
                ResponseEvent::Body(data) => {
                    held += flush_into(&mut segments, &mut head, &mut small) + data.len();
                    segments.push(data);
                }
                // Already in the log; SCGI and uwsgi have no channel for it.
                ResponseEvent::Stderr(_) => {}
                ResponseEvent::End => ending = Some(Ending::Complete),
                ResponseEvent::Abort => ending = Some(Ending::Aborted),
            }
        }
        held += flush_into(&mut segments, &mut head, &mut small);
        match ending {
            // The application is done: whatever body is left is unwanted.
            Some(Ending::Complete) => {
                return match write_segments(ctx, writer, &mut segments, peer, id).await {
                    Ok(()) => Ending::Complete,
                    Err(ending) => ending,
                };
            }
            // Send what the application produced before it failed, so the
            // front server sees a truncated response rather than none.
            Some(Ending::Aborted) => {
                let _ = write_segments(ctx, writer, &mut segments, peer, id).await;
                return Ending::Aborted;
            }
            None => {}
        }
    }
}

async fn write_segments<P: StreamProtocol, W: AsyncWrite + Unpin>(
    ctx: &StreamContext<P>,
    writer: &mut W,
    segments: &mut Vec<Bytes>,
    peer: &str,
    id: u64,
) -> Result<(), Ending> {
    match timeout(ctx.timeouts.write, write_all(writer, segments)).await {
        Ok(Ok(())) => {
            segments.clear();
            Ok(())
        }
        Ok(Err(e)) => {
            tracing::info!(%peer, request = id, "writing the response failed: {e}");
            Err(Ending::Aborted)
        }
        Err(_) => {
            tracing::warn!(
                %peer,
                request = id,
                "the peer accepted no response bytes for {:?} (--write-timeout); closing",
                ctx.timeouts.write
            );
            Err(Ending::Aborted)
        }
    }
}

/// Moves the encoded head and small body blocks, in order, into one
/// segment; returns its length.
fn flush_into(segments: &mut Vec<Bytes>, head: &mut Vec<u8>, small: &mut Vec<u8>) -> usize {
    if head.is_empty() && small.is_empty() {
        return 0;
    }
    let mut joined = std::mem::take(head);
    joined.append(small);
    let len = joined.len();
    segments.push(Bytes::from(joined));
    len
}

async fn write_all<W: AsyncWrite + Unpin>(
    writer: &mut W,
    segments: &[Bytes],
) -> std::io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = segments.iter().map(|s| IoSlice::new(s)).collect();
    let mut slices = &mut slices[..];
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        let n = writer.write_vectored(slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, n);
    }
    writer.flush().await
}

/// Whether the peer may still be sending when we close.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum PeerSending {
    /// Everything it meant to send has arrived (a whole SCGI body): when
    /// nothing is queued the connection can close at once, sparing every
    /// request another wake-up.
    Done,
    /// It may still be sending (FastCGI STDIN the app never read, a
    /// trailing empty STDIN record): wait for its EOF, bounded.
    Maybe,
}

/// Reads and discards what the peer still sends, so closing never leaves
/// unread bytes behind to turn into an RST. Returns the bytes read.
pub(crate) async fn drain<R: AsyncRead + TryRead + Unpin>(
    reader: &mut R,
    peer: PeerSending,
) -> u64 {
    let mut scratch = [0u8; 8 * 1024];
    let mut total = match reader.try_read(&mut scratch) {
        Ok(0) => return 0,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && peer == PeerSending::Maybe => 0,
        Ok(n) => n as u64,
        Err(_) => return 0,
    };
    let deadline = Instant::now() + DRAIN_TIME;
    while let Ok(Ok(n)) = timeout_at(deadline, reader.read(&mut scratch)).await {
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    total
}
