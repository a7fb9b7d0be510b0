//! Where connections come from: a Unix socket we create, a TCP address, or
//! a listening socket the front server handed us on fd 0.

use std::fmt;
use std::io;
use std::net::TcpListener as StdTcpListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
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
    pub fn describe(&self) -> String {
        match self {
            BoundSocket::Unix {
                created: Some(path),
                ..
            } => format!("unix:{}", path.display()),
            BoundSocket::Unix { created: None, .. } => "an inherited unix socket".into(),
            BoundSocket::Tcp(l) => match l.local_addr() {
                Ok(addr) => format!("tcp:{addr}"),
                Err(_) => "tcp".into(),
            },
        }
    }
}

/// Removes the socket file we created, however the server stops.
pub struct SocketFileGuard(Option<PathBuf>);

impl Drop for SocketFileGuard {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl BoundSocket {
    /// Takes the file-removal duty out, so it outlives the listener.
    pub fn socket_file_guard(&mut self) -> SocketFileGuard {
        match self {
            BoundSocket::Unix { created, .. } => SocketFileGuard(created.take()),
            BoundSocket::Tcp(_) => SocketFileGuard(None),
        }
    }
}

/// Binds `--socket`, or takes fd 0 when none was given.
pub fn bind(spec: Option<&SocketSpec>, mode: u32) -> io::Result<BoundSocket> {
    match spec {
        Some(SocketSpec::Unix(path)) => bind_unix(path, mode),
        Some(SocketSpec::Tcp(addr)) => Ok(BoundSocket::Tcp(
            StdTcpListener::bind(addr.as_str())
                .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?,
        )),
        None => inherit_fd0(),
    }
}

fn bind_unix(path: &Path, mode: u32) -> io::Result<BoundSocket> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if StdUnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{} is in use by a running server", path.display()),
                ));
            }
            // A stale socket left by a server that died: replace it.
            std::fs::remove_file(path)?;
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
        Err(e) => return Err(e),
    }
    let listener = StdUnixListener::bind(path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot listen on {}: {e}", path.display()),
        )
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(BoundSocket::Unix {
        listener,
        created: Some(path.to_path_buf()),
    })
}

/// True when fd 0 is a listening socket (spawned by a front server).
pub fn fd0_is_listening_socket() -> bool {
    let mut accepting: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `accepting`.
    let rc = unsafe {
        libc::getsockopt(
            0,
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&raw mut accepting).cast(),
            &mut len,
        )
    };
    rc == 0 && accepting == 1
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
    // reads stdin ends up reading the listening socket.
    let fd = dup_cloexec(0)?;
    let devnull = std::fs::File::open("/dev/null")?;
    // SAFETY: dup2 onto fd 0, which we own as the process's stdin.
    if unsafe { libc::dup2(devnull.as_raw_fd(), 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let family = socket_family(fd.as_raw_fd())?;
    let raw = fd_into_raw(fd);
    // SAFETY: `raw` is a listening socket we own exclusively now.
    Ok(if family == libc::AF_UNIX {
        BoundSocket::Unix {
            listener: unsafe { StdUnixListener::from_raw_fd(raw) },
            created: None,
        }
    } else {
        BoundSocket::Tcp(unsafe { StdTcpListener::from_raw_fd(raw) })
    })
}

fn fd_into_raw(fd: OwnedFd) -> RawFd {
    use std::os::fd::IntoRawFd;
    fd.into_raw_fd()
}

fn dup_cloexec(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor we then own.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

fn socket_family(fd: RawFd) -> io::Result<libc::c_int> {
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: getsockname writes at most `len` bytes into `addr`.
    if unsafe { libc::getsockname(fd, (&raw mut addr).cast(), &mut len) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(libc::c_int::from(addr.ss_family))
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
        assert!(bind_unix(&path, 0o600).is_err());
        drop(live); // the file stays behind: stale
        assert!(path.exists());
        let again = bind_unix(&path, 0o640).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        drop(again);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
