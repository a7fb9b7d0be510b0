//! The listener, seen from the Python threads: an idle thread accepts the
//! next connection itself, reads what it brought, and serves it at once if
//! it is a whole request (the Python lane, `python_lane`). Under load a thread goes from one
//! request to the next with four syscalls (accept, read, write, close) and
//! no hand-off; a connection that needs waiting (a partial head, a body on
//! its way, a FastCGI connection kept for more requests) goes to the I/O
//! loop with the bytes already read.
//!
//! When every Python thread is busy nobody accepts: connections wait in the
//! kernel's listen backlog, not in our memory.

use crate::AllowedPeer;
use crate::python_lane::{Accepted, Lane, Socket};
use bytes::BytesMut;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::eventfd::{EfdFlags, EventFd};
use rustgi_core::Job;
use std::borrow::Cow;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

/// How long to stop accepting after EMFILE and friends.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// A listening socket the intake accepts on.
pub enum Listener {
    Unix(std::os::unix::net::UnixListener),
    Tcp(std::net::TcpListener),
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Listener::Unix(l) => l.as_fd(),
            Listener::Tcp(l) => l.as_fd(),
        }
    }
}

impl Listener {
    /// accept4 without waiting, the new socket already non-blocking.
    /// (One syscall: std's accept takes a second one for O_NONBLOCK, and
    /// no safe wrapper returns an owned descriptor from accept4.)
    fn try_accept(&self) -> io::Result<(Socket, Cow<'static, str>)> {
        // SAFETY: accept4 with null address pointers writes no address; it
        // reads only the listener's descriptor, which `self` keeps open.
        let fd = unsafe {
            libc::accept4(
                self.as_fd().as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: accept4 just returned this descriptor: it is open and
        // nothing else owns it.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(match self {
            Listener::Unix(_) => (Socket::Unix(UnixStream::from(owned)), Cow::Borrowed("unix")),
            Listener::Tcp(_) => {
                let stream = std::net::TcpStream::from(owned);
                let _ = stream.set_nodelay(true);
                let peer = stream
                    .peer_addr()
                    .map_or(Cow::Borrowed("tcp"), |a| Cow::Owned(a.to_string()));
                (Socket::Tcp(stream), peer)
            }
        })
    }
}

/// A connection passed to the I/O loop.
pub(crate) struct Handoff {
    pub(crate) conn: Accepted,
    pub(crate) head: Option<crate::python_lane::Decoded>,
    pub(crate) accepted: tokio::time::Instant,
    /// Counts the connection against the limit until dropped.
    pub(crate) counted: OnLoop,
}

/// One connection on the I/O loop; dropping it may let the intake accept
/// again.
pub(crate) struct OnLoop(Arc<Shared>);

impl Drop for OnLoop {
    fn drop(&mut self) {
        if self.0.on_loop.fetch_sub(1, Ordering::AcqRel) == self.0.limit {
            self.0.wake.signal();
        }
    }
}

struct Shared {
    wake: WakeFd,
    on_loop: AtomicUsize,
    limit: usize,
}

/// Accepts for the Python threads; see the module comment.
pub(crate) struct ListenerIntake {
    listener: RwLock<Option<Listener>>,
    shared: Arc<Shared>,
    service: Arc<crate::Service>,
    to_loop: UnboundedSender<Handoff>,
    tracker: tokio_util::task::TaskTracker,
    allowed: Vec<AllowedPeer>,
    paused_until: Mutex<Option<Instant>>,
    /// Threads inside `try_take`: one may have accepted a connection it
    /// has yet to pass on (see [`ListenerIntake::settled`]).
    taking: AtomicUsize,
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
            shared: Arc::new(Shared {
                wake: WakeFd::new()?,
                on_loop: AtomicUsize::new(0),
                limit,
            }),
            service,
            to_loop,
            tracker,
            allowed,
            paused_until: Mutex::new(None),
            taking: AtomicUsize::new(0),
        })
    }

    /// Closes the listening socket: new connections are refused from here.
    /// Call after the pool has stopped using the intake (a thread in
    /// `wait` is woken first: it holds the listener while it polls).
    pub(crate) fn close(&self) {
        self.shared.wake.signal();
        self.listener.write().unwrap().take();
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
        self.shared.on_loop.load(Ordering::Acquire) < self.shared.limit && self.paused().is_none()
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

    /// Accepts until a whole request turns up (served by the calling
    /// thread) or no connection is waiting.
    fn take(&self) -> Option<Job> {
        while self.may_accept() {
            let (socket, peer) = self.accept()?;
            if self.refused(&socket) {
                continue;
            }
            let accepted = tokio::time::Instant::now();
            let mut buf = BytesMut::with_capacity(16 * 1024);
            match socket.try_read_into(&mut buf) {
                Ok(0) => continue,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    tracing::debug!(%peer, "reading a new connection failed: {e}");
                    continue;
                }
            }
            let conn = Accepted {
                maybe_more: buf.len() == buf.capacity(),
                socket,
                buf,
                peer,
            };
            match self.service.lane(conn, &self.tracker) {
                Lane::Python(job) => {
                    self.service.log_forced_python_lane(&job);
                    return Some(job);
                }
                Lane::Io { conn, head } => {
                    self.shared.on_loop.fetch_add(1, Ordering::AcqRel);
                    let handoff = Handoff {
                        conn,
                        head,
                        accepted,
                        counted: OnLoop(self.shared.clone()),
                    };
                    // Fails only once the loop has stopped: then the
                    // connection is dropped, as the listener will be.
                    let _ = self.to_loop.send(handoff);
                }
            }
        }
        None
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
        tracing::warn!(
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
        let wake = PollFd::new(self.shared.wake.0.as_fd(), PollFlags::POLLIN);
        // When not accepting, the wake-up is polled twice: the same
        // array either way, and no allocation on this path.
        let accepting = listener.as_ref().filter(|_| self.may_accept());
        let watched = accepting.map_or(self.shared.wake.0.as_fd(), |l| l.as_fd());
        let mut fds = [wake, PollFd::new(watched, PollFlags::POLLIN)];
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
            self.shared.wake.clear();
        }
    }

    fn wake(&self) {
        self.shared.wake.signal();
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
