//! SIGUSR1 asks every log file to be reopened (logrotate's `create`
//! moves the file away and expects the writer to open a new one).
//!
//! Whoever receives the signal (the master's signalfd, a worker's signal
//! task) calls [`request`]; each writer compares [`generation`] with the
//! one it opened at and reopens when it changed. Neither side needs to
//! know the other.

use std::sync::atomic::{AtomicU64, Ordering};

static GENERATION: AtomicU64 = AtomicU64::new(0);

/// Asks every log writer of this process to reopen its file.
pub fn request() {
    GENERATION.fetch_add(1, Ordering::Release);
}

/// Changes each time [`request`] is called.
pub fn generation() -> u64 {
    GENERATION.load(Ordering::Acquire)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_request_changes_the_generation() {
        let before = super::generation();
        super::request();
        assert_ne!(super::generation(), before);
    }
}
