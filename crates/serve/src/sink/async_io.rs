//! The async sink: the I/O loop writes a response (or a FastCGI
//! connection's records) and closes the connection.

use super::{DRAIN_TIME, MAX_SLICES, PeerSending, WriteError};
use crate::io_lane::connection::TryRead;
use rustgi_model::Segments;
use std::io::IoSlice;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, timeout, timeout_at};

/// Writes all of `out`; fails when a write fails or takes no byte for
/// `write_timeout`.
pub(crate) async fn write_all<W: AsyncWrite + Unpin>(
    writer: &mut W,
    out: &mut Segments,
    write_timeout: Duration,
) -> Result<(), WriteError> {
    while !out.is_empty() {
        let mut slices = [IoSlice::new(&[]); MAX_SLICES];
        let filled = out.io_slices(&mut slices);
        // One slice (a small response): a plain write, which costs the
        // kernel less than writev's iovec import.
        let write = async {
            if filled == 1 {
                writer.write(&slices[0]).await
            } else {
                writer.write_vectored(&slices[..filled]).await
            }
        };
        let written = timeout(write_timeout, write).await;
        match written {
            Ok(Ok(0)) => return Err(WriteError::Failed(std::io::ErrorKind::WriteZero.into())),
            Ok(Ok(n)) => out.advance(n),
            Ok(Err(e)) => return Err(WriteError::Failed(e)),
            Err(_) => return Err(WriteError::Stalled(write_timeout)),
        }
    }
    Ok(())
}

/// Closes gracefully after a whole response: shuts our side down, then
/// reads and discards what the peer still sends, so closing never leaves
/// unread bytes behind to turn into an RST. Returns the bytes discarded.
pub(crate) async fn close<R, W>(
    reader: &mut R,
    writer: &mut W,
    peer: PeerSending,
    write_timeout: Duration,
) -> u64
where
    R: AsyncRead + TryRead + Unpin,
    W: AsyncWrite + Unpin,
{
    shutdown(writer, write_timeout).await;
    drain(reader, peer).await
}

/// Shuts our side down (a FIN after the response): the first half of
/// [`close`], for a driver that has more to wait for before the drain.
pub(crate) async fn shutdown<W: AsyncWrite + Unpin>(writer: &mut W, write_timeout: Duration) {
    let _ = timeout(write_timeout, writer.shutdown()).await;
}

/// Reads what the peer still sends, until its EOF (bounded by
/// [`DRAIN_TIME`]). With `PeerSending::Done` and nothing queued, returns at
/// once.
pub(crate) async fn drain<R: AsyncRead + TryRead + Unpin>(
    reader: &mut R,
    peer: PeerSending,
) -> u64 {
    let mut scratch = [0u8; 8 * 1024];
    let mut total = match reader.try_read(&mut scratch) {
        Ok(0) => return 0,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && peer == PeerSending::Maybe => 0,
        Ok(n) => n as u64,
        Err(_) => return 0,
    };
    let deadline = Instant::now() + DRAIN_TIME;
    while let Ok(Ok(n)) = timeout_at(deadline, reader.read(&mut scratch)).await {
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use tokio::io::AsyncReadExt;
    use tokio::net::UnixStream;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn segments(large: usize) -> Segments {
        let mut out = Segments::default();
        out.small().extend_from_slice(b"head;");
        out.push(Bytes::from(vec![b'x'; large]));
        out.small().extend_from_slice(b";tail");
        out
    }

    #[test]
    fn writes_every_segment_then_closes_with_an_eof() {
        runtime().block_on(async {
            let (mut ours, mut theirs) = UnixStream::pair().unwrap();
            let reader = tokio::spawn(async move {
                let mut got = Vec::new();
                theirs.read_to_end(&mut got).await.unwrap();
                got
            });
            let mut out = segments(1 << 20);
            let (mut r, mut w) = ours.split();
            write_all(&mut w, &mut out, Duration::from_secs(5))
                .await
                .unwrap();
            assert!(out.is_empty());
            let drained = close(&mut r, &mut w, PeerSending::Done, Duration::from_secs(1)).await;
            assert_eq!(drained, 0);
            drop(ours);
            let got = reader.await.unwrap();
            assert_eq!(got.len(), 5 + (1 << 20) + 5);
            assert!(got.starts_with(b"head;x") && got.ends_with(b"x;tail"));
        });
    }

    #[test]
    fn a_peer_that_reads_nothing_stalls_the_write() {
        runtime().block_on(async {
            let (mut ours, _theirs) = UnixStream::pair().unwrap();
            let mut out = segments(16 << 20);
            let (_, mut w) = ours.split();
            let written = write_all(&mut w, &mut out, Duration::from_millis(100)).await;
            assert!(
                matches!(written, Err(WriteError::Stalled(_))),
                "{written:?}"
            );
            assert!(
                !out.is_empty() && out.len() < 16 << 20,
                "some went out, not all"
            );
        });
    }

    #[test]
    fn the_drain_reads_what_the_peer_still_sends_until_its_eof() {
        runtime().block_on(async {
            let (mut ours, mut theirs) = UnixStream::pair().unwrap();
            let peer = tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                theirs.write_all(b"late bytes").await.unwrap();
                // Waits for our shutdown before it closes, as nginx does.
                let mut rest = Vec::new();
                theirs.read_to_end(&mut rest).await.unwrap();
            });
            let (mut r, mut w) = ours.split();
            let drained = close(&mut r, &mut w, PeerSending::Maybe, Duration::from_secs(1)).await;
            assert_eq!(drained, 10);
            peer.await.unwrap();
        });
    }
}
