//! The blocking sink: a Python thread writes the response itself (the
//! Python lane, and CGI mode's stdout).

use super::{MAX_SLICES, PeerSending, Who, WriteError, log_for};
use crate::flow::Ending;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use rustgi_model::Segments;
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::AsFd;
use std::time::Duration;

/// Writes to `wire` (a non-blocking socket, or a blocking file) from the
/// thread that produced the response.
pub(crate) struct BlockingSink<W> {
    wire: W,
    write_timeout: Duration,
}

impl<W> BlockingSink<W>
where
    W: AsFd,
    for<'a> &'a W: Read + Write,
{
    pub(crate) fn new(wire: W, write_timeout: Duration) -> Self {
        BlockingSink {
            wire,
            write_timeout,
        }
    }

    pub(crate) fn wire(&self) -> &W {
        &self.wire
    }

    pub(crate) fn write_timeout(&self) -> Duration {
        self.write_timeout
    }

    /// The wire, to be used again (a kept connection between requests).
    pub(crate) fn into_wire(self) -> W {
        self.wire
    }

    /// Writes what the wire takes now; `Ok(true)` when nothing is left.
    pub(crate) fn write(&mut self, out: &mut Segments) -> Result<bool, WriteError> {
        while !out.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let filled = out.io_slices(&mut slices);
            let written = (&self.wire).write_vectored(&slices[..filled]);
            match written {
                Ok(0) => return Err(WriteError::Failed(io::ErrorKind::WriteZero.into())),
                Ok(n) => out.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(WriteError::Failed(e)),
            }
        }
        Ok(true)
    }

    /// Writes all of `out`, waiting as long as the write timeout allows.
    /// Call it without the GIL.
    pub(crate) fn write_all(&mut self, out: &mut Segments) -> Result<(), WriteError> {
        while !self.write(out)? {
            self.wait_writable()?;
        }
        Ok(())
    }

    /// Waits until the wire takes bytes again. Call it without the GIL.
    pub(crate) fn wait_writable(&self) -> Result<(), WriteError> {
        let limit = PollTimeout::try_from(self.write_timeout).unwrap_or(PollTimeout::MAX);
        loop {
            let mut fds = [PollFd::new(self.wire.as_fd(), PollFlags::POLLOUT)];
            match poll(&mut fds, limit) {
                Ok(0) => return Err(WriteError::Stalled(self.write_timeout)),
                Ok(_) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(WriteError::Failed(e.into())),
            }
        }
    }

    /// Closes the wire (by dropping it). After a whole response it first
    /// reads what the peer may still have queued, without waiting, so the
    /// close is a FIN and not an RST that could cut the response short.
    /// With `PeerSending::Done`, the first read took less than it could
    /// and that was exactly the request: nothing can be queued.
    pub(crate) fn close(self, ending: Option<Ending>, peer: PeerSending, who: Who<'_>) {
        if ending != Some(Ending::Complete) || peer == PeerSending::Done {
            return;
        }
        let mut scratch = [0u8; 4096];
        let mut extra = 0;
        while let Ok(n) = (&self.wire).read(&mut scratch) {
            if n == 0 {
                break;
            }
            extra += n;
        }
        if extra > 0 {
            log_for!(
                debug,
                who,
                "discarded {extra} bytes the front server sent after the request"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::os::unix::net::UnixStream;

    fn who() -> Who<'static> {
        Who {
            peer: "test",
            request: None,
        }
    }

    #[test]
    fn writes_every_segment_in_order() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let mut sink = BlockingSink::new(ours, Duration::from_secs(1));
        let mut out = Segments::default();
        out.small().extend_from_slice(b"head;");
        out.push(Bytes::from_static(b"large block;"));
        out.small().extend_from_slice(b"tail");
        sink.write_all(&mut out).unwrap();
        assert!(out.is_empty());
        sink.close(Some(Ending::Complete), PeerSending::Done, who());
        let mut got = Vec::new();
        theirs.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"head;large block;tail");
    }

    #[test]
    fn a_full_socket_says_so_and_a_stalled_peer_times_out() {
        let (ours, _theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let mut sink = BlockingSink::new(ours, Duration::from_millis(50));
        let mut out = Segments::default();
        out.push(Bytes::from(vec![0u8; 8 << 20]));
        assert!(!sink.write(&mut out).unwrap(), "the socket buffer is full");
        assert!(out.len() < 8 << 20, "some bytes went out");
        assert!(matches!(sink.wait_writable(), Err(WriteError::Stalled(_))));
    }

    /// Over TCP, closing with unread input sends an RST, which the peer
    /// sees as a reset instead of the end of the response.
    fn tcp_pair() -> (std::net::TcpStream, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let theirs = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (ours, _) = listener.accept().unwrap();
        ours.set_nonblocking(true).unwrap();
        (ours, theirs)
    }

    /// Closes a sink after the peer sent bytes we never read; returns what
    /// the peer then reads.
    fn close_with_unread_input(ending: Ending) -> io::Result<Vec<u8>> {
        let (ours, mut theirs) = tcp_pair();
        theirs.write_all(b"trailing bytes").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        BlockingSink::new(ours, Duration::from_secs(1)).close(
            Some(ending),
            PeerSending::Maybe,
            who(),
        );
        let mut got = Vec::new();
        theirs.read_to_end(&mut got).map(|_| got)
    }

    #[test]
    fn a_whole_response_reads_what_the_peer_still_sent_before_closing() {
        let got = close_with_unread_input(Ending::Complete).expect("an EOF, not a reset");
        assert!(got.is_empty());
    }

    #[test]
    fn a_cut_response_is_not_drained() {
        let read = close_with_unread_input(Ending::Aborted);
        assert_eq!(
            read.unwrap_err().kind(),
            io::ErrorKind::ConnectionReset,
            "the peer must not take a cut response for a whole one"
        );
    }

    #[test]
    fn a_gone_peer_is_an_error() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        drop(theirs);
        let mut sink = BlockingSink::new(ours, Duration::from_secs(1));
        let mut out = Segments::default();
        out.small().extend_from_slice(b"x");
        assert!(matches!(sink.write(&mut out), Err(WriteError::Failed(_))));
    }
}
