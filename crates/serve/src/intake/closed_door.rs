//! Stopping a TCP listener's arrivals and keeping its queue.
//!
//! Closing a TCP listener resets every connection in its accept queue,
//! and `shutdown` on it does the same. The front server has usually sent
//! its request on such a connection already (the kernel completes the
//! handshake before any accept), and nginx does not retry a POST it has
//! sent: each becomes a 502. Under a steady load a queue is never empty
//! for long, so waiting for a quiet moment still loses some (a rolling
//! restart of two hosts behind nginx lost 7 POSTs of 1,390 that way).
//!
//! A classic BPF socket filter that drops every packet, attached to the
//! listener, stops arrivals: new SYNs are dropped, so no connection joins
//! the queue, while those already in it stay and are served. A peer whose
//! SYN was dropped sends it again (after 1 s on Linux) and by then finds
//! the listener closed (refused: the front server tries another host,
//! a POST too, since nothing was sent) or a new one listening. The
//! filter belongs to the socket, so every worker sharing it sees it, and
//! a poll(2) on the listener then says truly whether the queue is empty.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `ret #0`: accept zero bytes of the packet, i.e. drop it.
const DROP_ALL: libc::sock_filter = libc::sock_filter {
    code: (libc::BPF_RET | libc::BPF_K) as u16,
    jt: 0,
    jf: 0,
    k: 0,
};

/// Drops every new connection to the TCP listener `fd` from now on; the
/// ones already in its queue stay.
pub fn drop_new_connections(fd: BorrowedFd<'_>) -> io::Result<()> {
    attach(fd, DROP_ALL)
}

/// Attaches the one-instruction filter `only` to the socket `fd`.
fn attach(fd: BorrowedFd<'_>, only: libc::sock_filter) -> io::Result<()> {
    let mut program = [only];
    let fprog = libc::sock_fprog {
        len: 1,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: `fprog` points at `program`, one instruction long as `len`
    // says; both live on the stack for the call, and the kernel copies
    // the program. `fd` is borrowed, so it stays open meanwhile.
    let done = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&raw const fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if done == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether [`drop_new_connections`] was done to the socket `fd` (by this
/// process or another that shares the socket: the master).
pub(crate) fn drops_new_connections(fd: BorrowedFd<'_>) -> bool {
    let mut program = [libc::sock_filter {
        code: 0,
        jt: 0,
        jf: 0,
        k: 0,
    }];
    // In instructions, not bytes (SO_GET_FILTER's unit); a longer
    // program does not fit and is not ours.
    let mut len: libc::socklen_t = 1;
    // SAFETY: the kernel writes at most `len` (1) instructions into
    // `program`, which has room for one, and the count into `len`; both
    // outlive the call. `fd` is borrowed, so it stays open meanwhile.
    let done = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_GET_FILTER,
            program.as_mut_ptr().cast(),
            &raw mut len,
        )
    };
    let [only] = program;
    done == 0
        && len == 1
        && (only.code, only.jt, only.jf, only.k) == (DROP_ALL.code, 0, 0, DROP_ALL.k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::ErrorKind;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsFd;
    use std::time::Duration;

    #[test]
    fn new_connections_are_dropped_and_queued_ones_stay() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let queued: Vec<_> = (0..3)
            .map(|_| TcpStream::connect(address).unwrap())
            .collect();
        assert!(!drops_new_connections(listener.as_fd()));

        drop_new_connections(listener.as_fd()).unwrap();
        assert!(drops_new_connections(listener.as_fd()));
        // The SYN gets no answer: the connect times out.
        let late = TcpStream::connect_timeout(&address, Duration::from_millis(300));
        assert_eq!(late.map_err(|e| e.kind()).unwrap_err(), ErrorKind::TimedOut);

        listener.set_nonblocking(true).unwrap();
        let mut accepted = 0;
        while listener.accept().is_ok() {
            accepted += 1;
        }
        assert_eq!(
            accepted,
            queued.len(),
            "the queue was kept, and nothing joined it"
        );
        drop(listener);
        // Closed: now refused.
        let after = TcpStream::connect_timeout(&address, Duration::from_secs(5));
        assert_eq!(
            after.map_err(|e| e.kind()).unwrap_err(),
            ErrorKind::ConnectionRefused
        );
    }

    #[test]
    fn another_filter_is_not_taken_for_ours() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        // `ret #65535`: keeps every packet whole.
        let keep_all = libc::sock_filter {
            k: 0xffff,
            ..DROP_ALL
        };
        attach(listener.as_fd(), keep_all).unwrap();
        assert!(!drops_new_connections(listener.as_fd()));
    }
}
