//! `--pidfile PATH`: the pid of the process that bound the socket (the
//! master, when there are workers), written after binding and before
//! privileges are dropped, removed at exit if it still names us.
//!
//! An existing file naming a running rustgi-gateway is a second start by
//! mistake: refused, as gunicorn does. A file naming a dead process, or a
//! live process that is not rustgi-gateway (the pid was reused after a
//! crash or reboot), is stale: replaced, with a warning. A file naming our
//! own pid is ours (we re-executed ourselves): kept.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The pidfile we wrote; removed when dropped, by the process that wrote
/// it only (a forked worker's copy does nothing), and only if it still
/// holds our pid (another instance may have replaced it).
#[derive(Debug)]
pub struct Pidfile {
    path: PathBuf,
    pid: u32,
}

impl Pidfile {
    pub(crate) fn create(path: &Path) -> Result<Pidfile, String> {
        let pid = std::process::id();
        let fail = |e: std::io::Error| format!("--pidfile {}: {e}", path.display());
        match std::fs::read_to_string(path) {
            Ok(text) => match text.trim().parse::<u32>() {
                Ok(old) if old == pid => {
                    return Ok(Pidfile {
                        path: path.to_path_buf(),
                        pid,
                    });
                }
                Ok(old) if is_running_rustgi(old) => {
                    return Err(format!(
                        "--pidfile {}: rustgi-gateway is already running as pid {old}; \
                         stop it first (or remove the file if that process is not this server)",
                        path.display()
                    ));
                }
                Ok(old) => tracing::warn!(
                    "--pidfile {}: replacing a stale pidfile (pid {old} is not a running rustgi-gateway)",
                    path.display()
                ),
                Err(_) => tracing::warn!(
                    "--pidfile {}: replacing a file that does not hold a pid",
                    path.display()
                ),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(fail(e)),
        }
        // Write a new file beside it and rename it into place: readers
        // never see a half-written pid, and a symlink at PATH is replaced,
        // never followed.
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let name = path
            .file_name()
            .ok_or_else(|| format!("--pidfile {}: not a file name", path.display()))?;
        let tmp = dir.join(format!(".{}.{pid}.tmp", name.to_string_lossy()));
        let written = (|| {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(&tmp)?;
            writeln!(file, "{pid}")?;
            file.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(fail(e));
        }
        Ok(Pidfile {
            path: path.to_path_buf(),
            pid,
        })
    }
}

impl Drop for Pidfile {
    fn drop(&mut self) {
        if std::process::id() != self.pid {
            return;
        }
        let ours = std::fs::read_to_string(&self.path)
            .is_ok_and(|text| text.trim().parse::<u32>().ok() == Some(self.pid));
        if !ours {
            return;
        }
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(
                "could not remove the pidfile {}: {e} (with --user, its directory must be writable by that user)",
                self.path.display()
            );
        }
    }
}

/// Whether `pid` is alive and runs the same program as we do (by its
/// command name, which survives an upgrade of the binary in place): a
/// master names itself so (`crate::title`), a process that has not yet
/// named itself has ours.
fn is_running_rustgi(pid: u32) -> bool {
    let master = format!("{}\n", crate::title::MASTER_COMM);
    let ours = std::fs::read_to_string("/proc/self/comm").ok();
    runs(pid, Some(&master)) || runs(pid, ours.as_deref())
}

/// Whether `pid` is alive with the command name `comm` (when known).
fn runs(pid: u32, comm: Option<&str>) -> bool {
    let Ok(raw) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // Signal 0 only checks that the process exists.
    let alive = matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None),
        Ok(()) | Err(nix::errno::Errno::EPERM)
    );
    if !alive {
        return false;
    }
    match (std::fs::read_to_string(format!("/proc/{pid}/comm")), comm) {
        (Ok(theirs), Some(ours)) => theirs == ours,
        // No /proc: be safe, take it as running.
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("rustgi-pidfile-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn written_then_removed() {
        let d = dir("plain");
        let path = d.join("rustgi.pid");
        let pidfile = Pidfile::create(&path).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{}\n", std::process::id())
        );
        // Our own pid already there (a re-exec): kept.
        let again = Pidfile::create(&path).unwrap();
        std::mem::forget(again);
        drop(pidfile);
        assert!(!path.exists());
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn stale_files_are_replaced_and_others_not_removed() {
        let d = dir("stale");
        let path = d.join("rustgi.pid");
        // pid 1 is alive but is not this test binary: stale.
        std::fs::write(&path, "1\n").unwrap();
        let pidfile = Pidfile::create(&path).unwrap();
        // Another instance took the file over: not ours to remove.
        std::fs::write(&path, "1\n").unwrap();
        drop(pidfile);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "1\n");
        std::fs::write(&path, "garbage").unwrap();
        drop(Pidfile::create(&path).unwrap());
        assert!(!path.exists());
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_live_process_counts_only_with_the_same_name() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        // Until the child has exec'd, its name is still ours.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap() != "sleep\n" {
            assert!(std::time::Instant::now() < deadline, "sleep never started");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(runs(pid, Some("sleep\n")));
        assert!(!runs(pid, Some("rustgi-gateway\n")));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!runs(pid, Some("sleep\n")), "a dead process");
    }
}
