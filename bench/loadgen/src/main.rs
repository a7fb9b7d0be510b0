//! `rustgi-loadgen`: drives a WSGI backend straight through its socket with
//! SCGI, FastCGI or uwsgi (no web server in between), from N concurrent
//! connections on one thread (poll(2), no async runtime), checks every
//! response (status and exact body), and prints one JSON line: req/s,
//! latency percentiles (p1 to p99.9 and max), request and error counts.
//! Exits 1 if any request failed.
//!
//! ```sh
//! rustgi-loadgen --proto scgi --socket /tmp/app.sock -c 16 -d 5 --warmup 1 \
//!     --path /hello --expect-body 'Hello, World!\n'
//! ```

mod ajp;
mod engine;
mod proto;
mod response;

use clap::{Parser, ValueEnum};
use engine::{Plan, Tally};
use proto::{Proto, Request};
use response::Expect;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    about = "Load generator speaking SCGI, FastCGI, uwsgi and AJP to a backend's Unix socket"
)]
struct Args {
    /// Protocol: scgi, fastcgi (one request per connection), fastcgi-keep
    /// (FCGI_KEEP_CONN, connections reused), uwsgi or ajp (connections
    /// reused; see --ajp-secret).
    #[arg(long, value_enum)]
    proto: Proto,
    /// The backend's Unix socket.
    #[arg(long)]
    socket: PathBuf,
    /// Concurrent connections.
    #[arg(short = 'c', long, default_value_t = 16)]
    connections: usize,
    /// Seconds measured (after the warm-up).
    #[arg(short = 'd', long, default_value_t = 5.0)]
    duration: f64,
    /// Seconds of load before measuring starts.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Stop after this many requests (counted over warm-up and window).
    #[arg(short = 'n', long)]
    requests: Option<u64>,
    /// Request path, with an optional `?query`.
    #[arg(long, default_value = "/")]
    path: String,
    /// Request method (default GET, or POST with --body-file).
    #[arg(long)]
    method: Option<String>,
    /// Send this file as the request body.
    #[arg(long)]
    body_file: Option<PathBuf>,
    /// The exact body every response must have (`\n` is a newline).
    #[arg(long, conflicts_with = "expect_body_file")]
    expect_body: Option<String>,
    /// A file holding the exact body every response must have.
    #[arg(long)]
    expect_body_file: Option<PathBuf>,
    /// The status every response must have.
    #[arg(long, default_value_t = 200)]
    expect_status: u16,
    /// AJP's shared secret (Apache's `secret=`), sent as `?secret`.
    #[arg(long)]
    ajp_secret: Option<String>,
    /// Seconds one request may take before it counts as an error.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let body = match &args.body_file {
        Some(path) => match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => return usage(format!("{}: {e}", path.display())),
        },
        None => Vec::new(),
    };
    let expected = match (&args.expect_body, &args.expect_body_file) {
        (Some(s), _) => s.replace("\\n", "\n").into_bytes(),
        (None, Some(path)) => match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => return usage(format!("{}: {e}", path.display())),
        },
        (None, None) => return usage("say --expect-body or --expect-body-file".into()),
    };
    let addr = match engine::socket_address(&args.socket) {
        Ok(a) => a,
        Err(e) => return usage(e),
    };
    let method = args
        .method
        .clone()
        .unwrap_or_else(|| if body.is_empty() { "GET" } else { "POST" }.into());
    let request = proto::encode(
        args.proto,
        &Request {
            method: &method,
            uri: &args.path,
            body: &body,
        },
        args.ajp_secret.as_deref(),
    );
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let plan = Plan {
        proto: args.proto,
        request,
        body,
        expect: Expect {
            status: args.expect_status,
            body: expected,
        },
        connections: args.connections,
        measure_from,
        end: measure_from + Duration::from_secs_f64(args.duration),
        timeout: Duration::from_secs_f64(args.timeout),
        limit: args.requests,
    };
    let cpu_before = cpu_time();
    let mut tally = engine::run(&plan, addr);
    let finished = Instant::now();
    let cpu = cpu_time() - cpu_before;
    let window = if args.requests.is_some() {
        finished.saturating_duration_since(measure_from)
    } else {
        plan.end - measure_from
    };
    println!(
        "{}",
        report(&args, &mut tally, window, cpu, finished - start)
    );
    if tally.errors.is_empty() && tally.total > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn usage(message: String) -> ExitCode {
    eprintln!("rustgi-loadgen: {message}");
    ExitCode::from(2)
}

/// User plus system CPU time of this process.
fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn report(args: &Args, t: &mut Tally, window: Duration, cpu: Duration, wall: Duration) -> String {
    t.latencies_us.sort_unstable();
    let secs = window.as_secs_f64().max(1e-9);
    let errors: u64 = t.errors.values().sum();
    let kinds: Vec<String> = t
        .errors
        .iter()
        .map(|(k, v)| format!("\"{k}\":{v}"))
        .collect();
    let first_error = t.first_error.as_deref().map_or("null".into(), json_string);
    format!(
        concat!(
            "{{\"proto\":\"{proto}\",\"socket\":{socket},\"path\":{path},\"connections\":{c},",
            "\"duration_s\":{secs:.3},\"requests\":{req},\"requests_total\":{total},",
            "\"rps\":{rps:.1},\"latency_us\":{{\"p1\":{p1},\"p10\":{p10},\"p25\":{p25},",
            "\"p50\":{p50},\"p75\":{p75},\"p90\":{p90},\"p99\":{p99},\"p99.9\":{p999},",
            "\"max\":{max}}},",
            "\"errors\":{errors},\"error_kinds\":{{{kinds}}},\"first_error\":{first},",
            "\"connects\":{connects},\"connect_retries\":{retries},\"reconnects\":{reconnects},",
            "\"stderr_bytes\":{stderr},\"cpu_s\":{cpu:.3},\"wall_s\":{wall:.3},",
            "\"cpu_us_per_request\":{cpu_per:.2}}}"
        ),
        proto = args.proto.to_possible_value().expect("value").get_name(),
        socket = json_string(&args.socket.to_string_lossy()),
        path = json_string(&args.path),
        c = args.connections,
        secs = secs,
        req = t.requests,
        total = t.total,
        rps = t.requests as f64 / secs,
        p1 = percentile(&t.latencies_us, 1.0),
        p10 = percentile(&t.latencies_us, 10.0),
        p25 = percentile(&t.latencies_us, 25.0),
        p50 = percentile(&t.latencies_us, 50.0),
        p75 = percentile(&t.latencies_us, 75.0),
        p90 = percentile(&t.latencies_us, 90.0),
        p99 = percentile(&t.latencies_us, 99.0),
        p999 = percentile(&t.latencies_us, 99.9),
        max = t.latencies_us.last().copied().unwrap_or(0),
        errors = errors,
        kinds = kinds.join(","),
        first = first_error,
        connects = t.connects,
        retries = t.connect_retries,
        reconnects = t.reconnects,
        stderr = t.stderr_bytes,
        cpu = cpu.as_secs_f64(),
        wall = wall.as_secs_f64(),
        cpu_per = cpu.as_secs_f64() * 1e6 / (t.total.max(1) as f64),
    )
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
    }

    #[test]
    fn json_escapes() {
        assert_eq!(json_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }
}
