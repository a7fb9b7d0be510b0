//! The async sink: the I/O loop writes a response (or a FastCGI
//! connection's records) and closes the connection.

use super::{DRAIN_TIME, PeerSending, WriteError};
use crate::io_lane::connection::TryRead;
use rustgi_model::Segments;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, timeout, timeout_at};

/// Most slices handed to one `writev`.
const MAX_SLICES: usize = 64;

/// Writes all of `out`; fails when a write fails or takes no byte for
/// `write_timeout`.
pub(crate) async fn write_all<W: AsyncWrite + Unpin>(
    writer: &mut W,
    out: &mut Segments,
    write_timeout: Duration,
) -> Result<(), WriteError> {
    while !out.is_empty() {
        let slices = out.io_slices(MAX_SLICES);
        let written = timeout(write_timeout, writer.write_vectored(&slices)).await;
        drop(slices);
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
    let _ = timeout(write_timeout, writer.shutdown()).await;
    drain(reader, peer).await
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
