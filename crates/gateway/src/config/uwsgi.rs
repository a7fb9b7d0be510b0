//! `--uwsgi-ini app.ini[:section]` and `rustgi-gateway convert app.ini`:
//! a uWSGI ini file read as settings.
//!
//! The file is read as uWSGI reads it: the `[uwsgi]` section (or the one
//! named), `ini = :other` and `ini = file[:section]` read where they stand,
//! `$(VAR)` is the environment, `%(option)` an option set above, and the
//! magic `%d` (the file's directory, with a `/`), `%p` (its path), `%s`
//! (its name), `%n` (its name without extension), `%c` (its directory's
//! name) and `%%`. Each option becomes rustgi's setting of the same
//! meaning (same units: harakiri seconds, reload-on-rss MiB, buffer-size
//! bytes), or a note: `info` when rustgi needs nothing for it, `warn`
//! when its intent needs something else (which the note names).

use super::layer::{Layer, Note, Setting, boolean};
use std::path::{Path, PathBuf};

/// What a uWSGI file says, in rustgi's terms.
#[derive(Debug, Default)]
pub struct Converted {
    pub layer: Layer,
    pub notes: Vec<Note>,
}

/// One option as read, with its value expanded.
#[derive(Clone, Debug)]
struct Opt {
    key: String,
    value: String,
    /// `app.ini:12`
    at: String,
    /// Named by a `%(key)` below: a placeholder, if no option.
    referenced: bool,
}

/// Reads `spec` (`FILE` or `FILE:SECTION`) and converts it.
pub fn read(spec: &str) -> Result<Converted, String> {
    let (file, section) = split_spec(spec);
    let env = |name: &str| std::env::var(name).ok();
    let mut opts = Vec::new();
    let mut notes = Vec::new();
    load(Path::new(file), section, &env, 0, &mut opts, &mut notes)
        .map_err(|e| format!("--uwsgi-ini {spec}: {e}"))?;
    let mut converted = translate(&opts)?;
    notes.append(&mut converted.notes);
    converted.notes = notes;
    Ok(converted)
}

/// `app.ini:prod` is the section `prod` of app.ini.
fn split_spec(spec: &str) -> (&str, &str) {
    match spec.rsplit_once(':') {
        Some((file, section)) if !file.is_empty() && !section.contains('/') => (file, section),
        _ => (spec, "uwsgi"),
    }
}

fn load(
    path: &Path,
    section: &str,
    env: &dyn Fn(&str) -> Option<String>,
    depth: usize,
    opts: &mut Vec<Opt>,
    notes: &mut Vec<Note>,
) -> Result<(), String> {
    if depth > 16 {
        return Err(format!(
            "{}: `ini =` nests more than 16 deep (a loop?)",
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let entries = super::ini::entries(&text, super::ini::Dialect::Uwsgi)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if !entries.iter().any(|e| e.section == section) {
        return Err(format!("{}: no [{section}] section", path.display()));
    }
    let magic = Magic::of(path);
    for entry in entries.into_iter().filter(|e| e.section == section) {
        let at = format!("{}:{}", path.display(), entry.line);
        let value = expand(&entry.value, &magic, env, opts.as_mut_slice(), &at, notes);
        if entry.key == "ini" {
            let (file, inner) = split_spec(&value);
            let (file, inner) = match value.strip_prefix(':') {
                Some(own) => (path.to_string_lossy().into_owned(), own.to_string()),
                None => (file.to_string(), inner.to_string()),
            };
            load(Path::new(&file), &inner, env, depth + 1, opts, notes)?;
            continue;
        }
        opts.push(Opt {
            key: entry.key.replace('_', "-"),
            value,
            at,
            referenced: false,
        });
    }
    Ok(())
}

/// uWSGI's magic variables for one file.
struct Magic {
    path: PathBuf,
}

impl Magic {
    fn of(path: &Path) -> Magic {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        Magic { path }
    }

    fn get(&self, letter: char) -> Option<String> {
        let p = &self.path;
        let text = |s: Option<&std::ffi::OsStr>| s.map(|s| s.to_string_lossy().into_owned());
        match letter {
            'p' => Some(p.to_string_lossy().into_owned()),
            'd' => p.parent().map(|d| {
                let d = d.to_string_lossy();
                if d.ends_with('/') {
                    d.into_owned()
                } else {
                    format!("{d}/")
                }
            }),
            's' => text(p.file_name()),
            'n' => text(p.file_stem()),
            'c' => text(p.parent().and_then(Path::file_name)),
            '%' => Some("%".into()),
            _ => None,
        }
    }
}

fn expand(
    value: &str,
    magic: &Magic,
    env: &dyn Fn(&str) -> Option<String>,
    opts: &mut [Opt],
    at: &str,
    notes: &mut Vec<Note>,
) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(i) = rest.find(['$', '%']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(inner) = tail.strip_prefix("$(")
            && let Some(end) = inner.find(')')
        {
            let name = &inner[..end];
            match env(name) {
                Some(v) => out.push_str(&v),
                None => notes.push(Note::warn(format!(
                    "{at}: $({name}) is not in the environment: it reads as empty"
                ))),
            }
            rest = &inner[end + 1..];
        } else if let Some(inner) = tail.strip_prefix("%(")
            && let Some(end) = inner.find(')')
        {
            let name = &inner[..end];
            match opts.iter_mut().rev().find(|o| o.key == name) {
                Some(o) => {
                    o.referenced = true;
                    out.push_str(&o.value);
                }
                None => {
                    notes.push(Note::warn(format!(
                        "{at}: %({name}) names no option set above: it reads as empty"
                    )));
                }
            }
            rest = &inner[end + 1..];
        } else if let Some(letter) = tail.strip_prefix('%').and_then(|t| t.chars().next())
            && let Some(v) = magic.get(letter)
        {
            out.push_str(&v);
            rest = &tail[1 + letter.len_utf8()..];
        } else {
            out.push_str(&tail[..1]);
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

/// The state of a conversion: what needs more than one option to decide.
#[derive(Default)]
struct Acc {
    layer: Layer,
    notes: Vec<Note>,
    sockets: Vec<(Option<&'static str>, String, String)>,
    protocol: Option<(String, String)>,
    module: Option<(String, String)>,
    callable: Option<(String, String)>,
    lazy_apps: Option<(bool, String)>,
    disable_logging: bool,
    logto: Option<(String, String)>,
}

impl Acc {
    fn set(&mut self, key: &str, value: impl Into<String>, o: &Opt) {
        self.layer.insert(
            key.to_string(),
            Setting {
                values: vec![value.into()],
                origin: format!("{} ({})", o.at, o.key),
            },
        );
    }

    fn add(&mut self, key: &str, value: impl Into<String>, o: &Opt) {
        let origin = format!("{} ({})", o.at, o.key);
        let setting = self.layer.entry(key.to_string()).or_insert(Setting {
            values: Vec::new(),
            origin,
        });
        setting.values.push(value.into());
    }

    /// `set`, except for uWSGI's `0`, which means "off" (no limit, no
    /// timeout): rustgi's default stays, with a note. True if it set.
    fn set_unless_off(&mut self, key: &str, value: &str, o: &Opt) -> bool {
        if value.trim() == "0" {
            self.info(
                o,
                &format!("0 is uWSGI's \"off\": {key} stays at rustgi's default"),
            );
            return false;
        }
        self.set(key, value, o);
        true
    }

    fn info(&mut self, o: &Opt, text: &str) {
        self.notes
            .push(Note::info(format!("{} ({}): {text}", o.at, o.key)));
    }

    fn warn(&mut self, o: &Opt, text: &str) {
        self.notes.push(Note::warn(format!(
            "{} ({} = {}): {text}",
            o.at, o.key, o.value
        )));
    }

    fn switch(&mut self, o: &Opt) -> Option<bool> {
        let b = boolean(&o.value);
        if b.is_none() {
            self.warn(o, "not a boolean (true, false, 1, 0): ignored");
        }
        b
    }
}

fn translate(opts: &[Opt]) -> Result<Converted, String> {
    let mut acc = Acc::default();
    for o in opts {
        one(&mut acc, o);
    }
    finish(acc)
}

fn one(acc: &mut Acc, o: &Opt) {
    let v = o.value.as_str();
    match o.key.as_str() {
        "socket" | "s" => acc.sockets.push((None, v.to_string(), o.at.clone())),
        "uwsgi-socket" => acc.sockets.push((Some("uwsgi"), v.to_string(), o.at.clone())),
        "fastcgi-socket" => acc.sockets.push((Some("fastcgi"), v.to_string(), o.at.clone())),
        "scgi-socket" => acc.sockets.push((Some("scgi"), v.to_string(), o.at.clone())),
        "protocol" | "socket-protocol" => acc.protocol = Some((v.to_string(), o.at.clone())),
        "http" | "http-socket" | "https" | "https-socket" | "http11-socket" => acc.warn(
            o,
            "rustgi does not speak HTTP: put nginx in front (`uwsgi_pass` to the socket), \
             as README's \"nginx\" shows",
        ),
        // `chmod` and `C` are uWSGI's other names of chmod-socket.
        "chmod-socket" | "chmod" | "C" => {
            // A bare `chmod-socket` is 666 in uWSGI.
            let mode = if v.is_empty() || v == "true" { "666" } else { v };
            acc.set("chmod", mode, o);
        }
        "chown-socket" => acc.set("chown", v, o),
        "module" | "wsgi" | "w" => acc.module = Some((v.to_string(), o.at.clone())),
        "wsgi-file" | "file" => acc.module = Some((v.to_string(), o.at.clone())),
        "callable" => acc.callable = Some((v.to_string(), o.at.clone())),
        "paste" => acc.set("paste", v.strip_prefix("config:").unwrap_or(v), o),
        "mount" => match v.split_once('=') {
            Some((prefix, app)) => {
                acc.set("mount", prefix, o);
                acc.module = Some((app.to_string(), o.at.clone()));
            }
            None => acc.warn(o, "not PREFIX=APP: ignored"),
        },
        "manage-script-name" => {
            acc.info(o, "not needed: with --mount, SCRIPT_NAME and PATH_INFO are split")
        }
        "chdir" | "chdir2" => acc.set("chdir", v, o),
        "pythonpath" | "python-path" | "pp" => acc.add("pythonpath", v, o),
        "virtualenv" | "venv" | "home" | "pyhome" | "H" => acc.set("venv", v, o),
        "env" => acc.add("env", v, o),
        "master" => acc.info(o, "not needed: rustgi always runs a master"),
        "processes" | "workers" | "p" => acc.set("processes", v, o),
        "threads" => acc.set("threads", v, o),
        "enable-threads" => acc.info(o, "not needed: Python threads are always enabled"),
        "uid" => acc.set("user", v, o),
        "gid" => acc.set("group", v, o),
        "die-on-term" => acc.info(o, "not needed: SIGTERM always stops gracefully"),
        "vacuum" => acc.info(o, "not needed: the socket file rustgi created is removed at exit"),
        "buffer-size" | "b" => acc.set("max-header-size", v, o),
        "post-buffering" => {
            acc.set("buffer-body", v, o);
            acc.info(
                o,
                "buffer-body: a body up to this many bytes is read before the app starts; \
                 a larger one is read as the app asks for it",
            );
        }
        "post-buffering-bufsize" => acc.info(o, "not needed: --spool-memory bounds a body's memory"),
        "max-requests" | "R" => {
            acc.set_unless_off("max-requests", v, o);
        }
        "max-requests-delta" => {
            if !acc.set_unless_off("max-requests-jitter", v, o) {
                return;
            }
            acc.info(o, "max-requests-jitter: each worker adds a random 0..=N, not worker-id × N");
        }
        "max-worker-lifetime" => {
            acc.set_unless_off("max-worker-lifetime", v, o);
        }
        "max-worker-lifetime-delta" => {
            if !acc.set_unless_off("max-worker-lifetime-jitter", v, o) {
                return;
            }
            acc.info(
                o,
                "max-worker-lifetime-jitter: each worker lives its own share of 0..N seconds more \
                 (spread evenly), not worker-id × N; (processes - 1) × N spreads them as uWSGI does",
            );
        }
        "reload-on-rss" | "evil-reload-on-rss" => {
            acc.set_unless_off("reload-on-rss", v, o);
        }
        "reload-on-as" | "evil-reload-on-as" => {
            acc.warn(o, "rustgi watches resident memory only: use reload-on-rss (MiB)")
        }
        "harakiri" | "t" => {
            acc.set_unless_off("timeout", v, o);
        }
        "harakiri-verbose" => acc.info(o, "not needed: a timed-out request is logged with its Python stack"),
        "reload-mercy" | "worker-reload-mercy" => {
            acc.set_unless_off("graceful-timeout", v, o);
        }
        "lazy-apps" => {
            if let Some(b) = acc.switch(o) {
                acc.lazy_apps = Some((b, o.at.clone()));
            }
        }
        "lazy" => {
            acc.lazy_apps = Some((true, o.at.clone()));
            acc.info(o, "read as lazy-apps: apps load in each worker");
        }
        "need-app" => acc.info(o, "not needed: rustgi never serves without its app (it exits)"),
        "single-interpreter" | "i" => acc.info(o, "not needed: each worker has one interpreter"),
        "thunder-lock" => acc.info(o, "not needed: workers take turns on the listening socket"),
        "listen" | "l" => acc.info(
            o,
            "not needed: rustgi listens with the kernel's limit (net.core.somaxconn; \
             raise that sysctl for a longer queue)",
        ),
        "touch-reload" => acc.set("touch-reload", v, o),
        "py-autoreload" | "python-autoreload" => acc.warn(
            o,
            "no autoreload: use touch-reload (a file whose change reloads) or SIGHUP",
        ),
        "disable-logging" | "L" => acc.disable_logging = acc.switch(o).unwrap_or(false),
        "logto" | "logto2" => acc.logto = Some((v.to_string(), o.at.clone())),
        "daemonize" | "daemonize2" => {
            acc.logto = Some((v.to_string(), o.at.clone()));
            acc.warn(o, "rustgi stays in the foreground: run it under systemd (README, \"systemd\"); its log goes to this file");
        }
        "log-format" | "logformat" => acc.warn(
            o,
            "uWSGI's log variables are not rustgi's: set access-log-format (README, \"Observability\")",
        ),
        "log-date" | "logdate" | "log-master" | "log-reopen" | "memory-report" | "log-4xx"
        | "log-5xx" | "log-slow" => acc.info(o, "not needed: rustgi's log lines carry their time"),
        "log-maxsize" => acc.warn(o, "no rotation by size: use logrotate, which sends SIGUSR1 to reopen"),
        "stats" | "stats-server" => {
            acc.set("metrics", address(v), o);
            acc.info(
                o,
                "metrics: Prometheus at /metrics and JSON at /status.json, not uWSGI's stats JSON (uwsgitop cannot read it)",
            );
        }
        "stats-http" => acc.info(o, "not needed: --metrics speaks HTTP"),
        "pidfile" | "pidfile2" | "safe-pidfile" => acc.set("pidfile", v, o),
        "plugin" | "plugins" | "plugins-dir" => acc.info(o, "not needed: Python is built in"),
        "strict" | "no-orphans" | "auto-procname" | "procname-prefix" | "procname-prefix-spaced"
        | "procname-master" | "procname" | "enable-metrics" | "ignore-sigpipe"
        | "ignore-write-errors" | "disable-write-exception" | "so-keepalive" | "reuse-port"
        | "offload-threads" | "memory-report-interval" | "max-fd" | "uwsgi" | "honour-stdin"
        | "wsgi-disable-file-wrapper" | "master-fifo" => {
            acc.info(o, "nothing to set in rustgi: accepted and ignored")
        }
        "umask" => acc.info(
            o,
            "rustgi keeps the umask it is started with (systemd: UMask=); the socket's mode is chmod",
        ),
        "socket-timeout" | "z" => acc.info(
            o,
            "rustgi has header-timeout, body-timeout and write-timeout (seconds) instead",
        ),
        "limit-post" => acc.warn(o, "limit the body in the front server: nginx client_max_body_size"),
        "gevent" | "async" | "ugreen" | "greenlet" | "asyncio" | "tornado" | "gevent-monkey-patch" => {
            acc.warn(o, "no async loop engines: threads (--threads) serve requests concurrently")
        }
        "attach-daemon" | "attach-daemon2" | "smart-attach-daemon" | "smart-attach-daemon2"
        | "attach-control-daemon" => acc.warn(
            o,
            "rustgi runs no other programs: give the daemon its own systemd unit",
        ),
        "cron" | "cron2" | "unique-cron" | "legion-cron" => {
            acc.warn(o, "no cron here: use a systemd timer or crontab")
        }
        "spooler" | "spooler-processes" | "mule" | "mules" | "farm" => acc.warn(
            o,
            "no spoolers or mules: run background work in a task queue (Celery, RQ) or a systemd unit",
        ),
        "static-map" | "static-map2" | "static-safe" | "check-static" | "static-index"
        | "static-expires-uri" | "static-expires" => {
            let tip = match o.key.as_str() {
                "static-map" | "static-map2" => match v.split_once('=') {
                    Some((url, dir)) => format!(
                        "serve static files from nginx: location {} {{ alias {}/; }}",
                        with_slash(url),
                        dir.trim_end_matches('/')
                    ),
                    None => "serve static files from nginx: a location with alias".into(),
                },
                _ => "serve static files from nginx: a location with alias".into(),
            };
            acc.warn(o, &tip)
        }
        "route" | "route-uri" | "route-host" | "route-if" | "response-route" | "final-route" => {
            acc.warn(o, "no internal routing: write it as nginx locations")
        }
        "emperor" | "vassal-sos" | "emperor-tyrant" => {
            acc.warn(o, "no emperor: one rustgi per app, each its own systemd unit")
        }
        "pyargv" => acc.warn(o, "no sys.argv for the app: pass settings with env"),
        "import" | "pyimport" | "shared-import" | "python-import" => {
            acc.warn(o, "import it from your WSGI module instead")
        }
        "cheaper" | "cheaper-algo" | "cheaper-initial" | "cheaper-step" | "cheaper-overload"
        | "cheaper-busyness-max" | "cheaper-busyness-min" => acc.warn(
            o,
            "no adaptive process count: processes is fixed (SIGTTIN/SIGTTOU add or remove one)",
        ),
        "paste-logger" => acc.info(o, "--paste applies the ini's logging sections itself"),
        // A placeholder (uWSGI takes any name as one): no option.
        _ if o.referenced => {}
        _ => acc.warn(o, "not known to rustgi: ignored"),
    }
}

fn with_slash(url: &str) -> String {
    if url.ends_with('/') {
        url.to_string()
    } else {
        format!("{url}/")
    }
}

/// `:3031` (every address, as uWSGI reads it) is `0.0.0.0:3031`, as the
/// flags read it too: written out for `convert`'s readers.
fn address(spec: &str) -> String {
    crate::cli::every_address(spec).unwrap_or_else(|| spec.to_string())
}

fn finish(mut acc: Acc) -> Result<Converted, String> {
    let origin = |at: &str, key: &str| format!("{at} ({key})");
    if let Some((first_proto, addr, at)) = acc.sockets.first().cloned() {
        let proto = match (first_proto, &acc.protocol) {
            (Some(p), _) => p.to_string(),
            (None, Some((p, _))) => p.clone(),
            (None, None) => "uwsgi".to_string(),
        };
        if proto == "http" {
            acc.notes.push(Note::warn(format!(
                "{at}: protocol = http: rustgi does not speak HTTP; the socket speaks uwsgi here (nginx: uwsgi_pass)"
            )));
        }
        let proto = if proto == "http" {
            "uwsgi".into()
        } else {
            proto
        };
        acc.layer.insert(
            "proto".into(),
            Setting {
                values: vec![proto],
                origin: origin(&at, "socket"),
            },
        );
        acc.layer.insert(
            "socket".into(),
            Setting {
                values: vec![address(&addr)],
                origin: origin(&at, "socket"),
            },
        );
        for (_, other, at) in acc.sockets.iter().skip(1) {
            acc.notes.push(Note::warn(format!(
                "{at}: rustgi listens on one socket: {other} is not served (run a second rustgi for it)"
            )));
        }
    }
    if let Some((module, at)) = &acc.module {
        let app = match &acc.callable {
            Some((callable, _)) if !module.contains(':') => format!("{module}:{callable}"),
            _ => module.clone(),
        };
        acc.layer.insert(
            "app".into(),
            Setting {
                values: vec![app],
                origin: origin(at, "module"),
            },
        );
    } else if let Some((_, at)) = &acc.callable {
        acc.notes.push(Note::warn(format!(
            "{at}: callable without module or wsgi-file: ignored"
        )));
    }
    // uWSGI loads the app in the master before forking unless lazy-apps.
    let (lazy, at) = acc
        .lazy_apps
        .clone()
        .unwrap_or((false, "(no lazy-apps)".into()));
    acc.layer.insert(
        "preload".into(),
        Setting {
            values: vec![(!lazy).to_string()],
            origin: origin(&at, "lazy-apps"),
        },
    );
    if !lazy && acc.lazy_apps.is_none() {
        acc.notes.push(Note::info(
            "uWSGI imports the app before forking unless lazy-apps: preload = true \
             (lazy-apps = true in the ini, or preload = false, loads it in each worker)",
        ));
    }
    // uWSGI logs every request unless disable-logging, where its log goes.
    if let Some((file, at)) = &acc.logto {
        acc.layer.insert(
            "log-file".into(),
            Setting {
                values: vec![file.clone()],
                origin: origin(at, "logto"),
            },
        );
    }
    if !acc.disable_logging {
        let (dest, at) = match &acc.logto {
            Some((file, at)) => (file.clone(), at.clone()),
            None => ("-".to_string(), "(no disable-logging)".into()),
        };
        acc.layer.insert(
            "access-log".into(),
            Setting {
                values: vec![dest],
                origin: origin(&at, "disable-logging"),
            },
        );
        acc.notes.push(Note::info(
            "uWSGI logs each request unless disable-logging: access-log is set (its lines are rustgi's combined format)",
        ));
    }
    Ok(Converted {
        layer: acc.layer,
        notes: acc.notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn convert_text(text: &str, env: &HashMap<&str, &str>) -> Converted {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("site.ini");
        std::fs::write(&path, text).unwrap();
        let get = |name: &str| env.get(name).map(|v| v.to_string());
        let mut opts = Vec::new();
        let mut notes = Vec::new();
        load(&path, "uwsgi", &get, 0, &mut opts, &mut notes).unwrap();
        let mut c = translate(&opts).unwrap();
        notes.append(&mut c.notes);
        c.notes = notes;
        // Paths in the dir are made stable for the assertions.
        let dir = format!("{}/", dir.path().display());
        for s in c.layer.values_mut() {
            for v in &mut s.values {
                *v = v.replace(&dir, "DIR/");
            }
        }
        c
    }

    fn warnings(c: &Converted) -> Vec<&str> {
        c.notes
            .iter()
            .filter(|n| n.warn)
            .map(|n| n.text.as_str())
            .collect()
    }

    fn value(c: &Converted, key: &str) -> Vec<String> {
        c.layer
            .get(key)
            .map(|s| s.values.clone())
            .unwrap_or_default()
    }

    #[test]
    fn a_django_site() {
        let env = HashMap::from([("SITE_ENV", "production")]);
        let c = convert_text(
            "[uwsgi]\n\
             chdir = %d\n\
             module = mysite.wsgi:application\n\
             home = %dvenv\n\
             master = true\n\
             processes = 4\n\
             threads = 2\n\
             socket = %d%n.sock\n\
             chmod-socket = 664\n\
             vacuum = true\n\
             harakiri = 30\n\
             max-requests = 5000\n\
             reload-on-rss = 512\n\
             buffer-size = 32768\n\
             env = DJANGO_SETTINGS_MODULE=mysite.settings\n\
             env = SITE_ENV=$(SITE_ENV)\n\
             die-on-term = true\n\
             lazy-apps = true\n\
             disable-logging = true\n\
             static-map = /static=/srv/static\n",
            &env,
        );
        assert_eq!(value(&c, "chdir"), ["DIR/"]);
        assert_eq!(value(&c, "app"), ["mysite.wsgi:application"]);
        assert_eq!(value(&c, "venv"), ["DIR/venv"]);
        assert_eq!(value(&c, "processes"), ["4"]);
        assert_eq!(value(&c, "threads"), ["2"]);
        assert_eq!(value(&c, "proto"), ["uwsgi"]);
        assert_eq!(value(&c, "socket"), ["DIR/site.sock"]);
        assert_eq!(value(&c, "chmod"), ["664"]);
        assert_eq!(value(&c, "timeout"), ["30"]);
        assert_eq!(value(&c, "max-requests"), ["5000"]);
        assert_eq!(value(&c, "reload-on-rss"), ["512"]);
        assert_eq!(value(&c, "max-header-size"), ["32768"]);
        assert_eq!(
            value(&c, "env"),
            [
                "DJANGO_SETTINGS_MODULE=mysite.settings",
                "SITE_ENV=production"
            ]
        );
        assert_eq!(value(&c, "preload"), ["false"]);
        assert_eq!(value(&c, "access-log"), Vec::<String>::new());
        let warned = warnings(&c);
        assert_eq!(warned.len(), 1, "{warned:?}");
        assert!(
            warned[0].contains("location /static/ { alias /srv/static/; }"),
            "{warned:?}"
        );
        assert!(
            c.notes
                .iter()
                .any(|n| !n.warn && n.text.contains("(master)"))
        );
    }

    #[test]
    fn sockets_protocols_and_the_callable() {
        let none = HashMap::new();
        let c = convert_text(
            "[uwsgi]\nfastcgi-socket = :9000\nwsgi-file = app.py\ncallable = app\n",
            &none,
        );
        assert_eq!(value(&c, "proto"), ["fastcgi"]);
        assert_eq!(value(&c, "socket"), ["0.0.0.0:9000"]);
        assert_eq!(value(&c, "app"), ["app.py:app"]);
        let c = convert_text(
            "[uwsgi]\nsocket = 127.0.0.1:3031\nprotocol = scgi\nsocket = /x.sock\n",
            &none,
        );
        assert_eq!(value(&c, "proto"), ["scgi"]);
        assert_eq!(value(&c, "socket"), ["127.0.0.1:3031"]);
        assert!(
            c.notes
                .iter()
                .any(|n| n.warn && n.text.contains("/x.sock is not served"))
        );
        // Without lazy-apps uWSGI preloads; each request is logged.
        assert_eq!(value(&c, "preload"), ["true"]);
        assert_eq!(value(&c, "access-log"), ["-"]);
        let c = convert_text("[uwsgi]\nlogto = /var/log/app.log\nchmod-socket\n", &none);
        assert_eq!(value(&c, "log-file"), ["/var/log/app.log"]);
        assert_eq!(value(&c, "access-log"), ["/var/log/app.log"]);
        assert_eq!(value(&c, "chmod"), ["666"]);
    }

    #[test]
    fn chmod_and_c_are_chmod_socket_and_zero_is_off() {
        let none = HashMap::new();
        let c = convert_text("[uwsgi]\nchmod = 664\n", &none);
        assert_eq!(value(&c, "chmod"), ["664"]);
        let c = convert_text("[uwsgi]\nC = 666\n", &none);
        assert_eq!(value(&c, "chmod"), ["666"]);
        let c = convert_text(
            "[uwsgi]\nharakiri = 0\nreload-on-rss = 0\nmax-requests = 0\nreload-mercy = 0\nstats = :9191\n",
            &none,
        );
        for unset in [
            "timeout",
            "reload-on-rss",
            "max-requests",
            "graceful-timeout",
        ] {
            assert!(!c.layer.contains_key(unset), "{unset}");
        }
        assert_eq!(
            c.notes
                .iter()
                .filter(|n| !n.warn && n.text.contains("uWSGI's \"off\""))
                .count(),
            4
        );
        assert_eq!(value(&c, "metrics"), ["0.0.0.0:9191"]);
    }

    #[test]
    fn no_equivalent_gets_a_warning_that_says_what_to_do() {
        let c = convert_text(
            "[uwsgi]\nhttp = :8080\ngevent = 100\nattach-daemon = celery worker\ncron = 0 -1 -1 -1 -1 x\nfrobnicate = 1\n",
            &HashMap::new(),
        );
        let warned = warnings(&c);
        assert_eq!(warned.len(), 5, "{warned:?}");
        assert!(warned[0].contains("nginx"));
        assert!(warned[1].contains("--threads"));
        assert!(warned[2].contains("systemd unit"));
        assert!(warned[3].contains("systemd timer"));
        assert!(warned[4].contains("not known"));
    }

    #[test]
    fn max_worker_lifetime_and_its_delta_are_read() {
        let c = convert_text(
            "[uwsgi]\nmax-worker-lifetime = 3600\nmax-worker-lifetime-delta = 30\n",
            &HashMap::new(),
        );
        assert!(warnings(&c).is_empty(), "{:?}", warnings(&c));
        assert_eq!(value(&c, "max-worker-lifetime"), ["3600"]);
        assert_eq!(value(&c, "max-worker-lifetime-jitter"), ["30"]);
        assert!(c.notes.iter().any(|n| n.text.contains("not worker-id")));
    }

    #[test]
    fn sections_includes_and_placeholders() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.ini");
        std::fs::write(&base, "[uwsgi]\nprocesses = 2\n[common]\nthreads = 3\n").unwrap();
        let site = dir.path().join("site.ini");
        std::fs::write(
            &site,
            format!(
                "[uwsgi]\nini = {}\nini = :prod\nproject = shop\nchdir = /srv/%(project)\n[prod]\nmax-requests = 7\nini = {}:common\n",
                base.display(),
                base.display()
            ),
        )
        .unwrap();
        let c = read(&site.display().to_string()).unwrap();
        assert_eq!(value(&c, "processes"), ["2"]);
        assert_eq!(value(&c, "max-requests"), ["7"]);
        assert_eq!(value(&c, "threads"), ["3"]);
        assert_eq!(value(&c, "chdir"), ["/srv/shop"]);
        // `project` is a placeholder, no option: nothing to say about it.
        assert!(
            !c.notes.iter().any(|n| n.text.contains("project")),
            "{:?}",
            c.notes
        );
        let c = read(&format!("{}:common", base.display())).unwrap();
        assert_eq!(value(&c, "threads"), ["3"]);
        let e = read(&format!("{}:nope", base.display())).unwrap_err();
        assert!(e.contains("no [nope] section"), "{e}");
        std::fs::write(&base, "[uwsgi]\nini = :uwsgi\n").unwrap();
        assert!(
            read(&base.display().to_string())
                .unwrap_err()
                .contains("16 deep")
        );
    }

    #[test]
    fn magic_variables() {
        let m = Magic {
            path: PathBuf::from("/etc/uwsgi/apps/shop.ini"),
        };
        let mut notes = Vec::new();
        let env = |_: &str| None;
        let got = expand(
            "%d|%p|%s|%n|%c|100%%|%q|$(NOPE)",
            &m,
            &env,
            &mut [],
            "x",
            &mut notes,
        );
        assert_eq!(
            got,
            "/etc/uwsgi/apps/|/etc/uwsgi/apps/shop.ini|shop.ini|shop|apps|100%|%q|"
        );
        assert_eq!(notes.len(), 1);
    }
}
