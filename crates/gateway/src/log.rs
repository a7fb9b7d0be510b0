//! The log: tracing's plain format, with every field escaped.
//!
//! Log lines carry what clients sent (a URI, a method, a header value in
//! a protocol error, an application's traceback that quotes them). A `\n`
//! in a URI once forged a whole log line, terminal escapes included, so
//! the one place every line passes through escapes them all
//! ([`escape_controls`]): no field writes a raw control character. A
//! multi-line message (a Python traceback) keeps its lines, each after the
//! first indented, so that none of them can pass for a line of ours.

use rustgi_model::show::{Newlines, escape_controls};
use std::fmt::{self, Write};
use tracing::field::Field;
use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::format::{Writer, debug_fn};

/// Logs to stderr at `level` (`RUST_LOG` overrides it); colours only on a
/// terminal.
pub fn init(level: &str) {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .fmt_fields(debug_fn(write_field).delimited(" "))
        .init();
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
}
