//! `--body-min-rate`: how slowly a client may send a request body.
//!
//! `--body-timeout` alone bounds the gap between two reads, so a client
//! that sends a byte every few seconds keeps a body (and, once its request
//! runs, a Python thread) for as long as it likes. As Apache's
//! mod_reqtimeout does (`RequestReadTimeout body=10,MinRate=1000`), the
//! first window is grace; after it, each window of waiting must bring at
//! least the rate times the window, or the body is cut.
//!
//! Only the time spent waiting for the client counts: while the
//! connection leaves the body in the socket because the application has
//! not asked for it (see `rustgi_core::body`), the client is held up by
//! us, not slow.

use crate::config::MinRate;
use std::time::Duration;

/// The rate check of one body.
pub(crate) struct RateCheck {
    limit: Option<MinRate>,
    /// Time spent waiting for the client so far.
    waited: Duration,
    /// When, in `waited` time, the current window ends.
    window_end: Duration,
    /// Bytes received in the current window.
    window_bytes: u64,
    /// The current window is the first: grace, not checked.
    grace: bool,
}

/// A window that brought too little.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TooSlow {
    /// What the window brought, in bytes per second.
    pub(crate) rate: u64,
    pub(crate) limit: u64,
    pub(crate) window_secs: u64,
}

impl RateCheck {
    pub(crate) fn new(limit: Option<MinRate>) -> Self {
        RateCheck {
            limit,
            waited: Duration::ZERO,
            window_end: limit.map_or(Duration::ZERO, |l| l.window),
            window_bytes: 0,
            grace: true,
        }
    }

    /// The longest the next read may wait before the window it is in
    /// ends and must be checked; `None` when there is no minimum rate.
    pub(crate) fn time_left(&self) -> Option<Duration> {
        self.limit
            .map(|_| self.window_end.saturating_sub(self.waited))
    }

    /// Counts a wait for the client of `waited` that brought `bytes`; at
    /// the end of a window after the first, `Err` if that window brought
    /// less than the minimum rate.
    pub(crate) fn record(&mut self, waited: Duration, bytes: u64) -> Result<(), TooSlow> {
        let Some(limit) = self.limit else {
            return Ok(());
        };
        self.waited += waited;
        self.window_bytes += bytes;
        if self.waited < self.window_end {
            return Ok(());
        }
        let window = limit.window.as_secs_f64();
        if !self.grace && (self.window_bytes as f64) < limit.bytes_per_sec as f64 * window {
            return Err(TooSlow {
                rate: (self.window_bytes as f64 / window) as u64,
                limit: limit.bytes_per_sec,
                window_secs: limit.window.as_secs().max(1),
            });
        }
        self.grace = false;
        self.window_end = self.waited + limit.window;
        self.window_bytes = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    fn check() -> RateCheck {
        RateCheck::new(Some(MinRate {
            bytes_per_sec: 100,
            window: 10 * SEC,
        }))
    }

    #[test]
    fn the_first_window_is_grace() {
        let mut rate = check();
        assert_eq!(rate.time_left(), Some(10 * SEC));
        assert_eq!(rate.record(4 * SEC, 0), Ok(()));
        assert_eq!(rate.time_left(), Some(6 * SEC));
        assert_eq!(rate.record(6 * SEC, 1), Ok(()), "nothing is checked yet");
        assert_eq!(rate.time_left(), Some(10 * SEC));
    }

    #[test]
    fn a_window_below_the_rate_is_cut_at_its_end() {
        let mut rate = check();
        rate.record(10 * SEC, 0).unwrap();
        assert_eq!(rate.record(5 * SEC, 990), Ok(()), "not at the end yet");
        assert_eq!(
            rate.record(5 * SEC, 0),
            Err(TooSlow {
                rate: 99,
                limit: 100,
                window_secs: 10
            })
        );
    }

    #[test]
    fn each_window_that_brings_enough_starts_the_next() {
        let mut rate = check();
        rate.record(10 * SEC, 0).unwrap();
        for _ in 0..5 {
            assert_eq!(rate.record(10 * SEC, 1000), Ok(()));
        }
        assert_eq!(rate.record(10 * SEC, 999).unwrap_err().rate, 99);
    }

    #[test]
    fn time_spent_not_reading_does_not_count() {
        // Only waits are recorded: a body left in the socket for a minute
        // while the application is busy costs its client nothing.
        let mut rate = check();
        rate.record(10 * SEC, 0).unwrap();
        rate.record(SEC, 600).unwrap();
        rate.record(9 * SEC, 400).unwrap();
        assert_eq!(rate.time_left(), Some(10 * SEC));
    }

    #[test]
    fn without_a_minimum_nothing_is_checked() {
        let mut rate = RateCheck::new(None);
        assert_eq!(rate.time_left(), None);
        assert_eq!(rate.record(1000 * SEC, 0), Ok(()));
    }
}
