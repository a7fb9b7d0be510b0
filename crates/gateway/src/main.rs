//! `rustgi-gateway`: flags in, `rustgi_supervisor::run` out.

#![deny(clippy::undocumented_unsafe_blocks)]

mod cli;
mod config;
mod log;
mod version;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    guard_standard_fds();
    if std::env::args_os().nth(1).is_some_and(|a| a == "status") {
        return status(cli::StatusCli::parse_from(std::env::args_os().skip(1)));
    }
    if std::env::args_os().nth(1).is_some_and(|a| a == "convert") {
        return convert(std::env::args_os().skip(2).collect());
    }
    // A --preload master about to re-execute itself asks first whether the
    // settings, read again, would start (master.rs, `check_settings`).
    let reload_check = std::env::var_os(rustgi_supervisor::RELOAD_CHECK_ENV).is_some();
    let vars = std::env::vars()
        .filter(|(k, _)| k != rustgi_supervisor::RELOAD_CHECK_ENV)
        .collect();
    let loaded = match config::load(std::env::args_os().collect(), vars) {
        Ok(loaded) if reload_check => {
            let checked = loaded.cli.into_config().and_then(|config| {
                rustgi_supervisor::check_reload(config).map_err(|e| e.to_string())
            });
            return match checked {
                Ok(()) => ExitCode::SUCCESS,
                Err(message) => {
                    eprintln!("rustgi-gateway: {message}");
                    ExitCode::from(2)
                }
            };
        }
        Ok(loaded) => loaded,
        Err(config::Failure::Clap(e)) => e.exit(),
        Err(config::Failure::Message(message)) => {
            eprintln!("rustgi-gateway: {message}");
            return ExitCode::from(2);
        }
    };
    if let Some(text) = &loaded.printed {
        print!("{text}");
        return ExitCode::SUCCESS;
    }
    let cli = loaded.cli;
    if let Err(message) = log::init(&cli.log_level, cli.log_format, cli.log_file.as_deref()) {
        eprintln!("rustgi-gateway: {message}");
        return ExitCode::from(2);
    }
    for note in &loaded.notes {
        if note.warn {
            tracing::warn!("{}", note.text);
        } else {
            tracing::info!("{}", note.text);
        }
    }
    // Why it stops goes to stderr, where whoever started it looks, and to
    // the log file too, where the rest of its story is.
    let to_file = cli.log_file.is_some();
    let fail = |message: &dyn std::fmt::Display| {
        eprintln!("rustgi-gateway: {message}");
        if to_file {
            tracing::error!("{message}");
        }
    };
    let config = match cli.into_config() {
        Ok(config) => config,
        Err(message) => {
            fail(&message);
            return ExitCode::from(2);
        }
    };
    match rustgi_supervisor::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            fail(&e);
            ExitCode::FAILURE
        }
    }
}

/// `rustgi-gateway convert app.ini[:section]`: prints the TOML that
/// `--config` reads for a uWSGI ini file (what `--uwsgi-ini` would take).
fn convert(args: Vec<std::ffi::OsString>) -> ExitCode {
    let spec = match args.as_slice() {
        [spec] => spec.to_string_lossy().into_owned(),
        _ => {
            eprintln!(
                "usage: rustgi-gateway convert FILE[:SECTION]\n\nPrints the rustgi settings (TOML, for --config) of a uWSGI ini file."
            );
            return ExitCode::from(2);
        }
    };
    match config::convert(&spec) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("rustgi-gateway convert: {message}");
            ExitCode::from(2)
        }
    }
}

/// `rustgi-gateway status --pidfile PATH | --metrics ADDR`: the master's
/// live status (per worker: pid, age, requests, RSS, what each busy thread
/// runs and for how long).
fn status(cli: cli::StatusCli) -> ExitCode {
    use rustgi_supervisor::StatusSource;
    let source = match (&cli.pidfile, &cli.metrics) {
        (_, Some(addr)) => StatusSource::Metrics(cli::metrics_addr(addr)),
        (Some(path), None) => {
            let pid = std::fs::read_to_string(path)
                .map_err(|e| format!("--pidfile {}: {e}", path.display()))
                .and_then(|text| {
                    text.trim().parse::<u32>().map_err(|_| {
                        format!(
                            "--pidfile {}: {:?} is not a pid",
                            path.display(),
                            text.trim()
                        )
                    })
                });
            match pid {
                Ok(pid) => StatusSource::Pid(pid),
                Err(message) => {
                    eprintln!("rustgi-gateway status: {message}");
                    return ExitCode::FAILURE;
                }
            }
        }
        (None, None) => unreachable!("clap requires one"),
    };
    let path = if cli.json {
        "/status.json"
    } else {
        "/status.txt"
    };
    match rustgi_supervisor::fetch_status(&source, path) {
        Ok(body) => {
            use std::io::Write;
            let mut out = std::io::stdout();
            let _ = out.write_all(&body);
            if cli.json {
                let _ = out.write_all(b"\n");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            let whom = match source {
                StatusSource::Pid(pid) => format!(
                    "master {pid} (is it running, as this user? it answers its own user and root)"
                ),
                StatusSource::Metrics(addr) => format!("--metrics {addr}"),
            };
            eprintln!("rustgi-gateway status: could not ask {whom}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Puts /dev/null on any of fds 0–2 that is closed, before anything opens a
/// file: otherwise the first socket opened becomes fd 1 and an app's
/// print() lands in a connection (front servers spawn us that way).
fn guard_standard_fds() {
    for fd in 0..=2 {
        // SAFETY: F_GETFD only inspects the descriptor.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0 {
            continue;
        }
        // SAFETY: open returns a fresh descriptor, the lowest free one: the
        // closed standard descriptor itself, or one we move there and close.
        unsafe {
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
            if null >= 0 && null != fd {
                libc::dup2(null, fd);
                libc::close(null);
            }
        }
    }
}
