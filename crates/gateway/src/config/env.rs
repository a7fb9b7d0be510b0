//! `RUSTGI_<FLAG>` environment variables: `RUSTGI_MAX_REQUESTS=100` is
//! `--max-requests 100`. A repeatable flag's variable is a list separated
//! by spaces (`RUSTGI_ALLOW_FROM="127.0.0.1 ::1"`), by commas for a flag
//! that takes them (`--fastcgi-roles`), or a TOML array for values with
//! spaces in them (`RUSTGI_ENV='["A=1", "B=two words"]'`), as a `--config`
//! file writes it.
//!
//! rustgi and its tests use other `RUSTGI_` names among themselves (the
//! hand-over of a re-exec, `RUSTGI_LANE`, `RUSTGI_BIN`): a name that is no
//! flag is only refused when it looks like a typo of one
//! (`RUSTGI_MAX_REQUEST`) or names a flag by its alias (`RUSTGI_WORKERS`).

use super::keys::{Key, Kind, env_name};
use super::layer::{Layer, Setting, boolean};
use super::suggest;

/// The settings in `vars`; `extra` are other names read from the
/// environment (RUSTGI_CONFIG), which are no typos.
pub fn read(
    vars: impl IntoIterator<Item = (String, String)>,
    keys: &[Key],
    extra: &[String],
) -> Result<Layer, String> {
    let mut layer = Layer::new();
    for (var, value) in vars {
        let Some(rest) = var.strip_prefix("RUSTGI_") else {
            continue;
        };
        if extra.contains(&var) {
            continue;
        }
        let Some(key) = keys.iter().find(|k| k.env_name() == var) else {
            check_not_a_typo(&var, rest, keys)?;
            continue;
        };
        let values = match key.kind {
            Kind::Switch => vec![
                boolean(&value)
                    .ok_or_else(|| {
                        format!("{var}={value:?}: give 1, true, yes or on (0, false, no, off)")
                    })?
                    .to_string(),
            ],
            Kind::One => vec![value],
            Kind::Many if value.trim_start().starts_with('[') => {
                // A TOML array: values with spaces or commas in them.
                let text = format!("{} = {value}", key.name);
                let parsed = super::toml_file::parse(&text, &var, keys).map_err(|e| {
                    format!("{e}\n(a list in {var} is a TOML array: '[\"A=1\", \"B=two words\"]')")
                })?;
                parsed[&key.name].values.clone()
            }
            Kind::Many => match key.delimiter {
                Some(d) => value.split(d).map(|s| s.trim().to_string()).collect(),
                None => value.split_whitespace().map(str::to_string).collect(),
            },
        };
        layer.insert(
            key.name.clone(),
            Setting {
                values,
                origin: var,
            },
        );
    }
    Ok(layer)
}

fn check_not_a_typo(var: &str, rest: &str, keys: &[Key]) -> Result<(), String> {
    let name = rest.to_ascii_lowercase().replace('_', "-");
    if let Some(k) = keys.iter().find(|k| k.aliases.contains(&name)) {
        return Err(format!(
            "{var}: not a rustgi setting; the variable is {} (--{name} is another name of --{})",
            k.env_name(),
            k.name
        ));
    }
    let known: Vec<suggest::Known> = keys
        .iter()
        .map(|k| suggest::Known {
            name: &k.name,
            canonical: &k.name,
        })
        .collect();
    // Only a near miss of a flag: other servers' names (FOREIGN) are no
    // reason to refuse a variable someone else may use.
    match suggest::tip(&name, &known, &|n| env_name(n)) {
        Some(tip) if tip.starts_with("did you mean") => {
            Err(format!("{var}: not a rustgi setting; {tip}"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_vars(vars: &[(&str, &str)]) -> Result<Layer, String> {
        read(
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())),
            &super::super::all_keys(),
            &["RUSTGI_CONFIG".to_string()],
        )
    }

    #[test]
    fn variables_are_flags() {
        let layer = read_vars(&[
            ("RUSTGI_MAX_REQUESTS", "100"),
            ("RUSTGI_PRELOAD", "yes"),
            ("RUSTGI_ALLOW_FROM", "127.0.0.1 10.0.0.0/8"),
            ("RUSTGI_FASTCGI_ROLES", "responder,filter"),
            ("RUSTGI_ENV", "A=1"),
            ("PATH", "/bin"),
        ])
        .unwrap();
        assert_eq!(layer["max-requests"].values, ["100"]);
        assert_eq!(layer["max-requests"].origin, "RUSTGI_MAX_REQUESTS");
        assert_eq!(layer["preload"].values, ["true"]);
        assert_eq!(layer["allow-from"].values, ["127.0.0.1", "10.0.0.0/8"]);
        assert_eq!(layer["fastcgi-roles"].values, ["responder", "filter"]);
        assert_eq!(layer["env"].values, ["A=1"]);
        assert_eq!(layer.len(), 5);
        let layer = read_vars(&[
            ("RUSTGI_ENV", r#"["A=1", "GREETING=hello world"]"#),
            ("RUSTGI_PYTHONPATH", r#" ["/srv/my lib"]"#),
        ])
        .unwrap();
        assert_eq!(layer["env"].values, ["A=1", "GREETING=hello world"]);
        assert_eq!(layer["env"].origin, "RUSTGI_ENV");
        assert_eq!(layer["pythonpath"].values, ["/srv/my lib"]);
        let e = read_vars(&[("RUSTGI_ENV", "[\"A=1\"")]).unwrap_err();
        assert!(e.starts_with("RUSTGI_ENV"), "{e}");
        assert!(e.contains("TOML array"), "{e}");
    }

    #[test]
    fn the_projects_own_names_are_left_alone() {
        // What rustgi, its re-exec and its tests put in the environment.
        let ours = [
            "RUSTGI_LANE",
            "RUSTGI_BIN",
            "RUSTGI_KEEP_RUN",
            "RUSTGI_TEST_ENV",
            "RUSTGI_REQUEST_ID",
            "RUSTGI_BOARD_FD",
            "RUSTGI_OLD_WORKERS",
            "RUSTGI_DRAINING_WORKERS",
            "RUSTGI_SOCKET_FILE_OWNED",
            "RUSTGI_SOCKET_OURS",
            "RUSTGI_REEXEC_PROCESSES",
            "RUSTGI_CONFIG",
            "RUSTGI_BUILD_PYTHON",
            "RUSTGI_BUILD_PYTHON_VERSION",
            "RUSTGI_BUILD_PYTHON_PREFIX",
        ];
        let vars: Vec<(&str, &str)> = ours.iter().map(|v| (*v, "1")).collect();
        assert_eq!(read_vars(&vars).unwrap(), Layer::new());
    }

    #[test]
    fn typos_and_aliases_are_refused() {
        let e = read_vars(&[("RUSTGI_MAX_REQUEST", "5")]).unwrap_err();
        assert_eq!(
            e,
            "RUSTGI_MAX_REQUEST: not a rustgi setting; did you mean RUSTGI_MAX_REQUESTS?"
        );
        let e = read_vars(&[("RUSTGI_WORKERS", "5")]).unwrap_err();
        assert!(e.contains("RUSTGI_PROCESSES"), "{e}");
        let e = read_vars(&[("RUSTGI_PRELOAD", "perhaps")]).unwrap_err();
        assert!(e.starts_with("RUSTGI_PRELOAD=\"perhaps\""), "{e}");
    }
}
