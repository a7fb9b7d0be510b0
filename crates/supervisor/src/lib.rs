//! Supervision: the listening socket (Unix, TCP, fd 0, systemd), the
//! master process and its workers, privileges, the pidfile and sd_notify.
//! The binary hands a [`ServerConfig`] to [`run`]; each worker serves its
//! copy of the listener with `rustgi_serve::serve`.

#![deny(clippy::undocumented_unsafe_blocks)]

mod backlog;
mod config;
mod endpoint;
mod listener;
mod master;
mod observing;
mod open_files;
mod pidfile;
mod policy;
mod privileges;
mod proc;
pub(crate) mod systemd;
mod timeout;
mod title;
mod worker;

pub use config::{ProcessOptions, ServerConfig};
pub use endpoint::{MetricsAddr, Source as StatusSource, fetch as fetch_status};
pub use master::RELOAD_CHECK_ENV;
// Not public: `activation_present` (and `bind`, which calls it) edit the
// environment, which is sound only before any thread starts, as in `run`.
pub use listener::{BoundSocket, SOCKET_FILE_OWNED_ENV, SocketSpec, fd0_is_listening_socket};
use listener::{activation_present, bind};
pub use pidfile::Pidfile;
pub use privileges::{Privileges, after_bind, drop_privileges};
pub use rustgi_serve::{
    AjpOptions, AllowedPeer, BodyLimits, FastcgiOptions, MinRate, ObserveConfig, Protocol,
    RunError, ServeConfig, Timeouts,
};

/// Starts Python, loads the app, listens, and serves until SIGINT/SIGTERM.
pub fn run(mut config: ServerConfig) -> Result<(), RunError> {
    // Before anything changes them: argv and the working directory, which
    // a --preload reload re-executes with.
    master::remember_start();
    // Before any thread: takes LISTEN_FDS out of the environment.
    let activated = activation_present()?;
    for (key, value) in &config.env {
        // SAFETY: no other thread exists yet (Python, tokio and the pool
        // all start below), so nothing can read the environment meanwhile.
        unsafe { std::env::set_var(key, value) };
    }
    enter_directory_and_venv(&mut config)?;
    // A bad FCGI_WEB_SERVER_ADDRS is a start-up error, before Python loads.
    config
        .serve
        .allow_from
        .extend(rustgi_serve::allowed_from_environment().map_err(RunError::Setup)?);
    let socket_given = config.socket.is_some() || activated;
    config.serve.protocol = match how_to_start(config.serve.protocol, socket_given)? {
        Start::Cgi => {
            drop_privileges(&config.privileges).map_err(RunError::Setup)?;
            return rustgi_serve::cgi::run(&config.serve, &config.python, config.mount.clone());
        }
        Start::Serve(protocol) => Some(protocol),
    };
    // Before the workers fork (they inherit it) and while still root, who
    // may raise the hard limit's soft copy.
    open_files::raise_for(config.serve.max_connections);
    // Bound (not yet listening) before Python starts, so that privileges
    // can be dropped first: the app never runs as root.
    let mut socket = bind(config.socket.as_ref(), config.socket_mode)?;
    if let Some(addr) = socket.reachable_from_outside()
        && config.serve.allow_from.is_empty()
    {
        tracing::warn!(
            "--socket tcp:{addr} is not a loopback address and there is no --allow-from: \
             anyone who can reach this port can send requests and set REMOTE_ADDR, \
             REMOTE_USER and HTTPS in them; give the front server's address with \
             --allow-from (or FCGI_WEB_SERVER_ADDRS)"
        );
    }
    // Refused at start, like the socket: a --metrics that cannot be bound
    // is a mistake to hear about now, not at the first scrape.
    let endpoint = endpoint::Endpoint::bind(config.metrics.as_ref()).map_err(RunError::Setup)?;
    let socket_file = socket.socket_file_guard();
    let _pidfile = after_bind(&config.privileges, config.pidfile.as_deref(), &socket)
        .map_err(RunError::Setup)?;
    // A master forks the workers, which load the app (master.rs).
    master::run(&config, socket, socket_file, endpoint)
}

/// What a --preload master asks before it re-executes itself
/// ([`RELOAD_CHECK_ENV`], run in a child with the argv and directory the
/// new image would have): besides the settings, that `--chdir` and the venv
/// are still there. A new image that cannot enter them would exit and take
/// the server down; refused here, the reload fails and the old workers
/// keep serving. Python is not started, nor the app imported.
pub fn check_reload(mut config: ServerConfig) -> Result<(), RunError> {
    enter_directory_and_venv(&mut config)
}

/// `--chdir`, then the venv (--venv, or the one this program sits in),
/// decided and checked once, before the socket exists: a wrong one is
/// refused now.
fn enter_directory_and_venv(config: &mut ServerConfig) -> Result<(), RunError> {
    // A relative argv[0], which may choose the venv, is relative to it.
    let start_dir = std::env::current_dir().ok();
    if let Some(dir) = &config.chdir {
        std::env::set_current_dir(dir)
            .map_err(|e| RunError::Setup(format!("--chdir {}: {e}", dir.display())))?;
    }
    config
        .python
        .settle(start_dir.as_deref())
        .map_err(RunError::Python)
}

/// An interpreter that cannot start after `--user` usually cannot read its
/// own installation: say so.
fn python_failed(e: rustgi_core::StartError, config: &ServerConfig) -> RunError {
    match (&e, &config.privileges.user) {
        (rustgi_core::StartError::Init(_), Some(user)) => RunError::Setup(format!(
            "{e}\n(Python starts after the switch to --user {user}: that user must be able to \
             read the Python installation and its standard library; a Python under /root is not readable by others)"
        )),
        _ => RunError::Python(e),
    }
}

enum Start {
    Cgi,
    Serve(Protocol),
}

/// How the web server meant us to run. Explicit flags win; without them:
/// FCGI_FORCE_CGI=Y forces CGI (as for flup); a listening socket on fd 0
/// means we were spawned (mod_fcgid, lighttpd bin-path, spawn-fcgi) and
/// serve it, telling the protocol from each connection's first byte; a set
/// GATEWAY_INTERFACE means CGI (also under mod_cgid, where fd 0 is a
/// *connected* socket, the case flup gets wrong).
fn how_to_start(protocol: Option<Protocol>, socket_given: bool) -> Result<Start, RunError> {
    match protocol {
        Some(Protocol::Cgi) => return Ok(Start::Cgi),
        Some(protocol) => return Ok(Start::Serve(protocol)),
        None if socket_given => return Ok(Start::Serve(Protocol::Auto)),
        None => {}
    }
    if std::env::var_os("FCGI_FORCE_CGI").is_some_and(|v| v.eq_ignore_ascii_case("y")) {
        return Ok(Start::Cgi);
    }
    if fd0_is_listening_socket() {
        return Ok(Start::Serve(Protocol::Auto));
    }
    if std::env::var_os("GATEWAY_INTERFACE").is_some() {
        return Ok(Start::Cgi);
    }
    Err(RunError::Setup(
        "nothing to serve: fd 0 is not a listening socket and GATEWAY_INTERFACE is not set. \
         Start it with --socket PATH or --socket HOST:PORT (and --proto fastcgi|scgi|uwsgi, or auto), \
         or let a web server start it: spawned with a listening socket on fd 0, or as a CGI program"
            .into(),
    ))
}
