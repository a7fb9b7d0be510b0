//! The connection driver for protocols with one request per connection
//! (SCGI, uwsgi): read the head, hand the request to Python, then pump the
//! body into the spool while the response streams out, and close with
//! shutdown + drain so no unread byte turns into an RST.

use super::connection::Connection;
use crate::bad_input::bad_input;
use crate::config::Timeouts;
use crate::flow::{Ending, ResponseFlow};
use crate::sink::{PeerSending, Who, async_io};
use bytes::BytesMut;
use rustgi_core::{
    BodyError, BodyWriter, Job, PythonPool, ResponseReceiver, ResponseTarget, SpoolLimits,
    body_pipe, response_channel,
};
use rustgi_model::{BodyDecoder, BodyFraming, Request, ResponseEncoder, StreamProtocol, Unframed};
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

/// Serves the single request of one connection.
pub async fn serve<P, C>(
    ctx: &StreamContext<P>,
    mut stream: C,
    mut buf: BytesMut,
    head: Option<Request>,
    accepted: Instant,
    peer: &str,
) where
    P: StreamProtocol,
    C: Connection,
{
    let (mut reader, mut writer) = stream.halves();
    let request = match head {
        Some(request) => request,
        None => match read_head(ctx, &mut reader, &mut buf, accepted, peer).await {
            Some(request) => request,
            None => {
                async_io::close(
                    &mut reader,
                    &mut writer,
                    PeerSending::Done,
                    ctx.timeouts.write,
                )
                .await;
                return;
            }
        },
    };
    let id = crate::next_request_id();
    for warning in &request.warnings {
        bad_input!(peer, "request", %peer, request = id, "{warning}");
    }
    let who = Who {
        peer,
        request: Some(id),
    };
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
    let mut pump = Box::pin(pump_body(
        &mut reader,
        body,
        buf,
        framing,
        ctx.timeouts.body,
        &progress,
        peer,
        id,
    ));
    let mut pumped = None;
    let ending = {
        let encoder = ctx.protocol.encoder(&request);
        let respond = respond(
            &mut writer,
            receiver,
            encoder,
            &progress,
            ctx.timeouts.write,
            who,
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
        async_io::shutdown(&mut writer, ctx.timeouts.write).await;
        let in_body = match pumped {
            Some(extra) => {
                drop(pump);
                extra
            }
            None => pump.await,
        };
        let extra = in_body + async_io::drain(&mut reader, PeerSending::Done).await;
        if extra > 0 {
            bad_input!(
                peer,
                "bytes after the body",
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
                bad_input!(peer, "bad request head", %peer, "bad {name} request: {e}; closing the connection");
                return None;
            }
        }
        buf.reserve(8 * 1024);
        // Also while the worker stops: the front server may have sent this
        // request already (a reload must not fail it).
        match timeout_at(deadline, reader.read_buf(buf)).await {
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
                    ctx.timeouts.header,
                    buf.len()
                );
                return None;
            }
        }
    }
}

/// Moves the body from the socket into the spool until it is complete,
/// whether or not the application reads it. Returns how many bytes came
/// past its end (to be discarded).
#[allow(clippy::too_many_arguments)]
async fn pump_body<R: AsyncRead + Unpin>(
    reader: &mut R,
    body: BodyWriter,
    buffered: BytesMut,
    framing: BodyFraming,
    body_timeout: Duration,
    progress: &Progress,
    peer: &str,
    id: u64,
) -> u64 {
    let extra = read_body(
        reader,
        &body,
        buffered,
        BodyDecoder::new(framing),
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
    mut decoder: BodyDecoder,
    body_timeout: Duration,
    progress: &Progress,
    peer: &str,
    id: u64,
) -> u64 {
    loop {
        // Hand over what is buffered; stop at the body's end.
        loop {
            match decoder.decode(&mut buf) {
                Ok(Unframed::Data(data)) => body.push(data),
                Ok(Unframed::NeedMore) => break,
                Ok(Unframed::End { past_end }) => {
                    body.finish();
                    return past_end;
                }
                Err(e) => {
                    bad_input!(peer, "bad body", %peer, request = id, "bad chunked request body: {e}");
                    body.fail(BodyError::Framing(e.to_string()));
                    return 0;
                }
            }
        }
        // The rest stays in the socket until a Python thread takes the
        // request (at once, unless the pool is busy).
        body.wanted().await;
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
                    bad_input!(peer, "bad body", %peer, request = id, "{error}");
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
                bad_input!(peer, "body timeout", %peer, request = id, "{error} (--body-timeout {body_timeout:?})");
                body.fail(error);
                return 0;
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
) -> Ending
where
    E: ResponseEncoder,
    W: AsyncWrite + Unpin,
{
    let mut flow = ResponseFlow::new(false);
    let mut events = Vec::new();
    loop {
        if progress.body_done.load(Ordering::Relaxed) {
            flow.body_arrived();
        }
        if let Some(out) = flow.writable()
            && let Err(e) = async_io::write_all(writer, out, write_timeout).await
        {
            e.log(who, false);
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
        request: Some(1),
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
            let respond = respond(&mut writer, receiver, ScgiEncoder, &progress, second, WHO);
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
            let ending = respond(&mut writer, receiver, ScgiEncoder, &progress, second, WHO).await;
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
            let ending = respond(&mut writer, receiver, ScgiEncoder, &progress, second, WHO).await;
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
            let ending = respond(&mut writer, receiver, ScgiEncoder, &progress, second, WHO).await;
            assert_eq!(ending, Ending::Aborted);
        });
    }
}
