//! The stream types a driver serves, with halves borrowed without a lock
//! (`tokio::io::split` takes one on every poll).

use crate::python_lane::{Socket, hung_up};
use std::io;
use std::os::fd::AsFd;
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
    /// Whether the peer has closed the connection both ways (see
    /// [`hung_up`]).
    fn hung_up(&self) -> bool;
}

/// The same impls for both kinds of stream.
macro_rules! connection_for {
    ($stream:ty, $halves:ident, $variant:ident) => {
        impl Connection for $stream {
            type Reader<'a> = $halves::ReadHalf<'a>;
            type Writer<'a> = $halves::WriteHalf<'a>;

            fn halves(&mut self) -> (Self::Reader<'_>, Self::Writer<'_>) {
                self.split()
            }

            fn into_socket(self) -> io::Result<Socket> {
                self.into_std().map(Socket::$variant)
            }
        }

        impl TryRead for $halves::ReadHalf<'_> {
            fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
                $halves::ReadHalf::try_read(self, buf)
            }

            fn hung_up(&self) -> bool {
                let stream: &$stream = self.as_ref();
                hung_up(stream.as_fd())
            }
        }
    };
}

connection_for!(UnixStream, unix, Unix);
connection_for!(TcpStream, tcp, Tcp);

/// How the driver of a connection the front server keeps (FastCGI with
/// FCGI_KEEP_CONN, AJP) stopped.
pub(crate) enum Stop {
    /// Closed: shut down and drained first when `clean`.
    Closed { clean: bool },
    /// Idle between requests, for the intake.
    Idle,
}

impl Stop {
    /// Ends the driver's part: an idle connection is returned, for the
    /// intake; a closed one is closed, after a shutdown and a drain of
    /// what the peer still sends when `clean`.
    pub(crate) async fn settle<C: Connection>(
        self,
        mut stream: C,
        write_timeout: std::time::Duration,
    ) -> Option<C> {
        match self {
            Stop::Idle => Some(stream),
            Stop::Closed { clean: true } => {
                let (mut reader, mut writer) = stream.halves();
                crate::sink::async_io::close(
                    &mut reader,
                    &mut writer,
                    crate::sink::PeerSending::Maybe,
                    write_timeout,
                )
                .await;
                None
            }
            Stop::Closed { clean: false } => None,
        }
    }
}
