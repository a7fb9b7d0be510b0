//! FastCGI connections kept open by the front server (FCGI_KEEP_CONN), idle
//! between requests: the Python threads watch them as they watch the
//! listener, so that the next request on one is read, run and answered by
//! the thread that sees it, as a request on a new connection is.
//!
//! They sit in one epoll set, each armed for a single event
//! (EPOLLONESHOT): exactly one thread takes a connection that becomes
//! readable, and nobody else hears of it until it is parked again.

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

/// A parked connection, and since when it has been idle.
struct Slot<C> {
    conn: C,
    since: Instant,
}

struct Slots<C> {
    /// Indexed by the low half of the token each connection's epoll event
    /// carries.
    conns: Vec<Option<Slot<C>>>,
    /// The high half: counts each slot's uses, so that an event taken
    /// from epoll just before its connection was closed here (expired,
    /// evicted) never hands out the connection that reuses the slot.
    uses: Vec<u32>,
    free: Vec<usize>,
    closed: bool,
}

/// The idle kept connections of one listener.
pub(crate) struct KeptSet<C> {
    epoll: Epoll,
    slots: Mutex<Slots<C>>,
    /// How many are parked: with none, nobody asks epoll.
    parked: AtomicUsize,
    /// Closed: read without the lock by responses about to end.
    closed: AtomicBool,
}

impl<C: AsFd> KeptSet<C> {
    pub(crate) fn new() -> io::Result<Self> {
        Ok(KeptSet {
            epoll: Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?,
            slots: Mutex::new(Slots {
                conns: Vec::new(),
                uses: Vec::new(),
                free: Vec::new(),
                closed: false,
            }),
            parked: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
        })
    }

    /// Watches `conn` for its next request. Gives it back once the set is
    /// closed (the worker stops: the caller closes it) or when epoll
    /// refuses it (logged).
    pub(crate) fn park(&self, conn: C) -> Result<(), C> {
        let mut slots = self.slots.lock().unwrap();
        if slots.closed {
            return Err(conn);
        }
        let index = match slots.free.pop() {
            Some(index) => index,
            None => {
                slots.conns.push(None);
                slots.uses.push(0);
                slots.conns.len() - 1
            }
        };
        slots.uses[index] = slots.uses[index].wrapping_add(1);
        let token = (u64::from(slots.uses[index]) << 32) | index as u64;
        // Armed with the lock held: a thread that gets the event at once
        // finds the connection in its slot.
        if let Err(e) = self.arm(&conn, token) {
            slots.free.push(index);
            tracing::warn!("watching a kept connection failed: {e}; closing it");
            return Err(conn);
        }
        slots.conns[index] = Some(Slot {
            conn,
            since: Instant::now(),
        });
        self.parked.fetch_add(1, Ordering::Release);
        Ok(())
    }

    fn arm(&self, conn: &C, token: u64) -> nix::Result<()> {
        let flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLONESHOT;
        let mut event = EpollEvent::new(flags, token);
        // A socket parked before is still in the set, disarmed (a closed
        // one leaves it by itself).
        match self.epoll.modify(conn, &mut event) {
            Err(Errno::ENOENT) => self.epoll.add(conn, event),
            armed => armed,
        }
    }

    /// A parked connection with something to read (the next request, or
    /// the front server's close), taken out of the set; never waits.
    pub(crate) fn ready(&self) -> Option<C> {
        if self.parked.load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut events = [EpollEvent::empty()];
        match self.epoll.wait(&mut events, EpollTimeout::ZERO) {
            Ok(1) => {}
            _ => return None,
        }
        let token = events[0].data();
        let (index, uses) = ((token & 0xffff_ffff) as usize, (token >> 32) as u32);
        let mut slots = self.slots.lock().unwrap();
        // There unless it left by `take_if` meanwhile (the event was
        // already ours): then its slot is free, or another's.
        if slots.uses.get(index) != Some(&uses) {
            return None;
        }
        let slot = slots.conns.get_mut(index)?.take()?;
        slots.free.push(index);
        self.parked.fetch_sub(1, Ordering::Release);
        Some(slot.conn)
    }

    /// Whether the set is closed: a connection offered now will be refused.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// How many connections are parked.
    pub(crate) fn parked(&self) -> usize {
        self.parked.load(Ordering::Acquire)
    }

    /// Takes out the connection idle longest, if it has been since before
    /// `before`, with since when (for the connection limit).
    pub(crate) fn take_oldest(&self, before: Option<Instant>) -> Option<(C, Instant)> {
        let mut slots = self.slots.lock().unwrap();
        let (index, since) = slots
            .conns
            .iter()
            .enumerate()
            .filter_map(|(index, slot)| Some((index, slot.as_ref()?.since)))
            .min_by_key(|&(_, since)| since)?;
        if before.is_some_and(|before| since >= before) {
            return None;
        }
        let conn = self.take_at(&mut slots, index);
        Some((conn, since))
    }

    /// Takes out the connections parked since before `before`
    /// (--keepalive-timeout), with since when.
    pub(crate) fn take_idle_since(&self, before: Instant) -> Vec<(C, Instant)> {
        if self.parked() == 0 {
            return Vec::new();
        }
        let mut slots = self.slots.lock().unwrap();
        let expired: Vec<(usize, Instant)> = slots
            .conns
            .iter()
            .enumerate()
            .filter_map(|(index, slot)| Some((index, slot.as_ref()?.since)))
            .filter(|&(_, since)| since < before)
            .collect();
        expired
            .into_iter()
            .map(|(index, since)| (self.take_at(&mut slots, index), since))
            .collect()
    }

    /// Takes the connection in `index` out of its slot and out of the
    /// epoll set (which also drops an event of it not yet taken).
    fn take_at(&self, slots: &mut Slots<C>, index: usize) -> C {
        let slot = slots.conns[index].take().expect("a parked connection");
        slots.free.push(index);
        self.parked.fetch_sub(1, Ordering::Release);
        let _ = self.epoll.delete(&slot.conn);
        slot.conn
    }

    /// Takes every parked connection out and parks no more (the worker
    /// stops).
    pub(crate) fn close(&self) -> Vec<C> {
        let mut slots = self.slots.lock().unwrap();
        slots.closed = true;
        self.closed.store(true, Ordering::Release);
        slots.free.clear();
        self.parked.store(0, Ordering::Release);
        std::mem::take(&mut slots.conns)
            .into_iter()
            .flatten()
            .map(|slot| slot.conn)
            .collect()
    }
}

/// Readable when a parked connection is: a thread waits on it with the
/// listener.
impl<C> AsFd for KeptSet<C> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.epoll.0.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    fn parked(socket: UnixStream) -> UnixStream {
        socket.set_nonblocking(true).unwrap();
        socket
    }

    #[test]
    fn a_connection_is_handed_out_once_per_arrival() {
        let set = KeptSet::new().unwrap();
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        assert!(set.park(parked(ours)).is_ok());
        assert!(set.ready().is_none(), "nothing arrived yet");
        theirs.write_all(b"x").unwrap();
        let conn = set.ready().expect("readable now");
        assert!(set.ready().is_none(), "taken: nobody else hears of it");
        // Parked again with the byte unread: readable at once.
        assert!(set.park(conn).is_ok());
        assert!(set.ready().is_some());
    }

    #[test]
    fn the_front_servers_close_is_an_arrival() {
        let set = KeptSet::new().unwrap();
        let (ours, theirs) = UnixStream::pair().unwrap();
        assert!(set.park(parked(ours)).is_ok());
        drop(theirs);
        assert!(set.ready().is_some());
    }

    #[test]
    fn closing_gives_every_connection_back_and_refuses_more() {
        let set = KeptSet::new().unwrap();
        let pairs: Vec<_> = (0..3).map(|_| UnixStream::pair().unwrap()).collect();
        let mut peers = Vec::new();
        for (ours, theirs) in pairs {
            assert!(set.park(parked(ours)).is_ok());
            peers.push(theirs);
        }
        assert!(!set.is_closed());
        assert_eq!(set.close().len(), 3);
        assert!(set.is_closed());
        let (ours, _theirs) = UnixStream::pair().unwrap();
        assert!(set.park(parked(ours)).is_err());
        assert!(set.ready().is_none());
    }

    #[test]
    fn the_longest_idle_are_taken_out_and_their_stale_events_ignored() {
        let set = KeptSet::new().unwrap();
        let (first, mut first_peer) = UnixStream::pair().unwrap();
        set.park(parked(first)).ok().unwrap();
        let between = Instant::now();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let (second, _second_peer) = UnixStream::pair().unwrap();
        set.park(parked(second)).ok().unwrap();
        first_peer.write_all(b"x").unwrap();
        // The first became readable, but is taken out before anyone asks.
        let (taken, _) = set.take_oldest(None).unwrap();
        assert_eq!(set.parked(), 1);
        assert!(set.ready().is_none(), "its event went with it");
        drop(taken);
        assert!(
            set.take_oldest(Some(between)).is_none(),
            "the second came later"
        );
        assert_eq!(set.take_idle_since(Instant::now()).len(), 1);
        assert_eq!(set.parked(), 0);
    }

    #[test]
    fn slots_are_reused() {
        let set = KeptSet::new().unwrap();
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        set.park(parked(ours)).ok().unwrap();
        for _ in 0..10 {
            theirs.write_all(b"x").unwrap();
            let conn = set.ready().unwrap();
            let mut byte = [0u8; 1];
            std::io::Read::read(&mut &conn, &mut byte).unwrap();
            set.park(conn).ok().unwrap();
        }
        assert_eq!(set.slots.lock().unwrap().conns.len(), 1);
    }
}
