//! A connection as accepted: a plain std socket, not yet known to tokio.

use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

pub(crate) enum Socket {
    Unix(std::os::unix::net::UnixStream),
    Tcp(std::net::TcpStream),
}

impl Socket {
    /// Reads what is there without waiting, into `buf`'s spare capacity.
    pub(crate) fn try_read_into(&self, buf: &mut bytes::BytesMut) -> io::Result<usize> {
        let spare = buf.spare_capacity_mut();
        // SAFETY: recv writes at most spare.len() bytes into the spare
        // capacity and returns how many.
        let n = unsafe {
            libc::recv(
                self.fd(),
                spare.as_mut_ptr().cast(),
                spare.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        // SAFETY: the kernel initialised n bytes.
        unsafe { buf.set_len(buf.len() + n) };
        Ok(n)
    }

    fn fd(&self) -> RawFd {
        match self {
            Socket::Unix(s) => s.as_raw_fd(),
            Socket::Tcp(s) => s.as_raw_fd(),
        }
    }

    pub(super) fn write_vectored(&self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Socket::Unix(s) => (&*s).write_vectored(slices),
            Socket::Tcp(s) => (&*s).write_vectored(slices),
        }
    }

    pub(super) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Unix(s) => (&*s).read(buf),
            Socket::Tcp(s) => (&*s).read(buf),
        }
    }

    /// Waits (blocking: call it without the GIL) until the socket can take
    /// bytes; false on timeout.
    pub(super) fn wait_writable(&self, limit: Duration) -> bool {
        let mut poll = libc::pollfd {
            fd: self.fd(),
            events: libc::POLLOUT,
            revents: 0,
        };
        let millis = i32::try_from(limit.as_millis()).unwrap_or(i32::MAX);
        loop {
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(&mut poll, 1, millis) };
            if n >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                return n > 0;
            }
        }
    }
}
