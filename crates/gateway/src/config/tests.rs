//! The sources together: precedence, masking, --print-config's round trip.

use super::*;

fn argv(args: &[&str]) -> Vec<OsString> {
    std::iter::once("rustgi-gateway")
        .chain(args.iter().copied())
        .map(OsString::from)
        .collect()
}

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn loaded(args: &[&str], env: &[(&str, &str)]) -> Loaded {
    match load(argv(args), vars(env)) {
        Ok(l) => l,
        Err(Failure::Message(m)) => panic!("{m}"),
        Err(Failure::Clap(e)) => panic!("{e}"),
    }
}

fn failure(args: &[&str], env: &[(&str, &str)]) -> String {
    match load(argv(args), vars(env)) {
        Ok(_) => panic!("accepted"),
        Err(Failure::Message(m)) => m,
        Err(Failure::Clap(e)) => e.to_string(),
    }
}

/// --print-config's lines that are settings, without where they came from.
fn settings(printed: &str) -> Vec<String> {
    printed
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split("  # ").next().unwrap().to_string())
        .collect()
}

#[test]
fn flags_over_environment_over_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rustgi.toml");
    std::fs::write(
        &file,
        "threads = 3\nprocesses = 2\nmax-requests = 10\nenv = [\"A=1\"]\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let l = loaded(
        &["--config", f, "--threads", "5"],
        &[("RUSTGI_THREADS", "4"), ("RUSTGI_PROCESSES", "3")],
    );
    assert_eq!(l.cli.threads, 5);
    assert_eq!(l.cli.processes, 3);
    assert_eq!(l.cli.max_requests, 10);
    assert_eq!(l.cli.env, [("A".to_string(), "1".to_string())]);
    // A list is taken whole from the highest source that has one.
    let l = loaded(&["--config", f, "--env", "B=2"], &[]);
    assert_eq!(l.cli.env, [("B".to_string(), "2".to_string())]);
    // RUSTGI_CONFIG names the file too.
    let l = loaded(&[], &[("RUSTGI_CONFIG", f)]);
    assert_eq!(l.cli.threads, 3);
}

#[test]
fn a_switch_set_false_by_a_higher_source() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rustgi.toml");
    std::fs::write(&file, "preload = true\n").unwrap();
    let f = file.to_str().unwrap();
    assert!(loaded(&["--config", f], &[]).cli.preload);
    assert!(
        !loaded(&["--config", f], &[("RUSTGI_PRELOAD", "0")])
            .cli
            .preload
    );
    assert!(
        loaded(&["--config", f, "--preload"], &[("RUSTGI_PRELOAD", "0")])
            .cli
            .preload
    );
}

#[test]
fn a_bad_value_names_its_source() {
    let e = failure(&[], &[("RUSTGI_THREADS", "0")]);
    assert!(e.starts_with("RUSTGI_THREADS: invalid value '0'"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rustgi.toml");
    std::fs::write(&file, "\nthreads = \"many\"\n").unwrap();
    let e = failure(&["--config", file.to_str().unwrap()], &[]);
    assert!(
        e.starts_with(&format!("{}:2: invalid value 'many'", file.display())),
        "{e}"
    );
    let e = failure(&["--config", "/nonexistent/rustgi.toml"], &[]);
    assert!(e.starts_with("--config /nonexistent/rustgi.toml: "), "{e}");
}

#[test]
fn aliases_and_master() {
    let l = loaded(
        &[
            "--workers",
            "3",
            "--harakiri",
            "20",
            "--module",
            "a.b:c",
            "--virtualenv",
            "/v",
            "--bind",
            "127.0.0.1:9",
            "--master",
        ],
        &[],
    );
    assert_eq!(l.cli.processes, 3);
    assert_eq!(l.cli.timeout, Some(20.0));
    assert_eq!(l.cli.app.as_deref(), Some("a.b:c"));
    assert_eq!(l.cli.venv, Some(PathBuf::from("/v")));
    assert_eq!(l.cli.socket.as_deref(), Some("127.0.0.1:9"));
    assert!(l.notes.iter().any(|n| n.text.contains("--master")));
    let l = loaded(&["--wsgi-file", "app.py", "--home", "/h"], &[]);
    assert_eq!(l.cli.app.as_deref(), Some("app.py"));
    assert_eq!(l.cli.venv, Some(PathBuf::from("/h")));
}

#[test]
fn unknown_flags_get_our_tip_or_none() {
    let e = failure(&["--max-request", "3"], &[]);
    assert!(e.contains("tip: did you mean --max-requests?"), "{e}");
    let e = failure(&["--chmod-socket", "666"], &[]);
    assert!(
        e.contains("tip: uWSGI's --chmod-socket is --chmod here"),
        "{e}"
    );
    let e = failure(&["--socket-mode", "666"], &[]);
    assert!(!e.contains("tip"), "{e}");
    assert!(e.contains("Usage: rustgi-gateway"), "{e}");
}

#[test]
fn a_file_app_does_not_count_against_a_paste_flag() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rustgi.toml");
    std::fs::write(&file, "app = \"x:app\"\n").unwrap();
    let paste = dir.path().join("production.ini");
    std::fs::write(
        &paste,
        "[app:main]\nuse = egg:x\n[server:main]\nuse = egg:flup#scgi_thread\nport = 4005\n",
    )
    .unwrap();
    let paste_arg = format!("{}#main", paste.display());
    let l = loaded(
        &["--config", file.to_str().unwrap(), "--paste", &paste_arg],
        &[],
    );
    assert_eq!(l.cli.app, None);
    assert_eq!(l.cli.paste.as_deref(), Some(paste_arg.as_str()));
    // [server:main] is below every other source.
    assert_eq!(l.cli.socket.as_deref(), Some("localhost:4005"));
    assert!(matches!(l.cli.proto, Some(crate::cli::Proto::Scgi)));
    let l = loaded(&["--paste", &paste_arg, "--socket", "/run/x.sock"], &[]);
    assert_eq!(l.cli.socket.as_deref(), Some("/run/x.sock"));
    assert!(failure(&["--paste", &paste_arg, "--app", "x"], &[]).contains("cannot be used"));
}

#[test]
fn print_config_reads_back_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rustgi.toml");
    std::fs::write(
        &file,
        "threads = 3\nchmod = 0o640\nenv = [\"A=1\", \"B=x y\"]\nheader-timeout = 2.5\n",
    )
    .unwrap();
    let args = [
        "--config",
        file.to_str().unwrap(),
        "--preload",
        "--allow-from",
        "10.0.0.0/8",
        "--print-config",
    ];
    let first = loaded(
        &args,
        &[
            ("RUSTGI_FASTCGI_ROLES", "responder"),
            ("RUSTGI_SOCKET", "/run/a b.sock"),
        ],
    );
    let printed = first.printed.unwrap();
    assert!(printed.contains("\nthreads = 3  # "), "{printed}");
    assert!(
        printed.contains("\n# processes = 1  (default)\n"),
        "{printed}"
    );
    assert!(printed.contains("\n# chown is not set\n"), "{printed}");
    assert!(
        printed.contains("\nsocket = \"/run/a b.sock\"  # RUSTGI_SOCKET\n"),
        "{printed}"
    );
    let again = dir.path().join("again.toml");
    std::fs::write(&again, &printed).unwrap();
    let second = loaded(
        &["--config", again.to_str().unwrap(), "--print-config"],
        &[],
    );
    assert_eq!(settings(&printed), settings(&second.printed.unwrap()));
    assert_eq!(second.cli.chmod, 0o640);
    assert_eq!(second.cli.env.len(), 2);
    assert!(second.cli.preload);
}

#[test]
fn convert_output_is_a_config() {
    let dir = tempfile::tempdir().unwrap();
    let ini = dir.path().join("app.ini");
    std::fs::write(
        &ini,
        "[uwsgi]\nsocket = /run/app.sock\nmodule = app:application\nprocesses = 2\nharakiri = 30\nmaster = true\nstatic-map = /static=/srv/s\n",
    )
    .unwrap();
    let text = convert(ini.to_str().unwrap()).unwrap();
    assert!(text.contains("# WARNING: "), "{text}");
    let toml_path = dir.path().join("app.toml");
    std::fs::write(&toml_path, &text).unwrap();
    let from_toml = loaded(
        &["--config", toml_path.to_str().unwrap(), "--print-config"],
        &[],
    );
    let from_ini = loaded(
        &["--uwsgi-ini", ini.to_str().unwrap(), "--print-config"],
        &[],
    );
    assert_eq!(
        settings(&from_toml.printed.unwrap()),
        settings(&from_ini.printed.unwrap())
    );
    assert_eq!(from_ini.cli.timeout, Some(30.0));
    assert!(
        from_ini
            .notes
            .iter()
            .any(|n| n.warn && n.text.contains("location /static/"))
    );
}

#[test]
fn pairs_are_checked_on_the_merged_settings() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rustgi.toml");
    let f = file.to_str().unwrap();
    // Each half from another source.
    std::fs::write(&file, "forwarded-allow-from = [\"10.0.0.0/8\"]\n").unwrap();
    let l = loaded(
        &["--config", f, "--trusted-proxy-header", "X-Forwarded-Proto"],
        &[],
    );
    assert_eq!(l.cli.forwarded_allow_from.len(), 1);
    let l = loaded(
        &[],
        &[
            ("RUSTGI_TRUSTED_PROXY_HEADER", "X-Forwarded-Proto"),
            ("RUSTGI_FORWARDED_ALLOW_FROM", "10.0.0.1 ::1"),
        ],
    );
    assert_eq!(l.cli.forwarded_allow_from.len(), 2);
    let e = failure(&[], &[("RUSTGI_TRUSTED_PROXY_HEADER", "X-Forwarded-Proto")]);
    assert!(
        e.starts_with(
            "trusted-proxy-header (RUSTGI_TRUSTED_PROXY_HEADER) needs --forwarded-allow-from too"
        ),
        "{e}"
    );
    // Both in one file: refused, naming both lines.
    std::fs::write(&file, "app = \"x:y\"\npaste = \"p.ini\"\n").unwrap();
    let e = failure(&["--config", f], &[]);
    assert_eq!(
        e,
        format!("paste ({f}:2) cannot be used with app ({f}:1): give one of them")
    );
    // A switch that is off excludes nothing.
    std::fs::write(&file, "ajp-secret = \"s\"\n").unwrap();
    let l = loaded(
        &["--config", f, "--ajp-secret-optional=false"],
        &[("RUSTGI_AJP_SECRET_OPTIONAL", "0")],
    );
    assert_eq!(l.cli.ajp_secret.as_deref(), Some("s"));
    // One that is on hides the other below it.
    let l = loaded(&["--config", f, "--ajp-secret-optional"], &[]);
    assert_eq!(l.cli.ajp_secret, None);
    assert!(l.cli.ajp_secret_optional);
}

#[test]
fn a_switch_flag_takes_false() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rustgi.toml");
    std::fs::write(&file, "preload = true\nno-fastcgi-stderr = true\n").unwrap();
    let f = file.to_str().unwrap();
    let l = loaded(
        &["--config", f, "--preload=false", "--no-fastcgi-stderr=no"],
        &[],
    );
    assert!(!l.cli.preload && !l.cli.no_fastcgi_stderr);
    assert!(loaded(&["--preload"], &[]).cli.preload);
    assert!(loaded(&["--preload=true"], &[]).cli.preload);
    // `--preload false` is no value: the switch stands alone.
    assert!(failure(&["--preload", "false"], &[]).contains("unexpected argument 'false'"));
}

#[test]
fn paste_is_read_only_if_it_survives_and_inside_chdir() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rustgi.toml");
    let f = file.to_str().unwrap();
    std::fs::write(&file, "paste = \"/nonexistent/missing.ini\"\n").unwrap();
    let l = loaded(&["--app", "x:y", "--config", f], &[]);
    assert_eq!((l.cli.app.as_deref(), l.cli.paste), (Some("x:y"), None));
    let ini = dir.path().join("s.ini");
    std::fs::write(
        &ini,
        "[server:main]\nuse = egg:flup#scgi_thread\nhost = 127.0.0.1\nport = 4100\n",
    )
    .unwrap();
    std::fs::write(&file, format!("paste = \"{}\"\n", ini.display())).unwrap();
    let l = loaded(&["--config", f], &[("RUSTGI_APP", "x:y")]);
    assert_eq!((l.cli.socket, l.cli.proto.is_some()), (None, false));
    // Relative: inside --chdir, as the loader reads it.
    let l = loaded(
        &[
            "--chdir",
            dir.path().to_str().unwrap(),
            "--paste",
            "s.ini#web",
        ],
        &[],
    );
    assert_eq!(l.cli.socket.as_deref(), Some("127.0.0.1:4100"));
    assert_eq!(
        crate::cli::paste_spec("s.ini#web", Some(dir.path())),
        format!("{}#web", ini.display())
    );
    assert_eq!(
        crate::cli::paste_spec("config:/srv/p.ini", Some(dir.path())),
        "/srv/p.ini"
    );
}

#[test]
fn flups_ajp_asks_for_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let ini = dir.path().join("p.ini");
    std::fs::write(&ini, "[server:main]\nuse = egg:flup#ajp_thread\n").unwrap();
    let p = ini.to_str().unwrap();
    let e = failure(&["--paste", p], &[]);
    assert!(
        e.starts_with(&format!(
            "proto = ajp ({p}:2 ([server:main] use); flup's AJP server took no secret"
        )),
        "{e}"
    );
    let l = loaded(&["--paste", p], &[("RUSTGI_AJP_SECRET", "s")]);
    assert_eq!(l.cli.socket.as_deref(), Some("localhost:8009"));
    let e = failure(&["--proto", "ajp"], &[]);
    assert!(
        e.starts_with("--proto ajp needs --ajp-secret SECRET"),
        "{e}"
    );
}

#[test]
fn addresses_for_socket_and_metrics() {
    use crate::cli::{Address, metrics_addr};
    use rustgi_supervisor::MetricsAddr;
    let tcp = |s: &str| match Address::parse(s) {
        Address::Tcp(a) => a,
        Address::Unix(p) => panic!("{s} read as the path {}", p.display()),
    };
    assert_eq!(tcp(":9191"), "0.0.0.0:9191");
    assert_eq!(tcp("127.0.0.1:9"), "127.0.0.1:9");
    assert_eq!(tcp("[::1]:9"), "[::1]:9");
    assert_eq!(
        metrics_addr("stats.sock"),
        MetricsAddr::Unix(PathBuf::from("stats.sock"))
    );
    assert_eq!(
        metrics_addr("unix:/run/m.sock"),
        MetricsAddr::Unix(PathBuf::from("/run/m.sock"))
    );
    assert_eq!(
        metrics_addr(":9191"),
        MetricsAddr::Tcp("0.0.0.0:9191".into())
    );
}
