//! The listener, seen from the Python threads: an idle thread accepts the
//! next connection itself, reads what it brought, and serves it at once if
//! it is a whole request (the Python lane, `python_lane`). Under load a
//! thread goes from one request to the next with four syscalls (accept,
//! read, write, close) and no hand-off; a connection that needs waiting (a
//! partial head, a body on its way, requests interleaved on one FastCGI
//! connection) goes to the I/O loop with the bytes already read.
//!
//! FastCGI connections the front server keeps (FCGI_KEEP_CONN) come back
//! here between requests (`kept`): the threads watch them with the
//! listener, and the next request on one is served as a new connection's
//! is (epoll_wait, read, write, re-arm), by whichever thread sees it.
//!
//! When every Python thread is busy nobody accepts: connections wait in the
//! kernel's listen backlog, not in our memory.
//!
//! Connections that outlive the request they came with (on the I/O loop,
//! or kept) are held up to `--max-connections`. At that limit a new
//! connection is still accepted when one held can go: the one that has
//! waited longest for its request head, or else the kept one idle
//! longest (`Home::make_room`). Busy connections are never closed for
//! room; with only those, new connections wait in the backlog.

mod closed_door;
mod drain;
mod kept;
mod listener;
mod waiting;

pub use closed_door::drop_new_connections;
pub(crate) use drain::{Drained, QUIET};
pub use listener::Listener;
pub(crate) use waiting::Waiting;

use crate::AllowedPeer;
use crate::bad_input::bad_input;
use crate::python_lane::{Accepted, Lane, Socket};
use bytes::BytesMut;
use kept::KeptSet;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::eventfd::{EfdFlags, EventFd};
use rustgi_core::Job;
use std::borrow::Cow;
use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

/// How long to stop accepting after EMFILE and friends.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// How long to stop accepting after EMFILE when a connection was closed
/// to free a descriptor.
const ROOM_PAUSE: Duration = Duration::from_millis(10);

/// Kept connections are looked at before the listener (under keep-alive
/// load a thread finds the next request there without a failed accept),
/// except on every `ACCEPT_TURN`th take: busy kept connections must not
/// leave new ones waiting in the backlog.
const ACCEPT_TURN: usize = 8;

/// A connection passed to the I/O loop.
pub(crate) struct Handoff {
    pub(crate) conn: Accepted,
    pub(crate) head: Option<crate::python_lane::Decoded>,
    pub(crate) accepted: tokio::time::Instant,
}

/// What the first read of a connection takes: a whole request from nginx,
/// head and small body, in one read.
const READ_SIZE: usize = 16 * 1024;

/// A connection with something to read, or an idle kept one.
struct Parked {
    socket: Socket,
    peer: Cow<'static, str>,
    tether: Tether,
}

impl Parked {
    /// The connection with what a read of it brought into `buf`.
    fn read(socket: Socket, peer: Cow<'static, str>, tether: Tether, buf: BytesMut) -> Accepted {
        Accepted {
            maybe_more: buf.len() == buf.capacity(),
            socket,
            buf,
            peer,
            tether,
        }
    }
}

impl AsFd for Parked {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

/// What connections share with the intake that accepted them.
struct Home {
    wake: WakeFd,
    /// Connections counted against `limit` (see [`Tether`]).
    open: AtomicUsize,
    limit: usize,
    kept: KeptSet<Parked>,
    /// The I/O loop's connections that wait on their peer.
    waiters: waiting::Waiters,
    /// The I/O loop, for connections that need waiting.
    to_loop: UnboundedSender<Handoff>,
}

impl Home {
    fn at_limit(&self) -> bool {
        self.open.load(Ordering::Acquire) >= self.limit
    }

    /// Whether a connection could be closed to admit a new one.
    fn room_to_make(&self) -> bool {
        self.waiters.len() > 0 || self.kept.parked() > 0
    }

    /// At the limit, a thread waiting in `wait` without the listener
    /// looks again: a connection it may close for room has appeared.
    fn evictable_now(&self) {
        if self.at_limit() {
            self.wake.signal();
        }
    }

    /// Closes one held connection to admit a new one: the one that has
    /// waited longest for its request head, else the kept one idle
    /// longest, parked here or in the I/O lane.
    fn make_room(&self) {
        let limit = self.limit;
        if let Some(since) = self.waiters.evict_oldest(Waiting::Head) {
            tracing::debug!(
                "--max-connections {limit} reached: closing the connection waiting longest for its request head (for {:?})",
                since.elapsed()
            );
            return;
        }
        let in_io_lane = self.waiters.oldest(Waiting::Idle);
        if let Some((parked, since)) = self.kept.take_oldest(in_io_lane) {
            tracing::info!(
                peer = %parked.peer,
                "--max-connections {limit} reached: closing the kept connection idle longest (for {:?})",
                since.elapsed()
            );
            return;
        }
        self.waiters.evict_oldest(Waiting::Idle);
    }

    fn hand_off(
        &self,
        mut conn: Accepted,
        head: Option<crate::python_lane::Decoded>,
        accepted: tokio::time::Instant,
    ) {
        conn.tether.count();
        // Fails only once the loop has stopped: then the connection is
        // dropped, as the listener will be.
        let _ = self.to_loop.send(Handoff {
            conn,
            head,
            accepted,
        });
    }
}

/// A connection's tie to the intake that accepted it. Once the connection
/// outlives the request that brought it (it went to the I/O loop, or the
/// front server keeps it), it counts against the connection limit until
/// it closes: the intake then stops accepting, so that connections wait in
/// the kernel's backlog rather than in our memory. An idle kept FastCGI
/// connection goes back to the intake through it ([`Tether::park`]).
pub(crate) struct Tether {
    home: Arc<Home>,
    counted: bool,
    /// Parked before: the connection is a kept one, between requests.
    kept: bool,
}

impl Tether {
    fn new(home: &Arc<Home>) -> Self {
        Tether {
            home: home.clone(),
            counted: false,
            kept: false,
        }
    }

    /// Whether the connection is a kept one that has served a request: what
    /// it brings next may be no request at all (an ABORT_REQUEST for one
    /// that ended), and its idle time is the front server's.
    pub(crate) fn kept(&self) -> bool {
        self.kept
    }

    /// Registers the connection, served in the I/O lane, as waiting on its
    /// peer for `what` since `since`: at the connection limit it may be
    /// closed to admit a new one (until the place is dropped).
    pub(crate) fn waiting(&self, what: Waiting, since: tokio::time::Instant) -> WaitingPlace {
        let place = self.home.waiters.join(what, since.into_std());
        self.home.evictable_now();
        WaitingPlace {
            home: self.home.clone(),
            place,
        }
    }

    /// `--max-connections`, for the log.
    pub(crate) fn limit(&self) -> usize {
        self.home.limit
    }

    /// Counts the connection from now until the tether is dropped.
    pub(crate) fn count(&mut self) {
        if !self.counted {
            self.counted = true;
            self.home.open.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Whether the worker has stopped keeping connections: a kept one is
    /// to be closed after the response now ending, and the front server
    /// told so with it (`rustgi_fastcgi::closing_notice`), rather than
    /// closed once the front server may have cached it for its next
    /// request.
    pub(crate) fn stopping(&self) -> bool {
        self.home.kept.is_closed()
    }

    /// Hands a kept FastCGI connection, idle between requests, back to the
    /// Python threads to watch; it is closed instead when the worker is
    /// stopping.
    pub(crate) fn park(mut self, socket: Socket, peer: Cow<'static, str>) {
        self.count();
        self.kept = true;
        let home = self.home.clone();
        // (A thread waiting in poll() on the set sees what joins it.)
        let refused = home.kept.park(Parked {
            socket,
            peer,
            tether: self,
        });
        // Refused once the worker stops: the front server may have cached
        // it already, so it goes to the I/O loop's grace as the parked ones
        // did (`ListenerIntake::close`). Refused by epoll: dropped, closed.
        if let Err(Parked {
            socket,
            peer,
            tether,
        }) = refused
            && home.kept.is_closed()
        {
            let conn = Parked::read(socket, peer, tether, BytesMut::new());
            home.hand_off(conn, None, tokio::time::Instant::now());
        }
        home.evictable_now();
    }
}

/// A connection's place among those that wait on their peer (see
/// [`Tether::waiting`]); it leaves when this is dropped.
pub(crate) struct WaitingPlace {
    home: Arc<Home>,
    place: waiting::Place,
}

impl WaitingPlace {
    /// Resolves when the intake closes this connection to admit another
    /// (`--max-connections`).
    pub(crate) async fn evicted(&self) {
        self.place.evicted().await
    }
}

impl Drop for WaitingPlace {
    fn drop(&mut self) {
        self.home.waiters.leave(&self.place);
    }
}

impl Tether {
    /// Passes a kept connection whose front server sent more while its
    /// request ran here (bytes in `buf`) to the I/O loop, which serves what
    /// came (and parks it again once idle).
    pub(crate) fn hand_off(self, socket: Socket, buf: BytesMut, peer: Cow<'static, str>) {
        let home = self.home.clone();
        let conn = Accepted {
            maybe_more: true,
            socket,
            buf,
            peer,
            tether: self,
        };
        home.hand_off(conn, None, tokio::time::Instant::now());
    }
}

impl Drop for Tether {
    fn drop(&mut self) {
        if self.counted && self.home.open.fetch_sub(1, Ordering::AcqRel) == self.home.limit {
            self.home.wake.signal();
        }
    }
}

/// Accepts for the Python threads; see the module comment.
pub(crate) struct ListenerIntake {
    listener: RwLock<Option<Listener>>,
    home: Arc<Home>,
    service: Arc<crate::Service>,
    tracker: tokio_util::task::TaskTracker,
    allowed: Vec<AllowedPeer>,
    paused_until: Mutex<Option<Instant>>,
    /// Threads inside `try_take`: one may have accepted a connection it
    /// has yet to pass on (see [`ListenerIntake::settled`]).
    taking: AtomicUsize,
    /// Counts takes, so that every [`ACCEPT_TURN`]th one accepts before it
    /// looks at kept connections.
    turns: AtomicUsize,
    /// What the accepts after a stop found (`drain.rs`).
    drain: drain::Drain,
}

impl ListenerIntake {
    pub(crate) fn new(
        listener: Listener,
        service: Arc<crate::Service>,
        to_loop: UnboundedSender<Handoff>,
        tracker: tokio_util::task::TaskTracker,
        allowed: Vec<AllowedPeer>,
        limit: usize,
    ) -> io::Result<Self> {
        // Python threads accept with the GIL held: accept must never wait.
        match &listener {
            Listener::Unix(l) => l.set_nonblocking(true)?,
            Listener::Tcp(l) => l.set_nonblocking(true)?,
        }
        Ok(ListenerIntake {
            listener: RwLock::new(Some(listener)),
            home: Arc::new(Home {
                wake: WakeFd::new()?,
                open: AtomicUsize::new(0),
                limit,
                kept: KeptSet::new()?,
                waiters: waiting::Waiters::default(),
                to_loop,
            }),
            service,
            tracker,
            allowed,
            paused_until: Mutex::new(None),
            taking: AtomicUsize::new(0),
            turns: AtomicUsize::new(0),
            drain: drain::Drain::default(),
        })
    }

    /// Closes the listening socket: new connections are refused from here.
    /// Idle kept connections go to the I/O loop, with what the front
    /// server sent as we stopped: it serves the request that comes on one
    /// within a grace (`io_lane::fastcgi::STOP_GRACE`), ends it with the
    /// closing notice, and closes the others after the grace. Closing them
    /// here, all at once, failed requests: the front server has them
    /// cached, and sends its next one on a connection whose FIN it has not
    /// seen yet. Call after the pool has stopped using the intake (a
    /// thread in `wait` is woken first: it holds the listener while it
    /// polls).
    pub(crate) fn close(&self) {
        self.home.wake.signal();
        self.listener.write().unwrap().take();
        for parked in self.home.kept.close() {
            let Parked {
                socket,
                peer,
                tether,
            } = parked;
            let mut buf = BytesMut::with_capacity(READ_SIZE);
            match socket.try_read_into(&mut buf) {
                // The front server closed it.
                Ok(0) => continue,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => continue,
            }
            let conn = Parked::read(socket, peer, tether, buf);
            self.hand_off(conn, None, tokio::time::Instant::now());
        }
    }

    /// The server stops: the threads go on accepting what waits in the
    /// listen queue, counted, until [`ListenerIntake::drained`] says the
    /// queue is done with (see `drain.rs`).
    pub(crate) fn begin_drain(&self) {
        self.drain.begin();
    }

    /// Whether the accepting after a stop may end now, and why.
    pub(crate) fn drained(&self) -> Option<Drained> {
        self.drain.check(self.listener.read().unwrap().as_ref())
    }

    /// Resolves when an accept after a stop finds the queue empty.
    pub(crate) async fn found_empty(&self) {
        self.drain.emptied.notified().await;
    }

    /// Connections accepted since [`ListenerIntake::begin_drain`].
    pub(crate) fn accepted_while_draining(&self) -> usize {
        self.drain.accepted_count()
    }

    /// After `close`: true once no thread can still pass a connection on,
    /// so that the loop can take the last ones before it stops listening
    /// for them (a stopping worker serves every connection it accepted).
    pub(crate) fn settled(&self) -> bool {
        self.taking.load(Ordering::Acquire) == 0
    }

    fn paused(&self) -> Option<Duration> {
        let mut paused = self.paused_until.lock().unwrap();
        let until = (*paused)?;
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            *paused = None;
            return None;
        }
        Some(left)
    }

    /// Below the connection limit, or at it with a connection that may be
    /// closed for room (`Home::make_room`, once one is accepted).
    fn may_accept(&self) -> bool {
        (!self.home.at_limit() || self.home.room_to_make()) && self.paused().is_none()
    }

    /// Closes the kept connections parked here that have been idle
    /// longer than `keepalive` (the I/O loop calls it every second).
    pub(crate) fn close_idle(&self, keepalive: Duration) {
        let Some(before) = Instant::now().checked_sub(keepalive) else {
            return;
        };
        for (parked, since) in self.home.kept.take_idle_since(before) {
            tracing::info!(
                peer = %parked.peer,
                "closing a kept connection idle for {:?} (--keepalive-timeout {keepalive:?})",
                since.elapsed()
            );
        }
    }

    /// Accepts one connection; `Ok(None)` when none is waiting.
    fn accept(&self) -> Option<(Socket, Cow<'static, str>)> {
        let listener = self.listener.read().unwrap();
        let result = listener.as_ref()?.try_accept();
        drop(listener);
        match result {
            Ok(accepted) => {
                self.drain.on_accept();
                Some(accepted)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.drain.on_empty();
                None
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => None,
            // The peer gave up while in the backlog: nothing to serve.
            Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => None,
            Err(e) => {
                let out_of_files = matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
                let pause = if out_of_files && self.home.room_to_make() {
                    // RLIMIT_NOFILE below --max-connections (warned at
                    // start): the descriptors run out first, and room is
                    // made as at the limit (the closed connection's
                    // descriptor is free once its task has run).
                    self.home.make_room();
                    tracing::warn!(
                        "accept failed: {e}; closed the connection that waited longest on its peer, \
                         pausing for {ROOM_PAUSE:?}"
                    );
                    ROOM_PAUSE
                } else {
                    tracing::warn!("accept failed: {e}; pausing for {ACCEPT_PAUSE:?}");
                    ACCEPT_PAUSE
                };
                *self.paused_until.lock().unwrap() = Some(Instant::now() + pause);
                None
            }
        }
    }

    /// The next connection with something to read: a new one, or a kept
    /// one with its next request; `None` when there is none now.
    fn next_connection(&self) -> Option<Parked> {
        let accept_first = self
            .turns
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(ACCEPT_TURN);
        if !accept_first && let Some(kept) = self.home.kept.ready() {
            return Some(kept);
        }
        if self.may_accept()
            && let Some((socket, peer)) = self.accept()
        {
            if self.home.at_limit() {
                self.home.make_room();
            }
            return Some(Parked {
                socket,
                peer,
                tether: Tether::new(&self.home),
            });
        }
        if accept_first {
            self.home.kept.ready()
        } else {
            None
        }
    }

    /// Takes connections until a whole request turns up (served by the
    /// calling thread) or none has anything to read.
    fn take(&self) -> Option<Job> {
        loop {
            let Parked {
                socket,
                peer,
                tether,
            } = self.next_connection()?;
            // A kept connection is counted already.
            if !tether.counted && self.refused(&socket) {
                continue;
            }
            let accepted = tokio::time::Instant::now();
            let mut buf = BytesMut::with_capacity(READ_SIZE);
            match socket.try_read_into(&mut buf) {
                // The front server closed a kept connection, or gave up on
                // a new one.
                Ok(0) => continue,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && tether.counted => {
                    // A kept connection woken by nothing to read: watch it
                    // again.
                    tether.park(socket, peer);
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    tracing::debug!(%peer, "reading a connection failed: {e}");
                    continue;
                }
            }
            let conn = Parked::read(socket, peer, tether, buf);
            match self.service.lane(conn, &self.tracker) {
                Lane::Python(job) => {
                    self.service.log_forced_python_lane(&job);
                    return Some(job);
                }
                Lane::Io { conn, head } => self.hand_off(conn, head, accepted),
            }
        }
    }

    /// Passes a connection to the I/O loop, counted until it closes.
    fn hand_off(
        &self,
        conn: Accepted,
        head: Option<crate::python_lane::Decoded>,
        accepted: tokio::time::Instant,
    ) {
        self.home.hand_off(conn, head, accepted);
    }

    fn refused(&self, peer: &Socket) -> bool {
        let Socket::Tcp(stream) = peer else {
            return false;
        };
        if self.allowed.is_empty() {
            return false;
        }
        let Ok(addr) = stream.peer_addr() else {
            return true;
        };
        if self.allowed.iter().any(|a| a.contains(addr.ip())) {
            return false;
        }
        bad_input!(
            &addr.ip().to_string(),
            "refused peer",
            "refused a connection from {}: not in --allow-from / FCGI_WEB_SERVER_ADDRS",
            addr.ip()
        );
        true
    }
}

impl rustgi_core::Intake for ListenerIntake {
    fn try_take(&self) -> Option<Job> {
        self.taking.fetch_add(1, Ordering::AcqRel);
        let job = self.take();
        self.taking.fetch_sub(1, Ordering::AcqRel);
        job
    }

    fn wait(&self) {
        let listener = self.listener.read().unwrap();
        let wake = PollFd::new(self.home.wake.0.as_fd(), PollFlags::POLLIN);
        // When not accepting, the wake-up is polled twice: the same
        // array either way, and no allocation on this path.
        let accepting = listener.as_ref().filter(|_| self.may_accept());
        let watched = accepting.map_or(self.home.wake.0.as_fd(), |l| l.as_fd());
        let kept = PollFd::new(self.home.kept.as_fd(), PollFlags::POLLIN);
        let mut fds = [wake, PollFd::new(watched, PollFlags::POLLIN), kept];
        let timeout = self.paused().map_or(PollTimeout::NONE, |d| {
            PollTimeout::try_from(d.as_millis() + 1).unwrap_or(PollTimeout::MAX)
        });
        // The listener stays open while we poll it (close() waits for the
        // read lock). An interrupted poll is a spurious wake-up, which the
        // pool takes in its stride.
        let _ = poll(&mut fds, timeout);
        let woken = fds[0].any().unwrap_or(false);
        drop(listener);
        if woken {
            self.home.wake.clear();
        }
    }

    fn wake(&self) {
        self.home.wake.signal();
    }
}

/// An eventfd: how a thread waiting in poll() is woken.
struct WakeFd(EventFd);

impl WakeFd {
    fn new() -> io::Result<Self> {
        let flags = EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC;
        Ok(WakeFd(EventFd::from_value_and_flags(0, flags)?))
    }

    fn signal(&self) {
        // Fails only when the counter is full: it is signalled already.
        let _ = self.0.write(1);
    }

    fn clear(&self) {
        let _ = self.0.read();
    }
}
