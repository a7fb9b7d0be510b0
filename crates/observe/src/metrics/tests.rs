use super::*;
use crate::board::{Running, WorkerView};

fn snapshot() -> Snapshot {
    let mut totals = Totals::default();
    totals.requests[Front::Fastcgi.index()][1][Ended::Complete.index()] = 3;
    totals.requests[Front::Scgi.index()][4][Ended::Timeout.index()] = 1;
    totals.duration_buckets[0] = 2;
    totals.duration_buckets[14] = 1;
    totals.duration_buckets[15] = 1;
    totals.duration_sum_us = 75_000_000;
    totals.response_bytes = 1234;
    let running = Running {
        started_unix_us: 9_000_000,
        front: Some(Front::Scgi),
        method: b"GET".to_vec(),
        path: b"/a\"b\n".to_vec(),
        query: b"x=1".to_vec(),
        remote: b"".to_vec(),
        request_id: b"id-1".to_vec(),
        torn: false,
    };
    Snapshot {
        version: "0.1.0".into(),
        python: "3.11.7".into(),
        now_unix_ms: 10_000,
        uptime_s: 12.5,
        totals,
        backlog: Backlog {
            depth: Some(2),
            limit: Some(4096),
        },
        workers_target: 2,
        workers: vec![Worker {
            view: WorkerView {
                pid: 77,
                started_unix_ms: 4_000,
                generation: 1,
                index: 1,
                threads: vec![None, Some(running)],
                totals: Totals::default(),
            },
            rss_bytes: Some(50 << 20),
        }],
        respawns: Respawns {
            crash: 1,
            max_worker_lifetime: 3,
            ..Respawns::default()
        },
        reloads: 2,
    }
}

fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .parse()
        .unwrap()
}

#[test]
fn prometheus_has_each_family_once_with_help_and_type() {
    let text = prometheus(&snapshot());
    let mut families = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap();
            assert!(families.insert(name.to_string()), "{name} twice");
            assert!(text.contains(&format!("# HELP {name} ")), "{name}");
            assert!(name.starts_with("rustgi_"));
        }
    }
    assert!(families.len() >= 18, "{families:?}");
}

#[test]
fn prometheus_values() {
    let text = prometheus(&snapshot());
    assert_eq!(
        value(
            &text,
            "rustgi_requests_total{protocol=\"fastcgi\",class=\"2xx\",ended=\"complete\"}"
        ),
        3.0
    );
    assert_eq!(value(&text, "rustgi_request_timeouts_total"), 1.0);
    // Buckets are cumulative; +Inf is the count.
    assert_eq!(
        value(
            &text,
            "rustgi_request_duration_seconds_bucket{le=\"0.0005\"}"
        ),
        2.0
    );
    assert_eq!(
        value(&text, "rustgi_request_duration_seconds_bucket{le=\"60\"}"),
        3.0
    );
    assert_eq!(
        value(&text, "rustgi_request_duration_seconds_bucket{le=\"+Inf\"}"),
        4.0
    );
    assert_eq!(value(&text, "rustgi_request_duration_seconds_count"), 4.0);
    assert_eq!(value(&text, "rustgi_request_duration_seconds_sum"), 75.0);
    assert_eq!(
        value(&text, "rustgi_worker_threads{worker=\"1\",state=\"busy\"}"),
        1.0
    );
    assert_eq!(value(&text, "rustgi_listen_backlog_depth"), 2.0);
    assert_eq!(
        value(&text, "rustgi_worker_respawns_total{cause=\"crash\"}"),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "rustgi_worker_respawns_total{cause=\"max-worker-lifetime\"}"
        ),
        3.0
    );
    assert_eq!(
        value(&text, "rustgi_worker_uptime_seconds{worker=\"1\"}"),
        6.0
    );
    assert!(text.contains("rustgi_build_info{version=\"0.1.0\",python=\"3.11.7\"} 1"));
}

#[test]
fn label_values_are_escaped() {
    let mut snap = snapshot();
    snap.python = "3\"x\\\n".into();
    let text = prometheus(&snap);
    assert!(text.contains("python=\"3\\\"x\\\\\\n\""), "{text}");
}

#[test]
fn an_unknown_backlog_is_left_out() {
    let mut snap = snapshot();
    snap.backlog = Backlog::default();
    assert!(!prometheus(&snap).contains("rustgi_listen_backlog"));
    assert!(status_json(&snap, "[]").contains("\"backlog\":{\"depth\":null,\"limit\":null}"));
}

#[test]
fn status_json_follows_the_schema() {
    let json = status_json(&snapshot(), "{\"samples\":[]}");
    assert!(json.starts_with("{\"version\":\"0.1.0\",\"python\":\"3.11.7\","));
    assert!(json.contains("\"totals\":{\"requests\":4,\"by_class\":{\"1xx\":0,\"2xx\":3,\"3xx\":0,\"4xx\":0,\"5xx\":1}"));
    assert!(json.contains("\"by_ended\":{\"complete\":3,\"client-gone\":0,\"app-error\":0,\"timeout\":1,\"aborted\":0,\"killed\":0}"));
    assert!(json.contains("{\"busy\":false}"));
    assert!(json.contains(
        "{\"busy\":true,\"method\":\"GET\",\"path\":\"/a\\\"b\\n\",\"running_ms\":1000,\"request_id\":\"id-1\"}"
    ));
    assert!(json.contains("\"age_s\":6.0,\"requests\":0,\"rss_bytes\":52428800"));
    assert!(json.ends_with(",\"history\":{\"samples\":[]}}"));
}

#[test]
fn json_strings_escape_controls_and_bad_utf8() {
    assert_eq!(
        json_string(b"a\x01\"\\\xff"),
        "\"a\\u0001\\\"\\\\\u{fffd}\""
    );
}

#[test]
fn status_text_shows_busy_threads_safely() {
    let text = status_text(&snapshot());
    assert!(
        text.contains("worker 1 pid 77: age 6.0s, 0 requests, RSS 50.0 MiB, 1 of 2 threads busy"),
        "{text}"
    );
    assert!(
        text.contains("  thread 1: GET /a\"b\\n?x=1 for 1.0s"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 4, "{text}");
    assert_eq!(
        status_line(&snapshot()),
        "1 of 2 workers, 1/2 threads busy, 4 requests"
    );
}
