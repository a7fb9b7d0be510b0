use super::*;
use std::time::UNIX_EPOCH;

/// 2026-12-07T17:38:00.123Z
fn when() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_796_665_080_123)
}

const HEADERS: HeaderList<'static> = HeaderList {
    request: &[("User-Agent", b"curl/8")],
    response: &[("Content-Type", b"text/plain")],
};

fn record() -> Record<'static> {
    Record {
        time: when(),
        request_id: b"abc-1",
        remote: b"10.0.0.7",
        method: b"GET",
        path: b"/hello",
        query: b"a=1",
        protocol: b"HTTP/1.1",
        status: Some(200),
        response_bytes: 12,
        request_bytes: 0,
        duration: Duration::from_micros(1500),
        first_byte: Some(Duration::from_micros(900)),
        pid: 42,
        front: Front::Fastcgi,
        ended: Ended::Complete,
        headers: &HEADERS,
    }
}

/// `record()` with another User-Agent.
fn with_agent<'a>(
    agent: &'a [u8],
    headers: &'a mut Vec<(&'static str, &'a [u8])>,
) -> HeaderList<'a> {
    headers.push(("User-Agent", agent));
    HeaderList {
        request: headers,
        response: &[],
    }
}

fn line(spec: &str, r: &Record) -> String {
    let mut out = Vec::new();
    Format::parse(spec).unwrap().render(r, &mut out);
    String::from_utf8(out).expect("every format writes UTF-8")
}

/// Quotes, newlines, control bytes, invalid UTF-8 and valid non-ASCII.
const FORGED: &[u8] = b"/x\"}\n{\"forged\":1,\\\x01\x7f\xff\xc3(\xe9t\xc3\xa9";

#[test]
fn combined_is_apaches() {
    assert_eq!(
        line("combined", &record()),
        "10.0.0.7 - - [07/Dec/2026:17:38:00 +0000] \"GET /hello?a=1 HTTP/1.1\" 200 12 \"-\" \"curl/8\"\n"
    );
}

#[test]
fn json_has_every_field() {
    assert_eq!(
        line("json", &record()),
        concat!(
            r#"{"time":"2026-12-07T17:38:00.123Z","request_id":"abc-1","remote":"10.0.0.7","#,
            r#""method":"GET","path":"/hello","query":"a=1","protocol":"HTTP/1.1","status":200,"#,
            r#""bytes":12,"request_bytes":0,"duration_us":1500,"ttfb_us":900,"pid":42,"#,
            r#""front":"fastcgi","ended":"complete","referer":"","user_agent":"curl/8"}"#,
            "\n"
        )
    );
}

#[test]
fn logfmt_quotes_only_what_needs_it() {
    let mut r = record();
    r.status = None;
    r.first_byte = None;
    r.ended = Ended::ClientGone;
    let mut list = Vec::new();
    let headers = with_agent(b"Mozilla/5.0 (X11)", &mut list);
    r.headers = &headers;
    assert_eq!(
        line("logfmt", &r),
        "time=2026-12-07T17:38:00.123Z request_id=abc-1 remote=10.0.0.7 method=GET path=/hello \
         query=\"a=1\" protocol=HTTP/1.1 status=- bytes=12 request_bytes=0 duration_us=1500 \
         ttfb_us=- pid=42 front=fastcgi ended=client-gone referer=\"\" user_agent=\"Mozilla/5.0 (X11)\"\n"
    );
}

#[test]
fn a_template_names_fields_and_headers() {
    let spec = "{remote} {method} {path} {status} {duration_us} {request_header:user-agent} \
                {response_header:Content-Type} {response_header:X-None} {{{ended}}}";
    assert_eq!(
        line(spec, &record()),
        "10.0.0.7 GET /hello 200 1500 curl/8 text/plain - {complete}\n"
    );
    let format = Format::parse(spec).unwrap();
    assert_eq!(format.request_headers(), ["user-agent"]);
    assert_eq!(format.response_headers(), ["Content-Type", "X-None"]);
}

#[test]
fn an_unknown_field_is_refused_with_the_known_ones() {
    let error = Format::parse("{remote} {colour}").unwrap_err().to_string();
    assert!(error.contains("unknown field {colour}"), "{error}");
    for field in FIELDS {
        assert!(error.contains(field), "{error}");
    }
    assert!(error.contains("request_header:NAME"), "{error}");
    for bad in [
        "{remote",
        "remote}",
        "plain text",
        "{request_header:}",
        "{request_header:a b}",
    ] {
        assert!(Format::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn forged_json_stays_one_valid_object() {
    let mut r = record();
    r.path = FORGED;
    let mut list = Vec::new();
    let headers = with_agent(FORGED, &mut list);
    r.headers = &headers;
    let text = line("json", &r);
    assert_eq!(text.matches('\n').count(), 1, "{text}");
    // What the escapes must be: the JSON string of FORGED.
    let expected = r#""/x\"}\n{\"forged\":1,\\\u0001\u007f\u00ff\u00c3(\u00e9té""#;
    assert!(text.contains(&format!("\"path\":{expected},")), "{text}");
    assert!(
        text.contains(&format!("\"user_agent\":{expected}}}")),
        "{text}"
    );
    assert!(!text.contains("\"forged\":1"), "{text}");
}

#[test]
fn forged_logfmt_and_text_stay_one_line() {
    let mut r = record();
    r.path = FORGED;
    let text = line("logfmt", &r);
    assert!(
        text.contains(r#" path="/x\"}\n{\"forged\":1,\\\u0001\u007f\u00ff\u00c3(\u00e9té" "#),
        "{text}"
    );
    assert_eq!(text.matches('\n').count(), 1);
    let text = line("combined", &r);
    assert!(
        text.contains(
            r#""GET /x\"}\x0a{\"forged\":1,\\\x01\x7f\xff\xc3(\xe9t\xc3\xa9?a=1 HTTP/1.1""#
        ),
        "{text}"
    );
    assert_eq!(text.matches('\n').count(), 1);
}

#[test]
fn a_long_value_is_cut_with_a_marker() {
    let mut r = record();
    // "é" is two bytes: the cut at 1024 would fall inside one.
    let mut long = vec![b'a'; 1023];
    long.extend_from_slice("é".repeat(1000).as_bytes());
    let mut list = Vec::new();
    let headers = with_agent(&long, &mut list);
    r.headers = &headers;
    let text = line("json", &r);
    let cut = format!("{}...[cut, bytes: {}]", "a".repeat(1023), long.len());
    assert!(
        text.contains(&format!("\"user_agent\":\"{cut}\"")),
        "{text}"
    );
    let text = line("{request_header:User-Agent}", &r);
    assert_eq!(text, format!("{cut}\n"));
    let path = vec![b'/'; 1024];
    r.path = &path;
    assert!(
        !line("{path}", &r).contains("cut"),
        "exactly the limit stays whole"
    );
}

#[test]
fn cgi_names_of_headers() {
    assert_eq!(cgi_name("User-Agent"), b"HTTP_USER_AGENT");
    assert_eq!(cgi_name("content-type"), b"CONTENT_TYPE");
    assert_eq!(cgi_name("X-Request-Id"), b"HTTP_X_REQUEST_ID");
}

#[test]
fn times_in_utc() {
    let mut out = Vec::new();
    time::clf(&mut out, UNIX_EPOCH + Duration::from_secs(951_782_400)); // 2000-02-29
    assert_eq!(out, b"29/Feb/2000:00:00:00 +0000");
}

#[test]
fn the_writer_writes_batches_and_reopens() {
    let dir = std::env::temp_dir().join(format!("rustgi-access-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("access.log");
    let writer = Writer::start(WriterConfig {
        destination: Destination::File(path.clone()),
        format: Format::parse("{request_id}").unwrap(),
        queue: 1 << 20,
        report: Box::new(|_| {}),
    })
    .unwrap();
    let mut r = record();
    writer.submit(&r);
    // Rotated away (logrotate's `create`), then SIGUSR1.
    let wait_for = |path: &std::path::Path, text: &str| {
        for _ in 0..500 {
            if std::fs::read_to_string(path).unwrap_or_default() == text {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("{path:?} never held {text:?}");
    };
    wait_for(&path, "abc-1\n");
    std::fs::rename(&path, dir.join("access.log.1")).unwrap();
    crate::reopen::request();
    r.request_id = b"abc-2";
    writer.submit(&r);
    writer.stop(Duration::from_secs(5));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "abc-2\n");
    assert_eq!(
        std::fs::read_to_string(dir.join("access.log.1")).unwrap(),
        "abc-1\n"
    );
    assert_eq!(writer.dropped(), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_full_queue_drops_and_counts() {
    let reports = Arc::new(Mutex::new(Vec::new()));
    let seen = reports.clone();
    let writer = Writer::start(WriterConfig {
        destination: Destination::File("/dev/null".into()),
        format: Format::parse("json").unwrap(),
        queue: 600,
        report: Box::new(move |line| seen.lock().unwrap().push(line.to_string())),
    })
    .unwrap();
    // Room for about two lines: the writing thread may take some
    // meanwhile, but not 10 000 in a row.
    for _ in 0..10_000 {
        writer.submit(&record());
    }
    writer.stop(Duration::from_secs(5));
    let dropped = writer.dropped();
    assert!(dropped > 0);
    let reports = reports.lock().unwrap();
    assert!(
        reports
            .iter()
            .any(|r| r.contains("dropped") && r.contains(&format!("{dropped} in all"))),
        "{reports:?}"
    );
}

use std::sync::{Arc, Mutex};
