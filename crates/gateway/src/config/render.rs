//! Settings written as TOML that `--config` reads back.

use super::keys::{Key, Kind};

/// `name = value` for `key`'s `values`.
pub fn line(key: &Key, values: &[String]) -> String {
    let value = match key.kind {
        Kind::Switch => values.first().cloned().unwrap_or_else(|| "false".into()),
        Kind::One => scalar(values.first().map_or("", String::as_str)),
        Kind::Many => {
            let items: Vec<String> = values.iter().map(|v| quote(v)).collect();
            format!("[{}]", items.join(", "))
        }
    };
    format!("{} = {value}", key.name)
}

/// A number stays a number when TOML reads the same text back (`8`,
/// `2.5`); anything else is a string.
fn scalar(value: &str) -> String {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let unsigned = value.strip_prefix('-').unwrap_or(value);
    let integer = digits(unsigned) && (unsigned == "0" || !unsigned.starts_with('0'));
    let float = unsigned.split_once('.').is_some_and(|(int, frac)| {
        digits(int) && digits(frac) && (int == "0" || !int.starts_with('0'))
    });
    if (integer && value.parse::<i64>().is_ok()) || float {
        value.to_string()
    } else {
        quote(value)
    }
}

/// A TOML basic string.
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, kind: Kind) -> Key {
        Key {
            id: name.into(),
            name: name.into(),
            kind,
            delimiter: None,
            aliases: vec![],
        }
    }

    #[test]
    fn values() {
        let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(line(&key("threads", Kind::One), &v(&["8"])), "threads = 8");
        assert_eq!(line(&key("t", Kind::One), &v(&["2.5"])), "t = 2.5");
        assert_eq!(
            line(&key("chmod", Kind::One), &v(&["0660"])),
            "chmod = \"0660\""
        );
        assert_eq!(
            line(&key("s", Kind::One), &v(&["/a \"b\"\\"])),
            r#"s = "/a \"b\"\\""#
        );
        assert_eq!(line(&key("p", Kind::Switch), &v(&["true"])), "p = true");
        assert_eq!(
            line(&key("e", Kind::Many), &v(&["A=1", "7"])),
            "e = [\"A=1\", \"7\"]"
        );
        assert_eq!(
            line(&key("big", Kind::One), &v(&["99999999999999999999"])),
            "big = \"99999999999999999999\""
        );
    }
}
