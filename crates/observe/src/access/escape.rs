//! Escaping values for each format. Each escaper takes the raw bytes of a
//! value (anything a client sent), cuts it at [`VALUE_LIMIT`](super::VALUE_LIMIT)
//! with a marker, and writes it so that the line stays one valid line of
//! its format.

use super::VALUE_LIMIT;

/// The marker that ends a cut value (its full length follows).
pub(crate) const CUT_MARKER: &str = "...[cut, bytes: ";

/// `value` cut at the limit (never inside a UTF-8 sequence when it is
/// UTF-8 there), and its full length when it was cut.
fn cut(value: &[u8]) -> (&[u8], Option<usize>) {
    if value.len() <= VALUE_LIMIT {
        return (value, None);
    }
    let mut end = VALUE_LIMIT;
    // Back off a continuation byte or three, so that a valid character is
    // not split into invalid bytes.
    while end > VALUE_LIMIT - 3 && (value[end] & 0xC0) == 0x80 {
        end -= 1;
    }
    (&value[..end], Some(value.len()))
}

#[inline]
fn marker(out: &mut Vec<u8>, full: Option<usize>) {
    if let Some(full) = full {
        out.extend_from_slice(CUT_MARKER.as_bytes());
        out.extend_from_slice(full.to_string().as_bytes());
        out.push(b']');
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn unicode_escape(out: &mut Vec<u8>, byte: u8) {
    out.extend_from_slice(b"\\u00");
    out.push(HEX[usize::from(byte >> 4)]);
    out.push(HEX[usize::from(byte & 15)]);
}

/// Writes `value` between quotes, JSON-style: valid UTF-8 passes as it
/// is; `"`, `\\` and control characters are escaped; each byte of invalid
/// UTF-8 becomes `\u00XX` (the character of that byte's value).
fn quoted(out: &mut Vec<u8>, value: &[u8], full: Option<usize>) {
    out.push(b'"');
    let mut rest = value;
    while !rest.is_empty() {
        let (good, bad) = match std::str::from_utf8(rest) {
            Ok(text) => (text, &[][..]),
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                let good = std::str::from_utf8(good).expect("valid up to here");
                (good, bad)
            }
        };
        for c in good.bytes() {
            match c {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                b if b < 0x20 || b == 0x7f => unicode_escape(out, b),
                // Bytes of multi-byte characters (all >= 0x80) pass.
                b => out.push(b),
            }
        }
        if bad.is_empty() {
            break;
        }
        let bad_len = std::str::from_utf8(bad)
            .err()
            .and_then(|e| e.error_len())
            .unwrap_or(bad.len());
        for &b in &bad[..bad_len] {
            unicode_escape(out, b);
        }
        rest = &bad[bad_len..];
    }
    marker(out, full);
    out.push(b'"');
}

/// A JSON string (with its quotes), valid JSON whatever came in.
pub(crate) fn json(out: &mut Vec<u8>, value: &[u8]) {
    let (value, full) = cut(value);
    quoted(out, value, full);
}

/// A logfmt value: bare when it is plain (printable ASCII without space,
/// `=`, `"` or `\\`, not empty), otherwise quoted as JSON quotes it.
pub(crate) fn logfmt(out: &mut Vec<u8>, value: &[u8]) {
    let (value, full) = cut(value);
    let bare = !value.is_empty()
        && full.is_none()
        && value
            .iter()
            .all(|&b| b.is_ascii_graphic() && b != b'=' && b != b'"' && b != b'\\');
    if bare {
        out.extend_from_slice(value);
        return;
    }
    quoted(out, value, full);
}

/// A value in a text line, as Apache httpd escapes its log: `"` and `\`
/// with a backslash, every byte outside printable ASCII (controls,
/// newlines, anything from 0x7f up) as `\xHH`; an empty value as `-`.
pub(crate) fn text(out: &mut Vec<u8>, value: &[u8]) {
    if value.is_empty() {
        out.push(b'-');
        return;
    }
    text_raw(out, value);
}

/// As [`text`], with nothing for an empty value.
pub(crate) fn text_raw(out: &mut Vec<u8>, value: &[u8]) {
    let (value, full) = cut(value);
    let mut rest = value;
    while !rest.is_empty() {
        // Runs of plain bytes (most of a line) are copied at once.
        let run = plain_run(rest);
        out.extend_from_slice(&rest[..run]);
        let Some(&b) = rest.get(run) else {
            break;
        };
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            _ => {
                out.extend_from_slice(b"\\x");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 15)]);
            }
        }
        rest = &rest[run + 1..];
    }
    marker(out, full);
}

/// Whether a text line shows `b` as it is: printable ASCII but `"` and `\`.
fn plain(b: u8) -> bool {
    (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\'
}

/// How many bytes `value` begins with that [`plain`] passes, eight at a
/// time while none of eight needs escaping (the scan was the access
/// log's largest cost: a line is mostly plain bytes).
fn plain_run(value: &[u8]) -> usize {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    // Some byte of `w` is zero (no false alarm when none is).
    let zero = |w: u64| w.wrapping_sub(LO) & !w & HI;
    let mut at = 0;
    while let Some(chunk) = value.get(at..at + 8) {
        let w = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        // Below 0x20: subtracting 0x20 borrows into the byte's top bit.
        let control = w.wrapping_sub(LO * 0x20) & !w & HI;
        // 0x7f and up: the top bit, set or set by adding one.
        let high = (w | w.wrapping_add(LO)) & HI;
        let quote = zero(w ^ (LO * u64::from(b'"')));
        let backslash = zero(w ^ (LO * u64::from(b'\\')));
        if control | high | quote | backslash != 0 {
            break;
        }
        at += 8;
    }
    at + value[at..]
        .iter()
        .position(|&b| !plain(b))
        .unwrap_or(value.len() - at)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every byte value, at every place of an eight-byte word and past
    /// it, between plain bytes: the run stops exactly there.
    #[test]
    fn plain_runs_stop_at_the_first_byte_to_escape() {
        for b in 0..=255u8 {
            for at in 0..20 {
                let mut value = vec![b'a'; 24];
                value[at] = b;
                let want = if plain(b) { 24 } else { at };
                assert_eq!(plain_run(&value), want, "byte {b:#04x} at {at}");
            }
        }
        // Carries and borrows across bytes: neighbours at the edges.
        for (x, y) in [(0x00u8, 0xffu8), (0xff, 0x00), (0x1f, 0x7f), (0x7e, 0x80)] {
            let value = [b'a', b'b', b'c', x, y, b'd', b'e', b'f', b'g'];
            assert_eq!(plain_run(&value), 3 + usize::from(plain(x)));
        }
    }
}
