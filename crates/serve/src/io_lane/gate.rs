//! How many of the I/O lane's requests may wait for a Python thread.
//!
//! With `--max-connections` in the thousands, the connections held are
//! no longer what bounds the Python work queued: every request whose head
//! arrived would be queued at once, its job (the head, the body read so
//! far) kept in memory until a thread is free. The gate lets
//! `2 × threads + 8` of the I/O lane's requests be submitted and not yet
//! answering; a connection with a whole request beyond that holds it
//! unsubmitted, with what it read of its body (up to `--buffer-body`,
//! read before the gate so that a slow body never holds a place) and the
//! rest left in the socket, so memory stays bounded by the connections
//! held times a head and `--buffer-body`.
//!
//! A permit is held from the submission to the response's first events
//! (or its end): a request holds one while it is queued, and while it runs
//! without an answer yet, where it holds a thread anyway. A response being
//! written to a slow client holds none.
//!
//! Requests the Python lane answers (whole at accept, taken by the
//! thread that accepted them) never pass here.

use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A request's place in the gate; dropped when its response begins.
pub(crate) type Admission = OwnedSemaphorePermit;

/// The I/O lane's requests waiting for the Python threads, bounded.
#[derive(Clone)]
pub(crate) struct JobGate {
    permits: Arc<Semaphore>,
}

impl JobGate {
    pub(crate) fn new(bound: usize) -> Self {
        JobGate {
            permits: Arc::new(Semaphore::new(bound.max(1))),
        }
    }

    /// Waits until a request may be submitted.
    pub(crate) async fn admit(&self) -> Option<Admission> {
        // Never closed: acquiring fails only on a closed semaphore.
        self.permits.clone().acquire_owned().await.ok()
    }

    /// A place now, if one is free.
    pub(crate) fn try_admit(&self) -> Option<Admission> {
        self.permits.clone().try_acquire_owned().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_come_back_when_dropped() {
        let gate = JobGate::new(2);
        let first = gate.try_admit().unwrap();
        let _second = gate.try_admit().unwrap();
        assert!(gate.try_admit().is_none());
        drop(first);
        assert!(gate.try_admit().is_some());
    }
}
