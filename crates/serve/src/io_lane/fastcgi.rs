//! The FastCGI connection driver: feeds what the socket brings to the
//! sans-I/O state machine of `rustgi-fastcgi`, runs each request on a
//! Python thread as soon as its PARAMS are in, and multiplexes the responses
//! back as records. Requests on one connection run concurrently: a slow one
//! never holds back a fast one.

use super::body_rate::RateCheck;
use super::connection::{Connection, TryRead};
use super::gate::{Admission, JobGate};
use super::shared::LaneShared;
use crate::bad_input::bad_input;
use crate::flow::{Ending, ResponseFlow};
use crate::intake::{Tether, Waiting, WaitingPlace};
use crate::named::{Named, Naming};
use crate::sink::{Who, async_io};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use rustgi_core::{
    BodyError, BodyWriter, Demand, Job, ResponseCloser, ResponseEvent, ResponseReceiver,
    ResponseTarget, body_pipe, response_channel,
};
use rustgi_fastcgi::{self as fcgi, Event, Role};
use rustgi_model::{Param, Request, Segments, length_param};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::time::{Instant, timeout_at};
use tokio_util::sync::CancellationToken;

/// What every FastCGI connection of a listener shares.
pub struct FastcgiContext {
    pub protocol: fcgi::Config,
    pub shared: LaneShared,
    /// Also send `wsgi.errors` lines as FCGI_STDERR.
    pub errors_to_peer: bool,
    /// Cancelled when the worker stops: kept connections close once idle
    /// between requests (a new one, or one with a request begun, is still
    /// served).
    pub shutdown: CancellationToken,
    /// A kept connection idle between requests goes back to the intake,
    /// where the Python threads serve its next request themselves (false
    /// under `RUSTGI_LANE=io`).
    pub park_idle: bool,
}

/// What the driver keeps with each request, in the connection
/// ([`fcgi::Connection::attach`]).
struct RequestIo {
    /// Tells this request's responses from those of an earlier request
    /// that had the same FastCGI id (ids are reused at once).
    generation: u64,
    /// How its log lines name it.
    named: Naming,
    body: Option<BodyWriter>,
    data: Option<BodyWriter>,
    flow: ResponseFlow,
    /// The receiver, while it is not being waited on (the hold is full).
    parked: Option<ResponseReceiver>,
    closer: ResponseCloser,
    /// The job, until its body has arrived (see [`body_ready`]).
    pending: Option<Job>,
    /// What the connection's only request's body wants, once its job is
    /// submitted (see [`Driver::held_body`]).
    demand: Option<Demand>,
    /// The request's place in the `JobGate`, until its response begins.
    admission: Option<Admission>,
}

/// The next events of one request's response, with its receiver back.
struct Batch {
    id: u16,
    generation: u64,
    receiver: ResponseReceiver,
    events: Vec<ResponseEvent>,
    /// False: the channel closed (the application's side is gone).
    open: bool,
}

type PendingBatch = Pin<Box<dyn Future<Output = Batch> + Send>>;

fn next_batch(id: u16, generation: u64, receiver: ResponseReceiver) -> PendingBatch {
    Box::pin(async move {
        let mut events = Vec::new();
        let open = receiver.recv(&mut events).await.is_some();
        Batch {
            id,
            generation,
            receiver,
            events,
            open,
        }
    })
}

struct Driver<'a> {
    ctx: &'a FastcgiContext,
    peer: &'a str,
    connection: fcgi::Connection<RequestIo>,
    responses: FuturesUnordered<PendingBatch>,
    generation: u64,
    out: Segments,
    /// When the request being received must be complete: counted from
    /// accept for the first request, from its first byte for later ones on
    /// a kept connection, so a peer trickling bytes cannot hold it open.
    head_deadline: Option<Instant>,
    /// The front server has had requests in progress at once here: it
    /// multiplexes, and the connection stays in this lane, where they run
    /// in parallel.
    multiplexed: bool,
    /// The body demand of the connection's only request (see
    /// [`Driver::held_body`]).
    sole_body: Option<Demand>,
    /// The connection came back from the intake: it has served requests.
    kept: bool,
    /// `--body-min-rate`, for the bodies this connection brings: started
    /// afresh by each request.
    body_rate: RateCheck,
    tether: &'a Tether,
    /// While the connection waits on its peer (for a head, or idle between
    /// requests), its place among those the intake may close at
    /// `--max-connections`.
    waiting: Option<(Waiting, Instant, WaitingPlace)>,
    /// Requests whose body has arrived (id, generation, job), held while
    /// too many wait for a Python thread (`JobGate`).
    held: VecDeque<(u16, u64, Job)>,
    /// The wait for a place for the first of `held`, kept across turns of
    /// the loop: the gate is first come, first served, and a wait made
    /// afresh at each turn would go to the back every time.
    admitting: Option<Admitting>,
}

type Admitting = Pin<Box<dyn Future<Output = Option<Admission>> + Send>>;

use super::connection::Stop;

/// Serves one FastCGI connection until the front server or the protocol
/// ends it, or (with `park_idle`) until it is a kept connection idle
/// between requests: then it is returned, for the intake. `kept`: it has
/// served requests before (it came back from the intake), so it starts
/// between requests, with no header deadline until a byte of the next
/// request arrives (and `--keepalive-timeout` until then).
pub(crate) async fn serve<C: Connection>(
    ctx: &FastcgiContext,
    mut stream: C,
    buf: BytesMut,
    accepted: Instant,
    peer: &str,
    tether: &Tether,
) -> Option<C> {
    let kept = tether.kept();
    let mut driver = Driver {
        ctx,
        peer,
        connection: fcgi::Connection::with_request_data(ctx.protocol.clone()),
        responses: FuturesUnordered::new(),
        generation: 0,
        out: Segments::default(),
        head_deadline: (!kept).then(|| accepted + ctx.shared.timeouts.header),
        multiplexed: false,
        sole_body: None,
        kept,
        body_rate: RateCheck::new(ctx.shared.body.min_rate),
        tether,
        waiting: None,
        held: VecDeque::new(),
        admitting: None,
    };
    let (mut reader, mut writer) = stream.halves();
    let stop = driver.run(&mut reader, &mut writer, buf).await;
    driver.abandon_all();
    drop((reader, writer));
    stop.settle(stream, ctx.shared.timeouts.write).await
}

impl Driver<'_> {
    fn who(&self) -> Who<'_> {
        Who {
            peer: self.peer,
            request: None,
        }
    }

    async fn run<R, W>(&mut self, reader: &mut R, writer: &mut W, mut buf: BytesMut) -> Stop
    where
        R: AsyncRead + TryRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        // Bytes read when the connection was accepted.
        let mut unread = !buf.is_empty();
        loop {
            let started = self.connection.started_requests();
            let served = self.kept || self.generation > 0;
            if served && self.connection.active_requests() == 0 && buf.is_empty() {
                // Between requests (what came was none: an ABORT_REQUEST
                // for one that ended, say): --keepalive-timeout, not the
                // header's, bounds the wait.
                self.head_deadline = None;
            } else if started == 0
                && (!buf.is_empty() || self.connection.active_requests() > 0)
                && self.head_deadline.is_none()
            {
                // The first bytes of a request on a kept connection (read
                // here, or a BEGIN_REQUEST already taken in): its head has
                // --header-timeout from now.
                self.head_deadline = Some(Instant::now() + self.ctx.shared.timeouts.header);
            }
            self.track_waiting(&buf);
            let read_limit = self.read_limit();
            let idle = self.between_requests(&buf);
            if idle && self.ctx.park_idle && !self.multiplexed && !self.stopping() {
                return Stop::Idle;
            }
            let held = self.held_body();
            // While a body arrives (and is wanted), the time spent waiting
            // for it counts against --body-min-rate, and a read also ends
            // when the rate's window does.
            let counting = held.is_none() && self.connection.receiving_body();
            let window_ends_first = counting
                && self
                    .body_rate
                    .time_left()
                    .is_some_and(|left| left < self.ctx.shared.timeouts.body);
            let reading = Instant::now();
            let place = self.waiting.as_ref().map(|(_, _, place)| place);
            if std::mem::take(&mut unread) {
                if !self.receive(writer, &mut buf).await {
                    return Stop::Closed { clean: true };
                }
            } else {
                tokio::select! {
                    () = after_stop(&self.ctx.shutdown), if idle => return Stop::Closed { clean: true },
                    () = evicted(place), if place.is_some() => {
                        // Nothing to answer: closed at once, so that the
                        // room is made now, not after a drain.
                        self.log_eviction();
                        return Stop::Closed { clean: false };
                    }
                    admission = admitted(&mut self.admitting, &self.ctx.shared.gate), if !self.held.is_empty() => {
                        self.admitting = None;
                        if let Some(admission) = admission {
                            self.submit_held(admission);
                        }
                        if counting && !self.count_body_wait(reading.elapsed(), 0) {
                            return Stop::Closed { clean: false };
                        }
                    }
                    Some(batch) = self.responses.next(), if !self.responses.is_empty() => {
                        self.on_batch(batch);
                        // The wait for body bytes so far counts too.
                        if counting && !self.count_body_wait(reading.elapsed(), 0) {
                            return Stop::Closed { clean: false };
                        }
                    }
                    () = wanted(held.as_ref()), if held.is_some() => {}
                    read = read_some(reader, &mut buf, read_limit), if held.is_none() => match read {
                        // The --body-min-rate window ended before --body-timeout.
                        Err(e) if e.kind() == std::io::ErrorKind::TimedOut && window_ends_first => {
                            if !self.count_body_wait(reading.elapsed(), 0) {
                                return Stop::Closed { clean: false };
                            }
                        }
                        // Counted; a body too slow closes the connection.
                        Ok(n) if n > 0 && counting && !self.count_body_wait(reading.elapsed(), n) => {
                            return Stop::Closed { clean: false };
                        }
                        Ok(0) => {
                            if let Err(e) = self.connection.receive_eof(&buf) {
                                bad_input!(self.peer, "bad FastCGI input", peer = %self.peer, "bad FastCGI input: {e}; closing the connection");
                            } else if started > 0 {
                                tracing::info!(
                                    peer = %self.peer,
                                    "the front server closed the connection with {started} request(s) active"
                                );
                            }
                            return Stop::Closed { clean: false };
                        }
                        Ok(_) => {
                            if !self.receive(writer, &mut buf).await {
                                return Stop::Closed { clean: true };
                            }
                        }
                        Err(e) => {
                            match e.kind() {
                                // The front server's to close; it did not.
                                std::io::ErrorKind::TimedOut if self.waiting_for() == Some(Waiting::Idle) => {
                                    tracing::info!(peer = %self.peer, "{e}")
                                }
                                std::io::ErrorKind::TimedOut => {
                                    bad_input!(self.peer, "head timeout", peer = %self.peer, "{e}")
                                }
                                _ => tracing::debug!(peer = %self.peer, "reading failed: {e}"),
                            }
                            return Stop::Closed { clean: false };
                        }
                    },
                }
            }
            self.connection.take_output(self.out.small());
            // A kept connection whose last response goes out as the worker
            // stops: the front server is told with END_REQUEST (see
            // `Tether::stopping`), and the FIN follows at once.
            let closing = self.stopping()
                && !self.out.is_empty()
                && !self.connection.should_close()
                && self.between_requests(&buf);
            if closing {
                self.out
                    .small()
                    .extend_from_slice(&rustgi_fastcgi::closing_notice());
            }
            if self.flush(writer).await.is_err() || self.connection.response_cut() {
                return Stop::Closed { clean: false };
            }
            if closing
                || self.connection.should_close()
                || (self.ctx.shutdown.is_cancelled() && self.between_requests(&buf))
            {
                return Stop::Closed { clean: true };
            }
        }
    }

    /// Feeds received bytes to the state machine; false after bad input
    /// (the connection is then to be closed, with what was answered sent).
    async fn receive<W: AsyncWrite + Unpin>(&mut self, writer: &mut W, buf: &mut BytesMut) -> bool {
        let received = self.connection.receive(buf);
        self.on_events();
        if let Err(e) = received {
            bad_input!(self.peer, "bad FastCGI input", peer = %self.peer, "bad FastCGI input: {e}; closing the connection");
            self.connection.take_output(self.out.small());
            let _ = self.flush(writer).await;
            return false;
        }
        true
    }

    /// The demand of the connection's only request while its body is
    /// left in the socket: the request waits for a Python thread, or (on a
    /// connection without FCGI_KEEP_CONN, which can carry nothing else)
    /// its application has enough of the body waiting for it (see
    /// `BodyWriter::wanted`). Nothing else on the connection needs the
    /// bytes behind it yet, so leaving them unread holds nothing up; with
    /// more than one request on the connection, bodies are read as they
    /// come.
    fn held_body(&mut self) -> Option<Demand> {
        let demand = self.sole_body.as_ref()?;
        if self.connection.active_requests() != 1 || !self.connection.receiving_body() {
            self.sole_body = None;
            return None;
        }
        (!demand.is_wanted()).then(|| demand.clone())
    }

    /// A kept connection with nothing in progress: it has served a request,
    /// and no byte of the next one has arrived (`head_deadline` is set again
    /// by the first one, and BEGIN_REQUEST makes the request active).
    /// The worker stops: kept connections close once idle.
    fn stopping(&self) -> bool {
        self.ctx.shutdown.is_cancelled() || self.tether.stopping()
    }

    fn between_requests(&self, buf: &BytesMut) -> bool {
        self.head_deadline.is_none() && self.connection.active_requests() == 0 && buf.is_empty()
    }

    /// What the connection waits for from its peer, if anything: a
    /// request head (the first, or one begun on a kept connection), or
    /// the next request (idle between requests).
    fn waiting_for(&self) -> Option<Waiting> {
        self.waiting.as_ref().map(|(what, _, _)| *what)
    }

    /// Keeps the connection's place among those waiting on their peer in
    /// step with its state (see `intake::waiting`).
    fn track_waiting(&mut self, buf: &BytesMut) {
        let now = if self.between_requests(buf) {
            Some(Waiting::Idle)
        } else if self.connection.started_requests() == 0 && self.head_deadline.is_some() {
            Some(Waiting::Head)
        } else {
            None
        };
        if self.waiting_for() == now {
            return;
        }
        self.waiting = now.map(|what| {
            let since = match (what, self.head_deadline) {
                (Waiting::Head, Some(deadline)) => deadline - self.ctx.shared.timeouts.header,
                _ => Instant::now(),
            };
            (what, since, self.tether.waiting(what, since))
        });
    }

    fn log_eviction(&self) {
        let limit = self.tether.limit();
        match &self.waiting {
            Some((Waiting::Head, since, _)) => bad_input!(
                self.peer,
                "closed for room",
                peer = %self.peer,
                "closing a connection that waited {:?} for a FastCGI request head: \
                 --max-connections {limit} reached, and it had waited longest",
                since.elapsed()
            ),
            Some((Waiting::Idle, since, _)) => tracing::info!(
                peer = %self.peer,
                "closing a kept connection idle for {:?}: --max-connections {limit} reached, \
                 and it was idle longest",
                since.elapsed()
            ),
            None => {}
        }
    }

    /// How long the next read may take: the header timeout while a record
    /// or the first request is incomplete, the body timeout while a body is
    /// arriving, the keep-alive timeout between requests on a kept
    /// connection, and no limit while only responses are pending (the
    /// front server owns those).
    fn read_limit(&self) -> Option<(Instant, &'static str)> {
        if let Some((Waiting::Idle, since, _)) = &self.waiting {
            Some((
                *since + self.ctx.shared.timeouts.keepalive,
                "--keepalive-timeout: the kept connection stayed idle",
            ))
        } else if self.connection.receiving_body() {
            let body = self.ctx.shared.timeouts.body;
            let wait = self
                .body_rate
                .time_left()
                .map_or(body, |left| left.min(body));
            Some((
                Instant::now() + wait,
                "--body-timeout: no request body bytes arrived",
            ))
        } else if self.connection.started_requests() == 0 {
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

    /// Counts a wait for request body bytes against `--body-min-rate`;
    /// false when the connection's bodies arrive too slowly: each is
    /// failed (a running application's read raises OSError; one not yet
    /// started is not run) and the connection is to be closed.
    fn count_body_wait(&mut self, waited: std::time::Duration, bytes: usize) -> bool {
        let Err(slow) = self.body_rate.record(waited, bytes as u64) else {
            return true;
        };
        let mut received = 0;
        for io in self.connection.take_request_data() {
            if let Some(body) = &io.body {
                received += body.received();
                body.fail(BodyError::TooSlow {
                    received: body.received(),
                    expected: body.expected(),
                    rate: slow.rate,
                    limit: slow.limit,
                    window_secs: slow.window_secs,
                });
            }
            abandon(io);
        }
        bad_input!(
            self.peer,
            "body too slow",
            peer = %self.peer,
            "request body too slow: {} bytes/s over the last {} s, under --body-min-rate {} bytes/s; cut after {received} bytes; closing the connection",
            slow.rate, slow.window_secs, slow.limit
        );
        false
    }

    async fn flush<W: AsyncWrite + Unpin>(&mut self, writer: &mut W) -> Result<(), ()> {
        async_io::write_all(writer, &mut self.out, self.ctx.shared.timeouts.write)
            .await
            .map_err(|e| e.log(self.who(), false))
    }

    fn on_events(&mut self) {
        while let Some(event) = self.connection.poll_event() {
            match event {
                Event::Request {
                    id,
                    role,
                    keep_conn,
                    content_length,
                    request,
                } => {
                    self.head_deadline = None;
                    self.body_rate = RateCheck::new(self.ctx.shared.body.min_rate);
                    self.start(id, role, keep_conn, content_length, request);
                    self.multiplexed |= self.connection.active_requests() > 1;
                }
                Event::Stdin { id, data } => {
                    if let Some(body) = self.request(id).and_then(|r| r.body.as_ref()) {
                        body.push(unpinned(data));
                        self.submit_when_ready(id);
                    }
                }
                Event::StdinEnd { id } => self.stdin_ended(id),
                Event::Data { id, data } => {
                    if let Some(stream) = self.request(id).and_then(|r| r.data.as_ref()) {
                        stream.push(unpinned(data));
                    }
                }
                Event::DataEnd { id } => {
                    if let Some(stream) = self.request(id).and_then(|r| r.data.take()) {
                        stream.finish();
                    }
                }
                Event::Abort { id } => {
                    if let Some(io) = self.connection.abort_complete(id, self.out.small()) {
                        io.flow.aborted_by_peer();
                        tracing::info!(peer = %self.peer, request = %io.named, "ABORT_REQUEST from the front server");
                        abandon(io);
                    }
                }
            }
        }
    }

    fn request(&mut self, id: u16) -> Option<&mut RequestIo> {
        self.connection.request_data(id)
    }

    fn start(
        &mut self,
        id: u16,
        role: Role,
        keep_conn: bool,
        content_length: Option<u64>,
        mut request: Request,
    ) {
        // Its id and record begin here, as its head is decoded: a request
        // dropped before a Python thread takes it still gets its line (the
        // flow carries the record from here), named by that id.
        let log_id = crate::next_request_id();
        request.params.push(Param::new("FCGI_ROLE", role.name()));
        let request_id = crate::record::request_id(&request, log_id);
        let request = Arc::new(request);
        let named = Naming::new(&request, log_id);
        for warning in &request.warnings {
            bad_input!(self.peer, "request", peer = %self.peer, request = %named, "{warning}");
        }
        let (body, body_reader) = body_pipe(content_length, self.ctx.shared.spool);
        let demand = body.demand();
        let demand = Some(if keep_conn {
            demand.whole_once_taken()
        } else {
            demand
        });
        let mut streams = Vec::new();
        let data = (role == Role::Filter).then(|| {
            // The DATA stream ends with its empty record whatever the
            // length says: a bad one is only a warning.
            let length = length_param(&request.params, b"FCGI_DATA_LENGTH").unwrap_or_else(|e| {
                bad_input!(self.peer, "request", peer = %self.peer, request = %named, "FCGI_DATA_LENGTH {e}; ignored");
                None
            });
            let (writer, reader) = body_pipe(length, self.ctx.shared.spool);
            streams.push(("fastcgi.data", reader));
            writer
        });
        let trail =
            crate::record::Trail::begin(&request, rustgi_observe::Front::Fastcgi, &request_id);
        let verdict = trail.as_ref().map(|t| t.verdict());
        let (sender, receiver) = response_channel(self.ctx.shared.response_buffer);
        self.generation += 1;
        let io = RequestIo {
            generation: self.generation,
            named,
            body: Some(body),
            data,
            flow: ResponseFlow::new(false).traced(trail),
            parked: None,
            closer: receiver.closer(),
            pending: Some(Job {
                id: log_id,
                request_id,
                verdict,
                front: rustgi_observe::Front::Fastcgi,
                request,
                body: body_reader,
                streams,
                response: ResponseTarget::Channel(sender),
                errors_to_peer: self.ctx.errors_to_peer,
            }),
            demand,
            admission: None,
        };
        if self.connection.attach(id, io).is_err() {
            return;
        }
        self.responses
            .push(next_batch(id, self.generation, receiver));
        self.submit_when_ready(id);
    }

    /// Hands a request to the Python threads once its body has arrived
    /// (see [`body_ready`]): a client sending it slowly holds no thread.
    /// Beyond what the `JobGate` admits, it is held, in order.
    fn submit_when_ready(&mut self, id: u16) {
        let buffer = self.ctx.shared.body.buffer as u64;
        let sole = self.connection.active_requests() == 1;
        let Some(io) = self.connection.request_data(id) else {
            return;
        };
        if io.pending.is_none() || !body_ready(io.body.as_ref(), buffer) {
            return;
        }
        let job = io.pending.take().expect("checked above");
        let demand = io.demand.take();
        let generation = io.generation;
        if sole {
            self.sole_body = demand.filter(|_| io.body.is_some());
        }
        // In order: a request held waits for those held before it.
        let admission = if self.held.is_empty() {
            self.ctx.shared.gate.try_admit()
        } else {
            None
        };
        match admission {
            Some(admission) => self.submit(id, job, admission),
            None => self.held.push_back((id, generation, job)),
        }
    }

    fn submit(&mut self, id: u16, job: Job, admission: Admission) {
        if let Some(io) = self.connection.request_data(id) {
            io.admission = Some(admission);
        }
        self.ctx.shared.pool.submit(job);
    }

    /// Submits the request held longest, unless it was aborted meanwhile.
    fn submit_held(&mut self, admission: Admission) {
        while let Some((id, generation, job)) = self.held.pop_front() {
            let current = self.connection.request_data(id).map(|io| io.generation);
            if current == Some(generation) {
                self.submit(id, job, admission);
                return;
            }
            tracing::info!(
                peer = %self.peer,
                request = %Named::new(&job.request, job.id),
                "not run: ABORT_REQUEST came while it waited for a Python thread"
            );
        }
    }

    fn stdin_ended(&mut self, id: u16) {
        let Some(io) = self.connection.request_data(id) else {
            return;
        };
        if let Some(body) = io.body.take() {
            body.finish();
        }
        io.flow.body_arrived_into(&mut self.out);
        if let Some(receiver) = io.parked.take() {
            self.responses.push(next_batch(id, io.generation, receiver));
        }
        self.submit_when_ready(id);
    }

    fn on_batch(&mut self, batch: Batch) {
        let Batch {
            id,
            generation,
            receiver,
            mut events,
            open,
        } = batch;
        let current = self.connection.request_data(id).map(|io| io.generation);
        if current != Some(generation) {
            // Output of a request that was aborted: it never reaches the
            // request that reuses the id. Dropping the receiver stops it.
            return;
        }
        let mut io = self.connection.detach(id).expect("looked up above");
        // Answering: the request no longer waits for a Python thread.
        io.admission = None;
        if !open {
            events.push(ResponseEvent::Abort);
        }
        io.flow
            .encode_into(&mut self.connection.encoder(id), events, &mut self.out);
        match io.flow.ending() {
            None => {
                if io.flow.hold_full() {
                    io.parked = Some(receiver);
                } else {
                    self.responses.push(next_batch(id, generation, receiver));
                }
                if let Err(io) = self.connection.attach(id, io) {
                    abandon(io);
                }
            }
            Some(ending) => {
                // The encoder ended the request (END_REQUEST, or a cut).
                if ending == Ending::Aborted {
                    tracing::info!(peer = %self.peer, request = %io.named, "response cut short after its head");
                }
                abandon(io);
            }
        }
    }

    /// The connection is going away: every request still running is told.
    fn abandon_all(&mut self) {
        for mut io in self.connection.take_request_data() {
            io.flow.discard();
            abandon(io);
        }
    }
}

/// How long a stopping worker keeps an idle kept connection open for the
/// front server's next request (served, then closed with the closing
/// notice) before it closes it. nginx reuses the connection it cached last
/// first: one it has not used for this long is rarely picked as it closes.
/// Bounds how much longer than its requests a replaced worker lives.
pub(crate) const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Resolves `STOP_GRACE` after the worker stops.
pub(crate) async fn after_stop(shutdown: &CancellationToken) {
    shutdown.cancelled().await;
    tokio::time::sleep(STOP_GRACE).await;
}

/// Ends a request's streams: pending body reads fail, the application's
/// next block fails and its iterable is closed.
fn abandon(io: RequestIo) {
    if io.pending.is_some() {
        tracing::info!(
            request = %io.named,
            "not run: ABORT_REQUEST came, or the connection closed, before its body had arrived"
        );
    }
    io.closer.close();
    drop(io.body);
    drop(io.data);
}

/// Whether a request's body has arrived far enough for its job to go to
/// a Python thread: whole, or `--buffer-body` bytes of it. A body of
/// unknown length (no CONTENT_LENGTH) is not waited for: a client may end
/// its STDIN only after the response, as cgi-fcgi does for a GET.
fn body_ready(body: Option<&BodyWriter>, buffer: u64) -> bool {
    let Some(body) = body else {
        return true;
    };
    body.expected()
        .is_none_or(|length| body.received() >= length.min(buffer))
}

/// A place in the gate, from the wait kept in `slot` (made on first use).
async fn admitted(slot: &mut Option<Admitting>, gate: &JobGate) -> Option<Admission> {
    let gate = gate.clone();
    slot.get_or_insert_with(|| Box::pin(async move { gate.admit().await }))
        .await
}

async fn evicted(place: Option<&WaitingPlace>) {
    match place {
        Some(place) => place.evicted().await,
        None => std::future::pending().await,
    }
}

async fn wanted(demand: Option<&Demand>) {
    if let Some(demand) = demand {
        demand.wanted().await;
    }
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

/// The size of a read buffer: a read, and room for the partial record
/// (nginx sends 32 KiB of STDIN per record) left from the last one.
const READ_BUFFER: usize = super::stream::READ_SIZE + 32 * 1024;
/// The least a read may ask for (after a long partial record).
const MIN_READ: usize = 16 * 1024;

async fn read_some<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    limit: Option<(Instant, &'static str)>,
) -> std::io::Result<usize> {
    // Every new buffer has the same size whatever part of a record it
    // starts with: the allocator then reuses the ones freed as the spooled
    // records are read, instead of growing the heap with odd sizes.
    buf.reserve(READ_BUFFER.saturating_sub(buf.len()).max(MIN_READ));
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
