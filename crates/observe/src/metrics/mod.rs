//! What the master shows: one [`Snapshot`] of the scoreboard and of its
//! own state, rendered as Prometheus metrics (text format 0.0.4), as the
//! status page's JSON and as the plain text of `rustgi-gateway status`
//! and SIGUSR2. Pure functions of the snapshot, so that each rendering is
//! tested without a server.

use crate::board::{Running, WorkerView};
use crate::totals::{DURATION_BOUNDS, STATUS_CLASSES};
use crate::{Ended, Front, Totals};
use std::fmt::Write;

/// Everything one rendering needs, read once.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// rustgi's version.
    pub version: String,
    /// The Python version the workers run ("" until one said).
    pub python: String,
    pub now_unix_ms: u64,
    /// Since the master started (this image of it).
    pub uptime_s: f64,
    pub totals: Totals,
    pub backlog: Backlog,
    /// The worker count wanted (`--processes`, SIGTTIN/SIGTTOU).
    pub workers_target: usize,
    pub workers: Vec<Worker>,
    pub respawns: Respawns,
    pub reloads: u64,
}

/// The listen queue, when the kernel tells it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backlog {
    pub depth: Option<u64>,
    pub limit: Option<u64>,
}

/// Workers started again, by why the one before ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Respawns {
    pub crash: u64,
    pub max_requests: u64,
    pub reload_on_rss: u64,
    pub timeout: u64,
    pub max_worker_lifetime: u64,
}

/// A live worker.
#[derive(Clone, Debug)]
pub struct Worker {
    pub view: WorkerView,
    pub rss_bytes: Option<u64>,
}

impl Worker {
    fn age_s(&self, now_unix_ms: u64) -> f64 {
        now_unix_ms.saturating_sub(self.view.started_unix_ms) as f64 / 1000.0
    }
}

fn running_ms(running: &Running, now_unix_ms: u64) -> u64 {
    (now_unix_ms * 1000).saturating_sub(running.started_unix_us) / 1000
}

/// A Prometheus label value: backslash, double quote and newline escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

const CLASSES: [&str; STATUS_CLASSES] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The Prometheus text exposition (format 0.0.4) of `snap`.
pub fn prometheus(snap: &Snapshot) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let o = &mut out;
    head(
        o,
        "rustgi_build_info",
        "gauge",
        "rustgi and Python versions (always 1).",
    );
    let _ = writeln!(
        o,
        "rustgi_build_info{{version=\"{}\",python=\"{}\"}} 1",
        label(&snap.version),
        label(&snap.python)
    );
    head(
        o,
        "rustgi_uptime_seconds",
        "gauge",
        "Seconds since the master started.",
    );
    let _ = writeln!(o, "rustgi_uptime_seconds {:.3}", snap.uptime_s);

    let t = &snap.totals;
    head(
        o,
        "rustgi_requests_total",
        "counter",
        "Finished requests by front protocol, HTTP status class and how they ended.",
    );
    for front in Front::ALL.iter().filter(|f| **f != Front::Cgi) {
        for (class, class_name) in CLASSES.iter().enumerate() {
            for ended in Ended::ALL {
                let _ = writeln!(
                    o,
                    "rustgi_requests_total{{protocol=\"{}\",class=\"{class_name}\",ended=\"{}\"}} {}",
                    front.as_str(),
                    ended.as_str(),
                    t.requests[front.index()][class][ended.index()]
                );
            }
        }
    }
    head(
        o,
        "rustgi_request_duration_seconds",
        "histogram",
        "Time from a request's start on a Python thread to its end.",
    );
    let mut cumulative = 0;
    for (bound, count) in DURATION_BOUNDS.iter().zip(&t.duration_buckets) {
        cumulative += count;
        let _ = writeln!(
            o,
            "rustgi_request_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
        );
    }
    let _ = writeln!(
        o,
        "rustgi_request_duration_seconds_bucket{{le=\"+Inf\"}} {}",
        t.count()
    );
    let _ = writeln!(
        o,
        "rustgi_request_duration_seconds_sum {:.6}",
        t.duration_sum_us as f64 / 1e6
    );
    let _ = writeln!(o, "rustgi_request_duration_seconds_count {}", t.count());
    head(
        o,
        "rustgi_request_timeouts_total",
        "counter",
        "Requests ended by --timeout.",
    );
    let timeouts: u64 = t
        .requests
        .iter()
        .flatten()
        .map(|by_ended| by_ended[Ended::Timeout.index()])
        .sum();
    let _ = writeln!(o, "rustgi_request_timeouts_total {timeouts}");
    head(
        o,
        "rustgi_request_body_bytes_total",
        "counter",
        "Request body bytes declared by CONTENT_LENGTH (chunked bodies, without one, count 0).",
    );
    let _ = writeln!(o, "rustgi_request_body_bytes_total {}", t.request_bytes);
    head(
        o,
        "rustgi_response_bytes_total",
        "counter",
        "Response bytes the application produced for the front server.",
    );
    let _ = writeln!(o, "rustgi_response_bytes_total {}", t.response_bytes);

    head(o, "rustgi_workers", "gauge", "Worker processes alive.");
    let _ = writeln!(o, "rustgi_workers {}", snap.workers.len());
    head(
        o,
        "rustgi_workers_target",
        "gauge",
        "Worker processes wanted (--processes, SIGTTIN, SIGTTOU).",
    );
    let _ = writeln!(o, "rustgi_workers_target {}", snap.workers_target);
    head(
        o,
        "rustgi_worker_respawns_total",
        "counter",
        "Workers started to replace one that crashed or retired (max-requests, reload-on-rss, timeout, max-worker-lifetime).",
    );
    let r = snap.respawns;
    for (cause, n) in [
        ("crash", r.crash),
        ("max-requests", r.max_requests),
        ("reload-on-rss", r.reload_on_rss),
        ("timeout", r.timeout),
        ("max-worker-lifetime", r.max_worker_lifetime),
    ] {
        let _ = writeln!(o, "rustgi_worker_respawns_total{{cause=\"{cause}\"}} {n}");
    }
    head(
        o,
        "rustgi_reloads_total",
        "counter",
        "Reloads begun (SIGHUP, --touch-reload).",
    );
    let _ = writeln!(o, "rustgi_reloads_total {}", snap.reloads);

    if let Some(depth) = snap.backlog.depth {
        head(
            o,
            "rustgi_listen_backlog_depth",
            "gauge",
            "Connections waiting in the listen queue, not yet accepted by a worker.",
        );
        let _ = writeln!(o, "rustgi_listen_backlog_depth {depth}");
    }
    if let Some(limit) = snap.backlog.limit {
        head(
            o,
            "rustgi_listen_backlog_limit",
            "gauge",
            "The listen queue's length limit (the listen(2) backlog).",
        );
        let _ = writeln!(o, "rustgi_listen_backlog_limit {limit}");
    }

    let (mut busy, mut all) = (0, 0);
    for w in &snap.workers {
        all += w.view.threads.len();
        busy += w.view.threads.iter().flatten().count();
    }
    head(
        o,
        "rustgi_threads_busy",
        "gauge",
        "Python threads running a request, all workers.",
    );
    let _ = writeln!(o, "rustgi_threads_busy {busy}");
    head(o, "rustgi_threads", "gauge", "Python threads, all workers.");
    let _ = writeln!(o, "rustgi_threads {all}");

    head(
        o,
        "rustgi_worker_threads",
        "gauge",
        "Python threads per worker, busy or idle.",
    );
    for w in &snap.workers {
        let busy = w.view.threads.iter().flatten().count();
        let idle = w.view.threads.len() - busy;
        for (state, n) in [("busy", busy), ("idle", idle)] {
            let _ = writeln!(
                o,
                "rustgi_worker_threads{{worker=\"{}\",state=\"{state}\"}} {n}",
                w.view.index
            );
        }
    }
    head(
        o,
        "rustgi_worker_info",
        "gauge",
        "Each worker's pid and generation (always 1).",
    );
    for w in &snap.workers {
        let _ = writeln!(
            o,
            "rustgi_worker_info{{worker=\"{}\",pid=\"{}\",generation=\"{}\"}} 1",
            w.view.index, w.view.pid, w.view.generation
        );
    }
    head(
        o,
        "rustgi_worker_requests_total",
        "counter",
        "Requests finished by this worker process (restarts from 0 when it is replaced).",
    );
    for w in &snap.workers {
        let _ = writeln!(
            o,
            "rustgi_worker_requests_total{{worker=\"{}\"}} {}",
            w.view.index,
            w.view.totals.count()
        );
    }
    head(
        o,
        "rustgi_worker_resident_memory_bytes",
        "gauge",
        "Each worker's resident set size.",
    );
    for w in &snap.workers {
        if let Some(rss) = w.rss_bytes {
            let _ = writeln!(
                o,
                "rustgi_worker_resident_memory_bytes{{worker=\"{}\"}} {rss}",
                w.view.index
            );
        }
    }
    head(
        o,
        "rustgi_worker_uptime_seconds",
        "gauge",
        "Seconds since each worker was started.",
    );
    for w in &snap.workers {
        let _ = writeln!(
            o,
            "rustgi_worker_uptime_seconds{{worker=\"{}\"}} {:.3}",
            w.view.index,
            w.age_s(snap.now_unix_ms)
        );
    }
    out
}

pub use crate::json::string as json_string;

fn opt(n: Option<u64>) -> String {
    n.map_or("null".into(), |n| n.to_string())
}

/// The status page's JSON (the schema in docs/observability.md);
/// `history` is `History::to_json()`.
pub fn status_json(snap: &Snapshot, history: &str) -> String {
    let t = &snap.totals;
    let mut o = String::with_capacity(4096);
    let _ = write!(
        o,
        "{{\"version\":{},\"python\":{},\"uptime_s\":{:.3},\"now_unix_ms\":{},",
        json_string(snap.version.as_bytes()),
        json_string(snap.python.as_bytes()),
        snap.uptime_s,
        snap.now_unix_ms
    );
    let _ = write!(o, "\"totals\":{{\"requests\":{},\"by_class\":{{", t.count());
    for (class, name) in CLASSES.iter().enumerate() {
        let n: u64 = t
            .requests
            .iter()
            .map(|by_class| by_class[class].iter().sum::<u64>())
            .sum();
        let comma = if class == 0 { "" } else { "," };
        let _ = write!(o, "{comma}\"{name}\":{n}");
    }
    o.push_str("},\"by_ended\":{");
    for ended in Ended::ALL {
        let n: u64 = t
            .requests
            .iter()
            .flatten()
            .map(|by_ended| by_ended[ended.index()])
            .sum();
        let comma = if ended.index() == 0 { "" } else { "," };
        let _ = write!(o, "{comma}\"{}\":{n}", ended.as_str());
    }
    let _ = write!(
        o,
        "}},\"request_bytes\":{},\"response_bytes\":{}}},",
        t.request_bytes, t.response_bytes
    );
    let _ = write!(
        o,
        "\"backlog\":{{\"depth\":{},\"limit\":{}}},\"workers\":[",
        opt(snap.backlog.depth),
        opt(snap.backlog.limit)
    );
    for (i, w) in snap.workers.iter().enumerate() {
        let comma = if i == 0 { "" } else { "," };
        let _ = write!(
            o,
            "{comma}{{\"index\":{},\"pid\":{},\"age_s\":{:.1},\"requests\":{},\"rss_bytes\":{},\"threads\":[",
            w.view.index,
            w.view.pid,
            w.age_s(snap.now_unix_ms),
            w.view.totals.count(),
            opt(w.rss_bytes)
        );
        for (k, thread) in w.view.threads.iter().enumerate() {
            let comma = if k == 0 { "" } else { "," };
            match thread {
                None => {
                    let _ = write!(o, "{comma}{{\"busy\":false}}");
                }
                Some(r) => {
                    let _ = write!(
                        o,
                        "{comma}{{\"busy\":true,\"method\":{},\"path\":{},\"running_ms\":{},\"request_id\":{}}}",
                        json_string(&r.method),
                        json_string(&r.path),
                        running_ms(r, snap.now_unix_ms),
                        json_string(&r.request_id)
                    );
                }
            }
        }
        o.push_str("]}");
    }
    let _ = write!(o, "],\"history\":{history}}}");
    o
}

/// Human text: one line per worker, one indented line per busy thread
/// (`rustgi-gateway status`, SIGUSR2's log entry).
pub fn status_text(snap: &Snapshot) -> String {
    let mut o = String::new();
    let busy: usize = snap
        .workers
        .iter()
        .map(|w| w.view.threads.iter().flatten().count())
        .sum();
    let threads: usize = snap.workers.iter().map(|w| w.view.threads.len()).sum();
    let _ = writeln!(
        o,
        "rustgi {} (Python {}): {} of {} workers, {busy} of {threads} threads busy, {} requests, up {}",
        snap.version,
        if snap.python.is_empty() {
            "?"
        } else {
            &snap.python
        },
        snap.workers.len(),
        snap.workers_target,
        snap.totals.count(),
        human_duration(snap.uptime_s),
    );
    if let (Some(depth), Some(limit)) = (snap.backlog.depth, snap.backlog.limit) {
        let _ = writeln!(o, "listen queue: {depth} waiting (limit {limit})");
    }
    for w in &snap.workers {
        let rss = w
            .rss_bytes
            .map_or("?".into(), |b| format!("{:.1} MiB", b as f64 / 1048576.0));
        let _ = writeln!(
            o,
            "worker {} pid {}: age {}, {} requests, RSS {rss}, {} of {} threads busy",
            w.view.index,
            w.view.pid,
            human_duration(w.age_s(snap.now_unix_ms)),
            w.view.totals.count(),
            w.view.threads.iter().flatten().count(),
            w.view.threads.len()
        );
        for (k, thread) in w.view.threads.iter().enumerate() {
            if let Some(r) = thread {
                let _ = writeln!(
                    o,
                    "  thread {k}: {} {}{}{} for {}",
                    show(&r.method),
                    show(&r.path),
                    if r.query.is_empty() { "" } else { "?" },
                    show(&r.query),
                    human_duration(running_ms(r, snap.now_unix_ms) as f64 / 1000.0)
                );
            }
        }
    }
    o
}

/// The short form for systemd's `STATUS=`.
pub fn status_line(snap: &Snapshot) -> String {
    let busy: usize = snap
        .workers
        .iter()
        .map(|w| w.view.threads.iter().flatten().count())
        .sum();
    let threads: usize = snap.workers.iter().map(|w| w.view.threads.len()).sum();
    format!(
        "{} of {} workers, {busy}/{threads} threads busy, {} requests",
        snap.workers.len(),
        snap.workers_target,
        snap.totals.count()
    )
}

/// Request text for a log or a terminal: controls and invalid UTF-8
/// escaped, so that a request cannot forge lines.
fn show(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

fn human_duration(seconds: f64) -> String {
    if seconds < 1.0 {
        format!("{:.0}ms", seconds * 1000.0)
    } else if seconds < 120.0 {
        format!("{seconds:.1}s")
    } else if seconds < 7200.0 {
        format!("{:.0}m", seconds / 60.0)
    } else {
        format!("{:.1}h", seconds / 3600.0)
    }
}

#[cfg(test)]
mod tests;
