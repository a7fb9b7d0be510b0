//! The command line. Every flag is documented in README.md too.

use clap::{Parser, ValueEnum};
use rustgi_core::{AppSpec, ForwardedScheme, Mount, PythonSetup, SpoolLimits};
use rustgi_fastcgi::Roles;
use rustgi_observe::access::{Destination, Format as AccessFormat};
use rustgi_supervisor::{
    AjpOptions, AllowedPeer, BodyLimits, FastcgiOptions, MetricsAddr, MinRate, ObserveConfig,
    Privileges, ProcessOptions, Protocol, ServeConfig, ServerConfig, SocketSpec, Timeouts,
};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Proto {
    /// SCGI (nginx scgi_pass, Apache mod_proxy_scgi, lighttpd scgi.server).
    Scgi,
    /// FastCGI (nginx fastcgi_pass, Apache mod_proxy_fcgi, lighttpd fastcgi.server).
    Fastcgi,
    /// uWSGI's binary protocol (nginx uwsgi_pass, Apache mod_proxy_uwsgi,
    /// lighttpd scgi.protocol = "uwsgi").
    Uwsgi,
    /// AJP 1.3 (Apache ProxyPass ajp://, mod_jk, lighttpd mod_ajp13);
    /// needs --ajp-secret or --ajp-secret-optional.
    Ajp,
    /// Each connection's first byte says which of the four it speaks.
    Auto,
    /// Run one request as a CGI program (environment + stdin → stdout).
    Cgi,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum FastcgiRole {
    Responder,
    Authorizer,
    Filter,
}

/// A gateway between a front web server and a Python WSGI application.
#[derive(Debug, Parser)]
#[command(name = "rustgi-gateway", version = crate::version::text())]
pub struct Cli {
    /// Wire protocol the front server speaks. Without it: auto with
    /// --socket; otherwise decided from how the web server started us
    /// (listening socket on fd 0: auto; GATEWAY_INTERFACE: cgi).
    #[arg(long, value_enum)]
    pub proto: Option<Proto>,

    /// AJP's shared secret: every AJP request must carry it (Apache's
    /// ProxyPass `secret=`). RUSTGI_AJP_SECRET or --config, like every
    /// flag, keep it out of the process list.
    #[arg(long, value_name = "SECRET")]
    pub ajp_secret: Option<String>,

    /// Serve AJP without a secret (anyone who can connect can then pass
    /// any REMOTE_USER or HTTPS: see CVE-2020-1938). Without it and
    /// without --ajp-secret, --proto ajp refuses to start and
    /// --proto auto refuses AJP connections.
    #[arg(long)]
    pub ajp_secret_optional: bool,

    /// AJP's packet size, both ways (Tomcat's `packetSize`): it must match
    /// the web server's buffer (Apache's ProxyIOBufferSize, 8192 unless
    /// raised). A response head that does not fit one packet is answered
    /// 500 with a log line, where Apache would fail it silently.
    #[arg(long, default_value_t = 8192, value_name = "BYTES",
          value_parser = clap::value_parser!(u32).range(8192..=65536))]
    pub ajp_packet_size: u32,

    /// Where to listen: a Unix socket path, or HOST:PORT. Without it, the
    /// listening socket the front server passed on fd 0 is used.
    /// (`--bind`, `-b`: gunicorn's names.)
    #[arg(long, short = 'b', visible_alias = "bind", value_parser = parse_socket)]
    pub socket: Option<String>,

    /// Only serve TCP peers at this address or network (repeatable; e.g.
    /// 127.0.0.1, 10.0.0.0/8, ::1). FCGI_WEB_SERVER_ADDRS adds to the list.
    #[arg(long = "allow-from", value_name = "ADDR[/BITS]", value_parser = AllowedPeer::parse)]
    pub allow_from: Vec<AllowedPeer>,

    /// Believe this request header for the client's scheme (https or on,
    /// http or off), as set by a TLS-ending load balancer in front of the
    /// web server: it sets wsgi.url_scheme (and HTTPS=on). Only for
    /// requests whose REMOTE_ADDR, as the web server sends it, is in
    /// --forwarded-allow-from. Off by default.
    #[arg(long, value_name = "HEADER", value_parser = parse_header_name)]
    pub trusted_proxy_header: Option<String>,

    /// The balancers whose --trusted-proxy-header is believed: an address
    /// or network (repeatable), matched against REMOTE_ADDR.
    #[arg(long = "forwarded-allow-from", value_name = "ADDR[/BITS]",
          value_parser = AllowedPeer::parse)]
    pub forwarded_allow_from: Vec<AllowedPeer>,

    /// Permissions of a Unix socket we create, in octal.
    #[arg(long, default_value = "660", value_parser = parse_mode)]
    pub chmod: u32,

    /// Owner of the Unix socket file we create: USER[:GROUP] (names or ids).
    #[arg(long, value_name = "USER[:GROUP]")]
    pub chown: Option<String>,

    /// The user the front server runs as (repeatable): at start, a warning
    /// names the fix if it could not connect to the Unix socket. Default:
    /// those of www-data, nginx, http, apache and lighttpd that exist.
    #[arg(long = "web-user", value_name = "NAME")]
    pub web_user: Vec<String>,

    /// Become this user (name or uid) after binding, before Python starts.
    /// Needs root. Without --group, the user's primary group.
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,

    /// Become this group (name or gid) after binding (with --user: instead
    /// of the user's primary group).
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,

    /// Write the server's pid here after binding; removed at exit. Refused
    /// while it names a running rustgi-gateway.
    #[arg(long, value_name = "PATH")]
    pub pidfile: Option<PathBuf>,

    /// Serve Prometheus metrics (/metrics), the live status (/status.json,
    /// /status.txt) and the status page (/) from the master, at HOST:PORT
    /// (`:PORT`: every address) or a Unix socket path (read as --socket
    /// reads it). Refused at start if it cannot be bound. See
    /// docs/observability.md.
    #[arg(long, value_name = "ADDR:PORT|PATH")]
    pub metrics: Option<String>,

    /// The WSGI application: MODULE[:CALLABLE] or path/to/file.py[:CALLABLE]
    /// (CALLABLE defaults to `application`; `name()` calls a factory), or a
    /// script such as a flup dispatch.fcgi, run as __main__ (its
    /// WSGIServer(app).run() hands the app over). Without it, a built-in
    /// demo app is served.
    #[arg(long, visible_aliases = ["module", "wsgi-file"])]
    pub app: Option<String>,

    /// A PasteDeploy ini file (Pyramid, Pylons, TurboGears): the app or
    /// pipeline NAME (default `main`) from paste.deploy.loadapp, after the
    /// file's [loggers]/[handlers]/[formatters] are applied with
    /// logging.config.fileConfig; its `[server:main]` section (flup's
    /// fcgi/scgi/ajp servers) supplies the protocol and address. Needs
    /// PasteDeploy in the app's Python.
    #[arg(long, value_name = "PATH[#NAME]")]
    pub paste: Option<String>,

    /// Change to this directory before loading the application.
    #[arg(long)]
    pub chdir: Option<PathBuf>,

    /// Put a directory first on sys.path (repeatable).
    #[arg(long = "pythonpath", value_name = "DIR")]
    pub pythonpath: Vec<PathBuf>,

    /// Run the application inside this virtualenv.
    #[arg(long, visible_aliases = ["virtualenv", "home"])]
    pub venv: Option<PathBuf>,

    /// Set an environment variable before Python starts (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    pub env: Vec<(String, String)>,

    /// Python threads serving requests concurrently.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: u16,

    /// URL prefix the application lives under: it becomes SCRIPT_NAME and is
    /// taken off PATH_INFO.
    #[arg(long, value_name = "PREFIX")]
    pub mount: Option<String>,

    /// Largest request head accepted, in bytes (SCGI header, FastCGI PARAMS,
    /// uwsgi vars block: at most 65535 there).
    #[arg(long, default_value_t = 65536)]
    pub max_header_size: usize,

    /// Seconds allowed from accepting a connection to a complete request head
    /// (and, on a kept FastCGI connection, from the first byte of a request).
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub header_timeout: f64,

    /// Seconds a kept FastCGI connection may be idle between requests
    /// before it is closed (above nginx's keepalive_timeout of 60 s).
    #[arg(long, default_value_t = 75.0, value_name = "SECS")]
    pub keepalive_timeout: f64,

    /// Connections each worker holds open besides those being answered:
    /// waiting for a request head, kept between requests, or in progress
    /// on the I/O loop. At the limit the oldest waiting for a head are
    /// closed first, then the longest idle kept ones. Checked against
    /// RLIMIT_NOFILE at start.
    #[arg(long, default_value_t = 10_000, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Seconds allowed between two reads of the request body.
    #[arg(long, default_value_t = 60.0, value_name = "SECS")]
    pub body_timeout: f64,

    /// Bytes of a request body read before its request goes to a Python
    /// thread: a body this size or smaller is read whole first, so that a
    /// client sending it slowly holds no thread. 0: the application starts
    /// as soon as the head is in.
    #[arg(long, default_value_t = 64 * 1024, value_name = "BYTES")]
    pub buffer_body: usize,

    /// The slowest a request body may arrive, in bytes per second,
    /// averaged over windows of SECS seconds after a first SECS of grace
    /// (as Apache's `RequestReadTimeout body=10,MinRate=1024`). A slower
    /// client is cut: the application's read raises OSError. 0: no minimum.
    #[arg(long, default_value = "1024,10", value_name = "BYTES_PER_SEC[,SECS]", value_parser = parse_min_rate)]
    pub body_min_rate: MinRateFlag,

    /// Seconds a response write may make no progress before the connection is closed.
    #[arg(long, default_value_t = 60.0, value_name = "SECS")]
    pub write_timeout: f64,

    /// MiB of response bytes held, per worker, for clients that read slowly
    /// or not at all: past it, new requests wait until clients read (or
    /// their connections end).
    #[arg(long, default_value_t = 256, value_name = "MIB")]
    pub response_memory: usize,

    /// Seconds a request may run: then it gets a 504, its thread's Python
    /// stack is logged and interrupted, and its worker is replaced (default: no limit).
    #[arg(long, value_name = "SECS", visible_alias = "harakiri")]
    pub timeout: Option<f64>,

    /// Seconds after which a running request is logged, once, with its
    /// Python stack (it goes on running). Default: never.
    #[arg(long, value_name = "SECS")]
    pub slow_request_log: Option<f64>,

    /// Write one line per request to this file (`-`: stderr) once its
    /// response is over, including timeouts, aborts and clients gone.
    /// Reopened on SIGUSR1. Default: no access log.
    #[arg(long, value_name = "PATH|-")]
    pub access_log: Option<String>,

    /// The access log's lines: combined, json, logfmt, or a template such
    /// as '{remote} {method} {uri} {status} {duration_us} {request_header:User-Agent}'
    /// (fields: time, time_clf, request_id, remote, method, path, query, uri,
    /// protocol, status, bytes, request_bytes, duration_us, ttfb_us, pid,
    /// front, ended, request_header:NAME, response_header:NAME; `{{` for a brace).
    #[arg(long, default_value = "combined", value_name = "FORMAT", value_parser = parse_access_format)]
    pub access_log_format: AccessFormat,

    /// Take the request id from this request header, set by a front server
    /// you trust (printable ASCII up to 128 bytes; otherwise one is
    /// generated). Default: always generated.
    #[arg(long, value_name = "HEADER", value_parser = parse_header_name)]
    pub request_id_header: Option<String>,

    /// Seconds SIGTERM/SIGINT wait for requests in flight.
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    pub graceful_timeout: f64,

    /// Worker processes, forked by a master that replaces any that dies
    /// (daemon mode; a CGI request is always one process).
    /// (`--workers`, `-w`: gunicorn's names.)
    #[arg(long, short = 'w', visible_alias = "workers", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub processes: u16,

    /// uWSGI's --master, accepted so that its command lines work: rustgi
    /// always runs a master (a note says so in the log).
    #[arg(long, hide = true)]
    pub master: bool,

    /// Import the application once in the master, then fork the workers
    /// (shared memory, fast start; a reload re-executes the master).
    #[arg(long)]
    pub preload: bool,

    /// A worker retires after this many requests (it finishes them, and a
    /// fresh one replaces it). 0: never.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub max_requests: u64,

    /// Each worker adds its own random 0..=J to --max-requests, so that
    /// workers do not all retire at once.
    #[arg(long, default_value_t = 0, value_name = "J")]
    pub max_requests_jitter: u64,

    /// A worker that has lived this many seconds is replaced: the master
    /// starts a fresh one, which imports the app, and stops the old one
    /// (it finishes its requests) once the fresh one is ready. 0: never.
    #[arg(long, default_value_t = 0, value_name = "SECS")]
    pub max_worker_lifetime: u64,

    /// Each worker lives its own share of 0..J more seconds than
    /// --max-worker-lifetime (spread evenly, not drawn at random), so that
    /// workers started together are not all replaced at once.
    #[arg(long, default_value_t = 0, value_name = "J")]
    pub max_worker_lifetime_jitter: u64,

    /// A worker whose resident memory exceeds this many MiB retires.
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..))]
    pub reload_on_rss: Option<u64>,

    /// Reload (as SIGHUP does) when this file's modification time changes.
    #[arg(long, value_name = "FILE")]
    pub touch_reload: Option<PathBuf>,

    /// Bytes of each request body kept in memory before it spills to a temp file.
    #[arg(long, default_value_t = 1 << 20, value_name = "BYTES")]
    pub spool_memory: usize,

    /// FastCGI roles to accept (comma-separated); others get UNKNOWN_ROLE.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "responder,authorizer,filter"
    )]
    pub fastcgi_roles: Vec<FastcgiRole>,

    /// Do not send wsgi.errors output to the front server as FCGI_STDERR
    /// (it still goes to rustgi's log).
    #[arg(long)]
    pub no_fastcgi_stderr: bool,

    /// Log level (overridden by RUST_LOG): error, warn, info, debug, trace.
    #[arg(long, default_value = "info")]
    pub log_level: String,

    /// The daemon's log as text lines, or one JSON object per line
    /// (time, level, target, message, request, fields).
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: crate::log::Format,

    /// Append the daemon's log to this file instead of stderr; SIGUSR1
    /// reopens it (logrotate).
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,

    /// Warnings about bad input logged per peer and kind every 10 s; the
    /// rest are counted in one "suppressed N" line. 0: no limit.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub bad_input_warnings: u32,

    #[command(flatten)]
    pub sources: Sources,
}

/// Where settings come from besides the command line. These flags are not
/// settings themselves: they are no keys of the file.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Configuration sources")]
pub struct Sources {
    /// Read settings from this TOML file: each key is a flag's name
    /// (`max-requests = 100`; `max_requests` too), repeatable flags take
    /// arrays. Flags win over RUSTGI_<FLAG> environment variables, which
    /// win over the file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Read a uWSGI ini file (`FILE` or `FILE:SECTION`, section `uwsgi` by
    /// default) as settings, below --config; `rustgi-gateway convert FILE`
    /// shows what it becomes.
    #[arg(long, value_name = "FILE[:SECTION]")]
    pub uwsgi_ini: Option<String>,

    /// Print the merged settings (flags, environment, files, defaults) as
    /// TOML that --config reads back, and exit.
    #[arg(long)]
    pub print_config: bool,
}

/// Settings that must come together, whatever sources set them: checked
/// once the sources are merged (config's `pairs`), not by clap, which sees
/// the command line only. (the setting, the one it needs, why)
pub const REQUIRES: &[(&str, &str, &str)] = &[
    (
        "trusted-proxy-header",
        "forwarded-allow-from",
        "the balancers whose header is believed",
    ),
    (
        "forwarded-allow-from",
        "trusted-proxy-header",
        "the header those balancers set",
    ),
];

/// Settings that exclude each other, whatever sources set them: a source
/// that sets one hides the other in the sources below it; two set by the
/// same source are refused once the sources are merged.
pub const CONFLICTS: &[(&str, &str)] = &[("paste", "app"), ("ajp-secret-optional", "ajp-secret")];

/// A listening address as `--socket` and `--metrics` take it, also as
/// gunicorn and uWSGI write it: `unix:PATH`; `:PORT` for every address;
/// a path (anything with a `/`, or without a `:`) or HOST:PORT.
pub(crate) enum Address {
    Unix(PathBuf),
    Tcp(String),
}

impl Address {
    pub(crate) fn parse(spec: &str) -> Address {
        if let Some(path) = spec.strip_prefix("unix:") {
            return Address::Unix(PathBuf::from(path));
        }
        match every_address(spec) {
            Some(addr) => Address::Tcp(addr),
            None if spec.contains('/') || !spec.contains(':') => Address::Unix(PathBuf::from(spec)),
            None => Address::Tcp(spec.to_string()),
        }
    }
}

/// `:3031` is `0.0.0.0:3031` (uWSGI's and gunicorn's every address); any
/// other spec is `None`.
pub(crate) fn every_address(spec: &str) -> Option<String> {
    match spec.strip_prefix(':') {
        Some(port) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            Some(format!("0.0.0.0:{port}"))
        }
        _ => None,
    }
}

/// Refuses a bare number: a port meant as `:PORT` (or uWSGI's `-b`, its
/// buffer size) would otherwise become a socket file of that name.
fn parse_socket(spec: &str) -> Result<String, String> {
    if !spec.is_empty() && spec.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "a bare number is not taken as a socket file: write :{spec} for every address, \
             127.0.0.1:{spec} for this host only, or ./{spec} for a file (uWSGI's -b is its \
             buffer size: --max-header-size)"
        ));
    }
    Ok(spec.to_string())
}

fn socket_spec(spec: &str) -> SocketSpec {
    match Address::parse(spec) {
        Address::Unix(path) => SocketSpec::Unix(path),
        Address::Tcp(addr) => SocketSpec::Tcp(addr),
    }
}

pub(crate) fn metrics_addr(spec: &str) -> MetricsAddr {
    match Address::parse(spec) {
        Address::Unix(path) => MetricsAddr::Unix(path),
        Address::Tcp(addr) => MetricsAddr::Tcp(addr),
    }
}

/// `--paste PATH[#NAME]` with PATH made absolute as the app loader reads
/// it: a relative PATH is inside `--chdir`'s directory (itself taken from
/// the start directory), like every relative path rustgi is given. The
/// settings' reading of `[server:main]` and the loader both go by it.
pub fn paste_spec(spec: &str, chdir: Option<&Path>) -> String {
    let spec = spec.strip_prefix("config:").unwrap_or(spec);
    let (file, name) = match spec.rsplit_once('#') {
        Some((file, name)) => (file, Some(name)),
        None => (spec, None),
    };
    let file = Path::new(file);
    let joined = match chdir {
        Some(dir) if file.is_relative() => dir.join(file),
        _ => file.to_path_buf(),
    };
    let absolute = std::path::absolute(&joined).unwrap_or(joined);
    match name {
        Some(name) => format!("{}#{name}", absolute.display()),
        None => absolute.display().to_string(),
    }
}

fn parse_access_format(s: &str) -> Result<AccessFormat, String> {
    AccessFormat::parse(s).map_err(|e| e.to_string())
}

fn parse_header_name(s: &str) -> Result<String, String> {
    let token = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if token {
        Ok(s.to_string())
    } else {
        Err(format!("{s:?} is not a header name"))
    }
}

fn parse_mode(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("{s:?} is not an octal mode such as 660"))
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

/// `--body-min-rate`: `None` is "no minimum".
#[derive(Clone, Copy, Debug)]
pub struct MinRateFlag(Option<MinRate>);

fn parse_min_rate(s: &str) -> Result<MinRateFlag, String> {
    let (rate, window) = s.split_once(',').unwrap_or((s, "10"));
    let rate: u64 = rate.trim().parse().map_err(|_| {
        format!("{s:?}: give BYTES_PER_SEC[,SECS], such as 1024,10 (0: no minimum)")
    })?;
    let window = window
        .trim()
        .parse::<f64>()
        .ok()
        .and_then(|w| Duration::try_from_secs_f64(w).ok())
        .filter(|w| !w.is_zero() && *w <= LONGEST_TIMEOUT)
        .ok_or_else(|| {
            format!("{s:?}: the window after the comma must be a positive number of seconds (at most a thousand years)")
        })?;
    Ok(MinRateFlag((rate > 0).then_some(MinRate {
        bytes_per_sec: rate,
        window,
    })))
}

/// The longest any of the timeouts may be: deadlines are instants, and
/// `Instant + Duration` must not overflow (a thousand years is "never").
const LONGEST_TIMEOUT: Duration = Duration::from_secs(1000 * 365 * 24 * 3600);

fn seconds(flag: &str, value: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero() && *d <= LONGEST_TIMEOUT)
        .ok_or_else(|| {
            format!(
                "--{flag} {value}: give a positive number of seconds, at most {}",
                LONGEST_TIMEOUT.as_secs()
            )
        })
}

impl Cli {
    /// `--proto ajp` without a secret or --ajp-secret-optional: why it is
    /// refused. `proto_from` says where `ajp` came from, when not a flag.
    pub fn ajp_without_secret(&self, proto_from: Option<&str>) -> Option<String> {
        let secret = self.ajp_secret.as_deref().is_some_and(|s| !s.is_empty());
        if !matches!(self.proto, Some(Proto::Ajp)) || secret || self.ajp_secret_optional {
            return None;
        }
        let whence = match proto_from {
            Some(origin) if origin.contains("[server:main]") => format!(
                "proto = ajp ({origin}; flup's AJP server took no secret, rustgi's needs one) "
            ),
            Some(origin) => format!("proto = ajp ({origin}) "),
            None => "--proto ajp ".into(),
        };
        Some(format!(
            "{whence}needs --ajp-secret SECRET (or RUSTGI_AJP_SECRET; Apache: ProxyPass ... secret=SECRET) \
             or, to serve AJP without one, --ajp-secret-optional (see CVE-2020-1938)"
        ))
    }

    pub fn into_config(self) -> Result<ServerConfig, String> {
        let app = match (&self.paste, &self.app) {
            (Some(ini), _) => AppSpec::paste(&paste_spec(ini, self.chdir.as_deref())),
            (None, app) => app.as_deref().map_or(AppSpec::Demo, AppSpec::parse),
        };
        let serve = ServeConfig {
            protocol: self.proto.map(|proto| match proto {
                Proto::Scgi => Protocol::Scgi,
                Proto::Fastcgi => Protocol::Fastcgi,
                Proto::Uwsgi => Protocol::Uwsgi,
                Proto::Ajp => Protocol::Ajp,
                Proto::Auto => Protocol::Auto,
                Proto::Cgi => Protocol::Cgi,
            }),
            fastcgi: FastcgiOptions {
                roles: self
                    .fastcgi_roles
                    .iter()
                    .map(|role| match role {
                        FastcgiRole::Responder => Roles::RESPONDER,
                        FastcgiRole::Authorizer => Roles::AUTHORIZER,
                        FastcgiRole::Filter => Roles::FILTER,
                    })
                    .fold(Roles::NONE, |all, role| all | role),
                stderr: !self.no_fastcgi_stderr,
            },
            ajp: AjpOptions {
                secret: self.ajp_secret.filter(|s| !s.is_empty()),
                secret_optional: self.ajp_secret_optional,
                packet_size: self.ajp_packet_size as usize,
            },
            allow_from: self.allow_from,
            forwarded: self
                .trusted_proxy_header
                .as_deref()
                .map(|header| ForwardedScheme::new(header, self.forwarded_allow_from.clone())),
            threads: usize::from(self.threads),
            max_header_size: self.max_header_size,
            max_connections: self.max_connections as usize,
            timeouts: Timeouts {
                header: seconds("header-timeout", self.header_timeout)?,
                body: seconds("body-timeout", self.body_timeout)?,
                write: seconds("write-timeout", self.write_timeout)?,
                keepalive: seconds("keepalive-timeout", self.keepalive_timeout)?,
            },
            graceful_timeout: seconds("graceful-timeout", self.graceful_timeout)?,
            spool: SpoolLimits {
                memory_limit: self.spool_memory,
            },
            body: BodyLimits {
                buffer: self.buffer_body,
                min_rate: self.body_min_rate.0,
            },
            response_buffer: 256 * 1024,
            bad_input_warnings: self.bad_input_warnings,
            response_memory: self.response_memory.saturating_mul(1 << 20),
            observe: ObserveConfig {
                access_log: self.access_log.as_deref().map(Destination::parse),
                access_log_format: Some(self.access_log_format),
                request_id_header: self.request_id_header,
            },
        };
        if let Some(Destination::File(path)) = &serve.observe.access_log {
            // Refused at start rather than in every worker.
            std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(path)
                .map_err(|e| format!("--access-log {}: {e}", path.display()))?;
        }
        Ok(ServerConfig {
            serve,
            socket: self.socket.as_deref().map(socket_spec),
            socket_mode: self.chmod,
            python: PythonSetup {
                app,
                venv: self.venv,
                pythonpath: self.pythonpath,
            },
            chdir: self.chdir,
            env: self.env,
            mount: self.mount.as_deref().map(Mount::new),
            request_timeout: self.timeout.map(|t| seconds("timeout", t)).transpose()?,
            slow_request_log: self
                .slow_request_log
                .map(|t| seconds("slow-request-log", t))
                .transpose()?,
            privileges: Privileges {
                user: self.user,
                group: self.group,
                socket_owner: self.chown,
                web_users: self.web_user,
            },
            pidfile: self.pidfile,
            metrics: self.metrics.as_deref().map(metrics_addr),
            processes: ProcessOptions {
                count: usize::from(self.processes),
                preload: self.preload,
                max_requests: (self.max_requests > 0).then_some(self.max_requests),
                max_requests_jitter: self.max_requests_jitter,
                reload_on_rss_mib: self.reload_on_rss,
                max_worker_lifetime: (self.max_worker_lifetime > 0)
                    .then(|| Duration::from_secs(self.max_worker_lifetime)),
                max_worker_lifetime_jitter: Duration::from_secs(self.max_worker_lifetime_jitter),
                touch_reload: self.touch_reload,
            },
        })
    }
}

/// `rustgi-gateway status`: what a running server's workers are doing.
#[derive(Debug, Parser)]
#[command(name = "rustgi-gateway status")]
pub struct StatusCli {
    /// The server's --pidfile: asks the master over its status socket
    /// (an abstract Unix socket named from its pid; only its own user and
    /// root are answered). Works without --metrics.
    #[arg(
        long,
        value_name = "PATH",
        required_unless_present = "metrics",
        conflicts_with = "metrics"
    )]
    pub pidfile: Option<PathBuf>,

    /// The server's --metrics address (HOST:PORT or a socket path).
    #[arg(long, value_name = "ADDR:PORT|PATH")]
    pub metrics: Option<String>,

    /// Print /status.json instead of the text.
    #[arg(long)]
    pub json: bool,
}
