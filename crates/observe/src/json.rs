//! JSON string literals for what rustgi writes by hand (the daemon's JSON
//! log, `/status.json`): one escaper, so that every JSON it writes keeps a
//! client's bytes inside their string. The access log escapes bytes, not
//! characters (invalid UTF-8 stays visible there), in `access::escape`.

use std::fmt::Write;

/// Appends `text` as a JSON string, quotes included. Controls (C0, DEL,
/// C1) become `\uXXXX` (or `\n`, `\r`, `\t`): none reaches a terminal
/// that shows the file. U+2028 and U+2029 too: a JSON document may be
/// read as JavaScript.
pub fn push_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                let _infallible = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A JSON string literal of `bytes` (invalid UTF-8 replaced by U+FFFD,
/// controls escaped).
pub fn string(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len() + 2);
    push_string(&mut out, &text);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn controls_quotes_and_separators_are_escaped() {
        assert_eq!(
            super::string(b"a\"b\\c\n\x1b\x7f\xff"),
            "\"a\\\"b\\\\c\\n\\u001b\\u007f\u{fffd}\""
        );
        let mut out = String::new();
        super::push_string(&mut out, "\u{85}\u{2028}");
        assert_eq!(out, "\"\\u0085\\u2028\"");
    }
}
