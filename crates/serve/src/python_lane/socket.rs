//! A connection as accepted: a plain std socket, not yet known to tokio.

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

/// Whether the peer of a connected socket has closed it both ways
/// (POLLHUP), or the connection failed (POLLERR: a reset): then nobody
/// reads an answer. One that has only shut down its sending side (a plain
/// EOF, POLLRDHUP) may still read one, and does not count: an SCGI or
/// uwsgi client may half-close once it has sent its request. Over a Unix
/// socket a peer's close() is seen at once. Over TCP it sends a FIN, which
/// looks like a half-close until a write is answered with a reset: there
/// a client that closed after sending its request cannot be told from
/// one waiting for its answer.
pub(crate) fn hung_up(fd: BorrowedFd<'_>) -> bool {
    let mut fds = [PollFd::new(fd, PollFlags::empty())];
    match poll(&mut fds, PollTimeout::ZERO) {
        Ok(1..) => fds[0]
            .revents()
            .is_some_and(|r| r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR)),
        _ => false,
    }
}

pub(crate) enum Socket {
    Unix(std::os::unix::net::UnixStream),
    Tcp(std::net::TcpStream),
}

impl Socket {
    /// Reads what is there without waiting, into `buf`'s spare capacity.
    pub(crate) fn try_read_into(&self, buf: &mut bytes::BytesMut) -> io::Result<usize> {
        let spare = buf.spare_capacity_mut();
        // SAFETY: recv writes at most spare.len() bytes into the spare
        // capacity, which is valid for writes of that length, and returns
        // how many it wrote.
        let n = unsafe {
            libc::recv(
                self.as_fd().as_raw_fd(),
                spare.as_mut_ptr().cast(),
                spare.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        // SAFETY: the kernel initialised the first n bytes of the spare
        // capacity (n <= spare.len()).
        unsafe { buf.set_len(buf.len() + n) };
        Ok(n)
    }
}

impl Socket {
    /// Sends our FIN; the socket stays open for reading. A failure means
    /// the peer is gone already: nothing to do.
    pub(crate) fn shutdown_write(&self) {
        let _ = match self {
            Socket::Unix(s) => s.shutdown(std::net::Shutdown::Write),
            Socket::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
        };
    }
}

impl AsFd for Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Socket::Unix(s) => s.as_fd(),
            Socket::Tcp(s) => s.as_fd(),
        }
    }
}

impl Read for &Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Unix(s) => (&*s).read(buf),
            Socket::Tcp(s) => (&*s).read(buf),
        }
    }
}

impl Write for &Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Unix(s) => (&*s).write(buf),
            Socket::Tcp(s) => (&*s).write(buf),
        }
    }

    fn write_vectored(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Socket::Unix(s) => (&*s).write_vectored(slices),
            Socket::Tcp(s) => (&*s).write_vectored(slices),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Shutdown;
    use std::os::unix::net::UnixStream;

    #[test]
    fn a_half_close_is_not_a_hang_up_and_a_close_is() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        (&theirs).write_all(b"a request").unwrap();
        assert!(!hung_up(ours.as_fd()), "an open connection");
        theirs.shutdown(Shutdown::Write).unwrap();
        assert!(
            !hung_up(ours.as_fd()),
            "EOF only: the client may still read"
        );
        drop(theirs);
        assert!(
            hung_up(ours.as_fd()),
            "closed both ways, unread bytes or not"
        );
    }

    #[test]
    fn a_tcp_close_looks_like_a_half_close_until_a_reset() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let theirs = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (ours, _) = listener.accept().unwrap();
        drop(theirs);
        // The FIN has arrived once a read sees EOF.
        assert_eq!((&ours).read(&mut [0u8; 8]).unwrap(), 0);
        assert!(!hung_up(ours.as_fd()), "a FIN alone");
        // The peer answers a write with a reset.
        let _ = (&ours).write_all(b"answer");
        let reset = (0..500).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(10));
            hung_up(ours.as_fd())
        });
        assert!(reset, "the reset is a hang-up");
    }
}
