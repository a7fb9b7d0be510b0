//! Stopping with connections in the listen queue: they are accepted and
//! served before the listener closes, because closing the last copy of a
//! listening socket resets every connection still queued (nginx answers
//! each with a 502).
//!
//! What Linux allows (docs/reliability.md, "Stopping with requests in the
//! listen queue"): a Unix listener shut down for reading
//! (`shutdown(SHUT_RD)`, which the master does for a socket that is not
//! systemd's) refuses new connects and keeps its queue, and accept says
//! EAGAIN once the queue is empty: that is the end. A TCP listener cannot
//! refuse new SYNs and keep its queue (`shutdown` on it drops the queue,
//! as close does), but the master drops them with a socket filter
//! (`closed_door.rs`) where the socket is its own; poll then says when
//! the queue is empty, and once it has stayed empty for [`QUIET`] (a
//! handshake begun before the filter may still complete) that is the end
//! too. One whose arrivals cannot
//! be stopped (a socket systemd keeps) is accepted on until its queue
//! stays empty for [`QUIET`]. Either way the accepting ends at the latest at half the
//! graceful timeout, so that what was accepted can still finish.

use std::os::fd::{AsFd, AsRawFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long a listener whose arrivals cannot be stopped (TCP, a socket
/// systemd keeps) must show an empty queue before it closes.
pub(crate) const QUIET: Duration = Duration::from_millis(100);

/// How the accepting after a stop ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Drained {
    /// New connects are refused and the queue is empty (for [`QUIET`],
    /// behind the TCP filter).
    Empty,
    /// The queue stayed empty for [`QUIET`].
    Quiet,
}

/// What the intake's accepts tell the drain; one per intake.
#[derive(Default)]
pub(crate) struct Drain {
    draining: AtomicBool,
    /// Connections accepted since the drain began.
    accepted: AtomicUsize,
    /// An accept found the queue empty since [`Drain::rearm`].
    found_empty: AtomicBool,
    /// Arrivals were seen stopped (shut down): from then on an empty
    /// queue is final.
    stopped: AtomicBool,
    quiet_since: Mutex<Option<Instant>>,
    /// Wakes the drain's loop as soon as an accept finds the queue empty.
    pub(crate) emptied: tokio::sync::Notify,
}

impl Drain {
    pub(crate) fn begin(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub(crate) fn accepted_count(&self) -> usize {
        self.accepted.load(Ordering::Acquire)
    }

    /// An accept succeeded.
    pub(crate) fn on_accept(&self) {
        if self.draining.load(Ordering::Acquire) {
            self.accepted.fetch_add(1, Ordering::AcqRel);
            *self.quiet_since.lock().unwrap() = None;
        }
    }

    /// An accept found nothing waiting.
    pub(crate) fn on_empty(&self) {
        if self.draining.load(Ordering::Acquire) && !self.found_empty.swap(true, Ordering::AcqRel) {
            self.emptied.notify_one();
        }
    }

    /// Looks at the listener: whether the accepting may end now.
    pub(crate) fn check(&self, listener: Option<&impl AsFd>) -> Option<Drained> {
        let Some(listener) = listener else {
            return Some(Drained::Empty);
        };
        let revents = poll_now(listener.as_fd());
        // A Unix listener shut down for reading reports RDHUP (and IN,
        // always); an accept's EAGAIN is then the only sign of an empty
        // queue. The first time it is seen, an EAGAIN from before the
        // shutdown does not count.
        if revents & libc::POLLRDHUP != 0 {
            if !self.stopped.swap(true, Ordering::AcqRel) {
                self.found_empty.store(false, Ordering::Release);
                return None;
            }
            return self
                .found_empty
                .load(Ordering::Acquire)
                .then_some(Drained::Empty);
        }
        // Behind the socket filter no new connection can join the queue,
        // but one whose handshake began before the filter still does, a
        // round trip later (closed_door.rs): the queue must stay empty for
        // QUIET, which covers the round trips of a LAN, before it is
        // taken as empty for good.
        let ended = if super::closed_door::drops_new_connections(listener.as_fd()) {
            Drained::Empty
        } else {
            Drained::Quiet
        };
        self.quiet_for_long(revents).then_some(ended)
    }

    /// Whether the queue has now been empty for [`QUIET`].
    fn quiet_for_long(&self, revents: libc::c_short) -> bool {
        let mut quiet_since = self.quiet_since.lock().unwrap();
        if revents & libc::POLLIN != 0 {
            *quiet_since = None;
            return false;
        }
        let now = Instant::now();
        let since = *quiet_since.get_or_insert(now);
        now.duration_since(since) >= QUIET
    }
}

/// The listener's poll(2) events now, without waiting (nix's `PollFlags`
/// has no POLLRDHUP, and drops the events it does not know).
fn poll_now(fd: std::os::fd::BorrowedFd<'_>) -> libc::c_short {
    let mut pollfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN | libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one pollfd, on the stack for the call; `fd` is borrowed, so
    // it stays open meanwhile; a zero timeout never waits.
    let ready = unsafe { libc::poll(&mut pollfd, 1, 0) };
    if ready == 1 { pollfd.revents } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::{UnixListener, UnixStream};

    fn listener(name: &str) -> (UnixListener, std::path::PathBuf) {
        let path = std::env::temp_dir().join(format!("rustgi-drain-{name}-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        listener.set_nonblocking(true).unwrap();
        (listener, path)
    }

    #[test]
    fn a_shut_down_unix_listener_is_done_once_an_accept_finds_it_empty() {
        let (listener, path) = listener("shut");
        let _queued: Vec<_> = (0..3)
            .map(|_| UnixStream::connect(&path).unwrap())
            .collect();
        let drain = Drain::default();
        drain.begin();
        nix::sys::socket::shutdown(listener.as_raw_fd(), nix::sys::socket::Shutdown::Read).unwrap();
        assert!(
            UnixStream::connect(&path).is_err(),
            "refused after the shutdown"
        );
        // An EAGAIN from before the shutdown was seen does not count.
        drain.on_empty();
        assert_eq!(drain.check(Some(&listener)), None);
        assert_eq!(
            drain.check(Some(&listener)),
            None,
            "the queue is not empty yet"
        );
        while listener.accept().is_ok() {
            drain.on_accept();
        }
        drain.on_empty();
        assert_eq!(drain.accepted_count(), 3, "the queue was kept");
        assert_eq!(drain.check(Some(&listener)), Some(Drained::Empty));
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_listener_that_still_takes_connections_is_done_when_quiet() {
        let (listener, path) = listener("quiet");
        let drain = Drain::default();
        drain.begin();
        let waiting = UnixStream::connect(&path).unwrap();
        assert_eq!(drain.check(Some(&listener)), None, "one waits");
        listener.accept().unwrap();
        drain.on_accept();
        assert_eq!(drain.check(Some(&listener)), None, "empty, not yet quiet");
        std::thread::sleep(QUIET);
        assert_eq!(drain.check(Some(&listener)), Some(Drained::Quiet));
        drop(waiting);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_filtered_tcp_listener_is_done_once_its_queue_stayed_empty() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let drain = Drain::default();
        drain.begin();
        super::super::closed_door::drop_new_connections(listener.as_fd()).unwrap();
        assert_eq!(
            drain.check(Some(&listener)),
            None,
            "a handshake under way may still complete"
        );
        std::thread::sleep(QUIET);
        assert_eq!(drain.check(Some(&listener)), Some(Drained::Empty));
    }
}
