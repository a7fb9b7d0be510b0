//! The settings' names, taken from the clap definition in cli.rs: that is
//! the one list of flags, and the file, the environment and the uWSGI
//! converter all go by it.

use clap::{ArgAction, Command};

/// How a setting's values are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A flag without a value (`--preload`): a TOML boolean.
    Switch,
    /// One value (`--threads 8`): a TOML string or number.
    One,
    /// A repeatable flag (`--env`, `--pythonpath`, `--allow-from`) or a
    /// comma-separated list (`--fastcgi-roles`): a TOML array.
    Many,
}

/// One setting: a flag with a value that can also come from a file or the
/// environment.
#[derive(Clone, Debug)]
pub struct Key {
    /// clap's id (the field name).
    pub id: String,
    /// The flag's long name, which is the key's name.
    pub name: String,
    pub kind: Kind,
    /// `--fastcgi-roles a,b`: a list in one value.
    pub delimiter: Option<char>,
    /// Other names the flag answers to (`--workers` for `--processes`).
    pub aliases: Vec<String>,
}

impl Key {
    /// `RUSTGI_MAX_REQUESTS` for `max-requests`.
    pub fn env_name(&self) -> String {
        env_name(&self.name)
    }
}

/// `RUSTGI_` and the name in capitals with `_` for `-`.
pub fn env_name(name: &str) -> String {
    format!("RUSTGI_{}", name.replace('-', "_").to_ascii_uppercase())
}

/// Every flag of `cmd` that is a setting: those with a long name, except
/// help, version, hidden ones (`--master`) and those whose ids are in
/// `sources` (--config and its kind: where settings come from).
pub fn settings(cmd: &Command, sources: &[String]) -> Vec<Key> {
    cmd.get_arguments()
        .filter(|arg| !arg.is_hide_set())
        .filter(|arg| !sources.iter().any(|s| s == arg.get_id().as_str()))
        .filter_map(|arg| {
            let name = arg.get_long()?;
            let kind = match arg.get_action() {
                ArgAction::SetTrue | ArgAction::SetFalse => Kind::Switch,
                ArgAction::Append => Kind::Many,
                ArgAction::Set if arg.get_value_delimiter().is_some() => Kind::Many,
                ArgAction::Set => Kind::One,
                _ => return None, // help, version, count
            };
            Some(Key {
                id: arg.get_id().to_string(),
                name: name.to_string(),
                kind,
                delimiter: arg.get_value_delimiter(),
                aliases: arg
                    .get_all_aliases()
                    .unwrap_or_default()
                    .into_iter()
                    .map(str::to_string)
                    .collect(),
            })
        })
        .collect()
}

/// The key `name` names, as written in a file: `max_requests` is
/// `max-requests`.
pub fn normalize(name: &str) -> String {
    name.replace('_', "-")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Sources};
    use clap::{Args, CommandFactory};

    fn keys() -> Vec<Key> {
        let sources: Vec<String> = Sources::augment_args(Command::new("x"))
            .get_arguments()
            .map(|a| a.get_id().to_string())
            .collect();
        settings(&Cli::command(), &sources)
    }

    #[test]
    fn every_flag_but_the_sources_is_a_key() {
        let keys = keys();
        let find = |name: &str| keys.iter().find(|k| k.name == name);
        assert_eq!(find("threads").unwrap().kind, Kind::One);
        assert_eq!(find("preload").unwrap().kind, Kind::Switch);
        assert_eq!(find("env").unwrap().kind, Kind::Many);
        assert_eq!(find("allow-from").unwrap().kind, Kind::Many);
        assert_eq!(find("fastcgi-roles").unwrap().kind, Kind::Many);
        assert_eq!(find("fastcgi-roles").unwrap().delimiter, Some(','));
        assert!(
            find("processes")
                .unwrap()
                .aliases
                .contains(&"workers".into())
        );
        for not_a_key in [
            "config",
            "uwsgi-ini",
            "print-config",
            "master",
            "help",
            "version",
        ] {
            assert!(find(not_a_key).is_none(), "{not_a_key}");
        }
    }

    #[test]
    fn environment_names() {
        assert_eq!(env_name("max-requests"), "RUSTGI_MAX_REQUESTS");
        assert_eq!(normalize("max_requests"), "max-requests");
    }
}
