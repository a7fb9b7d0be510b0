//! The process model's system calls, through nix where it has them:
//! signals read from a signalfd, pipes, forking, waiting for children and
//! saying why they ended. Nothing here starts a
//! thread: the master uses it all its life (DESIGN.md, "Processes").

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
use nix::sys::signal::{
    SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal, sigaction, sigprocmask,
};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use nix::unistd::Pid;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The signals the master takes from its signalfd: those it acts on, and
/// every other catchable one whose default action would end it or that an
/// operator may send by mistake (logged and ignored: the master never dies
/// silently of a stray signal). SIGPIPE stays ignored as Rust's runtime set
/// it; the faults (SIGSEGV, SIGBUS, …), SIGXCPU/SIGXFSZ and SIGTSTP keep
/// their default meaning.
pub(crate) const MASTER_SIGNALS: [Signal; 17] = [
    Signal::SIGCHLD,
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGHUP,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGALRM,
    Signal::SIGVTALRM,
    Signal::SIGPROF,
    Signal::SIGWINCH,
    Signal::SIGURG,
    Signal::SIGPWR,
    Signal::SIGIO,
    Signal::SIGSTKFLT,
];

/// Blocks [`MASTER_SIGNALS`] and the real-time signals (SIGRTMIN to
/// SIGRTMAX: no one gives them a meaning here, and their default action
/// ends the process) and returns a non-blocking signalfd that receives
/// them. Blocked signals stay pending across fork (cleared in the child)
/// and across execve (kept), so none is lost while the master re-executes
/// itself.
pub(crate) fn block_master_signals() -> io::Result<SignalFd> {
    let set: SigSet = MASTER_SIGNALS.into_iter().collect();
    let mut raw = *set.as_ref();
    for signal in libc::SIGRTMIN()..=libc::SIGRTMAX() {
        // SAFETY: `raw` is an initialised sigset_t of ours; sigaddset only
        // sets a bit in it (and refuses a number out of range).
        unsafe { libc::sigaddset(&mut raw, signal) };
    }
    // SAFETY: `raw` came from a valid SigSet and sigaddset.
    let set = unsafe { SigSet::from_sigset_t_unchecked(raw) };
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
    Ok(SignalFd::with_flags(
        &set,
        SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK,
    )?)
}

/// Unblocks every signal (a worker, right after the fork: the mask is
/// inherited, and the app's own subprocesses would inherit it too).
pub(crate) fn unblock_all_signals() {
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

/// The signals queued on the signalfd, in order.
pub(crate) fn read_signals(fd: &SignalFd) -> Vec<libc::c_int> {
    let mut out = Vec::new();
    while let Ok(Some(info)) = fd.read_signal() {
        out.push(info.ssi_signo as libc::c_int);
    }
    out
}

/// A pipe, both ends close-on-exec: (read, write).
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(nix::unistd::pipe2(OFlag::O_CLOEXEC)?)
}

pub(crate) fn set_nonblocking(fd: impl AsFd) -> io::Result<()> {
    let flags = OFlag::from_bits_retain(fcntl(fd.as_fd(), FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

pub(crate) fn set_cloexec(fd: impl AsFd, on: bool) -> io::Result<()> {
    let mut flags = FdFlag::from_bits_retain(fcntl(fd.as_fd(), FcntlArg::F_GETFD)?);
    flags.set(FdFlag::FD_CLOEXEC, on);
    fcntl(fd, FcntlArg::F_SETFD(flags))?;
    Ok(())
}

/// Reads what is there without waiting: `Ok(None)` at EOF.
pub(crate) fn read_available(fd: impl AsFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    match nix::unistd::read(fd, buf) {
        Ok(0) => Ok(None),
        Ok(n) => Ok(Some(n)),
        Err(Errno::EAGAIN) => Ok(Some(0)),
        Err(e) => Err(e.into()),
    }
}

/// # Safety
/// The process must be single-threaded (the child would hold copies of
/// other threads' locks), or the child must only call async-signal-safe
/// functions before it execs or exits.
pub(crate) unsafe fn fork() -> io::Result<libc::pid_t> {
    // SAFETY: the caller's contract above is fork(2)'s.
    Ok(match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Parent { child } => child.as_raw(),
        nix::unistd::ForkResult::Child => 0,
    })
}

/// SIGTERM (drain) or SIGKILL a worker; one that has already ended is no
/// error.
pub(crate) fn kill(pid: libc::pid_t, signal: Signal) {
    let _ = nix::sys::signal::kill(Pid::from_raw(pid), signal);
}

/// A child that has ended, without waiting: (pid, wait status).
///
/// Plain waitpid(2) rather than nix's: nix turns the status into a
/// `WaitStatus`, and for a child killed by a real-time signal (which has
/// no `Signal` variant) it returns an error after reaping it, so the
/// master would never learn that the worker ended.
pub(crate) fn reap_one() -> Option<(libc::pid_t, libc::c_int)> {
    let mut status = 0;
    // SAFETY: waitpid only writes the status into `status`, a live local.
    let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
    (pid > 0).then_some((pid, status))
}

/// True when `pid` is a child of ours that has not ended (a worker the
/// previous image of this master started, before it re-executed itself).
pub(crate) fn is_live_child(pid: libc::pid_t) -> bool {
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    matches!(
        waitid(Id::Pid(Pid::from_raw(pid)), flags),
        Ok(WaitStatus::StillAlive)
    )
}

/// In a freshly forked worker: get SIGTERM when the master dies (the master
/// is single-threaded, so its one thread's exit is the process's), and exit
/// at once if it already has.
pub(crate) fn die_with_parent(master: libc::pid_t) {
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGTERM);
    if nix::unistd::getppid().as_raw() != master {
        exit_at_once(1);
    }
}

/// Ends the process without running anything more of it: no atexit
/// handler, no destructor, no buffered output (a forked worker shares the
/// master's; the master's are the master's to run).
pub(crate) fn exit_at_once(code: libc::c_int) -> ! {
    // SAFETY: _exit(2) ends the process and touches no memory of ours.
    unsafe { libc::_exit(code) }
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

/// The resident set size in bytes from the text of a /proc/PID/statm.
pub(crate) fn rss_from_statm(text: &str) -> Option<u64> {
    let pages: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|page| u64::try_from(page).ok())
        .unwrap_or(4096);
    Some(pages * page)
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
        libc::SIGVTALRM => "SIGVTALRM",
        libc::SIGPROF => "SIGPROF",
        libc::SIGWINCH => "SIGWINCH",
        libc::SIGURG => "SIGURG",
        libc::SIGPWR => "SIGPWR",
        libc::SIGIO => "SIGIO",
        libc::SIGSTKFLT => "SIGSTKFLT",
        libc::SIGTTIN => "SIGTTIN",
        libc::SIGTTOU => "SIGTTOU",
        libc::SIGCHLD => "SIGCHLD",
        libc::SIGXCPU => "SIGXCPU, CPU time limit",
        libc::SIGXFSZ => "SIGXFSZ, file size limit",
        libc::SIGSYS => "SIGSYS, a bad system call",
        libc::SIGTRAP => "SIGTRAP",
        _ if (libc::SIGRTMIN()..=libc::SIGRTMAX()).contains(&signal) => {
            return format!("SIGRTMIN+{}", signal - libc::SIGRTMIN());
        }
        _ => return format!("signal {signal}"),
    };
    name.to_string()
}

/// SIGTRAP, SIGSYS and SIGABRT sent to the master by another process
/// (kill(1), sigqueue): one bit per signal number, taken by
/// [`take_sent_faults`] on the master's next pass.
static SENT_FAULTS: AtomicU64 = AtomicU64::new(0);

/// The signals whose default action ends the master but which cannot be
/// blocked into its signalfd: a synchronous one (a breakpoint, a seccomp
/// kill, abort(3)) is delivered even while blocked, and must keep its
/// default meaning. A handler tells them apart: one *sent* by another
/// process (si_code <= 0, si_pid not ours) is noted and ignored (logged by
/// the master's loop, which wakes at least once a second); anything else,
/// the master's own abort(3) included, gets the default action.
const MASTER_FAULTS: [Signal; 3] = [Signal::SIGTRAP, Signal::SIGSYS, Signal::SIGABRT];

/// Installs the handler of [`MASTER_FAULTS`] in the master (again after a
/// re-exec: execve resets caught signals).
pub(crate) fn ignore_sent_faults() {
    let ours = SigAction::new(
        SigHandler::SigAction(on_master_fault),
        SaFlags::SA_SIGINFO,
        SigSet::empty(),
    );
    for signal in MASTER_FAULTS {
        // SAFETY: `on_master_fault` only makes async-signal-safe calls
        // (getpid, an atomic, signal(2), raise(2)).
        let _ = unsafe { sigaction(signal, &ours) };
    }
}

/// A worker's: the master's handler of [`MASTER_FAULTS`] is inherited
/// across fork, and a worker dies of them as any program does.
pub(crate) fn default_faults() {
    for signal in MASTER_FAULTS {
        // SAFETY: the default action installs no handler.
        let _ = unsafe { nix::sys::signal::signal(signal, SigHandler::SigDfl) };
    }
}

/// The [`MASTER_FAULTS`] sent since the last call, and the pid of a sender
/// is not kept (one word for the lot, written from a signal handler).
pub(crate) fn take_sent_faults() -> Vec<libc::c_int> {
    let bits = SENT_FAULTS.swap(0, Ordering::Relaxed);
    (1..64).filter(|signal| bits & (1 << signal) != 0).collect()
}

extern "C" fn on_master_fault(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    _context: *mut libc::c_void,
) {
    // SAFETY: installed with SA_SIGINFO, so the kernel passes a valid
    // siginfo_t, alive for the whole call; si_pid is meaningful for
    // si_code <= 0 (SI_USER, SI_QUEUE, SI_TKILL).
    let (code, sender) = unsafe { ((*info).si_code, (*info).si_pid()) };
    // SAFETY: getpid(2) cannot fail and is async-signal-safe.
    if code <= 0 && sender != unsafe { libc::getpid() } && (1..64).contains(&signal) {
        SENT_FAULTS.fetch_or(1 << signal, Ordering::Relaxed);
        return;
    }
    let Ok(signal) = Signal::try_from(signal) else {
        return;
    };
    // SAFETY: as in `on_fault`: the default action, then a signal of our
    // own is raised again (pending until we return, then it ends us; the
    // second abort(3) does the same); a real fault happens again when the
    // instruction re-runs.
    let _ = unsafe { nix::sys::signal::signal(signal, SigHandler::SigDfl) };
    if code <= 0 {
        let _ = nix::sys::signal::raise(signal);
    }
}

/// The handlers SIGSEGV and SIGBUS had before [`die_of_sent_faults`].
static PREVIOUS_HANDLER: [OnceLock<SigHandler>; 2] = [OnceLock::new(), OnceLock::new()];

/// SIGUSR1 (logrotate's "reopen your logs", forwarded by the master) is
/// ignored from the fork until the worker's signal task handles it: its
/// default action would kill a worker still importing the application.
pub(crate) fn ignore_sigusr1_until_handled() {
    let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    // SAFETY: SIG_IGN runs no code in the handler; tokio's signal
    // registration replaces it later with its own.
    let _ = unsafe { sigaction(Signal::SIGUSR1, &ignore) };
}

/// Rust's runtime handles SIGSEGV and SIGBUS to report stack overflows;
/// for any other fault it restores the default action and returns, so the
/// faulting instruction runs again and the process dies of the signal. A
/// SIGSEGV *sent* with kill(1), though, would then just be swallowed once.
/// This handler makes a sent one kill the worker at once (as it does every
/// other program) and passes a real fault on to the previous handler.
pub(crate) fn die_of_sent_faults() {
    let ours = SigAction::new(
        SigHandler::SigAction(on_fault),
        SaFlags::SA_SIGINFO | SaFlags::SA_ONSTACK,
        SigSet::empty(),
    );
    for (index, signal) in [Signal::SIGSEGV, Signal::SIGBUS].into_iter().enumerate() {
        // SAFETY: `on_fault` only makes async-signal-safe calls (an atomic
        // load, the previous handler, signal(2), raise(2)). Until the
        // previous handler is recorded, a fault gets the default action.
        if let Ok(previous) = unsafe { sigaction(signal, &ours) } {
            let _ = PREVIOUS_HANDLER[index].set(previous.handler());
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
    // SAFETY: installed with SA_SIGINFO, so the kernel passes a valid
    // siginfo_t, alive for the whole call.
    let sent = unsafe { (*info).si_code } <= 0;
    if !sent {
        match PREVIOUS_HANDLER[index].get() {
            Some(SigHandler::SigAction(handler)) => return handler(signal, info, context),
            Some(SigHandler::Handler(handler)) => return handler(signal),
            _ => {}
        }
    }
    let Ok(signal) = Signal::try_from(signal) else {
        return;
    };
    // SAFETY: signal(2) with the default action installs no handler of
    // ours. A sent signal is raised again (it stays pending until this
    // handler returns, then kills us); a real fault happens again when the
    // instruction re-runs.
    let _ = unsafe { nix::sys::signal::signal(signal, SigHandler::SigDfl) };
    if sent {
        let _ = nix::sys::signal::raise(signal);
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

    /// Tests run on parallel threads: a child forked by one holds copies of
    /// every descriptor open in the process at that instant (another
    /// test's pipe, whose EOF then waits for the child), so tests that
    /// fork and tests that wait for an EOF take turns.
    static FORKING: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn a_forked_child_is_reaped_with_its_status() {
        let _turn = FORKING.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: the child only calls _exit (async-signal-safe).
        let pid = unsafe { fork() }.unwrap();
        if pid == 0 {
            // The child leaves at once, running nothing of the test harness.
            exit_at_once(7);
        }
        let status = nix::sys::wait::waitpid(Pid::from_raw(pid), None).unwrap();
        assert_eq!(status, WaitStatus::Exited(Pid::from_raw(pid), 7));
        assert!(!is_live_child(pid), "reaped: no longer a child");
    }

    #[test]
    fn status_pipe_reads_without_blocking() {
        let _turn = FORKING.lock().unwrap_or_else(|e| e.into_inner());
        let (read, write) = pipe().unwrap();
        set_nonblocking(&read).unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(read_available(&read, &mut buf).unwrap(), Some(0));
        assert_eq!(nix::unistd::write(&write, b"R").unwrap(), 1);
        assert_eq!(read_available(&read, &mut buf).unwrap(), Some(1));
        assert_eq!(buf[0], b'R');
        drop(write);
        assert_eq!(read_available(&read, &mut buf).unwrap(), None);
    }
}
