//! Plain libc for the process model: signals read from a signalfd, pipes,
//! waiting for children and saying why they ended. Nothing here starts a
//! thread: the master uses it all its life (DESIGN.md, "Processes").

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

/// The signals the master takes from its signalfd.
pub(crate) const MASTER_SIGNALS: [libc::c_int; 7] = [
    libc::SIGCHLD,
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGHUP,
    libc::SIGTTIN,
    libc::SIGTTOU,
];

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn signal_set(signals: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set; sigaddset only sets bits.
    unsafe {
        let mut set = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&mut set);
        for &signal in signals {
            libc::sigaddset(&mut set, signal);
        }
        set
    }
}

/// Blocks [`MASTER_SIGNALS`] and returns a non-blocking signalfd that
/// receives them. Blocked signals stay pending across fork (cleared in the
/// child) and across execve (kept), so none is lost while the master
/// re-executes itself.
pub(crate) fn block_master_signals() -> io::Result<OwnedFd> {
    let set = signal_set(&MASTER_SIGNALS);
    // SAFETY: plain calls with a valid, initialised set.
    unsafe {
        check(libc::sigprocmask(
            libc::SIG_BLOCK,
            &set,
            std::ptr::null_mut(),
        ))?;
        let fd = check(libc::signalfd(
            -1,
            &set,
            libc::SFD_CLOEXEC | libc::SFD_NONBLOCK,
        ))?;
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// Unblocks every signal (a worker, right after the fork: the mask is
/// inherited, and the app's own subprocesses would inherit it too).
pub(crate) fn unblock_all_signals() {
    let set = signal_set(&[]);
    // SAFETY: an empty, initialised set.
    unsafe { libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) };
}

/// The signals queued on the signalfd, in order.
pub(crate) fn read_signals(fd: &OwnedFd) -> Vec<libc::c_int> {
    let mut out = Vec::new();
    loop {
        // SAFETY: signalfd_siginfo is plain data; read writes at most its size.
        let mut info = unsafe { std::mem::zeroed::<libc::signalfd_siginfo>() };
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        let n = unsafe { libc::read(fd.as_raw_fd(), (&raw mut info).cast(), size) };
        if n != size as isize {
            return out;
        }
        out.push(info.ssi_signo as libc::c_int);
    }
}

/// A pipe, both ends close-on-exec: (read, write).
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 fills both descriptors on success.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: fresh descriptors we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

pub(crate) fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let flags = check(libc::fcntl(fd, libc::F_GETFL))?;
        check(libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK))?;
    }
    Ok(())
}

pub(crate) fn set_cloexec(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let flags = check(libc::fcntl(fd, libc::F_GETFD))?;
        let flags = if on {
            flags | libc::FD_CLOEXEC
        } else {
            flags & !libc::FD_CLOEXEC
        };
        check(libc::fcntl(fd, libc::F_SETFD, flags))?;
    }
    Ok(())
}

/// Reads what is there without waiting: `Ok(None)` at EOF.
pub(crate) fn read_available(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    // SAFETY: read writes at most buf.len() bytes into buf.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    match n {
        0 => Ok(None),
        n if n > 0 => Ok(Some(n as usize)),
        _ => {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock {
                Ok(Some(0))
            } else {
                Err(e)
            }
        }
    }
}

pub(crate) fn fork() -> io::Result<libc::pid_t> {
    // SAFETY: the master is single-threaded, so the child is a full copy.
    check(unsafe { libc::fork() })
}

pub(crate) fn kill(pid: libc::pid_t, signal: libc::c_int) {
    // SAFETY: kill has no memory effects; pid is a child we have not reaped.
    unsafe { libc::kill(pid, signal) };
}

/// A child that has ended, without waiting: (pid, wait status).
pub(crate) fn reap_one() -> Option<(libc::pid_t, libc::c_int)> {
    let mut status = 0;
    // SAFETY: waitpid writes the status into `status`.
    let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
    (pid > 0).then_some((pid, status))
}

/// True when `pid` is a child of ours that has not ended (a worker the
/// previous image of this master started, before it re-executed itself).
pub(crate) fn is_live_child(pid: libc::pid_t) -> bool {
    // SAFETY: waitid with WNOWAIT only inspects the child.
    unsafe {
        let mut info = std::mem::zeroed::<libc::siginfo_t>();
        let rc = libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        rc == 0 && info.si_pid() == 0
    }
}

/// In a freshly forked worker: get SIGTERM when the master dies (the master
/// is single-threaded, so its one thread's exit is the process's), and exit
/// at once if it already has.
pub(crate) fn die_with_parent(master: libc::pid_t) {
    // SAFETY: prctl and getppid have no memory effects.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
        if libc::getppid() != master {
            libc::_exit(1);
        }
    }
}

/// "exited with code 3", "killed by signal 11 (SIGSEGV, a segmentation
/// fault; core dumped)".
pub(crate) fn describe_wait_status(status: libc::c_int) -> String {
    if libc::WIFEXITED(status) {
        format!("exited with code {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        let signal = libc::WTERMSIG(status);
        let core = if libc::WCOREDUMP(status) {
            "; core dumped"
        } else {
            ""
        };
        format!("killed by signal {signal} ({}{core})", signal_name(signal))
    } else {
        format!("ended with wait status {status:#x}")
    }
}

/// The exit code, when the child exited (rather than being killed).
pub(crate) fn exit_code(status: libc::c_int) -> Option<libc::c_int> {
    libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status))
}

pub(crate) fn signal_name(signal: libc::c_int) -> String {
    let name = match signal {
        libc::SIGSEGV => "SIGSEGV, a segmentation fault",
        libc::SIGBUS => "SIGBUS, a bus error",
        libc::SIGABRT => "SIGABRT, aborted",
        libc::SIGFPE => "SIGFPE, an arithmetic fault",
        libc::SIGILL => "SIGILL, an illegal instruction",
        libc::SIGKILL => "SIGKILL: kill -9, or the kernel's OOM killer",
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGHUP => "SIGHUP",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGALRM => "SIGALRM",
        libc::SIGXCPU => "SIGXCPU, CPU time limit",
        libc::SIGXFSZ => "SIGXFSZ, file size limit",
        libc::SIGSYS => "SIGSYS, a bad system call",
        libc::SIGTRAP => "SIGTRAP",
        _ => return format!("signal {signal}"),
    };
    name.to_string()
}

/// The handlers SIGSEGV and SIGBUS had before [`die_of_sent_faults`].
static PREVIOUS_HANDLER: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];
static PREVIOUS_FLAGS: [AtomicI32; 2] = [AtomicI32::new(0), AtomicI32::new(0)];

/// Rust's runtime handles SIGSEGV and SIGBUS to report stack overflows;
/// for any other fault it restores the default action and returns, so the
/// faulting instruction runs again and the process dies of the signal. A
/// SIGSEGV *sent* with kill(1), though, would then just be swallowed once.
/// This handler makes a sent one kill the worker at once (as it does every
/// other program) and passes a real fault on to the previous handler.
pub(crate) fn die_of_sent_faults() {
    for (index, signal) in [libc::SIGSEGV, libc::SIGBUS].into_iter().enumerate() {
        // SAFETY: sigaction with zero-initialised, then filled, structs.
        unsafe {
            let mut old = std::mem::zeroed::<libc::sigaction>();
            if libc::sigaction(signal, std::ptr::null(), &mut old) != 0 {
                continue;
            }
            PREVIOUS_HANDLER[index].store(old.sa_sigaction, Ordering::Relaxed);
            PREVIOUS_FLAGS[index].store(old.sa_flags, Ordering::Relaxed);
            let mut new = std::mem::zeroed::<libc::sigaction>();
            new.sa_sigaction = on_fault as *const () as usize;
            new.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut new.sa_mask);
            libc::sigaction(signal, &new, std::ptr::null_mut());
        }
    }
}

extern "C" fn on_fault(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    let index = usize::from(signal != libc::SIGSEGV);
    // SI_USER (0), SI_QUEUE and SI_TKILL (negative): sent by a process.
    // SAFETY: the kernel passes a valid siginfo_t.
    let sent = unsafe { (*info).si_code } <= 0;
    let previous = PREVIOUS_HANDLER[index].load(Ordering::Relaxed);
    if !sent && previous != libc::SIG_DFL && previous != libc::SIG_IGN {
        // SAFETY: `previous` is the handler installed before ours, called
        // the way its flags say it expects.
        unsafe {
            if PREVIOUS_FLAGS[index].load(Ordering::Relaxed) & libc::SA_SIGINFO != 0 {
                let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                    std::mem::transmute(previous);
                handler(signal, info, context);
            } else {
                let handler: extern "C" fn(libc::c_int) = std::mem::transmute(previous);
                handler(signal);
            }
        }
        return;
    }
    // SAFETY: async-signal-safe calls. A sent signal is raised again (it
    // stays pending until this handler returns, then kills us); a real
    // fault happens again when the instruction re-runs.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        if sent {
            libc::raise(signal);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_statuses_are_told_apart() {
        assert_eq!(describe_wait_status(3 << 8), "exited with code 3");
        assert_eq!(exit_code(3 << 8), Some(3));
        assert_eq!(
            describe_wait_status(libc::SIGSEGV | 0x80),
            "killed by signal 11 (SIGSEGV, a segmentation fault; core dumped)"
        );
        assert_eq!(exit_code(libc::SIGSEGV), None);
        assert_eq!(
            describe_wait_status(libc::SIGKILL),
            "killed by signal 9 (SIGKILL: kill -9, or the kernel's OOM killer)"
        );
    }

    #[test]
    fn a_forked_child_is_reaped_with_its_status() {
        let pid = fork().unwrap();
        if pid == 0 {
            // SAFETY: the child leaves at once, running nothing of the test harness.
            unsafe { libc::_exit(7) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert_eq!(exit_code(status), Some(7));
    }

    #[test]
    fn status_pipe_reads_without_blocking() {
        let (read, write) = pipe().unwrap();
        set_nonblocking(read.as_raw_fd()).unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(read_available(&read, &mut buf).unwrap(), Some(0));
        // SAFETY: writing one byte from a valid buffer.
        assert_eq!(
            unsafe { libc::write(write.as_raw_fd(), b"R".as_ptr().cast(), 1) },
            1
        );
        assert_eq!(read_available(&read, &mut buf).unwrap(), Some(1));
        assert_eq!(buf[0], b'R');
        drop(write);
        assert_eq!(read_available(&read, &mut buf).unwrap(), None);
    }
}
