//! Where connections come from: a Unix socket we create, a TCP address, a
//! socket systemd passed (socket activation, `LISTEN_FDS`), or a listening
//! socket the front server handed us on fd 0.
//!
//! A socket we create is bound at once (so that it can be chowned and
//! privileges dropped before Python starts) but only listens once the
//! application is loaded ([`BoundSocket::listen`]): until then a connect is
//! refused, so "accepts connections" still means "ready to serve".

mod access;

pub(crate) use access::warn_unreachable;
use nix::sys::socket::{Backlog, sockopt};
use std::fmt;
use std::io;
use std::net::TcpListener as StdTcpListener;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener as StdUnixListener, UnixStream as StdUnixStream};
use std::path::{Path, PathBuf};

/// `--socket`: a path (anything with a `/`, or without a `:`) or HOST:PORT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SocketSpec {
    Unix(PathBuf),
    Tcp(String),
}

impl SocketSpec {
    pub fn parse(spec: &str) -> SocketSpec {
        if spec.contains('/') || !spec.contains(':') {
            SocketSpec::Unix(PathBuf::from(spec))
        } else {
            SocketSpec::Tcp(spec.to_string())
        }
    }
}

impl fmt::Display for SocketSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SocketSpec::Unix(path) => write!(f, "unix:{}", path.display()),
            SocketSpec::Tcp(addr) => write!(f, "tcp:{addr}"),
        }
    }
}

/// A bound listening socket, before any async runtime exists (worker
/// processes will be forked between binding and serving).
pub enum BoundSocket {
    Unix {
        listener: StdUnixListener,
        /// The file to remove on exit: only one we created ourselves.
        created: Option<PathBuf>,
    },
    Tcp(StdTcpListener),
}

impl BoundSocket {
    /// The listener a worker serves (once it listens).
    pub fn into_listener(self) -> rustgi_serve::Listener {
        match self {
            BoundSocket::Unix { listener, .. } => rustgi_serve::Listener::Unix(listener),
            BoundSocket::Tcp(listener) => rustgi_serve::Listener::Tcp(listener),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            BoundSocket::Unix {
                created: Some(path),
                ..
            } => format!("unix:{}", path.display()),
            BoundSocket::Unix {
                created: None,
                listener,
            } => match listener
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(Path::to_path_buf))
            {
                Some(path) => format!("an inherited unix socket at {}", path.display()),
                None => "an inherited unix socket".into(),
            },
            BoundSocket::Tcp(l) => match l.local_addr() {
                Ok(addr) => format!("tcp:{addr}"),
                Err(_) => "tcp".into(),
            },
        }
    }

    /// A TCP address that more than this host can reach (`0.0.0.0`, a
    /// LAN address): without an allow list, anyone who reaches it can send
    /// requests, and with them REMOTE_ADDR, REMOTE_USER and HTTPS.
    pub fn reachable_from_outside(&self) -> Option<std::net::SocketAddr> {
        match self {
            BoundSocket::Tcp(l) => l
                .local_addr()
                .ok()
                .filter(|a| !a.ip().to_canonical().is_loopback()),
            BoundSocket::Unix { .. } => None,
        }
    }
}

/// Removes the socket file we created, however the server stops; only in
/// the process that created it (a forked worker dropping its copy does
/// nothing).
pub struct SocketFileGuard {
    path: Option<PathBuf>,
    pid: u32,
    /// The file's (device, inode) when we took it over: a file someone put
    /// at the path since is not ours to remove.
    identity: Option<(u64, u64)>,
}

fn file_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

impl Drop for SocketFileGuard {
    fn drop(&mut self) {
        let Some(path) = self.path.take() else { return };
        if std::process::id() != self.pid {
            return;
        }
        let now = file_identity(&path);
        if now.is_none() {
            return; // already gone (removed after a failed start)
        }
        if now != self.identity {
            tracing::warn!(
                "{} is no longer the socket file rustgi created (replaced by another server?): left in place",
                path.display()
            );
            return;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(
                "could not remove the socket file {}: {e} (with --user, its directory must be writable by that user; \
                 the stale file is replaced at the next start)",
                path.display()
            ),
        }
    }
}

impl BoundSocket {
    /// The file-removal duty, to outlive the listener (the path stays
    /// readable through [`BoundSocket::created_path`]).
    pub fn socket_file_guard(&mut self) -> SocketFileGuard {
        let path = match self {
            BoundSocket::Unix { created, .. } => created.clone(),
            BoundSocket::Tcp(_) => None,
        };
        SocketFileGuard {
            identity: path.as_deref().and_then(file_identity),
            path,
            pid: std::process::id(),
        }
    }

    /// Starts listening, if the socket does not already (one we bound;
    /// inherited and activated sockets listen already, and their backlog is
    /// left as their owner set it). Safe to call more than once, from any
    /// process sharing the socket.
    pub fn listen(&self) -> io::Result<()> {
        if is_listening(self) {
            return Ok(());
        }
        Ok(nix::sys::socket::listen(&self.as_fd(), Backlog::MAXCONN)?)
    }

    /// Stops new connections from arriving, keeping those queued, and
    /// says how: a Unix listener shut down for reading refuses connects
    /// and can still be accepted on until its queue is empty. `shutdown`
    /// on a TCP listener resets its queue, as close does, so new SYNs are
    /// dropped by a socket filter instead (`rustgi_serve::drop_new_connections`):
    /// their senders send them again and find the listener closed. Not for
    /// an inherited socket ([`inherited`]), which would then stop
    /// connects for its other holders too.
    pub(crate) fn stop_arrivals(&self) -> io::Result<&'static str> {
        match self {
            BoundSocket::Unix { listener, .. } => {
                nix::sys::socket::shutdown(listener.as_raw_fd(), nix::sys::socket::Shutdown::Read)?;
                Ok("new connections are refused")
            }
            BoundSocket::Tcp(listener) => {
                rustgi_serve::drop_new_connections(listener.as_fd())?;
                Ok(
                    "new connections get no answer (a socket filter: their senders send the SYN again a second later, and are refused once the listener closes)",
                )
            }
        }
    }

    /// Accepts, and closes unserved, whatever still waits in the queue:
    /// what closing the listener would reset, counted.
    pub(crate) fn reset_leftovers(&self) -> usize {
        // Never wait in accept (a shut-down Unix listener polls readable
        // even when empty).
        let nonblocking = match self {
            BoundSocket::Unix { listener, .. } => listener.set_nonblocking(true),
            BoundSocket::Tcp(listener) => listener.set_nonblocking(true),
        };
        if nonblocking.is_err() {
            return 0;
        }
        let mut count = 0;
        loop {
            let mut fds = [nix::poll::PollFd::new(
                self.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            let ready = nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO);
            if !matches!(ready, Ok(1..)) {
                return count;
            }
            let accepted = match self {
                BoundSocket::Unix { listener, .. } => listener.accept().map(drop),
                BoundSocket::Tcp(listener) => listener.accept().map(drop),
            };
            match accepted {
                Ok(()) => count += 1,
                // Empty (a shut-down Unix listener polls readable for
                // ever), or a peer that gave up.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return count,
                Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => {}
                Err(_) => return count,
            }
        }
    }

    /// The Unix socket file rustgi created, if any (for `--chown`).
    pub fn created_path(&self) -> Option<&Path> {
        match self {
            BoundSocket::Unix { created, .. } => created.as_deref(),
            BoundSocket::Tcp(_) => None,
        }
    }
}

impl AsFd for BoundSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            BoundSocket::Unix { listener, .. } => listener.as_fd(),
            BoundSocket::Tcp(listener) => listener.as_fd(),
        }
    }
}

impl AsRawFd for BoundSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

/// Binds `--socket`; or takes the socket systemd passed (socket
/// activation, or our own re-exec), the one `--socket` names when there
/// are several; or takes fd 0 when neither was given. A socket we bind here
/// does not listen yet: call [`BoundSocket::listen`] when ready to serve.
pub(crate) fn bind(spec: Option<&SocketSpec>, mode: u32) -> io::Result<BoundSocket> {
    let activated = take_activation()?;
    if !activated.is_empty() {
        return from_activation(spec, activated);
    }
    match spec {
        Some(SocketSpec::Unix(path)) => bind_unix(path, mode),
        Some(SocketSpec::Tcp(addr)) => bind_tcp(addr),
        None => inherit_fd0(),
    }
}

/// `RUSTGI_SOCKET_FILE_OWNED=PATH`, set by a rustgi that re-execs itself
/// with its listening socket passed as `LISTEN_FDS=1`: the new image
/// created (and must remove at exit) the Unix socket file at PATH. Read
/// only together with `LISTEN_FDS` for our pid, and always removed from
/// the environment.
pub const SOCKET_FILE_OWNED_ENV: &str = "RUSTGI_SOCKET_FILE_OWNED";

/// `RUSTGI_SOCKET_OURS=1`, set by a rustgi that re-execs itself: the
/// passed socket is one it bound itself (not systemd's, not fd 0's).
/// Read and removed with `LISTEN_FDS`.
pub const SOCKET_OURS_ENV: &str = "RUSTGI_SOCKET_OURS";

/// The socket was inherited: from systemd, or on fd 0 from the program
/// that spawned us (possibly shared with other servers it spawned:
/// spawn-fcgi -F).
static INHERITED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether the listening socket was inherited rather than bound here:
/// others may hold it (systemd keeps it, with its queue, for our next
/// start; spawn-fcgi's other children accept on it), so a stop must
/// neither shut it down nor empty its queue.
pub(crate) fn inherited() -> bool {
    INHERITED.load(std::sync::atomic::Ordering::Acquire)
}

/// The activation sockets, taken from the environment on the first call
/// (which must come before any thread starts: it changes the
/// environment) and handed out once.
static ACTIVATION: std::sync::Mutex<Option<Activation>> = std::sync::Mutex::new(None);

struct Activation {
    fds: Vec<crate::systemd::ActivatedFd>,
    owned_file: Option<PathBuf>,
    /// Passed by our own re-exec, not by systemd.
    ours: bool,
}

/// Takes `LISTEN_FDS` (and `RUSTGI_SOCKET_FILE_OWNED`) out of the
/// environment, if not done yet, and says whether sockets were passed.
/// Call it before any thread starts; [`bind`] uses what it found.
pub(crate) fn activation_present() -> io::Result<bool> {
    let mut guard = ACTIVATION.lock().unwrap_or_else(|e| e.into_inner());
    if guard.is_none() {
        let owned_file = std::env::var_os(SOCKET_FILE_OWNED_ENV).map(PathBuf::from);
        let ours = std::env::var_os(SOCKET_OURS_ENV).is_some_and(|v| v == "1");
        // SAFETY: no other thread exists yet (documented above).
        unsafe {
            std::env::remove_var(SOCKET_FILE_OWNED_ENV);
            std::env::remove_var(SOCKET_OURS_ENV);
        }
        let fds = crate::systemd::listen_fds()?;
        let owned_file = owned_file.filter(|_| !fds.is_empty());
        *guard = Some(Activation {
            fds,
            owned_file,
            ours,
        });
    }
    Ok(guard.as_ref().is_some_and(|a| !a.fds.is_empty()))
}

fn take_activation() -> io::Result<Vec<(crate::systemd::ActivatedFd, Option<PathBuf>)>> {
    activation_present()?;
    let mut guard = ACTIVATION.lock().unwrap_or_else(|e| e.into_inner());
    let activation = guard.as_mut().expect("filled above");
    let owned = activation.owned_file.take();
    if !activation.fds.is_empty() && !activation.ours {
        INHERITED.store(true, std::sync::atomic::Ordering::Release);
    }
    Ok(std::mem::take(&mut activation.fds)
        .into_iter()
        .map(|fd| (fd, owned.clone()))
        .collect())
}

/// What an activated descriptor is, for matching it with `--socket`.
enum Passed {
    Unix(StdUnixListener, Option<PathBuf>),
    Tcp(StdTcpListener, Option<std::net::SocketAddr>),
}

impl Passed {
    fn describe(&self) -> String {
        match self {
            Passed::Unix(_, Some(path)) => format!("unix:{}", path.display()),
            Passed::Unix(l, None) => match l.local_addr() {
                Ok(addr) => {
                    use std::os::linux::net::SocketAddrExt;
                    match addr.as_abstract_name() {
                        Some(name) => format!("unix:@{}", name.escape_ascii()),
                        None => "an unnamed unix socket".into(),
                    }
                }
                Err(_) => "a unix socket".into(),
            },
            Passed::Tcp(_, Some(addr)) => format!("tcp:{addr}"),
            Passed::Tcp(_, None) => "tcp".into(),
        }
    }

    fn matches(&self, spec: &SocketSpec) -> bool {
        match (self, spec) {
            (Passed::Unix(_, Some(have)), SocketSpec::Unix(want)) => {
                have == want
                    || matches!(
                        (std::fs::canonicalize(have), std::fs::canonicalize(want)),
                        (Ok(a), Ok(b)) if a == b
                    )
            }
            (Passed::Tcp(_, Some(have)), SocketSpec::Tcp(want)) => {
                use std::net::ToSocketAddrs;
                want.as_str()
                    .to_socket_addrs()
                    .is_ok_and(|mut addrs| addrs.any(|a| a == *have))
            }
            _ => false,
        }
    }
}

/// Checks a passed descriptor: a listening stream socket, Unix or TCP.
fn classify(activated: crate::systemd::ActivatedFd) -> io::Result<Passed> {
    let what = format!("fd {} (\"{}\")", activated.fd.as_raw_fd(), activated.name);
    let socket = socket2::SockRef::from(&activated.fd);
    if socket.r#type()? != socket2::Type::STREAM {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "socket activation: {what} is not a stream socket; use ListenStream= in the .socket unit"
            ),
        ));
    }
    if !is_listening(&activated.fd) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "socket activation: {what} is not a listening socket; use Accept=no (the default) in the .socket unit"
            ),
        ));
    }
    let family = socket_family(&activated.fd)?;
    // A listening stream socket, ours alone now.
    let fd = activated.fd;
    Ok(match family {
        libc::AF_UNIX => {
            let listener = StdUnixListener::from(fd);
            let path = listener
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(Path::to_path_buf));
            Passed::Unix(listener, path)
        }
        libc::AF_INET | libc::AF_INET6 => {
            let listener = StdTcpListener::from(fd);
            let addr = listener.local_addr().ok();
            Passed::Tcp(listener, addr)
        }
        other => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "socket activation: {what} is of address family {other}, neither Unix nor TCP"
                ),
            ));
        }
    })
}

/// Picks the activated socket to serve: the only one, or the one
/// `--socket` names. The others are closed.
fn from_activation(
    spec: Option<&SocketSpec>,
    activated: Vec<(crate::systemd::ActivatedFd, Option<PathBuf>)>,
) -> io::Result<BoundSocket> {
    let mut owned_file = None;
    let mut passed = Vec::with_capacity(activated.len());
    for (fd, owned) in activated {
        owned_file = owned;
        passed.push(classify(fd)?);
    }
    let list = || {
        passed
            .iter()
            .map(Passed::describe)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let index = match spec {
        Some(spec) => passed.iter().position(|p| p.matches(spec)).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "--socket {spec} is not among the sockets passed by socket activation ({}); \
                     drop --socket to serve the passed socket, or make them agree",
                    list()
                ),
            )
        })?,
        None if passed.len() == 1 => 0,
        None => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "socket activation passed {} sockets ({}); name the one to serve with --socket",
                    passed.len(),
                    list()
                ),
            ));
        }
    };
    let chosen = passed.swap_remove(index);
    tracing::info!("socket activation: serving {}", chosen.describe());
    Ok(match chosen {
        Passed::Unix(listener, path) => {
            // Only our own re-exec hands the file's removal on; a socket
            // from systemd belongs to systemd.
            let created = match (path, owned_file) {
                (Some(path), Some(owned)) if path == owned => Some(path),
                _ => None,
            };
            BoundSocket::Unix { listener, created }
        }
        Passed::Tcp(listener, _) => BoundSocket::Tcp(listener),
    })
}

fn bind_tcp(addr: &str) -> io::Result<BoundSocket> {
    use std::net::ToSocketAddrs;
    let fail = |e: io::Error| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"));
    let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no address");
    for candidate in addr.to_socket_addrs().map_err(fail)? {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(candidate),
            socket2::Type::STREAM,
            None,
        )
        .map_err(fail)?;
        // As std's TcpListener::bind: a restart does not wait for TIME_WAIT.
        socket.set_reuse_address(true).map_err(fail)?;
        match socket.bind(&candidate.into()) {
            Ok(()) => {
                return Ok(BoundSocket::Tcp(StdTcpListener::from(OwnedFd::from(
                    socket,
                ))));
            }
            Err(e) => last = e,
        }
    }
    Err(fail(last))
}

/// Binds a Unix socket at `given`, as given: a relative path is taken
/// from the working directory (`--chdir`'s when given), and the kernel
/// holds at most 107 bytes of it, so a short relative path inside a deep
/// directory fits where its absolute form would not. Every log line and
/// the removal at exit name the file by its absolute form, which stays
/// right whatever the working directory becomes.
fn bind_unix(given: &Path, mode: u32) -> io::Result<BoundSocket> {
    let path = &std::path::absolute(given)?;
    let fail = |e: io::Error| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot listen on {}: {}",
                path.display(),
                why_not_bound(path, given, &e)
            ),
        )
    };
    match std::fs::symlink_metadata(given) {
        Ok(meta) if meta.file_type().is_socket() => {
            if StdUnixStream::connect(given).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{} is in use by a running server", path.display()),
                ));
            }
            // A stale socket left by a server that died: replace it.
            std::fs::remove_file(given)?;
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists and is not a socket; refusing to replace it",
                    path.display()
                ),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(e)),
    }
    let socket =
        socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None).map_err(fail)?;
    socket
        .bind(&socket2::SockAddr::unix(given).map_err(fail)?)
        .map_err(fail)?;
    let listener = StdUnixListener::from(OwnedFd::from(socket));
    if let Err(e) = std::fs::set_permissions(given, std::fs::Permissions::from_mode(mode)) {
        let _ = std::fs::remove_file(given);
        return Err(e);
    }
    Ok(BoundSocket::Unix {
        listener,
        created: Some(path.to_path_buf()),
    })
}

/// Why binding at `path` (`bound` as given to bind) failed, naming the
/// directory at fault: a bare "No such file or directory" does not say
/// which one is missing.
fn why_not_bound(path: &Path, bound: &Path, error: &io::Error) -> String {
    let Some(dir) = path.parent() else {
        return error.to_string();
    };
    // sockaddr_un's sun_path: 108 bytes with the NUL.
    let length = bound.as_os_str().len();
    if length >= 108 {
        return format!(
            "the path is {length} bytes long, and a Unix socket's path must be under 108; \
             use a shorter one (such as /run/rustgi/app.sock)"
        );
    }
    match error.kind() {
        io::ErrorKind::NotFound => {
            let missing = dir
                .ancestors()
                .take_while(|a| std::fs::symlink_metadata(a).is_err())
                .last()
                .unwrap_or(dir);
            if missing == dir {
                format!(
                    "the directory {} does not exist (make it first: mkdir -p {}; under systemd, RuntimeDirectory=)",
                    dir.display(),
                    dir.display()
                )
            } else {
                format!(
                    "the directory {} does not exist, nor does {} (make them first: mkdir -p {}; under systemd, RuntimeDirectory=)",
                    dir.display(),
                    missing.display(),
                    dir.display()
                )
            }
        }
        io::ErrorKind::NotADirectory => {
            let file = dir
                .ancestors()
                .find(|a| std::fs::metadata(a).is_ok_and(|m| !m.is_dir()));
            match file {
                Some(file) => format!("{} is not a directory", file.display()),
                None => error.to_string(),
            }
        }
        io::ErrorKind::PermissionDenied => format!(
            "{error}: this user may not create files in {} (or pass through a directory above it)",
            dir.display()
        ),
        _ => error.to_string(),
    }
}

/// True when fd 0 is a listening socket (spawned by a front server).
pub fn fd0_is_listening_socket() -> bool {
    is_listening(io::stdin())
}

fn is_listening(fd: impl AsFd) -> bool {
    nix::sys::socket::getsockopt(&fd.as_fd(), sockopt::AcceptConn).unwrap_or(false)
}

fn inherit_fd0() -> io::Result<BoundSocket> {
    if !fd0_is_listening_socket() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no --socket given and fd 0 is not a listening socket; \
             pass --socket PATH or HOST:PORT, or let the front server spawn rustgi-gateway with its socket on fd 0",
        ));
    }
    // Move the socket off fd 0 and put /dev/null there, so nothing that
    // reads stdin ends up reading the listening socket. (std duplicates
    // close-on-exec, onto fd 3 or above.)
    let fd = io::stdin().as_fd().try_clone_to_owned()?;
    let devnull = std::fs::File::open("/dev/null")?;
    nix::unistd::dup2_stdin(&devnull)?;
    INHERITED.store(true, std::sync::atomic::Ordering::Release);
    Ok(if socket_family(&fd)? == libc::AF_UNIX {
        BoundSocket::Unix {
            listener: StdUnixListener::from(fd),
            created: None,
        }
    } else {
        BoundSocket::Tcp(StdTcpListener::from(fd))
    })
}

/// The address family (AF_UNIX, AF_INET, …) the socket is bound in.
fn socket_family(fd: &OwnedFd) -> io::Result<libc::c_int> {
    let address = socket2::SockRef::from(fd).local_addr()?;
    Ok(libc::c_int::from(address.family()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_specs() {
        assert_eq!(
            SocketSpec::parse("/run/app.sock"),
            SocketSpec::Unix("/run/app.sock".into())
        );
        assert_eq!(
            SocketSpec::parse("app.sock"),
            SocketSpec::Unix("app.sock".into())
        );
        assert_eq!(
            SocketSpec::parse("127.0.0.1:9000"),
            SocketSpec::Tcp("127.0.0.1:9000".into())
        );
        assert_eq!(
            SocketSpec::parse("[::1]:9000"),
            SocketSpec::Tcp("[::1]:9000".into())
        );
    }

    #[test]
    fn a_regular_file_is_never_replaced() {
        let dir = std::env::temp_dir().join(format!("rustgi-listener-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("not-a-socket");
        std::fs::write(&path, b"keep me").unwrap();
        let err = bind_unix(&path, 0o600).err().expect("refused");
        assert!(err.to_string().contains("not a socket"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"keep me");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_stale_socket_is_replaced_and_a_live_one_refused() {
        let dir =
            std::env::temp_dir().join(format!("rustgi-listener-stale-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let live = bind_unix(&path, 0o600).unwrap();
        live.listen().unwrap();
        assert!(bind_unix(&path, 0o600).is_err());
        drop(live); // the file stays behind: stale
        assert!(path.exists());
        let again = bind_unix(&path, 0o640).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        drop(again);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn only_the_file_we_created_is_removed() {
        let dir = std::env::temp_dir().join(format!("rustgi-listener-own-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let mut first = bind_unix(&path, 0o600).unwrap();
        let guard = first.socket_file_guard();
        // Another server replaced the file meanwhile: it stays.
        std::fs::remove_file(&path).unwrap();
        let mut second = bind_unix(&path, 0o600).unwrap();
        drop(guard);
        assert!(path.exists());
        drop(second.socket_file_guard());
        assert!(!path.exists());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_missing_directory_is_named() {
        let base =
            std::env::temp_dir().join(format!("rustgi-listener-gone-{}", std::process::id()));
        std::fs::create_dir_all(&base).unwrap();
        let path = base.join("gone/deeper/app.sock");
        let err = bind_unix(&path, 0o600).err().expect("refused").to_string();
        let missing = base.join("gone");
        assert!(
            err.contains(&format!(
                "the directory {} does not exist, nor does {}",
                path.parent().unwrap().display(),
                missing.display()
            )),
            "{err}"
        );
        assert!(!err.contains("No such file"), "{err}");
        let file = base.join("file");
        std::fs::write(&file, b"").unwrap();
        let err = bind_unix(&file.join("app.sock"), 0o600)
            .err()
            .expect("refused")
            .to_string();
        assert!(
            err.contains(&format!("{} is not a directory", file.display())),
            "{err}"
        );
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_bound_socket_listens_only_when_told() {
        let dir = std::env::temp_dir().join(format!("rustgi-listener-late-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let socket = bind_unix(&path, 0o600).unwrap();
        assert!(
            StdUnixStream::connect(&path).is_err(),
            "refused until ready"
        );
        socket.listen().unwrap();
        socket.listen().unwrap(); // twice is fine
        assert!(StdUnixStream::connect(&path).is_ok());
        let tcp = bind_tcp("127.0.0.1:0").unwrap();
        let BoundSocket::Tcp(listener) = &tcp else {
            panic!("tcp")
        };
        let addr = listener.local_addr().unwrap();
        assert!(std::net::TcpStream::connect(addr).is_err());
        tcp.listen().unwrap();
        assert!(std::net::TcpStream::connect(addr).is_ok());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
