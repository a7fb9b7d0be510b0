//! Where settings come from: the command line, `RUSTGI_<FLAG>` variables,
//! a `--config` TOML file, a `--uwsgi-ini` file and a `--paste` file's
//! `[server:main]`, in that order of precedence (the first that sets a
//! setting wins; a repeatable flag's list is taken whole from one source).
//!
//! The flags in cli.rs are the one list: a file's keys and the variables'
//! names are the flags' long names. Values from files and the environment
//! become the flags' defaults, so that clap parses and checks every value
//! the same way whatever its source.

mod env;
mod ini;
mod keys;
mod layer;
mod paste;
mod render;
mod suggest;
mod toml_file;
mod uwsgi;

pub use layer::Note;

use crate::cli::{CONFLICTS, Cli, REQUIRES, Sources};
use clap::builder::BoolishValueParser;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Args, Command, CommandFactory, FromArgMatches};
use keys::{Key, Kind};
use layer::Layer;
use std::collections::HashSet;
use std::ffi::OsString;
use std::path::PathBuf;

/// The command line, with the other sources merged in.
pub struct Loaded {
    pub cli: Cli,
    /// What the ini files said that rustgi takes differently; logged at start.
    pub notes: Vec<Note>,
    /// With --print-config: the merged settings as TOML.
    pub printed: Option<String>,
}

/// Why the settings could not be read.
pub enum Failure {
    /// clap's own (help, version, a bad flag value): it prints and exits.
    Clap(clap::Error),
    /// Ours, already saying where the fault is.
    Message(String),
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure::Message(message)
    }
}

/// The ids of --config and the other sources: they are no settings.
fn source_ids() -> Vec<String> {
    Sources::augment_args(Command::new("sources"))
        .get_arguments()
        .map(|a| a.get_id().to_string())
        .collect()
}

/// Every setting, in the order of `--help`.
pub(crate) fn all_keys() -> Vec<Key> {
    keys::settings(&Cli::command(), &source_ids())
}

/// The command line as rustgi parses it: cli.rs's flags, with every switch
/// also taking a value (`--preload=false`), so that a flag can turn off
/// what a file or a variable turned on.
pub(crate) fn command() -> Command {
    Cli::command().mut_args(|arg| {
        if !matches!(arg.get_action(), ArgAction::SetTrue) {
            return arg;
        }
        arg.action(ArgAction::Set)
            .num_args(0..=1)
            .require_equals(true)
            .default_missing_value("true")
            .default_value("false")
            .hide_default_value(true)
            .value_name("BOOL")
            .value_parser(BoolishValueParser::new())
    })
}

/// Reads every source for `argv` (with the program name) and the
/// environment `vars`.
pub fn load(argv: Vec<OsString>, vars: Vec<(String, String)>) -> Result<Loaded, Failure> {
    let cmd = command();
    let keys = all_keys();
    let first = cmd
        .clone()
        .try_get_matches_from(&argv)
        .map_err(|e| unknown_flag(e, &keys))?;
    let on_cli: HashSet<String> = keys
        .iter()
        .filter(|k| first.value_source(&k.id) == Some(ValueSource::CommandLine))
        .map(|k| k.name.clone())
        .collect();
    let from_env = |var: &str| vars.iter().find(|(k, _)| k == var).map(|(_, v)| v.clone());
    let source_vars = ["RUSTGI_CONFIG".to_string(), "RUSTGI_UWSGI_INI".to_string()];
    let config = first
        .get_one::<PathBuf>("config")
        .cloned()
        .or_else(|| from_env(&source_vars[0]).map(PathBuf::from));
    let uwsgi_ini = first
        .get_one::<String>("uwsgi_ini")
        .cloned()
        .or_else(|| from_env(&source_vars[1]));

    let mut notes = Vec::new();
    let env_layer = env::read(vars.iter().cloned(), &keys, &source_vars)?;
    let toml_layer = match &config {
        Some(path) => toml_file::read(path, &keys)?,
        None => Layer::new(),
    };
    let uwsgi_layer = match &uwsgi_ini {
        Some(spec) => {
            let converted = uwsgi::read(spec)?;
            notes.extend(converted.notes);
            converted.layer
        }
        None => Layer::new(),
    };
    layer::validate(&env_layer, &keys).map_err(|e| split_hint(e, &env_layer))?;
    for layer in [&toml_layer, &uwsgi_layer] {
        layer::validate(layer, &keys)?;
    }
    let switches = |name: &str, values: &[String]| -> bool {
        let is_switch = keys
            .iter()
            .any(|k| k.name == name && k.kind == Kind::Switch);
        is_switch && values.iter().all(|v| v == "false")
    };
    let cli_set: HashSet<String> = on_cli
        .iter()
        .filter(|name| {
            let raw: Vec<String> = keys
                .iter()
                .find(|k| &k.name == *name)
                .and_then(|k| first.get_raw(&k.id))
                .map(|raw| raw.map(|v| v.to_string_lossy().into_owned()).collect())
                .unwrap_or_default();
            !switches(name, &raw) || raw.iter().any(|v| v != "false")
        })
        .cloned()
        .collect();
    let mut merged = merge(&on_cli, &cli_set, &[&env_layer, &toml_layer, &uwsgi_layer]);
    // Before --paste's file is read: it may be the one refused.
    pairs(&cli_set, &merged)?;
    // --paste's own file is a source too, below the others: read only if
    // its `paste` survives the merge, from where the app loader reads it.
    let paste = if on_cli.contains("paste") {
        first.get_one::<String>("paste").cloned()
    } else {
        merged.get("paste").and_then(|s| s.values.first().cloned())
    };
    if let Some(spec) = &paste {
        let chdir = if on_cli.contains("chdir") {
            first.get_one::<PathBuf>("chdir").cloned()
        } else {
            merged
                .get("chdir")
                .and_then(|s| s.values.first())
                .map(PathBuf::from)
        };
        let (paste_layer, paste_notes) =
            paste::read(&crate::cli::paste_spec(spec, chdir.as_deref()))?;
        notes.extend(paste_notes);
        layer::validate(&paste_layer, &keys)?;
        merged = merge(
            &on_cli,
            &cli_set,
            &[&env_layer, &toml_layer, &uwsgi_layer, &paste_layer],
        );
        pairs(&cli_set, &merged)?;
    }

    let with_defaults = cmd.mut_args(|arg| {
        let setting = arg.get_long().and_then(|long| merged.get(long));
        match setting {
            Some(setting) => arg.default_values(setting.values.clone()),
            None => arg,
        }
    });
    let matches = with_defaults
        .try_get_matches_from(&argv)
        .map_err(Failure::Clap)?;
    let cli = Cli::from_arg_matches(&matches).map_err(Failure::Clap)?;
    let proto_from = (!on_cli.contains("proto"))
        .then(|| merged.get("proto").map(|s| s.origin.as_str()))
        .flatten();
    if let Some(refused) = cli.ajp_without_secret(proto_from) {
        return Err(refused.into());
    }
    if cli.master {
        notes.push(Note::info(
            "--master: rustgi always runs a master; the flag does nothing",
        ));
    }
    let printed = cli
        .sources
        .print_config
        .then(|| print(&keys, &matches, &on_cli, &merged));
    Ok(Loaded {
        cli,
        notes,
        printed,
    })
}

/// A list variable's value is split at spaces: when one of its values is
/// refused, say how to write values with spaces.
fn split_hint(error: String, env_layer: &Layer) -> String {
    let split = env_layer
        .values()
        .find(|s| s.values.len() > 1 && error.starts_with(&format!("{}:", s.origin)));
    match split {
        Some(s) => format!(
            "{error}\n({var} is split at spaces; for values with spaces give a TOML array: \
             {var}='[\"A=1\", \"B=two words\"]')",
            var = s.origin
        ),
        None => error,
    }
}

/// The names `name` conflicts with (cli.rs's CONFLICTS, both ways).
fn conflicts(name: &str) -> Vec<&'static str> {
    CONFLICTS
        .iter()
        .filter_map(|&(a, b)| {
            if a == name {
                Some(b)
            } else if b == name {
                Some(a)
            } else {
                None
            }
        })
        .collect()
}

/// A switch that is off sets nothing that could conflict.
fn is_off(setting: &layer::Setting) -> bool {
    setting.values.iter().all(|v| v == "false")
}

/// The settings taken from `layers` (highest first) for what the command
/// line (`on_cli`) does not set. A setting also masks, in the layers below
/// the one that sets it, those it conflicts with (`paste` and `app`: a
/// file's `app` does not count against a `--paste` flag); `cli_set` are
/// the flags that do so (a switch given `=false` masks nothing).
fn merge(on_cli: &HashSet<String>, cli_set: &HashSet<String>, layers: &[&Layer]) -> Layer {
    let mut masked: HashSet<&str> = cli_set.iter().flat_map(|n| conflicts(n)).collect();
    let mut merged = Layer::new();
    for layer in layers {
        let mut masks_below = Vec::new();
        for (name, setting) in layer.iter() {
            if on_cli.contains(name) || masked.contains(name.as_str()) || merged.contains_key(name)
            {
                continue;
            }
            merged.insert(name.clone(), setting.clone());
            if !is_off(setting) {
                masks_below.extend(conflicts(name));
            }
        }
        masked.extend(masks_below);
    }
    merged
}

/// cli.rs's REQUIRES and CONFLICTS, on the merged settings: the flags
/// that set something (`cli_set`) and `merged`; where each was set is
/// named.
fn pairs(cli_set: &HashSet<String>, merged: &Layer) -> Result<(), String> {
    // Where `name` is set (a switch: only if on), as a message names it.
    let set_at = |name: &str| -> Option<String> {
        if cli_set.contains(name) {
            return Some(format!("--{name}"));
        }
        let setting = merged.get(name)?;
        if setting.values.is_empty() || is_off(setting) {
            return None;
        }
        Some(format!("{name} ({})", setting.origin))
    };
    for &(a, b) in CONFLICTS {
        if let (Some(at_a), Some(at_b)) = (set_at(a), set_at(b)) {
            return Err(format!(
                "{at_a} cannot be used with {at_b}: give one of them"
            ));
        }
    }
    for &(name, needed, why) in REQUIRES {
        if let Some(at) = set_at(name)
            && set_at(needed).is_none()
        {
            return Err(format!(
                "{at} needs --{needed} too ({why}), as a flag, a variable ({}) or a key of a file",
                keys::env_name(needed)
            ));
        }
    }
    Ok(())
}

/// --print-config's text: every setting in `--help`'s order; those at
/// their default, and unset ones, as comments.
fn print(keys: &[Key], matches: &ArgMatches, on_cli: &HashSet<String>, merged: &Layer) -> String {
    let mut out = String::from(
        "# rustgi-gateway's settings, merged: flags, then RUSTGI_* variables, then\n\
         # --config, --uwsgi-ini and --paste's [server:main]. `--config FILE` reads\n\
         # this back. Defaults and unset settings are the commented lines.\n",
    );
    for key in keys {
        let values: Vec<String> = if key.kind == Kind::Switch {
            vec![matches.get_flag(&key.id).to_string()]
        } else {
            matches
                .get_raw(&key.id)
                .map(|raw| raw.map(|v| v.to_string_lossy().into_owned()).collect())
                .unwrap_or_default()
        };
        let origin = if on_cli.contains(&key.name) {
            Some(format!("--{}", key.name))
        } else {
            merged.get(&key.name).map(|s| s.origin.clone())
        };
        match origin {
            Some(origin) => {
                out.push_str(&render::line(key, &values));
                out.push_str(&format!("  # {origin}\n"));
            }
            None if matches.value_source(&key.id) == Some(ValueSource::DefaultValue)
                && !values.is_empty() =>
            {
                out.push_str(&format!("# {}  (default)\n", render::line(key, &values)));
            }
            None => out.push_str(&format!("# {} is not set\n", key.name)),
        }
    }
    out
}

/// `rustgi-gateway convert app.ini[:section]`: the TOML a uWSGI file
/// becomes, with what does not carry over as comments.
pub fn convert(spec: &str) -> Result<String, String> {
    let keys = all_keys();
    let converted = uwsgi::read(spec)?;
    layer::validate(&converted.layer, &keys)?;
    let mut out = format!("# rustgi-gateway --config FILE, from the uWSGI file {spec}\n");
    for note in &converted.notes {
        let level = if note.warn { "WARNING" } else { "note" };
        for (i, line) in note.text.lines().enumerate() {
            let lead = if i == 0 {
                format!("{level}: ")
            } else {
                "  ".into()
            };
            out.push_str(&format!("# {lead}{line}\n"));
        }
    }
    for key in &keys {
        if let Some(setting) = converted.layer.get(&key.name) {
            out.push_str(&render::line(key, &setting.values));
            out.push_str(&format!("  # {}\n", setting.origin));
        }
    }
    Ok(out)
}

/// clap's error for an unknown flag, with our tip in place of clap's.
fn unknown_flag(e: clap::Error, keys: &[Key]) -> Failure {
    if e.kind() != ErrorKind::UnknownArgument {
        return Failure::Clap(e);
    }
    let Some(ContextValue::String(given)) = e.get(ContextKind::InvalidArg) else {
        return Failure::Clap(e);
    };
    let name = given.trim_start_matches('-');
    let name = name.split_once('=').map_or(name, |(n, _)| n);
    let mut known: Vec<suggest::Known> = Vec::new();
    let command = command();
    for arg in command.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        known.push(suggest::Known {
            name: long,
            canonical: long,
        });
    }
    let aliases: Vec<(String, String)> = keys
        .iter()
        .flat_map(|k| k.aliases.iter().map(|a| (a.clone(), k.name.clone())))
        .collect();
    for (alias, canonical) in &aliases {
        known.push(suggest::Known {
            name: alias,
            canonical,
        });
    }
    let tip = if given.starts_with("--") {
        suggest::tip(name, &known, &|n| format!("--{n}"))
    } else {
        None
    };
    let mut text = format!("unexpected argument '{given}' found\n");
    if let Some(tip) = tip {
        text.push_str(&format!("\n  tip: {tip}\n"));
    }
    text.push_str(&format!(
        "\n{}\n\nFor more information, try '--help'.",
        command.clone().render_usage()
    ));
    Failure::Message(text)
}

#[cfg(test)]
mod tests;
