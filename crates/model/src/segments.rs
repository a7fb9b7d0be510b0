//! The response side every protocol shares: the events a response is made
//! of, and the bytes they become on their way to the connection.
//!
//! A protocol's encoder turns [`ResponseEvent`]s into [`Segments`]; the
//! per-request flow (in `rustgi-serve`) writes the segments, blocking on a
//! Python thread or asynchronously under tokio. Small pieces are copied
//! into one buffer so a small response is one write; a large application
//! block is referenced where it is, never copied.

use crate::ResponseHead;
use bytes::Bytes;
use std::collections::VecDeque;
use std::fmt;
use std::io::IoSlice;

/// Body blocks up to this size are copied next to what precedes them (one
/// write); larger ones are written from where they are.
pub const COALESCE_LIMIT: usize = 16 * 1024;

/// One step of a response, in order.
#[derive(Debug)]
pub enum ResponseEvent {
    Head(ResponseHead),
    Body(Bytes),
    /// A `wsgi.errors` line for the front server's error log (FastCGI's
    /// STDERR stream), when the connection asked for them.
    Stderr(Bytes),
    /// The response is complete.
    End,
    /// The response cannot be completed (an error after the head was sent):
    /// the connection must be closed without pretending it ended well.
    Abort,
}

impl ResponseEvent {
    /// The bytes this event carries, for bounding buffers.
    pub fn weight(&self) -> usize {
        match self {
            ResponseEvent::Body(b) | ResponseEvent::Stderr(b) => b.len(),
            _ => 0,
        }
    }
}

/// A protocol's response encoder: events in, bytes out, no I/O.
pub trait ResponseEncoder {
    /// Encodes one event into `out`.
    fn encode(&mut self, event: ResponseEvent, out: &mut Segments);
    /// After a batch of events: flush what the encoder holds back to join
    /// it with what follows (FastCGI's STDOUT record content).
    fn end_batch(&mut self, _out: &mut Segments) {}
    /// The connection closes after this response (the server is
    /// stopping): whether the encoder's end tells the front server so, as
    /// AJP's END_RESPONSE can. By default it cannot.
    fn last_on_connection(&mut self) -> bool {
        false
    }
    /// Whether `head` fits the protocol's framing. A front server refuses
    /// a head larger than its buffer with a 500 of its own and nothing in
    /// our log; the flow asks first, and on `Err` logs the reason and
    /// answers 500 itself. By default every head fits.
    fn check_head(&self, _head: &ResponseHead) -> Result<(), HeadTooLarge> {
        Ok(())
    }
}

/// A response head too large for the protocol's packet (AJP's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeadTooLarge {
    /// The head as the protocol frames it, in bytes.
    pub length: usize,
    pub limit: usize,
    /// What the limit is, as the log names it ("AJP's packet size").
    pub limit_name: &'static str,
    /// The option that sets it.
    pub option: &'static str,
}

impl fmt::Display for HeadTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "response head of {} bytes over {} of {} ({})",
            self.length, self.limit_name, self.limit, self.option
        )
    }
}

impl std::error::Error for HeadTooLarge {}

/// Encodes `event` for a protocol whose response is its head then the body
/// as it is, ended by closing the connection (SCGI, uwsgi): only the head
/// differs, and `write_head` writes it. Such a protocol has no channel for
/// `wsgi.errors` (already in the log) and nothing to write at the end.
pub fn encode_stream_event(
    event: ResponseEvent,
    out: &mut Segments,
    write_head: impl FnOnce(&ResponseHead, &mut Vec<u8>),
) {
    match event {
        ResponseEvent::Head(head) => write_head(&head, out.small()),
        ResponseEvent::Body(data) if data.len() <= COALESCE_LIMIT => {
            out.small().extend_from_slice(&data)
        }
        ResponseEvent::Body(data) => out.push(data),
        ResponseEvent::Stderr(_) | ResponseEvent::End | ResponseEvent::Abort => {}
    }
}

/// Bytes waiting for the connection, in order: large blocks as they came
/// (`sealed`), then the small pieces gathered since (`small`), which are
/// written from their buffer without being turned into a block: a small
/// response costs no allocation, and the buffer is reused.
#[derive(Default, Debug)]
pub struct Segments {
    sealed: VecDeque<Bytes>,
    /// Bytes of `sealed[0]` already written.
    written: usize,
    /// Bytes in `sealed`, `written` included.
    sealed_len: usize,
    small: Vec<u8>,
    /// Bytes of `small` already written (only once `sealed` is empty).
    small_written: usize,
}

/// The small buffer's first capacity.
const SMALL_START: usize = 1024;

impl Segments {
    /// Where small pieces are appended (copied).
    pub fn small(&mut self) -> &mut Vec<u8> {
        // A response head and a small body fit: one allocation rather
        // than one per doubling.
        if self.small.capacity() == 0 {
            self.small.reserve(SMALL_START);
        }
        &mut self.small
    }

    /// A large piece, written from where it is.
    pub fn push(&mut self, data: Bytes) {
        self.seal();
        if !data.is_empty() {
            self.sealed_len += data.len();
            self.sealed.push_back(data);
        }
    }

    /// Appends all of `other`'s unwritten bytes, leaving it empty.
    pub fn append(&mut self, other: &mut Segments) {
        if other.sealed.is_empty() {
            // Only small pieces: copied, no block made.
            let rest = &other.small[other.small_written..];
            if !self.sealed.is_empty() || self.small_written == 0 {
                self.small.extend_from_slice(rest);
            } else {
                self.seal();
                self.small.extend_from_slice(rest);
            }
            other.clear();
            return;
        }
        other.seal();
        if other.written > 0
            && let Some(first) = other.sealed.pop_front()
        {
            other.sealed_len -= other.written;
            other.sealed.push_front(first.slice(other.written..));
            other.written = 0;
        }
        self.seal();
        self.sealed_len += other.sealed_len;
        self.sealed.append(&mut other.sealed);
        other.clear();
    }

    /// Unwritten bytes.
    pub fn len(&self) -> usize {
        self.sealed_len - self.written + self.small.len() - self.small_written
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Unwritten bytes that are pieces of `block` itself (referenced, not
    /// copied): what of them is someone else's memory, not this buffer's.
    pub fn unwritten_within(&self, block: &[u8]) -> usize {
        let range = block.as_ptr_range();
        let within = |piece: &[u8]| {
            let start = piece.as_ptr();
            start >= range.start && start < range.end
        };
        self.sealed
            .iter()
            .enumerate()
            .map(|(i, segment)| {
                let start = if i == 0 { self.written } else { 0 };
                &segment[start..]
            })
            .filter(|piece| within(piece))
            .map(<[u8]>::len)
            .sum()
    }

    /// Fills `slices` with what is unwritten, in order, for a vectored
    /// write; returns how many it filled. [`advance`](Self::advance) by
    /// what was written.
    pub fn io_slices<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        let mut filled = 0;
        for (i, segment) in self.sealed.iter().enumerate().take(slices.len()) {
            let start = if i == 0 { self.written } else { 0 };
            slices[i] = IoSlice::new(&segment[start..]);
            filled += 1;
        }
        if filled < slices.len() && self.small.len() > self.small_written {
            slices[filled] = IoSlice::new(&self.small[self.small_written..]);
            filled += 1;
        }
        filled
    }

    /// Marks `n` bytes as written.
    pub fn advance(&mut self, mut n: usize) {
        assert!(n <= self.len(), "advanced past the pending bytes");
        while n > 0 && !self.sealed.is_empty() {
            let first = self.sealed[0].len() - self.written;
            if n < first {
                self.written += n;
                return;
            }
            n -= first;
            self.sealed_len -= self.sealed[0].len();
            self.sealed.pop_front();
            self.written = 0;
        }
        self.small_written += n;
        if self.small_written == self.small.len() {
            // All written: the buffer is kept for what comes next.
            self.small.clear();
            self.small_written = 0;
        }
    }

    /// Forgets what is unwritten (the connection is gone), keeping the
    /// buffers.
    pub fn clear(&mut self) {
        self.sealed.clear();
        self.written = 0;
        self.sealed_len = 0;
        self.small.clear();
        self.small_written = 0;
    }

    /// Everything unwritten, joined (for tests and for sinks that take one
    /// buffer).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut all = Vec::with_capacity(self.len());
        for (i, segment) in self.sealed.iter().enumerate() {
            let start = if i == 0 { self.written } else { 0 };
            all.extend_from_slice(&segment[start..]);
        }
        all.extend_from_slice(&self.small[self.small_written..]);
        all
    }

    /// Turns the small pieces gathered so far into a block of their own, so
    /// that a large block can follow them.
    fn seal(&mut self) {
        if self.small.len() == self.small_written {
            self.small.clear();
            self.small_written = 0;
            return;
        }
        let small = if self.small_written == 0 {
            Bytes::from(std::mem::take(&mut self.small))
        } else {
            let rest = Bytes::copy_from_slice(&self.small[self.small_written..]);
            self.small.clear();
            self.small_written = 0;
            rest
        };
        self.sealed_len += small.len();
        self.sealed.push_back(small);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_pieces_join_and_large_ones_stay_apart() {
        let mut out = Segments::default();
        out.small().extend_from_slice(b"head ");
        out.small().extend_from_slice(b"small ");
        let large = Bytes::from(vec![b'x'; 20]);
        out.push(large.clone());
        out.small().extend_from_slice(b" tail");
        assert_eq!(out.len(), 5 + 6 + 20 + 5);
        let mut slices = [IoSlice::new(&[]); 8];
        assert_eq!(out.io_slices(&mut slices), 3);
        assert_eq!(&*slices[0], b"head small ");
        assert_eq!(
            slices[1].as_ptr(),
            large.as_ptr(),
            "large blocks are not copied"
        );
    }

    #[test]
    fn the_unwritten_pieces_of_a_block_are_told_from_copies() {
        let mut out = Segments::default();
        let block = Bytes::from(vec![b'x'; 100]);
        out.small().extend_from_slice(b"head");
        out.push(block.slice(..40));
        out.small().extend_from_slice(&block[40..50]);
        out.push(block.slice(50..));
        out.small().extend_from_slice(b"end");
        assert_eq!(
            out.unwritten_within(&block),
            90,
            "the copy is not the block"
        );
        out.advance(4 + 15);
        assert_eq!(out.unwritten_within(&block), 75);
        out.advance(25 + 10 + 20);
        assert_eq!(out.unwritten_within(&block), 30);
        let other = vec![b'x'; 100];
        assert_eq!(out.unwritten_within(&other), 0);
        out.advance(30);
        assert_eq!(out.unwritten_within(&block), 0);
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn a_stream_response_coalesces_small_blocks_only() {
        let mut out = Segments::default();
        let head = ResponseHead::from_static("200 OK", &[]).unwrap();
        let large = Bytes::from(vec![b'x'; COALESCE_LIMIT + 1]);
        let events = [
            ResponseEvent::Head(head),
            ResponseEvent::Body(Bytes::from_static(b"small")),
            ResponseEvent::Stderr(Bytes::from_static(b"logged")),
            ResponseEvent::Body(large.clone()),
            ResponseEvent::End,
            ResponseEvent::Abort,
        ];
        for event in events {
            encode_stream_event(event, &mut out, |head, small| {
                small.extend_from_slice(&head.status)
            });
        }
        let mut slices = [IoSlice::new(&[]); 8];
        assert_eq!(out.io_slices(&mut slices), 2);
        assert_eq!(&*slices[0], b"200 OKsmall");
        assert_eq!(slices[1].as_ptr(), large.as_ptr());
        assert_eq!(slices[1].len(), large.len());
    }

    #[test]
    fn small_pieces_are_written_from_their_buffer_even_in_part() {
        let mut out = Segments::default();
        out.small().extend_from_slice(b"0123456789");
        out.advance(4);
        out.small().extend_from_slice(b"ab");
        assert_eq!(out.to_vec(), b"456789ab");
        // A large block after a partly written buffer: the rest is sealed
        // in front of it, in order.
        out.push(Bytes::from_static(b"LARGE"));
        assert_eq!(out.to_vec(), b"456789abLARGE");
        out.advance(13);
        assert!(out.is_empty());
        // Written to the end, the buffer is kept for the next response.
        out.small().extend_from_slice(b"next");
        let capacity = out.small().capacity();
        out.advance(4);
        assert!(out.is_empty() && out.small().capacity() == capacity);
    }

    #[test]
    fn appending_small_pieces_copies_them_in_order() {
        let mut out = Segments::default();
        out.push(Bytes::from_static(b"block;"));
        let mut held = Segments::default();
        held.small().extend_from_slice(b"head;body");
        out.append(&mut held);
        assert!(held.is_empty());
        assert_eq!(out.to_vec(), b"block;head;body");
        let mut partly = Segments::default();
        partly.small().extend_from_slice(b"xyz");
        partly.advance(1);
        let mut into = Segments::default();
        into.small().extend_from_slice(b"abc");
        into.advance(2);
        into.append(&mut partly);
        assert_eq!(into.to_vec(), b"cyz");
        assert_eq!(into.len(), 3);
    }

    #[test]
    fn advancing_walks_across_segments() {
        let mut out = Segments::default();
        out.small().extend_from_slice(b"abc");
        out.push(Bytes::from_static(b"defgh"));
        out.small().extend_from_slice(b"ij");
        out.advance(4);
        assert_eq!(out.to_vec(), b"efghij");
        let mut one = [IoSlice::new(&[])];
        assert_eq!(out.io_slices(&mut one), 1);
        assert_eq!(&*one[0], b"efgh");
        out.advance(4);
        assert_eq!(out.to_vec(), b"ij");
        out.advance(2);
        assert!(out.is_empty());
    }

    #[test]
    fn append_takes_the_unwritten_rest() {
        let mut held = Segments::default();
        held.small().extend_from_slice(b"0123");
        held.push(Bytes::from_static(b"456789"));
        held.advance(6);
        let mut out = Segments::default();
        out.small().extend_from_slice(b"<");
        out.append(&mut held);
        out.small().extend_from_slice(b">");
        assert!(held.is_empty());
        assert_eq!(out.to_vec(), b"<6789>");
        assert_eq!(out.len(), 6);
    }
}
