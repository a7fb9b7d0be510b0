//! `--config rustgi.toml`: one key per flag, named as the flag
//! (`max-requests`, or `max_requests` as Python and TOML users tend to
//! write it); switches are booleans, repeatable flags arrays.

use super::keys::{Key, Kind, normalize};
use super::layer::{Layer, Setting};
use super::suggest;
use std::path::Path;
use toml::de::{DeTable, DeValue};

/// Reads the file at `path`.
pub fn read(path: &Path, keys: &[Key]) -> Result<Layer, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("--config {}: {e}", path.display()))?;
    parse(&text, &path.display().to_string(), keys).map_err(|e| {
        if path.extension().is_some_and(|x| x == "py") {
            format!("{e}\n(--config reads TOML; a gunicorn.conf.py is Python: write its settings as TOML keys)")
        } else {
            e
        }
    })
}

/// Parses `text`; `name` says where it came from in messages.
pub fn parse(text: &str, name: &str, keys: &[Key]) -> Result<Layer, String> {
    let table = DeTable::parse(text).map_err(|e| format!("{name}: {e}"))?;
    let mut layer = Layer::new();
    for (raw_key, value) in table.get_ref().iter() {
        let written = raw_key.get_ref().as_ref();
        let key_name = normalize(written);
        let line = line_of(text, raw_key.span().start);
        let origin = format!("{name}:{line}");
        let Some(key) = keys.iter().find(|k| k.name == key_name) else {
            return Err(unknown(written, &origin, keys));
        };
        let values = values_of(value.get_ref(), key, &origin, written)?;
        let setting = Setting {
            values,
            origin: origin.clone(),
        };
        if let Some(before) = layer.insert(key_name.clone(), setting) {
            return Err(format!(
                "{origin}: {written} is set again (first at {}); `{key_name}` and `{}` are one key",
                before.origin,
                key_name.replace('-', "_")
            ));
        }
    }
    Ok(layer)
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn unknown(written: &str, origin: &str, keys: &[Key]) -> String {
    let known: Vec<suggest::Known> = keys
        .iter()
        .flat_map(|k| {
            std::iter::once(&k.name)
                .chain(&k.aliases)
                .map(|n| suggest::Known {
                    name: n,
                    canonical: &k.name,
                })
        })
        .collect();
    let name = normalize(written);
    // An alias is a flag, but not a key: the file has one name per setting.
    if let Some(k) = keys.iter().find(|k| k.aliases.contains(&name)) {
        return format!(
            "{origin}: unknown key `{written}`: the key is `{}` (--{name} is another name of --{})",
            k.name, k.name
        );
    }
    let tip = suggest::tip(&name, &known, &|n| format!("`{n}`"))
        .map(|t| format!("; {t}"))
        .unwrap_or_default();
    format!("{origin}: unknown key `{written}`{tip}")
}

fn values_of(
    value: &DeValue,
    key: &Key,
    origin: &str,
    written: &str,
) -> Result<Vec<String>, String> {
    let wrong = |what: &str| format!("{origin}: {written} takes {what}, not {}", value.type_str());
    match key.kind {
        Kind::Switch => match value {
            DeValue::Boolean(b) => Ok(vec![b.to_string()]),
            _ => Err(wrong("true or false")),
        },
        Kind::One => scalar(value)
            .map(|v| vec![v])
            .ok_or_else(|| wrong("a string or a number")),
        Kind::Many => match value {
            DeValue::Array(items) => items
                .iter()
                .map(|item| scalar(item.get_ref()).ok_or_else(|| wrong("an array of strings")))
                .collect(),
            other => {
                let one = scalar(other).ok_or_else(|| wrong("an array of strings"))?;
                Ok(match key.delimiter {
                    Some(d) => one.split(d).map(|s| s.trim().to_string()).collect(),
                    None => vec![one],
                })
            }
        },
    }
}

/// A string or a number as the flag would take it. An integer written in
/// octal stays octal (`chmod = 0o660` is `--chmod 0o660`); hexadecimal and
/// binary ones become decimal.
fn scalar(value: &DeValue) -> Option<String> {
    match value {
        DeValue::String(s) => Some(s.to_string()),
        DeValue::Integer(i) => match i.radix() {
            10 => Some(i.as_str().to_string()),
            8 => Some(format!("0o{}", i.as_str())),
            radix => i128::from_str_radix(i.as_str(), radix)
                .ok()
                .map(|n| n.to_string()),
        },
        DeValue::Float(f) => Some(f.as_str().to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_it(text: &str) -> Result<Layer, String> {
        parse(text, "rustgi.toml", &super::super::all_keys())
    }

    fn values(layer: &Layer, key: &str) -> Vec<String> {
        layer[key].values.clone()
    }

    #[test]
    fn keys_as_flags_and_values_as_flag_values() {
        let layer = parse_it(
            r#"
# a comment
threads = 4
max_requests = 1_000
header-timeout = 2.5
preload = true
socket = "/run/app.sock"
env = ["A=1", "B=two words"]
pythonpath = "/srv/lib"
chmod = 0o660
fastcgi-roles = "responder,authorizer"
"#,
        )
        .unwrap();
        assert_eq!(values(&layer, "threads"), ["4"]);
        assert_eq!(values(&layer, "max-requests"), ["1000"]);
        assert_eq!(values(&layer, "header-timeout"), ["2.5"]);
        assert_eq!(values(&layer, "preload"), ["true"]);
        assert_eq!(values(&layer, "socket"), ["/run/app.sock"]);
        assert_eq!(values(&layer, "env"), ["A=1", "B=two words"]);
        assert_eq!(values(&layer, "pythonpath"), ["/srv/lib"]);
        assert_eq!(values(&layer, "chmod"), ["0o660"]);
        assert_eq!(values(&layer, "fastcgi-roles"), ["responder", "authorizer"]);
        assert_eq!(layer["threads"].origin, "rustgi.toml:3");
    }

    #[test]
    fn unknown_keys_name_the_closest() {
        let e = parse_it("max-request = 5\n").unwrap_err();
        assert_eq!(
            e,
            "rustgi.toml:1: unknown key `max-request`; did you mean `max-requests`?"
        );
        let e = parse_it("\n\nworkers = 5\n").unwrap_err();
        assert!(
            e.starts_with("rustgi.toml:3: unknown key `workers`: the key is `processes`"),
            "{e}"
        );
        let e = parse_it("chmod-socket = 666\n").unwrap_err();
        assert!(e.contains("--chmod"), "{e}");
        let e = parse_it("zzz = 1\n").unwrap_err();
        assert_eq!(e, "rustgi.toml:1: unknown key `zzz`");
        // Sources are not keys.
        assert!(parse_it("config = \"x.toml\"\n").is_err());
        assert!(parse_it("[uwsgi]\nthreads = 2\n").is_err());
    }

    #[test]
    fn wrong_types_and_twice_the_same_key() {
        let e = parse_it("preload = \"yes\"\n").unwrap_err();
        assert!(e.contains("true or false"), "{e}");
        assert!(parse_it("threads = [1, 2]\n").is_err());
        let e = parse_it("max-requests = 1\nmax_requests = 2\n").unwrap_err();
        assert!(e.contains("set again"), "{e}");
        let e = parse_it("threads = \n").unwrap_err();
        assert!(e.starts_with("rustgi.toml: "), "{e}");
    }
}
