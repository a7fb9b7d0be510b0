//! The I/O lane's connections that wait on their peer: for a request head,
//! or idle between requests (a kept FastCGI connection the lane holds).
//! At `--max-connections` the intake closes the one that has waited
//! longest for its head, or else the one idle longest, to admit a new
//! connection (`Home::make_room`): a peer that opens connections and
//! sends nothing can then hold no more than the limit, and never the
//! slots that whole requests need.
//!
//! Only connections that wait are here, and only the I/O lane's: a
//! connection answered by the Python thread that accepted it never is
//! (the fast path takes no lock for this), and idle kept connections
//! parked in the intake are in its `KeptSet`, which knows since when.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

/// What a connection waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Waiting {
    /// A request head (the first bytes of a connection, or of a request
    /// begun on a kept one).
    Head,
    /// The next request on a kept connection.
    Idle,
}

struct Entry {
    /// Tells this entry from a later one in the same slot.
    serial: u64,
    what: Waiting,
    since: Instant,
    evict: CancellationToken,
}

#[derive(Default)]
struct Slots {
    entries: Vec<Option<Entry>>,
    free: Vec<usize>,
    serial: u64,
}

/// The waiting connections of one intake.
#[derive(Default)]
pub(crate) struct Waiters {
    slots: Mutex<Slots>,
    /// How many there are: the intake reads it without the lock.
    len: AtomicUsize,
}

/// A connection's place among the waiters; it leaves when this is dropped.
pub(crate) struct Place {
    slot: usize,
    serial: u64,
    evict: CancellationToken,
}

impl Place {
    /// Resolves when the intake closed this connection to make room.
    pub(crate) fn evicted(&self) -> WaitForCancellationFuture<'_> {
        self.evict.cancelled()
    }
}

impl Waiters {
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    pub(crate) fn join(&self, what: Waiting, since: Instant) -> Place {
        let evict = CancellationToken::new();
        let mut slots = self.slots.lock().unwrap();
        slots.serial += 1;
        let serial = slots.serial;
        let entry = Entry {
            serial,
            what,
            since,
            evict: evict.clone(),
        };
        let slot = match slots.free.pop() {
            Some(slot) => {
                slots.entries[slot] = Some(entry);
                slot
            }
            None => {
                slots.entries.push(Some(entry));
                slots.entries.len() - 1
            }
        };
        self.len.fetch_add(1, Ordering::AcqRel);
        Place {
            slot,
            serial,
            evict,
        }
    }

    /// Takes `place` out, unless it was evicted (and its slot reused) first.
    pub(crate) fn leave(&self, place: &Place) {
        let mut slots = self.slots.lock().unwrap();
        let ours = matches!(&slots.entries[place.slot], Some(e) if e.serial == place.serial);
        if ours {
            slots.entries[place.slot] = None;
            slots.free.push(place.slot);
            self.len.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Since when the longest waiting connection of `what` has waited.
    pub(crate) fn oldest(&self, what: Waiting) -> Option<Instant> {
        let slots = self.slots.lock().unwrap();
        Self::find_oldest(&slots, what).map(|(_, since)| since)
    }

    /// Closes the connection that has waited longest for `what`; returns
    /// since when it waited. (A linear scan: it runs only at the limit,
    /// once per admitted connection.)
    pub(crate) fn evict_oldest(&self, what: Waiting) -> Option<Instant> {
        let mut slots = self.slots.lock().unwrap();
        let (slot, since) = Self::find_oldest(&slots, what)?;
        let entry = slots.entries[slot].take().expect("found above");
        slots.free.push(slot);
        self.len.fetch_sub(1, Ordering::AcqRel);
        drop(slots);
        entry.evict.cancel();
        Some(since)
    }

    fn find_oldest(slots: &Slots, what: Waiting) -> Option<(usize, Instant)> {
        slots
            .entries
            .iter()
            .enumerate()
            .filter_map(|(slot, entry)| {
                let entry = entry.as_ref()?;
                (entry.what == what).then_some((slot, entry.since))
            })
            .min_by_key(|&(_, since)| since)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_oldest_of_a_kind_is_evicted_and_told() {
        let waiters = Waiters::default();
        let start = Instant::now();
        let late_head = waiters.join(Waiting::Head, start + Duration::from_secs(2));
        let idle = waiters.join(Waiting::Idle, start);
        let early_head = waiters.join(Waiting::Head, start + Duration::from_secs(1));
        assert_eq!(waiters.len(), 3);
        assert_eq!(
            waiters.evict_oldest(Waiting::Head),
            Some(start + Duration::from_secs(1))
        );
        assert!(early_head.evict.is_cancelled());
        assert!(!late_head.evict.is_cancelled() && !idle.evict.is_cancelled());
        assert_eq!(waiters.len(), 2);
        assert_eq!(waiters.oldest(Waiting::Idle), Some(start));
    }

    #[test]
    fn an_evicted_place_leaving_leaves_its_reused_slot_alone() {
        let waiters = Waiters::default();
        let now = Instant::now();
        let first = waiters.join(Waiting::Head, now);
        waiters.evict_oldest(Waiting::Head).unwrap();
        let second = waiters.join(Waiting::Head, now);
        assert_eq!(first.slot, second.slot);
        waiters.leave(&first);
        assert_eq!(waiters.len(), 1, "the second is still there");
        waiters.leave(&second);
        assert_eq!(waiters.len(), 0);
        assert_eq!(waiters.evict_oldest(Waiting::Head), None);
    }
}
