//! What all requests so far add up to: the counters the master gathers
//! from the workers' scoreboard, renders as Prometheus metrics and keeps
//! a history of for the status page. Counters only grow (a dead worker's
//! counts are kept by the master), so that rates are differences.

use crate::{Ended, Front};

/// Upper bounds (seconds) of the request duration histogram's buckets;
/// the last bucket (`+Inf`) follows them. Prometheus' defaults, with
/// room for slow uploads and long polls.
pub const DURATION_BOUNDS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];

/// Buckets of the duration histogram: one per bound, plus `+Inf`.
pub const DURATION_BUCKETS: usize = DURATION_BOUNDS.len() + 1;

/// Status classes 1xx..5xx; index `status / 100 - 1` (anything outside
/// 100..=599 counts as 5xx: it was an error).
pub const STATUS_CLASSES: usize = 5;

/// The class index of an HTTP status.
pub fn status_class(status: u16) -> usize {
    match status {
        100..=599 => usize::from(status / 100 - 1),
        _ => STATUS_CLASSES - 1,
    }
}

/// The bucket index of a duration.
pub fn duration_bucket(seconds: f64) -> usize {
    DURATION_BOUNDS
        .iter()
        .position(|&bound| seconds <= bound)
        .unwrap_or(DURATION_BOUNDS.len())
}

/// Counters of finished requests.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Totals {
    /// Requests by front protocol, status class and how they ended:
    /// `requests[Front::index][status_class][Ended::index]`.
    pub requests: [[[u64; Ended::ALL.len()]; STATUS_CLASSES]; Front::ALL.len()],
    /// Requests per duration bucket (not cumulative).
    pub duration_buckets: [u64; DURATION_BUCKETS],
    /// Sum of all durations, in microseconds.
    pub duration_sum_us: u64,
    /// Request body bytes as the requests declared them (CONTENT_LENGTH;
    /// a chunked body counts 0).
    pub request_bytes: u64,
    /// Response body bytes sent to the front server (as the access log
    /// counts them).
    pub response_bytes: u64,
}

impl Totals {
    /// All requests counted.
    pub fn count(&self) -> u64 {
        self.duration_buckets.iter().sum()
    }

    /// Adds `other` to these counts (the master sums its workers).
    pub fn add(&mut self, other: &Totals) {
        for (mine, theirs) in self
            .requests
            .iter_mut()
            .flatten()
            .flatten()
            .zip(other.requests.iter().flatten().flatten())
        {
            *mine += theirs;
        }
        for (mine, theirs) in self
            .duration_buckets
            .iter_mut()
            .zip(&other.duration_buckets)
        {
            *mine += theirs;
        }
        self.duration_sum_us += other.duration_sum_us;
        self.request_bytes += other.request_bytes;
        self.response_bytes += other.response_bytes;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_and_buckets() {
        assert_eq!(status_class(200), 1);
        assert_eq!(status_class(404), 3);
        assert_eq!(status_class(599), 4);
        assert_eq!(status_class(0), 4);
        assert_eq!(duration_bucket(0.0001), 0);
        assert_eq!(duration_bucket(0.0005), 0);
        assert_eq!(duration_bucket(0.0006), 1);
        assert_eq!(duration_bucket(1000.0), DURATION_BOUNDS.len());
    }

    #[test]
    fn adding_sums_every_counter() {
        let mut one = Totals::default();
        one.requests[Front::Scgi.index()][1][Ended::Complete.index()] = 2;
        one.duration_buckets[3] = 2;
        one.response_bytes = 10;
        let mut sum = one.clone();
        sum.add(&one);
        assert_eq!(
            sum.requests[Front::Scgi.index()][1][Ended::Complete.index()],
            4
        );
        assert_eq!(sum.count(), 4);
        assert_eq!(sum.response_bytes, 20);
    }
}
