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

mod kept;
mod listener;

pub use listener::Listener;

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
    /// The I/O loop, for connections that need waiting.
    to_loop: UnboundedSender<Handoff>,
}

impl Home {
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

    /// Counts the connection from now until the tether is dropped.
    pub(crate) fn count(&mut self) {
        if !self.counted {
            self.counted = true;
            self.home.open.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Hands a kept FastCGI connection, idle between requests, back to the
    /// Python threads to watch; it is closed instead when the worker is
    /// stopping.
    pub(crate) fn park(mut self, socket: Socket, peer: Cow<'static, str>) {
        self.count();
        self.kept = true;
        let home = self.home.clone();
        // Refused once the worker stops: dropped, the connection closes.
        // (A thread waiting in poll() on the set sees what joins it.)
        let _ = home.kept.park(Parked {
            socket,
            peer,
            tether: self,
        });
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
                to_loop,
            }),
            service,
            tracker,
            allowed,
            paused_until: Mutex::new(None),
            taking: AtomicUsize::new(0),
            turns: AtomicUsize::new(0),
        })
    }

    /// Closes the listening socket: new connections are refused from here.
    /// Idle kept connections close too, but one with bytes already waiting
    /// (the front server sent a request as we stopped) goes to the I/O
    /// loop, which serves it and then closes it. Call after the pool has
    /// stopped using the intake (a thread in `wait` is woken first: it
    /// holds the listener while it polls).
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
            if let Ok(1..) = socket.try_read_into(&mut buf) {
                let conn = Parked::read(socket, peer, tether, buf);
                self.hand_off(conn, None, tokio::time::Instant::now());
            }
        }
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

    fn may_accept(&self) -> bool {
        self.home.open.load(Ordering::Acquire) < self.home.limit && self.paused().is_none()
    }

    /// Accepts one connection; `Ok(None)` when none is waiting.
    fn accept(&self) -> Option<(Socket, Cow<'static, str>)> {
        let listener = self.listener.read().unwrap();
        let result = listener.as_ref()?.try_accept();
        drop(listener);
        match result {
            Ok(accepted) => Some(accepted),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                None
            }
            // The peer gave up while in the backlog: nothing to serve.
            Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => None,
            Err(e) => {
                tracing::warn!("accept failed: {e}; pausing for {ACCEPT_PAUSE:?}");
                *self.paused_until.lock().unwrap() = Some(Instant::now() + ACCEPT_PAUSE);
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
