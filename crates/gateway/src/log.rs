//! The daemon's log: tracing's plain format (or one JSON object a line,
//! `--log-format json`), with every field escaped, to stderr or to
//! `--log-file` (see `output`).
//!
//! Log lines carry what clients sent (a URI, a method, a header value in
//! a protocol error, an application's traceback that quotes them). A `\n`
//! in a URI once forged a whole log line, terminal escapes included, so
//! the one place every line passes through escapes them all
//! ([`escape_controls`]): no field writes a raw control character. A
//! multi-line message (a Python traceback) keeps its lines, each after the
//! first indented, so that none of them can pass for a line of ours.

mod json;
mod output;

use clap::ValueEnum;
use output::Output;
use rustgi_model::show::{Newlines, escape_controls};
use std::fmt::{self, Write};
use std::path::Path;
use tracing::field::Field;
use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::format::{Writer, debug_fn};

/// `--log-format`.
#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub enum Format {
    /// One line per event (a traceback's lines indented after the first).
    #[default]
    Text,
    /// One JSON object per line: time, level, target, message, request,
    /// fields.
    Json,
}

/// Logs at `level` (`RUST_LOG` overrides it) to `file`, or to stderr;
/// colours only for text on a terminal. Fails if `file` cannot be opened.
pub fn init(level: &str, format: Format, file: Option<&Path>) -> Result<(), String> {
    let output = match file {
        Some(path) => {
            Output::file(path).map_err(|e| format!("--log-file {}: {e}", path.display()))?
        }
        None => Output::stderr(),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_writer(output)
        .with_env_filter(filter);
    match format {
        Format::Text => builder
            .with_ansi(file.is_none() && std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .fmt_fields(debug_fn(write_field).delimited(" "))
            .init(),
        Format::Json => builder
            .with_ansi(false)
            .fmt_fields(json::JsonFields)
            .event_format(json::Json)
            .init(),
    }
    Ok(())
}

/// `message` as it is, any other field as `name=value`, as tracing's
/// default does, each escaped.
fn write_field(writer: &mut Writer<'_>, field: &Field, value: &dyn fmt::Debug) -> fmt::Result {
    let mut text = String::new();
    write!(text, "{value:?}")?;
    match field.name() {
        "message" => writer.write_str(&escape_controls(&text, Newlines::Indent)),
        name => write!(
            writer,
            "{}={}",
            name.trim_start_matches("r#"),
            escape_controls(&text, Newlines::Escape)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn no_field_writes_a_control_character() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .fmt_fields(debug_fn(write_field).delimited(" "))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let uri = "/x\n1999-01-01T00:00:00Z  INFO forged\x1b[2J";
            tracing::warn!(peer = %uri, request = 7, "bad {uri}");
            tracing::error!("application error:\nTraceback\nValueError: {uri}");
        });
        let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = log.lines().collect();
        assert!(
            !log.bytes().any(|b| (b < 0x20 && b != b'\n') || b == 0x7f),
            "{log:?}"
        );
        assert!(lines[0].ends_with("bad /x"), "{log}");
        assert_eq!(
            lines[1],
            "  1999-01-01T00:00:00Z  INFO forged\\x1b[2J \
             peer=/x\\n1999-01-01T00:00:00Z  INFO forged\\x1b[2J request=7"
        );
        assert_eq!(lines[3], "  Traceback");
        assert_eq!(lines[4], "  ValueError: /x");
        assert!(lines.iter().all(|line| !line.starts_with("1999")), "{log}");
    }

    #[test]
    fn json_lines_hold_whatever_a_field_carries() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .fmt_fields(json::JsonFields)
            .event_format(json::Json)
            .finish();
        // As the log shows a URI: UTF-8 (U+FFFD where not), controls escaped.
        let uri =
            rustgi_model::show::request_field(b"/x\"\n{\"level\":\"ERROR\"}\x1b[2J\x00\xff\xfe");
        tracing::subscriber::with_default(subscriber, || {
            let _span = tracing::info_span!("worker", pid = 42).entered();
            tracing::warn!(peer = %uri, request = %format!("#7 GET {uri}"), n = 3, raw = "a\x1bb\u{85}\"}", "bad {uri}");
            tracing::error!("application error:\nTraceback\n  \"quoted\" \\ back");
        });
        let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 2, "{log}");
        assert!(!log.chars().any(|c| c.is_control() && c != '\n'), "{log:?}");
        assert!(lines[0].starts_with("{\"time\":\""), "{log}");
        let escaped = r#"/x\"\\n{\"level\":\"ERROR\"}\\x1b[2J\\x00\u{fffd}\u{fffd}"#
            .replace("\\u{fffd}", "\u{fffd}");
        let expected = format!(
            r##""level":"WARN","target":"rustgi_gateway::log::tests","message":"bad {escaped}","request":"#7 GET {escaped}","fields":{{"pid":42,"peer":"{escaped}","n":3,"raw":"a\u001bb\u0085\"}}"}}}}"##
        );
        assert!(lines[0].ends_with(&expected), "{}\n{expected}", lines[0]);
        assert!(
            lines[1].ends_with(
                r#""message":"application error:\nTraceback\n  \"quoted\" \\ back","fields":{"pid":42}}"#
            ),
            "{}",
            lines[1]
        );
    }
}
