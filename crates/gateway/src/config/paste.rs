//! `--paste production.ini[#name]`: the `[server:main]` section of a
//! PasteDeploy file, as Pylons, Pyramid and TurboGears sites served by
//! flup write it (`use = egg:flup#fcgi_thread`, `host`, `port` or
//! `socket`), read as settings below every other source: the site moves
//! by changing one command. (Loading the app itself is `--paste`'s work
//! at start, not this module's.)

use super::ini::{Dialect, entries};
use super::layer::{Layer, Note, Setting, boolean};
use std::collections::HashMap;
use std::path::Path;

/// The settings of `spec`'s `[server:main]`, and notes on what they do not
/// carry over. A file without that section gives none.
pub fn read(spec: &str) -> Result<(Layer, Vec<Note>), String> {
    let file = spec.split_once('#').map_or(spec, |(file, _)| file);
    let file = file.strip_prefix("config:").unwrap_or(file);
    let text = std::fs::read_to_string(file).map_err(|e| format!("--paste {file}: {e}"))?;
    let here = std::path::absolute(Path::new(file))
        .ok()
        .and_then(|p| p.parent().map(|d| d.to_string_lossy().into_owned()))
        .unwrap_or_else(|| ".".into());
    server_main(&text, file, &here)
}

fn server_main(text: &str, file: &str, here: &str) -> Result<(Layer, Vec<Note>), String> {
    let all = entries(text, Dialect::ConfigParser).map_err(|e| format!("--paste {file}: {e}"))?;
    let defaults: HashMap<&str, &str> = all
        .iter()
        .filter(|e| e.section == "DEFAULT")
        .map(|e| (e.key.as_str(), e.value.as_str()))
        .collect();
    let section: Vec<_> = all.iter().filter(|e| e.section == "server:main").collect();
    let mut layer = Layer::new();
    let mut notes = Vec::new();
    if section.is_empty() {
        return Ok((layer, notes));
    }
    let own: HashMap<&str, &str> = section
        .iter()
        .map(|e| (e.key.as_str(), e.value.as_str()))
        .collect();
    let scope = Scope {
        here,
        file,
        own: &own,
        defaults: &defaults,
    };
    let get = |key: &str| -> Option<(String, String)> {
        let entry = section.iter().rev().find(|e| e.key == key)?;
        let value = scope.interpolate(&entry.value);
        Some((
            value,
            format!("{file}:{} ([server:main] {key})", entry.line),
        ))
    };
    let Some((used, use_at)) = get("use") else {
        notes.push(Note::warn(format!(
            "{file}: [server:main] has no `use =`: its settings are not taken"
        )));
        return Ok((layer, notes));
    };
    let Some((proto, fork)) = flup_server(&used) else {
        notes.push(Note::warn(format!(
            "{use_at}: `use = {used}` is not one of flup's FastCGI, SCGI or AJP servers: \
             rustgi takes no address from it (give --socket and --proto)"
        )));
        return Ok((layer, notes));
    };
    let mut set = |key: &str, values: Vec<String>, origin: &str| {
        layer.insert(
            key.to_string(),
            Setting {
                values,
                origin: origin.to_string(),
            },
        );
    };
    set("proto", vec![proto.to_string()], &use_at);
    // flup's defaults: scgi on localhost:4000, ajp on localhost:8009;
    // fastcgi has none.
    let default_port = match proto {
        "scgi" => Some("4000"),
        "ajp" => Some("8009"),
        _ => None,
    };
    if let Some((socket, at)) = get("socket").or_else(|| get("bindAddress")) {
        set("socket", vec![socket], &at);
    } else {
        let host = get("host");
        let port = get("port").or_else(|| default_port.map(|p| (p.to_string(), use_at.clone())));
        match (host, port) {
            (host, Some((port, at))) => {
                let host = host.map_or("localhost".to_string(), |(h, _)| h);
                set("socket", vec![format!("{host}:{port}")], &at);
            }
            (_, None) => notes.push(Note::warn(format!(
                "{use_at}: no socket, or host and port: rustgi takes the socket the web server passes on fd 0 (or give --socket)"
            ))),
        }
    }
    for entry in &section {
        let key = entry.key.as_str();
        let (value, at) = get(key).expect("the key is in the section");
        match key {
            "use" | "socket" | "bindAddress" | "host" | "port" => {}
            "umask" => match u32::from_str_radix(value.trim_start_matches("0o"), 8) {
                Ok(umask) if umask <= 0o777 => {
                    set("chmod", vec![format!("{:o}", 0o777 & !umask)], &at)
                }
                _ => notes.push(Note::warn(format!(
                    "{at}: umask {value:?} is not octal: ignored"
                ))),
            },
            "maxThreads" => set("threads", vec![value], &at),
            "maxChildren" => set("processes", vec![value], &at),
            "maxRequests" => set("max-requests", vec![value], &at),
            "scriptName" => set("mount", vec![value], &at),
            "allowedServers" => {
                let peers: Vec<String> = value
                    .split([',', ' ', '\n'])
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
                set("allow-from", peers, &at);
            }
            "multiplexed" => notes.push(Note::info(format!(
                "{at}: not needed: rustgi answers multiplexed FastCGI connections either way"
            ))),
            "minSpare" | "maxSpare" => notes.push(Note::info(format!(
                "{at}: not needed: rustgi keeps --threads threads per process"
            ))),
            "debug" => {
                if boolean(&value) != Some(false) {
                    notes.push(Note::info(format!(
                        "{at}: rustgi never sends a traceback to the client (flup's debug page): it goes to the log"
                    )));
                }
            }
            _ => notes.push(Note::warn(format!("{at}: not known to rustgi: ignored"))),
        }
    }
    if fork {
        notes.push(Note::info(format!(
            "{use_at}: flup forked a process per connection set: rustgi's workers are --processes"
        )));
    }
    Ok((layer, notes))
}

/// `egg:flup#fcgi_thread` (also `egg:Flup#…`, PasteScript's
/// `egg:PasteScript#flup_fcgi_thread`): the protocol, and whether it forked.
fn flup_server(used: &str) -> Option<(&'static str, bool)> {
    let (dist, entry) = used.strip_prefix("egg:")?.split_once('#')?;
    let entry = match dist.to_ascii_lowercase().as_str() {
        "flup" => entry,
        "pastescript" => entry.strip_prefix("flup_")?,
        _ => return None,
    };
    let (proto, how) = entry.split_once('_').unwrap_or((entry, "thread"));
    let proto = match proto {
        "fcgi" => "fastcgi",
        "scgi" => "scgi",
        "ajp" => "ajp",
        _ => return None,
    };
    match how {
        "thread" => Some((proto, false)),
        "fork" => Some((proto, true)),
        _ => None,
    }
}

/// What ConfigParser's `%(name)s` may name: `here` and `__file__`
/// (PasteDeploy's), the section's own keys, then [DEFAULT]'s.
struct Scope<'a> {
    here: &'a str,
    file: &'a str,
    own: &'a HashMap<&'a str, &'a str>,
    defaults: &'a HashMap<&'a str, &'a str>,
}

impl Scope<'_> {
    /// `value` with its `%(name)s` replaced; a value may name others (as
    /// ConfigParser, up to 10 deep).
    fn interpolate(&self, value: &str) -> String {
        let mut value = value.to_string();
        for _ in 0..10 {
            let next = self.once(&value);
            if next == value {
                break;
            }
            value = next;
        }
        value.replace("%%", "%")
    }

    fn lookup(&self, name: &str) -> Option<String> {
        match name {
            "here" => Some(self.here.to_string()),
            "__file__" => Some(self.file.to_string()),
            _ => self
                .own
                .get(name)
                .or_else(|| self.defaults.get(name))
                .map(|v| v.to_string()),
        }
    }

    fn once(&self, value: &str) -> String {
        let mut out = String::new();
        let mut rest = value;
        while let Some(i) = rest.find("%(") {
            out.push_str(&rest[..i]);
            let tail = &rest[i + 2..];
            match tail.find(")s") {
                Some(end) => {
                    let name = &tail[..end];
                    out.push_str(&self.lookup(name).unwrap_or_else(|| format!("%({name})s")));
                    rest = &tail[end + 2..];
                }
                None => {
                    out.push_str("%(");
                    rest = tail;
                }
            }
        }
        out.push_str(rest);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_text(text: &str) -> (Layer, Vec<Note>) {
        server_main(text, "production.ini", "/srv/site").unwrap()
    }

    fn value(layer: &Layer, key: &str) -> Vec<String> {
        layer.get(key).map(|s| s.values.clone()).unwrap_or_default()
    }

    #[test]
    fn flup_thread_servers() {
        let (l, notes) = read_text(
            "[DEFAULT]\nrun = %(here)s/run\n[app:main]\nuse = egg:mysite\n\
             [server:main]\nuse = egg:Flup#fcgi_thread\nsocket = %(run)s/app.sock\numask = 002\nmaxThreads = 12\n",
        );
        assert_eq!(value(&l, "proto"), ["fastcgi"]);
        assert_eq!(value(&l, "socket"), ["/srv/site/run/app.sock"]);
        assert_eq!(value(&l, "chmod"), ["775"]);
        assert_eq!(value(&l, "threads"), ["12"]);
        assert_eq!(l["proto"].origin, "production.ini:6 ([server:main] use)");
        assert!(notes.is_empty(), "{notes:?}");

        let (l, _) =
            read_text("[server:main]\nuse = egg:flup#scgi_thread\nhost = 127.0.0.1\nport = 4001\n");
        assert_eq!(value(&l, "proto"), ["scgi"]);
        assert_eq!(value(&l, "socket"), ["127.0.0.1:4001"]);
        let (l, _) = read_text("[server:main]\nuse = egg:flup#ajp_thread\n");
        assert_eq!(
            (value(&l, "proto"), value(&l, "socket")),
            (vec!["ajp".into()], vec!["localhost:8009".into()])
        );
        let (l, notes) = read_text(
            "[server:main]\nuse = egg:PasteScript#flup_fcgi_fork\nhost = 0.0.0.0\nport = 9000\nmaxChildren = 3\n",
        );
        assert_eq!(value(&l, "proto"), ["fastcgi"]);
        assert_eq!(value(&l, "socket"), ["0.0.0.0:9000"]);
        assert_eq!(value(&l, "processes"), ["3"]);
        assert!(notes.iter().any(|n| n.text.contains("--processes")));
    }

    #[test]
    fn other_servers_and_no_section() {
        let (l, notes) = read_text("[server:main]\nuse = egg:waitress#main\nport = 6543\n");
        assert!(l.is_empty());
        assert!(notes[0].warn && notes[0].text.contains("egg:waitress#main"));
        let (l, notes) = read_text("[app:main]\nuse = egg:x\n");
        assert!(l.is_empty() && notes.is_empty());
        let (l, notes) = read_text("[server:main]\nuse = egg:flup#fcgi_thread\n");
        assert!(!l.contains_key("socket"));
        assert!(notes[0].text.contains("fd 0"));
    }

    #[test]
    fn egg_names() {
        assert_eq!(
            flup_server("egg:flup#fcgi_thread"),
            Some(("fastcgi", false))
        );
        assert_eq!(flup_server("egg:Flup#scgi_fork"), Some(("scgi", true)));
        assert_eq!(flup_server("egg:flup#fcgi"), Some(("fastcgi", false)));
        assert_eq!(flup_server("egg:flup#http"), None);
        assert_eq!(flup_server("egg:Paste#http"), None);
    }
}
