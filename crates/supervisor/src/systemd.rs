//! systemd integration without libsystemd: readiness notification
//! (`sd_notify`) and socket activation (`sd_listen_fds`).
//!
//! Both are small, stable protocols (see sd_notify(3) and
//! sd_listen_fds(3)); speaking them directly keeps the master free of
//! threads and of any C library.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixDatagram;

/// Sends `state` (e.g. `"READY=1"`, `"STATUS=serving"`, `"STOPPING=1"`,
/// several lines joined by `\n`) to `$NOTIFY_SOCKET`. Does nothing when the
/// variable is unset; a failure is logged at debug level and never stops
/// the server. Safe to call from a single-threaded master: it creates no
/// thread and only makes a few syscalls.
pub(crate) fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send_notify(&path, state) {
        tracing::debug!("sd_notify {state:?} to {path:?} failed: {e}");
    }
}

fn send_notify(path: &std::ffi::OsStr, state: &str) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_bytes();
    let socket = UnixDatagram::unbound()?;
    match bytes.first() {
        // Linux abstract namespace: '@' stands for the leading NUL byte.
        Some(b'@') => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(&bytes[1..])?;
            socket.send_to_addr(state.as_bytes(), &addr)?;
        }
        Some(b'/') => {
            socket.send_to(state.as_bytes(), std::path::Path::new(path))?;
        }
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "NOTIFY_SOCKET is neither an absolute path nor an abstract name (@...)",
            ));
        }
    }
    Ok(())
}

/// The first descriptor systemd passes (SD_LISTEN_FDS_START).
const LISTEN_FDS_START: RawFd = 3;

/// One socket passed by systemd socket activation.
#[derive(Debug)]
pub(crate) struct ActivatedFd {
    pub fd: OwnedFd,
    /// From `LISTEN_FDNAMES` (`FileDescriptorName=`), `"unknown"` if unnamed.
    pub name: String,
}

/// Takes the sockets passed by socket activation (`LISTEN_FDS`, for our pid
/// only: `LISTEN_PID`), marks them close-on-exec, and removes `LISTEN_PID`,
/// `LISTEN_FDS` and `LISTEN_FDNAMES` from the environment so that child
/// processes (the app's subprocesses) do not think the sockets are theirs.
/// Returns an empty list when nothing was passed to us.
///
/// Must be called before any other thread exists (it changes the
/// environment) and at most once (it takes ownership of fds 3..3+n).
pub(crate) fn listen_fds() -> io::Result<Vec<ActivatedFd>> {
    let pid = std::env::var("LISTEN_PID").ok();
    let fds = std::env::var("LISTEN_FDS").ok();
    let names = std::env::var("LISTEN_FDNAMES").ok();
    if pid.is_none() && fds.is_none() {
        return Ok(Vec::new());
    }
    // SAFETY: called before any other thread starts (documented above).
    unsafe {
        std::env::remove_var("LISTEN_PID");
        std::env::remove_var("LISTEN_FDS");
        std::env::remove_var("LISTEN_FDNAMES");
    }
    let (Some(pid), Some(fds)) = (pid, fds) else {
        return Ok(Vec::new());
    };
    let ours = pid.trim().parse::<u32>().ok() == Some(std::process::id());
    if !ours {
        // Meant for another process (e.g. inherited through a shell):
        // the descriptors are not ours to take.
        tracing::debug!("LISTEN_PID={pid} is not our pid; ignoring LISTEN_FDS={fds}");
        return Ok(Vec::new());
    }
    let count: RawFd = fds.trim().parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("LISTEN_FDS={fds:?} is not a number"),
        )
    })?;
    if !(0..=1024).contains(&count) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("LISTEN_FDS={count} is out of range"),
        ));
    }
    let mut names = names
        .map(|n| n.split(':').map(str::to_string).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter();
    let mut out = Vec::with_capacity(count as usize);
    for fd in LISTEN_FDS_START..LISTEN_FDS_START + count {
        // SAFETY: F_GETFD reads the flags of a descriptor number and
        // touches no memory; it fails on a number that is not open.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "LISTEN_FDS={count} but fd {fd} is not open: {}",
                    io::Error::last_os_error()
                ),
            ));
        }
        // SAFETY: fd is open (checked above), and the protocol hands fds
        // 3..3+LISTEN_FDS to this process (LISTEN_PID matched): nothing
        // else in the process owns them, and this runs at most once.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        crate::proc::set_cloexec(&fd, true)?;
        let name = names
            .next()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "unknown".into());
        out.push(ActivatedFd { fd, name });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_reaches_a_path_socket() {
        let dir = std::env::temp_dir().join(format!("rustgi-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let receiver = UnixDatagram::bind(&path).unwrap();
        send_notify(path.as_os_str(), "READY=1\nSTATUS=ok").unwrap();
        let mut buf = [0u8; 64];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=ok");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn notify_reaches_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("rustgi-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let receiver = UnixDatagram::bind_addr(&addr).unwrap();
        send_notify(std::ffi::OsStr::new(&format!("@{name}")), "STOPPING=1").unwrap();
        let mut buf = [0u8; 64];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
    }

    #[test]
    fn a_relative_notify_socket_is_an_error_not_a_panic() {
        assert!(send_notify(std::ffi::OsStr::new("relative"), "READY=1").is_err());
    }
}
