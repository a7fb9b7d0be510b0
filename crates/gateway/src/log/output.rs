//! Where the daemon's log goes: stderr, or `--log-file` reopened after
//! SIGUSR1 (logrotate).
//!
//! The master is single-threaded and forks on every respawn, and a worker
//! logs from many threads: the writer holds no lock and starts no thread.
//! Each log line is written with write(2) on one descriptor number that
//! never changes, opened with O_APPEND (a line from any thread or process
//! lands whole at the end, and `copytruncate` works). A reopen opens the
//! file afresh and dup2()s it over that number: a line being written
//! meanwhile goes wholly to the old file or wholly to the new one, and no
//! thread can ever write to a descriptor that was closed and reused. A
//! forked worker inherits the descriptor and reopens on its own when its
//! process's [`rustgi_observe::reopen::generation`] changes.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use tracing_subscriber::fmt::MakeWriter;

/// `--log-file`: its descriptor and the reopen generation it was opened at.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    /// Ours for the life of the process: never closed, only replaced.
    fd: RawFd,
    opened_at: AtomicU64,
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
}

impl LogFile {
    pub fn open(path: &Path) -> io::Result<LogFile> {
        let generation = rustgi_observe::reopen::generation();
        let file = open(path)?;
        Ok(LogFile {
            path: path.to_path_buf(),
            fd: file.into_raw_fd(),
            opened_at: AtomicU64::new(generation),
        })
    }

    /// The descriptor to write to, the file reopened first if a reopen was
    /// asked for since it was opened (by one thread: the others go on
    /// writing to the old file until it is done).
    fn fd(&self) -> RawFd {
        let now = rustgi_observe::reopen::generation();
        let then = self.opened_at.load(Ordering::Acquire);
        if now != then
            && self
                .opened_at
                .compare_exchange(then, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            && let Err(e) = self.reopen()
        {
            let line = format!(
                "rustgi-gateway: could not reopen the log file {}: {e}; writing on to the file as it was\n",
                self.path.display()
            );
            write_all(self.fd, line.as_bytes());
        }
        self.fd
    }

    fn reopen(&self) -> io::Result<()> {
        let file = open(&self.path)?;
        // SAFETY: dup3 acts on descriptor numbers only: `file`'s, which it
        // keeps open (dropped below), and `self.fd`, which this LogFile
        // owns and which dup3 atomically points at the new file (closing
        // the old one), keeping the number and its close-on-exec flag.
        if unsafe { libc::dup3(file.as_raw_fd(), self.fd, libc::O_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Writes all of `bytes` to `fd`; a failure drops the rest (a log line
/// has nowhere else to go).
fn write_all(fd: RawFd, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: `bytes` is a live slice, its pointer and length valid
        // for the call; write(2) only reads it.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        bytes = &bytes[n as usize..];
    }
}

/// Where the formatter's lines go.
#[derive(Clone, Copy, Debug)]
pub struct Output {
    file: Option<&'static LogFile>,
}

static FILE: OnceLock<LogFile> = OnceLock::new();

impl Output {
    pub fn stderr() -> Output {
        Output { file: None }
    }

    /// Appends to `path` (created 0640 if missing).
    pub fn file(path: &Path) -> io::Result<Output> {
        let file = LogFile::open(path)?;
        Ok(Output {
            file: Some(FILE.get_or_init(|| file)),
        })
    }

    #[cfg(test)]
    pub fn leaked(file: LogFile) -> Output {
        Output {
            file: Some(Box::leak(Box::new(file))),
        }
    }
}

/// One line's writer: tracing's formatter writes each event whole.
pub struct Line(Output);

impl io::Write for Line {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let fd = self.0.file.map_or(libc::STDERR_FILENO, LogFile::fd);
        write_all(fd, buf);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Output {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line(*self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_reopen_request_moves_the_lines_to_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.log");
        let output = Output::leaked(LogFile::open(&path).unwrap());
        output.make_writer().write_all(b"one\n").unwrap();
        // logrotate's `create`: the file is moved away, then USR1.
        let rotated = dir.path().join("daemon.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        output.make_writer().write_all(b"two\n").unwrap();
        rustgi_observe::reopen::request();
        output.make_writer().write_all(b"three\n").unwrap();
        assert_eq!(std::fs::read_to_string(&rotated).unwrap(), "one\ntwo\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "three\n");
        // `copytruncate`: O_APPEND writes go on at the new end.
        std::fs::File::create(&path).unwrap();
        output.make_writer().write_all(b"four\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "four\n");
    }

    #[test]
    fn an_unopenable_file_is_an_error() {
        let e = LogFile::open(Path::new("/nonexistent-dir/x.log")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
