//! The last ten minutes of the master's totals, for the status page's
//! charts. The master pushes a snapshot of its [`Totals`] every
//! [`INTERVAL_MS`]; the page wants rates and latency percentiles per
//! interval, which are differences between consecutive snapshots. Keeping
//! the snapshots (not the differences) keeps `push` trivial on the
//! master's poll loop and lets [`History::to_json`] handle resets and gaps
//! in one place.

use std::collections::VecDeque;
use std::fmt::Write;

use crate::Totals;
use crate::totals::{DURATION_BOUNDS, DURATION_BUCKETS, STATUS_CLASSES};

/// How often the master is expected to push a snapshot.
pub const INTERVAL_MS: u64 = 5_000;

/// Intervals kept: ten minutes at [`INTERVAL_MS`]. The ring holds one
/// snapshot more, the start of the oldest interval.
pub const INTERVALS: usize = 120;

/// The percentiles the page draws.
const QUANTILES: [(&str, f64); 3] = [("p50_ms", 0.5), ("p90_ms", 0.9), ("p99_ms", 0.99)];

const CLASS_NAMES: [&str; STATUS_CLASSES] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// A ring of timestamped [`Totals`] snapshots.
#[derive(Clone, Debug)]
pub struct History {
    samples: VecDeque<(u64, Totals)>,
}

impl Default for History {
    fn default() -> Self {
        Self::new()
    }
}

impl History {
    /// An empty history with room for ten minutes.
    pub fn new() -> Self {
        History {
            samples: VecDeque::with_capacity(INTERVALS + 1),
        }
    }

    /// Records the totals as they were at `at_unix_ms`, forgetting the
    /// oldest snapshot once ten minutes are held.
    pub fn push(&mut self, at_unix_ms: u64, totals: &Totals) {
        if self.samples.len() == INTERVALS + 1 {
            self.samples.pop_front();
        }
        self.samples.push_back((at_unix_ms, totals.clone()));
    }

    /// Snapshots held (one more than the intervals they span).
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// True before the first push.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The intervals as the status page reads them:
    ///
    /// ```text
    /// {"interval_ms": 5000, "intervals": 120, "points": [
    ///   {"from_unix_ms": n, "to_unix_ms": n, "requests": n, "rps": x,
    ///    "by_class": {"1xx": n, ..., "5xx": n},
    ///    "p50_ms": x|null, "p90_ms": x|null, "p99_ms": x|null, "mean_ms": x|null,
    ///    "request_bytes_ps": x, "response_bytes_ps": x, "reset": bool}, ...]}
    /// ```
    ///
    /// Each point covers the time between two consecutive snapshots, so a
    /// gap (a late push) is one longer point and its rates are averages
    /// over it. A snapshot with any counter lower than the one before it
    /// means the counters started again from zero: that point counts the
    /// new snapshot whole and says `"reset": true`. A clock that went back
    /// gives no point for that interval (no rate can be computed over it).
    /// Percentiles are estimated from the duration histogram's bucket
    /// differences as Prometheus' `histogram_quantile` does, and are null
    /// when the interval had no request.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(64 + self.samples.len() * 260);
        let _ = write!(
            out,
            "{{\"interval_ms\":{INTERVAL_MS},\"intervals\":{INTERVALS},\"points\":["
        );
        let mut first = true;
        for (before, after) in self.samples.iter().zip(self.samples.iter().skip(1)) {
            let (from, to) = (before.0, after.0);
            if to <= from {
                continue;
            }
            let reset = went_down(&before.1, &after.1);
            let delta = if reset {
                after.1.clone()
            } else {
                difference(&before.1, &after.1)
            };
            if !first {
                out.push(',');
            }
            first = false;
            point(&mut out, from, to, &delta, reset);
        }
        out.push_str("]}");
        out
    }
}

/// True when any counter of `after` is below `before`'s.
fn went_down(before: &Totals, after: &Totals) -> bool {
    let requests = before
        .requests
        .iter()
        .flatten()
        .flatten()
        .zip(after.requests.iter().flatten().flatten())
        .any(|(b, a)| a < b);
    let buckets = before
        .duration_buckets
        .iter()
        .zip(&after.duration_buckets)
        .any(|(b, a)| a < b);
    requests
        || buckets
        || after.duration_sum_us < before.duration_sum_us
        || after.request_bytes < before.request_bytes
        || after.response_bytes < before.response_bytes
}

/// `after - before`, counter by counter (none went down).
fn difference(before: &Totals, after: &Totals) -> Totals {
    let mut delta = after.clone();
    for (d, b) in delta
        .requests
        .iter_mut()
        .flatten()
        .flatten()
        .zip(before.requests.iter().flatten().flatten())
    {
        *d -= b;
    }
    for (d, b) in delta
        .duration_buckets
        .iter_mut()
        .zip(&before.duration_buckets)
    {
        *d -= b;
    }
    delta.duration_sum_us -= before.duration_sum_us;
    delta.request_bytes -= before.request_bytes;
    delta.response_bytes -= before.response_bytes;
    delta
}

/// Writes one interval's object.
fn point(out: &mut String, from: u64, to: u64, delta: &Totals, reset: bool) {
    let seconds = (to - from) as f64 / 1000.0;
    let requests = delta.count();
    let _ = write!(
        out,
        "{{\"from_unix_ms\":{from},\"to_unix_ms\":{to},\"requests\":{requests},\"rps\":{},\"by_class\":{{",
        number(requests as f64 / seconds)
    );
    for (class, name) in CLASS_NAMES.iter().enumerate() {
        let count: u64 = delta
            .requests
            .iter()
            .map(|by_class| by_class[class].iter().sum::<u64>())
            .sum();
        let comma = if class == 0 { "" } else { "," };
        let _ = write!(out, "{comma}\"{name}\":{count}");
    }
    out.push('}');
    for (name, q) in QUANTILES {
        let value = quantile(q, &delta.duration_buckets).map(|s| s * 1000.0);
        let _ = write!(out, ",\"{name}\":{}", optional(value));
    }
    let mean = (requests > 0).then(|| delta.duration_sum_us as f64 / 1000.0 / requests as f64);
    let _ = write!(
        out,
        ",\"mean_ms\":{},\"request_bytes_ps\":{},\"response_bytes_ps\":{},\"reset\":{reset}}}",
        optional(mean),
        number(delta.request_bytes as f64 / seconds),
        number(delta.response_bytes as f64 / seconds),
    );
}

/// The `q` quantile (seconds) of the durations counted in `buckets` (not
/// cumulative; the last is `+Inf`), or `None` when they are all zero.
///
/// Prometheus' `histogram_quantile`: find the bucket holding the rank
/// `q * count`, interpolate linearly between its bounds (the first
/// bucket starts at 0). A rank in `+Inf` answers the highest finite
/// bound: nothing more is known.
pub fn quantile(q: f64, buckets: &[u64; DURATION_BUCKETS]) -> Option<f64> {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total as f64;
    let mut below = 0u64;
    for (index, &bound) in DURATION_BOUNDS.iter().enumerate() {
        let count = buckets[index];
        if (below + count) as f64 >= rank && count > 0 {
            let start = if index == 0 {
                0.0
            } else {
                DURATION_BOUNDS[index - 1]
            };
            let within = (rank - below as f64) / count as f64;
            return Some(start + (bound - start) * within);
        }
        below += count;
    }
    Some(DURATION_BOUNDS[DURATION_BOUNDS.len() - 1])
}

/// A finite number as JSON, to a thousandth (the page needs no more).
fn number(value: f64) -> String {
    if !value.is_finite() {
        return "null".to_owned();
    }
    let text = format!("{value:.3}");
    let trimmed = text.trim_end_matches('0').trim_end_matches('.');
    match trimmed {
        "" | "-0" => "0".to_owned(),
        other => other.to_owned(),
    }
}

fn optional(value: Option<f64>) -> String {
    value.map_or_else(|| "null".to_owned(), number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::totals::{duration_bucket, status_class};
    use crate::{Ended, Front};

    /// Totals after `n` requests of `status` lasting `seconds` each, on top
    /// of `base`.
    fn more(base: &Totals, n: u64, status: u16, seconds: f64) -> Totals {
        let mut t = base.clone();
        t.requests[Front::Fastcgi.index()][status_class(status)][Ended::Complete.index()] += n;
        t.duration_buckets[duration_bucket(seconds)] += n;
        t.duration_sum_us += n * (seconds * 1e6) as u64;
        t.request_bytes += n * 10;
        t.response_bytes += n * 100;
        t
    }

    #[test]
    fn empty_and_single_snapshot_have_no_points() {
        let mut h = History::new();
        assert!(h.is_empty());
        let empty = r#"{"interval_ms":5000,"intervals":120,"points":[]}"#;
        assert_eq!(h.to_json(), empty);
        h.push(1_000, &Totals::default());
        assert_eq!(h.to_json(), empty);
    }

    #[test]
    fn one_interval_is_rendered_whole() {
        let mut h = History::new();
        let start = more(&Totals::default(), 7, 200, 0.003);
        h.push(1_000, &start);
        let mut next = more(&start, 8, 200, 0.003);
        next = more(&next, 2, 404, 0.003);
        h.push(6_000, &next);
        // 10 requests in 5 s, all in the (0.0025, 0.005] bucket: the
        // median is halfway through it, p90 at 9/10, p99 at 9.9/10.
        assert_eq!(
            h.to_json(),
            concat!(
                r#"{"interval_ms":5000,"intervals":120,"points":["#,
                r#"{"from_unix_ms":1000,"to_unix_ms":6000,"requests":10,"rps":2,"#,
                r#""by_class":{"1xx":0,"2xx":8,"3xx":0,"4xx":2,"5xx":0},"#,
                r#""p50_ms":3.75,"p90_ms":4.75,"p99_ms":4.975,"mean_ms":3,"#,
                r#""request_bytes_ps":20,"response_bytes_ps":200,"reset":false}"#,
                "]}"
            )
        );
    }

    #[test]
    fn quantiles_interpolate_across_buckets() {
        let mut buckets = [0u64; DURATION_BUCKETS];
        // 50 in (0, 0.5 ms], 50 in (50, 100 ms].
        buckets[0] = 50;
        buckets[7] = 50;
        assert_eq!(quantile(0.5, &buckets), Some(0.0005));
        let p90 = quantile(0.9, &buckets).unwrap();
        assert!((p90 - (0.05 + 0.05 * 0.8)).abs() < 1e-12, "{p90}");
        let p25 = quantile(0.25, &buckets).unwrap();
        assert!((p25 - 0.00025).abs() < 1e-12, "{p25}");
        assert_eq!(quantile(0.5, &[0; DURATION_BUCKETS]), None);
    }

    #[test]
    fn a_rank_in_the_infinite_bucket_answers_the_last_bound() {
        let mut buckets = [0u64; DURATION_BUCKETS];
        buckets[0] = 1;
        buckets[DURATION_BUCKETS - 1] = 99;
        assert_eq!(quantile(0.99, &buckets), Some(60.0));
        assert_eq!(quantile(0.01, &buckets), Some(0.0005));
    }

    #[test]
    fn an_idle_interval_has_null_percentiles() {
        let mut h = History::new();
        let t = more(&Totals::default(), 3, 500, 0.2);
        h.push(0, &t);
        h.push(5_000, &t);
        let json = h.to_json();
        assert!(json.contains(r#""requests":0,"rps":0,"#), "{json}");
        assert!(
            json.contains(r#""p50_ms":null,"p90_ms":null,"p99_ms":null,"mean_ms":null"#),
            "{json}"
        );
    }

    #[test]
    fn a_counter_that_went_down_is_a_reset() {
        let mut h = History::new();
        let old = more(&Totals::default(), 1000, 200, 0.001);
        h.push(0, &old);
        let restarted = more(&Totals::default(), 5, 503, 0.001);
        h.push(5_000, &restarted);
        let json = h.to_json();
        assert!(json.contains(r#""requests":5,"rps":1,"#), "{json}");
        assert!(json.contains(r#""5xx":5"#), "{json}");
        assert!(json.contains(r#""reset":true"#), "{json}");
    }

    #[test]
    fn a_gap_is_one_longer_interval_and_a_clock_going_back_none() {
        let mut h = History::new();
        let a = Totals::default();
        let b = more(&a, 300, 200, 0.001);
        h.push(10_000, &a);
        h.push(40_000, &b); // 30 s late: 300 requests → 10/s
        h.push(35_000, &b); // clock went back: no point
        h.push(40_000, &more(&b, 5, 200, 0.001));
        let json = h.to_json();
        assert!(
            json.contains(r#""from_unix_ms":10000,"to_unix_ms":40000,"requests":300,"rps":10,"#),
            "{json}"
        );
        assert!(!json.contains(r#""from_unix_ms":40000,"to_unix_ms":35000"#));
        assert!(json.contains(r#""from_unix_ms":35000,"to_unix_ms":40000,"requests":5,"rps":1,"#));
        assert_eq!(json.matches("from_unix_ms").count(), 2);
    }

    #[test]
    fn the_ring_keeps_ten_minutes() {
        let mut h = History::new();
        let mut t = Totals::default();
        for i in 0..500u64 {
            t = more(&t, 1, 200, 0.001);
            h.push(i * INTERVAL_MS, &t);
        }
        assert_eq!(h.len(), INTERVALS + 1);
        let json = h.to_json();
        assert_eq!(json.matches("from_unix_ms").count(), INTERVALS);
        let oldest = (500 - INTERVALS as u64 - 1) * INTERVAL_MS;
        assert!(
            json.contains(&format!(r#""from_unix_ms":{oldest},"#)),
            "{json}"
        );
    }

    #[test]
    fn numbers_are_plain_json() {
        assert_eq!(number(2.0), "2");
        assert_eq!(number(0.1 + 0.2), "0.3");
        assert_eq!(number(1e-9), "0");
        assert_eq!(number(-1e-9), "0");
        assert_eq!(number(12345.6789), "12345.679");
        assert_eq!(number(f64::NAN), "null");
        assert_eq!(number(f64::INFINITY), "null");
    }
}
