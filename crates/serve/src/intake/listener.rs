//! The listening socket, accepted on without waiting.

use crate::python_lane::Socket;
use std::borrow::Cow;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

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
    pub(super) fn try_accept(&self) -> io::Result<(Socket, Cow<'static, str>)> {
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
