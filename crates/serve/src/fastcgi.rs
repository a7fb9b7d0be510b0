//! The FastCGI connection driver: feeds what the socket brings to the
//! sans-I/O state machine of `rustgi-fastcgi`, runs each request on a
//! Python thread as soon as its PARAMS are in, and multiplexes the responses
//! back as records. Requests on one connection run concurrently: a slow one
//! never holds back a fast one.

use crate::config::Timeouts;
use crate::connection::{Connection, TryRead};
use crate::stream::{PeerSending, drain};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use rustgi_core::{
    BodyWriter, Job, PythonPool, ResponseCloser, ResponseEvent, ResponseReceiver, ResponseTarget,
    SpoolLimits, body_pipe, response_channel,
};
use rustgi_fastcgi::{self as fcgi, Event, Role, encode_response_head, encode_stdout};
use rustgi_model::{Param, Request};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, timeout, timeout_at};
use tokio_util::sync::CancellationToken;

const READ_SIZE: usize = 64 * 1024;
/// Body blocks up to this size are copied into the record with what came
/// before them; larger ones are encoded where they are.
const COALESCE_LIMIT: usize = 16 * 1024;
/// Response bytes held back per request while its STDIN is still arriving
/// (front servers stop sending a body once a response has started).
const HOLD_LIMIT: usize = 256 * 1024;

/// What every FastCGI connection of a listener shares.
pub struct FastcgiContext {
    pub protocol: fcgi::Config,
    pub pool: Arc<PythonPool>,
    pub timeouts: Timeouts,
    pub spool: SpoolLimits,
    pub response_buffer: usize,
    /// Also send `wsgi.errors` lines as FCGI_STDERR.
    pub errors_to_peer: bool,
    /// Cancelled when the worker stops: kept connections close once idle
    /// between requests (a new one, or one with a request begun, is still
    /// served).
    pub shutdown: CancellationToken,
}

/// One active request on this connection.
struct Active {
    /// Tells this request's responses from those of an earlier request
    /// that had the same FastCGI id (ids are reused at once).
    generation: u64,
    log_id: u64,
    body: Option<BodyWriter>,
    data: Option<BodyWriter>,
    stdin_done: bool,
    /// Encoded records held back while STDIN is still arriving.
    held: Vec<u8>,
    /// The receiver, while it is not being waited on (the hold is full).
    parked: Option<ResponseReceiver>,
    closer: ResponseCloser,
}

/// The next events of one request's response, with its receiver back.
type Batch = (u16, u64, ResponseReceiver, Vec<ResponseEvent>, bool);
type PendingBatch = Pin<Box<dyn Future<Output = Batch> + Send>>;

fn next_batch(id: u16, generation: u64, receiver: ResponseReceiver) -> PendingBatch {
    Box::pin(async move {
        let mut events = Vec::new();
        let open = receiver.recv(&mut events).await.is_some();
        (id, generation, receiver, events, open)
    })
}

struct Driver<'a> {
    ctx: &'a FastcgiContext,
    peer: &'a str,
    machine: fcgi::Connection,
    active: HashMap<u16, Active>,
    responses: FuturesUnordered<PendingBatch>,
    generation: u64,
    out: Vec<u8>,
    /// Close the connection once `out` is written (an error after a
    /// response head, with no other request to spare).
    cut: bool,
    /// When the request being received must be complete: counted from
    /// accept for the first request, from its first byte for later ones on
    /// a kept connection, so a peer trickling bytes cannot hold it open.
    head_deadline: Option<Instant>,
}

/// Serves one FastCGI connection until the front server or the protocol
/// ends it.
pub async fn serve<C: Connection>(
    ctx: &FastcgiContext,
    mut stream: C,
    buf: BytesMut,
    accepted: Instant,
    peer: &str,
) {
    let (mut reader, mut writer) = stream.halves();
    let mut driver = Driver {
        ctx,
        peer,
        machine: fcgi::Connection::new(ctx.protocol.clone()),
        active: HashMap::new(),
        responses: FuturesUnordered::new(),
        generation: 0,
        out: Vec::new(),
        cut: false,
        head_deadline: Some(accepted + ctx.timeouts.header),
    };
    let clean = driver.run(&mut reader, &mut writer, buf).await;
    driver.abandon_all();
    if clean {
        let _ = timeout(ctx.timeouts.write, writer.shutdown()).await;
        drain(&mut reader, PeerSending::Maybe).await;
    }
}

impl Driver<'_> {
    /// Returns whether the connection may close cleanly (shutdown + drain).
    async fn run<R, W>(&mut self, reader: &mut R, writer: &mut W, mut buf: BytesMut) -> bool
    where
        R: AsyncRead + TryRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        // Bytes read when the connection was accepted.
        let mut unread = !buf.is_empty();
        loop {
            if self.active.is_empty() && !buf.is_empty() && self.head_deadline.is_none() {
                self.head_deadline = Some(Instant::now() + self.ctx.timeouts.header);
            }
            let read_limit = self.read_limit();
            let idle = self.between_requests(&buf);
            if std::mem::take(&mut unread) {
                if !self.receive(writer, &mut buf).await {
                    return true;
                }
            } else {
                tokio::select! {
                    () = self.ctx.shutdown.cancelled(), if idle => return true,
                    Some(batch) = self.responses.next(), if !self.responses.is_empty() => {
                        self.on_batch(batch);
                    }
                    read = read_some(reader, &mut buf, read_limit) => match read {
                        Ok(0) => {
                            if let Err(e) = self.machine.receive_eof(&buf) {
                                tracing::warn!(peer = %self.peer, "bad FastCGI input: {e}; closing the connection");
                            } else if !self.active.is_empty() {
                                tracing::info!(
                                    peer = %self.peer,
                                    "the front server closed the connection with {} request(s) active",
                                    self.active.len()
                                );
                            }
                            return false;
                        }
                        Ok(_) => {
                            if !self.receive(writer, &mut buf).await {
                                return true;
                            }
                        }
                        Err(e) => {
                            match e.kind() {
                                std::io::ErrorKind::TimedOut => tracing::warn!(peer = %self.peer, "{e}"),
                                _ => tracing::debug!(peer = %self.peer, "reading failed: {e}"),
                            }
                            return false;
                        }
                    },
                }
            }
            self.machine.take_output(&mut self.out);
            if self.flush(writer).await.is_err() {
                return false;
            }
            if self.cut {
                return false;
            }
            if self.machine.should_close()
                || (self.ctx.shutdown.is_cancelled() && self.between_requests(&buf))
            {
                return true;
            }
        }
    }

    /// Feeds received bytes to the state machine; false after bad input
    /// (the connection is then to be closed, with what was answered sent).
    async fn receive<W: AsyncWrite + Unpin>(&mut self, writer: &mut W, buf: &mut BytesMut) -> bool {
        let received = self.machine.receive(buf);
        self.on_events();
        if let Err(e) = received {
            tracing::warn!(peer = %self.peer, "bad FastCGI input: {e}; closing the connection");
            self.machine.take_output(&mut self.out);
            let _ = self.flush(writer).await;
            return false;
        }
        true
    }

    /// A kept connection with nothing in progress: it has served a request,
    /// and no byte of the next one has arrived (`head_deadline` is set again
    /// by the first one, and BEGIN_REQUEST makes the request active).
    fn between_requests(&self, buf: &BytesMut) -> bool {
        self.head_deadline.is_none() && self.machine.active_requests() == 0 && buf.is_empty()
    }

    /// How long the next read may take: the header timeout while a record
    /// or the first request is incomplete, the body timeout while a body is
    /// arriving, and no limit between requests on a kept connection or
    /// while only responses are pending (the front server owns those).
    fn read_limit(&self) -> Option<(Instant, &'static str)> {
        if self.active.values().any(|a| !a.stdin_done) {
            Some((
                Instant::now() + self.ctx.timeouts.body,
                "--body-timeout: no request body bytes arrived",
            ))
        } else if self.active.is_empty() {
            self.head_deadline.map(|deadline| {
                (
                    deadline,
                    "--header-timeout: no complete FastCGI request arrived",
                )
            })
        } else {
            None
        }
    }

    async fn flush<W: AsyncWrite + Unpin>(&mut self, writer: &mut W) -> Result<(), ()> {
        if self.out.is_empty() {
            return Ok(());
        }
        match timeout(self.ctx.timeouts.write, writer.write_all(&self.out)).await {
            Ok(Ok(())) => {
                self.out.clear();
                Ok(())
            }
            Ok(Err(e)) => {
                tracing::info!(peer = %self.peer, "writing to the front server failed: {e}");
                Err(())
            }
            Err(_) => {
                tracing::warn!(
                    peer = %self.peer,
                    "the front server accepted no bytes for {:?} (--write-timeout); closing",
                    self.ctx.timeouts.write
                );
                Err(())
            }
        }
    }

    fn on_events(&mut self) {
        while let Some(event) = self.machine.poll_event() {
            match event {
                Event::Request {
                    id,
                    role,
                    content_length,
                    request,
                    ..
                } => {
                    self.head_deadline = None;
                    self.start(id, role, content_length, request)
                }
                Event::Stdin { id, data } => {
                    if let Some(body) = self.active.get(&id).and_then(|a| a.body.as_ref()) {
                        body.push(unpinned(data));
                    }
                }
                Event::StdinEnd { id } => self.stdin_ended(id),
                Event::Data { id, data } => {
                    if let Some(stream) = self.active.get(&id).and_then(|a| a.data.as_ref()) {
                        stream.push(unpinned(data));
                    }
                }
                Event::DataEnd { id } => {
                    if let Some(stream) = self.active.get_mut(&id).and_then(|a| a.data.take()) {
                        stream.finish();
                    }
                }
                Event::Abort { id } => {
                    if let Some(active) = self.active.remove(&id) {
                        tracing::info!(peer = %self.peer, request = active.log_id, "ABORT_REQUEST from the front server");
                        abandon(active);
                    }
                    self.machine.abort_complete(id, &mut self.out);
                }
            }
        }
    }

    fn start(&mut self, id: u16, role: Role, content_length: Option<u64>, mut request: Request) {
        let log_id = crate::next_request_id();
        for warning in &request.warnings {
            tracing::warn!(peer = %self.peer, request = log_id, "{warning}");
        }
        request.params.push(Param::new("FCGI_ROLE", role.name()));
        let (body, body_reader) = body_pipe(content_length, self.ctx.spool);
        let mut streams = Vec::new();
        let data = (role == Role::Filter).then(|| {
            let length = request
                .param(b"FCGI_DATA_LENGTH")
                .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse().ok());
            let (writer, reader) = body_pipe(length, self.ctx.spool);
            streams.push(("fastcgi.data", reader));
            writer
        });
        let (sender, receiver) = response_channel(self.ctx.response_buffer);
        self.generation += 1;
        self.active.insert(
            id,
            Active {
                generation: self.generation,
                log_id,
                body: Some(body),
                data,
                stdin_done: false,
                held: Vec::new(),
                parked: None,
                closer: receiver.closer(),
            },
        );
        self.responses
            .push(next_batch(id, self.generation, receiver));
        self.ctx.pool.submit(Job {
            id: log_id,
            request: Arc::new(request),
            body: body_reader,
            streams,
            response: ResponseTarget::Channel(sender),
            errors_to_peer: self.ctx.errors_to_peer,
        });
    }

    fn stdin_ended(&mut self, id: u16) {
        let Some(active) = self.active.get_mut(&id) else {
            return;
        };
        if let Some(body) = active.body.take() {
            body.finish();
        }
        active.stdin_done = true;
        self.out.append(&mut active.held);
        if let Some(receiver) = active.parked.take() {
            self.responses
                .push(next_batch(id, active.generation, receiver));
        }
    }

    fn on_batch(&mut self, (id, generation, receiver, events, open): Batch) {
        let Some(active) = self
            .active
            .get_mut(&id)
            .filter(|a| a.generation == generation)
        else {
            // Output of a request that was aborted: it never reaches the
            // request that reuses the id. Dropping the receiver stops it.
            return;
        };
        let mut ending = if open { None } else { Some(false) };
        let target = if active.stdin_done {
            &mut self.out
        } else {
            &mut active.held
        };
        // What is already queued goes out in as few STDOUT records as it
        // fits: the head shares its record with the body that follows it
        // (Apache's mod_authnz_fcgi keeps only the body bytes that arrive in
        // the record where the head ends).
        let mut stdout = Vec::new();
        for event in events {
            match event {
                ResponseEvent::Head(head) => encode_response_head(&head, &mut stdout),
                ResponseEvent::Body(data) if stdout.is_empty() && data.len() > COALESCE_LIMIT => {
                    encode_stdout(id, &data, target)
                }
                ResponseEvent::Body(data) => stdout.extend_from_slice(&data),
                ResponseEvent::Stderr(line) => {
                    encode_stdout(id, &stdout, target);
                    stdout.clear();
                    self.machine.write_stderr(id, &line, target);
                }
                ResponseEvent::End => ending = Some(true),
                ResponseEvent::Abort => ending = Some(false),
            }
        }
        encode_stdout(id, &stdout, target);
        match ending {
            None if active.held.len() >= HOLD_LIMIT => active.parked = Some(receiver),
            None => self.responses.push(next_batch(id, generation, receiver)),
            Some(complete) => {
                // The application is done: what it sent goes out now.
                self.out.append(&mut active.held);
                let active = self.active.remove(&id).expect("looked up above");
                if !complete {
                    tracing::info!(peer = %self.peer, request = active.log_id, "response cut short after its head");
                }
                abandon(active);
                if !complete && self.machine.active_requests() == 1 {
                    // Closing is the only way to tell the front server the
                    // response is not whole; with other requests on the
                    // connection, END_REQUEST with an error status has to do.
                    self.cut = true;
                } else {
                    self.machine
                        .end_request(id, if complete { 0 } else { 1 }, &mut self.out);
                }
            }
        }
    }

    /// The connection is going away: every request still running is told.
    fn abandon_all(&mut self) {
        for (_, active) in self.active.drain() {
            abandon(active);
        }
    }
}

/// Ends a request's streams: pending body reads fail, the application's
/// next block fails and its iterable is closed.
fn abandon(active: Active) {
    active.closer.close();
    drop(active.body);
    drop(active.data);
}

/// Stream data is a slice of a 64 KiB read buffer and keeps all of it
/// alive while spooled: small slices are copied so that a body of many small
/// records cannot pin many times its size.
fn unpinned(data: Bytes) -> Bytes {
    if data.len() < 8 * 1024 {
        Bytes::copy_from_slice(&data)
    } else {
        data
    }
}

async fn read_some<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    limit: Option<(Instant, &'static str)>,
) -> std::io::Result<usize> {
    buf.reserve(READ_SIZE);
    match limit {
        None => reader.read_buf(buf).await,
        Some((deadline, what)) => match timeout_at(deadline, reader.read_buf(buf)).await {
            Ok(read) => read,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("{what} in time; closing the connection"),
            )),
        },
    }
}
