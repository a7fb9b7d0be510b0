//! One source's settings (a file, the environment), checked against the
//! flags they stand for.

use super::keys::{Key, Kind};
use clap::Command;
use std::collections::BTreeMap;

/// A setting's values as the flag would take them (a switch: `true` or
/// `false`), and where they were written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting {
    pub values: Vec<String>,
    /// For messages and --print-config: `rustgi.toml`, `RUSTGI_THREADS`,
    /// `app.ini:12 (harakiri)`.
    pub origin: String,
}

/// Settings by key name (the flag's long name).
pub type Layer = BTreeMap<String, Setting>;

/// Something the operator should know about a source: an option that
/// means nothing here (`info`), or one whose intent rustgi cannot carry
/// out the same way (`warn`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub warn: bool,
    pub text: String,
}

impl Note {
    pub fn info(text: impl Into<String>) -> Note {
        Note {
            warn: false,
            text: text.into(),
        }
    }

    pub fn warn(text: impl Into<String>) -> Note {
        Note {
            warn: true,
            text: text.into(),
        }
    }
}

/// Checks each value with the flag's own parser, so that a bad value is
/// refused with where it was written rather than as a flag nobody typed.
pub fn validate(layer: &Layer, keys: &[Key]) -> Result<(), String> {
    for (name, setting) in layer {
        let key = keys
            .iter()
            .find(|k| &k.name == name)
            .ok_or_else(|| format!("{}: {name} is not a setting", setting.origin))?;
        if key.kind == Kind::Switch {
            match setting.values.as_slice() {
                [v] if v == "true" || v == "false" => continue,
                _ => {
                    return Err(format!(
                        "{}: {name} is true or false, not {:?}",
                        setting.origin, setting.values
                    ));
                }
            }
        }
        if key.kind == Kind::One && setting.values.len() != 1 {
            return Err(format!(
                "{}: {name} takes one value, not {}",
                setting.origin,
                setting.values.len()
            ));
        }
        // The argument alone, with its own parser: how the value combines
        // with other settings is checked once the sources are merged.
        let arg = super::command()
            .get_arguments()
            .find(|a| a.get_id().as_str() == key.id)
            .expect("every key is an argument")
            .clone();
        let alone = Command::new("rustgi-gateway").arg(arg);
        for value in &setting.values {
            // `--name=value`: a value may start with a dash.
            let flag = format!("--{name}={value}");
            if let Err(e) = alone
                .clone()
                .try_get_matches_from(["rustgi-gateway", &flag])
            {
                return Err(format!("{}: {}", setting.origin, clap_message(&e)));
            }
        }
    }
    Ok(())
}

/// clap's whole message for `e`, without its `error: ` lead and its
/// closing "For more information" line.
pub fn clap_message(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let text = text.trim_end();
    let text = text.strip_prefix("error: ").unwrap_or(text);
    let text = text
        .strip_suffix("For more information, try '--help'.")
        .unwrap_or(text);
    text.trim_end().to_string()
}

/// Reads a switch as written in an environment variable or an ini file.
pub fn boolean(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" | "y" => Some(true),
        "0" | "false" | "no" | "off" | "n" | "" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Vec<Key> {
        super::super::all_keys()
    }

    fn one(name: &str, values: &[&str]) -> Layer {
        Layer::from([(
            name.to_string(),
            Setting {
                values: values.iter().map(|v| v.to_string()).collect(),
                origin: "test.toml".into(),
            },
        )])
    }

    #[test]
    fn values_are_checked_by_the_flags_parser() {
        assert!(validate(&one("threads", &["4"]), &keys()).is_ok());
        let e = validate(&one("threads", &["0"]), &keys()).unwrap_err();
        assert!(e.starts_with("test.toml: "), "{e}");
        assert!(e.contains("--threads"), "{e}");
        let e = validate(&one("chmod", &["999"]), &keys()).unwrap_err();
        assert!(e.contains("octal"), "{e}");
        assert!(validate(&one("preload", &["true"]), &keys()).is_ok());
        assert!(validate(&one("preload", &["maybe"]), &keys()).is_err());
        assert!(validate(&one("threads", &["1", "2"]), &keys()).is_err());
        assert!(validate(&one("env", &["A=1", "B=2"]), &keys()).is_ok());
        assert!(validate(&one("env", &["novalue"]), &keys()).is_err());
        assert!(validate(&one("env", &["-X=1"]), &keys()).is_ok());
        assert!(validate(&one("mount", &["--"]), &keys()).is_ok());
    }

    #[test]
    fn booleans() {
        assert_eq!(boolean("Yes"), Some(true));
        assert_eq!(boolean("0"), Some(false));
        assert_eq!(boolean("sure"), None);
    }
}
