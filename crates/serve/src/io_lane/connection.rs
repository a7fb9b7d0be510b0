//! The stream types a driver serves, with halves borrowed without a lock
//! (`tokio::io::split` takes one on every poll).

use crate::python_lane::Socket;
use std::io;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream, tcp, unix};

/// A connected stream from one of our listeners.
pub trait Connection: AsyncRead + Unpin + Send + 'static {
    type Reader<'a>: AsyncRead + TryRead + Unpin + Send
    where
        Self: 'a;
    type Writer<'a>: AsyncWrite + Unpin + Send
    where
        Self: 'a;

    fn halves(&mut self) -> (Self::Reader<'_>, Self::Writer<'_>);

    /// The plain socket, for a Python thread to write on
    /// (`RUSTGI_LANE=python`, see `to_python`).
    fn into_socket(self) -> io::Result<Socket>;
}

/// A read that never waits: `WouldBlock` when nothing is queued.
pub trait TryRead {
    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize>;
}

impl Connection for UnixStream {
    type Reader<'a> = unix::ReadHalf<'a>;
    type Writer<'a> = unix::WriteHalf<'a>;

    fn halves(&mut self) -> (Self::Reader<'_>, Self::Writer<'_>) {
        self.split()
    }

    fn into_socket(self) -> io::Result<Socket> {
        self.into_std().map(Socket::Unix)
    }
}

impl Connection for TcpStream {
    type Reader<'a> = tcp::ReadHalf<'a>;
    type Writer<'a> = tcp::WriteHalf<'a>;

    fn halves(&mut self) -> (Self::Reader<'_>, Self::Writer<'_>) {
        self.split()
    }

    fn into_socket(self) -> io::Result<Socket> {
        self.into_std().map(Socket::Tcp)
    }
}

impl TryRead for unix::ReadHalf<'_> {
    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        unix::ReadHalf::try_read(self, buf)
    }
}

impl TryRead for tcp::ReadHalf<'_> {
    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        tcp::ReadHalf::try_read(self, buf)
    }
}
