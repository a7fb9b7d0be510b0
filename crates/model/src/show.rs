//! How protocol errors show client bytes in a log line: exact, readable,
//! and bounded, so a 64 KiB garbage field never makes a 64 KiB log line.
//!
//! Every log line passes through [`escape_controls`] (the gateway's log
//! formatter calls it on every field): a client's `\n` in a URI must not
//! start a line of its own, nor its `\x1b[…` reach a terminal.

use std::borrow::Cow;
use std::fmt::Write;

/// What [`escape_controls`] does with a line feed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Newlines {
    /// Written as `\n`: the text stays on its line (request fields).
    Escape,
    /// Kept, and the next line indented by two spaces: a traceback stays
    /// readable, and none of its lines can pass for a log line of its own.
    Indent,
}

/// `text` with every control character (C0, DEL and C1: U+0000–U+001F,
/// U+007F–U+009F) written as an escape (`\n`, `\t`, `\x1b`). Borrowed
/// when there is none, which is the usual case.
pub fn escape_controls(text: &str, newlines: Newlines) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\n' if newlines == Newlines::Indent => out.push_str("\n  "),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _infallible = write!(out, "\\x{:02x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Request bytes (a method, a URI) for a log line: UTF-8 where it is
/// valid (U+FFFD where not), controls escaped, on one line.
pub fn request_field(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    escape_controls(&text, Newlines::Escape).into_owned()
}

/// `'G' (0x47)`, `'\x00' (0x00)`.
pub fn byte(byte: u8) -> String {
    format!("'{}' (0x{byte:02x})", byte.escape_ascii())
}

/// A name or value as latin-1, cut at 64 bytes (`…` marks the cut).
/// Errors show it with `{:?}`, which escapes controls; the log formatter
/// escapes what else gets through.
pub fn field(bytes: &[u8]) -> String {
    const MAX: usize = 64;
    let mut shown: String = bytes.iter().take(MAX).map(|&b| char::from(b)).collect();
    if bytes.len() > MAX {
        shown.push('…');
    }
    shown
}

#[cfg(test)]
mod tests {
    #[test]
    fn bytes_and_fields() {
        assert_eq!(super::byte(b'G'), "'G' (0x47)");
        assert_eq!(super::byte(0), "'\\x00' (0x00)");
        assert_eq!(super::field(b"caf\xe9"), "café");
        assert_eq!(super::field(&[b'a'; 70]).chars().count(), 65);
    }

    #[test]
    fn controls_are_escaped() {
        use super::{Newlines, escape_controls, request_field};
        let forged = "/x\n2026-01-01T00:00:00Z  INFO forged\x1b[2J\x7f\u{9b}\t\r";
        let one_line = escape_controls(forged, Newlines::Escape);
        assert_eq!(
            one_line,
            "/x\\n2026-01-01T00:00:00Z  INFO forged\\x1b[2J\\x7f\\x9b\\t\\r"
        );
        assert!(!one_line.chars().any(char::is_control));
        let indented = escape_controls("error:\nTraceback\n\x1b", Newlines::Indent);
        assert_eq!(indented, "error:\n  Traceback\n  \\x1b");
        assert!(matches!(
            escape_controls("café /ok", Newlines::Escape),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(request_field(b"GET\x1b[31m \xff"), "GET\\x1b[31m \u{fffd}");
    }
}
