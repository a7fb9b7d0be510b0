//! Warnings about bad input, rate-limited per peer and kind.
//!
//! A peer that sends garbage in a loop must not be able to fill the disk
//! or bury the log: 100k malformed messages once gave 32k lines. Each
//! (peer, kind) pair may log `--bad-input-warnings` (default 10) warnings
//! per [`WINDOW`]; the rest
//! are counted, and one line says how many were suppressed once the window
//! is over (or the worker stops). The kind is part of the key because
//! behind a Unix socket every connection is the same peer (the front
//! server): one noisy kind must not hide another. Good requests never come
//! here.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Warnings of one kind from one peer logged per window; 0: all.
static LIMIT: AtomicU32 = AtomicU32::new(10);
pub(crate) const WINDOW: Duration = Duration::from_secs(10);
/// Peers tracked at once: the table is keyed by client data, so it is
/// capped; past it, new peers share one entry.
const MAX_PEERS: usize = 1024;
const OTHER_PEERS: &str = "other peers";

/// Logs a bad-input warning unless its peer and kind have had their
/// share in this window: `bad_input!(peer, "kind", "format", args…)`; fields
/// may follow the kind as they do in `tracing::warn!`.
macro_rules! bad_input {
    ($peer:expr, $kind:expr, $($rest:tt)+) => {
        if $crate::bad_input::admit($peer, $kind) {
            tracing::warn!($($rest)+);
        }
    };
}
pub(crate) use bad_input;

struct Window {
    started: Instant,
    logged: u32,
    suppressed: u64,
}

static WINDOWS: Mutex<Option<HashMap<(String, &'static str), Window>>> = Mutex::new(None);

/// Whether a warning of `kind` from `peer` (`unix`, or an address with
/// its port: connections from one host count together) may be logged now.
pub(crate) fn admit(peer: &str, kind: &'static str) -> bool {
    let limit = LIMIT.load(Ordering::Relaxed);
    if limit == 0 {
        return true;
    }
    let now = Instant::now();
    let mut windows = WINDOWS.lock().unwrap_or_else(|e| e.into_inner());
    let windows = windows.get_or_insert_with(HashMap::new);
    let mut host = host(peer);
    if !windows.contains_key(&(host.to_owned(), kind)) && windows.len() >= MAX_PEERS {
        summarise(windows, now, false);
        if windows.len() >= MAX_PEERS {
            host = OTHER_PEERS;
        }
    }
    let window = windows
        .entry((host.to_owned(), kind))
        .or_insert_with(|| Window {
            started: now,
            logged: 0,
            suppressed: 0,
        });
    if now.duration_since(window.started) >= WINDOW {
        if window.suppressed > 0 {
            log_suppressed(host, kind, window.suppressed);
        }
        *window = Window {
            started: now,
            logged: 0,
            suppressed: 0,
        };
    }
    if window.logged < limit {
        window.logged += 1;
        true
    } else {
        window.suppressed += 1;
        false
    }
}

/// `--bad-input-warnings`: set once as a worker starts serving.
pub(crate) fn set_limit(limit: u32) {
    LIMIT.store(limit, Ordering::Relaxed);
}

/// Logs what was suppressed in windows that are over (all of them with
/// `all`, as the worker stops) and forgets those windows.
pub(crate) fn flush(all: bool) {
    let mut windows = WINDOWS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(windows) = windows.as_mut() {
        summarise(windows, Instant::now(), all);
    }
}

fn summarise(windows: &mut HashMap<(String, &'static str), Window>, now: Instant, all: bool) {
    windows.retain(|(peer, kind), window| {
        if !all && now.duration_since(window.started) < WINDOW {
            return true;
        }
        if window.suppressed > 0 {
            log_suppressed(peer, kind, window.suppressed);
        }
        false
    });
}

fn log_suppressed(peer: &str, kind: &str, count: u64) {
    let limit = LIMIT.load(Ordering::Relaxed);
    tracing::warn!(
        "suppressed {count} similar warnings ({kind}) from {peer}: \
         at most {limit} of a kind per peer every {WINDOW:?} (--bad-input-warnings)"
    );
}

/// `peer` without its port.
fn host(peer: &str) -> &str {
    match peer.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => peer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_does_not_make_a_new_peer() {
        assert_eq!(host("10.0.0.1:4567"), "10.0.0.1");
        assert_eq!(host("[::1]:4567"), "[::1]");
        assert_eq!(host("unix"), "unix");
    }

    #[test]
    fn each_peer_and_kind_gets_its_share_then_a_summary() {
        // Peers of this test only: the table is per process.
        let admitted = (0..100)
            .filter(|_| admit("192.0.2.1:1", "test kind"))
            .count();
        assert_eq!(admitted, 10, "the default limit");
        assert!(admit("192.0.2.1:2", "other kind"), "kinds count apart");
        assert!(admit("192.0.2.2:1", "test kind"), "peers count apart");
        let key = ("192.0.2.1".to_owned(), "test kind");
        let suppressed = |windows: &HashMap<_, Window>| windows.get(&key).map(|w| w.suppressed);
        {
            let windows = WINDOWS.lock().unwrap();
            assert_eq!(suppressed(windows.as_ref().unwrap()), Some(90));
        }
        flush(true);
        let windows = WINDOWS.lock().unwrap();
        assert_eq!(
            suppressed(windows.as_ref().unwrap()),
            None,
            "reported, forgotten"
        );
    }
}
