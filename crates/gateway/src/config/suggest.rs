//! "Did you mean": the tip for an unknown flag, file key or RUSTGI_
//! variable. clap's own tip picks the most similar name by Jaro similarity,
//! which sends `--module` to `--mount` and `--master` to `--user`: flags of
//! another meaning. Here a tip is given only for a small edit (a typo), to
//! exactly one flag, or for a name another server uses (uWSGI, gunicorn,
//! flup), which is named with rustgi's equivalent.

/// Names other servers use for what rustgi has under another name, or has
/// no flag for: (their name, the tip).
const FOREIGN: &[(&str, &str)] = &[
    ("chmod-socket", "uWSGI's --chmod-socket is --chmod here"),
    ("chown-socket", "uWSGI's --chown-socket is --chown here"),
    ("uid", "uWSGI's --uid is --user here"),
    ("gid", "uWSGI's --gid is --group here"),
    ("pyhome", "uWSGI's --pyhome is --venv here"),
    ("python-path", "uWSGI's --python-path is --pythonpath here"),
    ("wsgi", "uWSGI's --wsgi is --app here"),
    (
        "callable",
        "name the callable after the app: --app pkg.wsgi:app or --app app.py:app",
    ),
    (
        "uwsgi-socket",
        "uWSGI's --uwsgi-socket is --proto uwsgi --socket here",
    ),
    (
        "fastcgi-socket",
        "uWSGI's --fastcgi-socket is --proto fastcgi --socket here",
    ),
    (
        "scgi-socket",
        "uWSGI's --scgi-socket is --proto scgi --socket here",
    ),
    (
        "protocol",
        "the protocol is --proto (fastcgi, scgi, uwsgi, auto, cgi)",
    ),
    (
        "http",
        "rustgi does not speak HTTP: put nginx, Apache or lighttpd in front",
    ),
    (
        "http-socket",
        "rustgi does not speak HTTP: put nginx, Apache or lighttpd in front",
    ),
    (
        "ini",
        "a uWSGI ini file is read with --uwsgi-ini FILE[:SECTION]",
    ),
    ("logto", "uWSGI's --logto is --log-file here"),
    (
        "daemonize",
        "rustgi stays in the foreground: run it under systemd (README, \"systemd\")",
    ),
    (
        "daemon",
        "rustgi stays in the foreground: run it under systemd (README, \"systemd\")",
    ),
    (
        "stats",
        "uWSGI's --stats is --metrics here (Prometheus and JSON)",
    ),
    (
        "lazy-apps",
        "apps load in each worker unless --preload: --lazy-apps is the default",
    ),
    (
        "enable-threads",
        "not needed: Python threads are always enabled (--threads N)",
    ),
    ("die-on-term", "not needed: SIGTERM always stops gracefully"),
    (
        "vacuum",
        "not needed: the socket file rustgi created is removed at exit",
    ),
    (
        "buffer-size",
        "uWSGI's --buffer-size is --max-header-size here",
    ),
    (
        "post-buffering",
        "uWSGI's --post-buffering is --buffer-body here",
    ),
    (
        "reload-mercy",
        "uWSGI's --reload-mercy is --graceful-timeout here",
    ),
    (
        "worker-reload-mercy",
        "uWSGI's --worker-reload-mercy is --graceful-timeout here",
    ),
    (
        "static-map",
        "serve static files from the front server (nginx: location /static/ { alias DIR/; })",
    ),
    ("pid", "gunicorn's --pid is --pidfile here"),
    (
        "access-logfile",
        "gunicorn's --access-logfile is --access-log here",
    ),
    (
        "error-logfile",
        "gunicorn's --error-logfile is --log-file here",
    ),
    (
        "access-logformat",
        "gunicorn's --access-logformat is --access-log-format here (other fields)",
    ),
    (
        "keep-alive",
        "gunicorn's --keep-alive is --keepalive-timeout here",
    ),
    (
        "limit-request-line",
        "the request head's limit is --max-header-size",
    ),
    (
        "limit-request-field-size",
        "the request head's limit is --max-header-size",
    ),
    (
        "worker-class",
        "no worker classes: threads (--threads) inside processes (--processes)",
    ),
    (
        "reload",
        "to reload on a change, touch a file named by --touch-reload (or send SIGHUP)",
    ),
    ("bind-address", "flup's bindAddress is --socket here"),
    ("bindaddress", "flup's bindAddress is --socket here"),
    ("max-threads", "flup's maxThreads is --threads here"),
    ("maxthreads", "flup's maxThreads is --threads here"),
];

/// Optimal string alignment distance: insertions, deletions,
/// substitutions and swaps of two neighbours each count one.
pub fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// The largest distance still taken for a typo of a name this long: one
/// edit up to 6 characters, two up to 12, three beyond. Short names are
/// close to many others, so they get the least room.
fn room(len: usize) -> usize {
    len.div_ceil(6).clamp(1, 3)
}

/// One of rustgi's names: a flag (or key) and the setting it stands for.
pub struct Known<'a> {
    pub name: &'a str,
    pub canonical: &'a str,
}

/// The tip for the unknown `name` (no dashes, lower case), given rustgi's
/// names: `Some("did you mean --max-requests?")`-like text, without the
/// dashes decided here (`style` writes a name as the user would type it:
/// `--name`, `name` or `RUSTGI_NAME`).
pub fn tip(name: &str, known: &[Known], style: &dyn Fn(&str) -> String) -> Option<String> {
    let name = name.to_ascii_lowercase().replace('_', "-");
    if let Some((_, tip)) = FOREIGN.iter().find(|(foreign, _)| *foreign == name) {
        return Some(tip.to_string());
    }
    let limit = room(name.chars().count());
    let mut best: Option<(usize, &Known)> = None;
    let mut tied = false;
    for candidate in known {
        let d = distance(&name, candidate.name);
        if d > limit {
            continue;
        }
        match best {
            Some((bd, b)) if d == bd && b.canonical != candidate.canonical => tied = true,
            Some((bd, _)) if d >= bd => {}
            _ => {
                best = Some((d, candidate));
                tied = false;
            }
        }
    }
    if let Some((_, found)) = best.filter(|_| !tied) {
        return Some(if found.name == found.canonical {
            format!("did you mean {}?", style(found.name))
        } else {
            format!(
                "did you mean {} (that is {})?",
                style(found.name),
                style(found.canonical)
            )
        });
    }
    // A typo of another server's name: its tip.
    FOREIGN
        .iter()
        .filter(|(foreign, _)| distance(&name, foreign) <= room(foreign.len()).min(1))
        .map(|(_, tip)| tip.to_string())
        .next()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::CommandFactory;

    fn flags() -> Vec<(String, String)> {
        let cmd = Cli::command();
        let mut names = Vec::new();
        for arg in cmd.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            names.push((long.to_string(), long.to_string()));
            for alias in arg.get_all_aliases().unwrap_or_default() {
                names.push((alias.to_string(), long.to_string()));
            }
        }
        names
    }

    fn tip_for(name: &str) -> Option<String> {
        let names = flags();
        let known: Vec<Known> = names
            .iter()
            .map(|(n, c)| Known {
                name: n,
                canonical: c,
            })
            .collect();
        tip(name, &known, &|n| format!("--{n}"))
    }

    #[test]
    fn distances() {
        assert_eq!(distance("", ""), 0);
        assert_eq!(distance("threads", "threds"), 1);
        assert_eq!(distance("max-requets", "max-requests"), 1); // a swap
        assert_eq!(distance("chown", "chmod"), 3);
        assert_eq!(distance("module", "mount"), 3);
    }

    #[test]
    fn typos_get_the_flag_they_are_close_to() {
        assert_eq!(
            tip_for("max-request").unwrap(),
            "did you mean --max-requests?"
        );
        assert_eq!(tip_for("proccesses").unwrap(), "did you mean --processes?");
        assert_eq!(tip_for("thread").unwrap(), "did you mean --threads?");
        assert_eq!(tip_for("log-lvl").unwrap(), "did you mean --log-level?");
        assert_eq!(
            tip_for("harakri").unwrap(),
            "did you mean --harakiri (that is --timeout)?"
        );
    }

    #[test]
    fn never_a_flag_of_another_meaning() {
        // The examples: clap sent these to --mount, --user, --chown.
        // --module and --master are now flags themselves; the others:
        for far in [
            "modul-name",
            "mastr-fifo",
            "conf",
            "socket-mode",
            "umask",
            "cheaper",
        ] {
            let tip = tip_for(far);
            assert!(tip.is_none(), "{far}: {tip:?}");
        }
        // chown and chmod are three edits apart: a typo of one is never
        // sent to the other.
        assert!(tip_for("chowm").is_some_and(|t| t.contains("--chown")));
        assert!(tip_for("chwn").is_some_and(|t| t.contains("--chown")));
        assert!(tip_for("chmd").is_some_and(|t| t.contains("--chmod")));
        // Equally close to two different flags: no tip.
        let known = [
            Known {
                name: "user",
                canonical: "user",
            },
            Known {
                name: "uses",
                canonical: "uses",
            },
        ];
        assert_eq!(tip("usex", &known, &|n| n.to_string()), None);
        assert!(tip("usr", &known, &|n| n.to_string()).is_some());
    }

    #[test]
    fn other_servers_names_get_rustgis() {
        assert_eq!(
            tip_for("chmod-socket").unwrap(),
            "uWSGI's --chmod-socket is --chmod here"
        );
        assert_eq!(tip_for("uid").unwrap(), "uWSGI's --uid is --user here");
        assert_eq!(
            tip_for("pid").unwrap(),
            "gunicorn's --pid is --pidfile here"
        );
        assert!(tip_for("static-map").unwrap().contains("location /static/"));
        assert!(tip_for("http").unwrap().contains("nginx"));
    }

    #[test]
    fn every_foreign_tip_names_a_real_flag() {
        let names = flags();
        for (foreign, tip) in FOREIGN {
            assert!(
                !names.iter().any(|(n, _)| n == foreign),
                "{foreign} is a flag now"
            );
            for word in tip.split_whitespace() {
                if let Some(flag) = word.strip_prefix("--") {
                    let flag = flag.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
                    assert!(
                        names.iter().any(|(n, _)| n == flag)
                            || FOREIGN.iter().any(|(f, _)| *f == flag),
                        "{foreign}: {tip} names --{flag}"
                    );
                }
            }
        }
    }
}
