//! Process titles: `ps` shows `rustgi-gateway: master [app]` and
//! `rustgi-gateway: worker 2 [app]` rather than the same command line for
//! every process, and `comm` (top, pgrep, /proc/PID/comm) `rustgi-master`
//! or `rustgi-worker`, as gunicorn and uWSGI do.
//!
//! `ps -o args` reads /proc/PID/cmdline, which is the process's own
//! memory between the `arg_start` and `arg_end` the kernel gives in
//! /proc/self/stat: the argv strings execve put on the stack. The title is
//! written over that area, within its length (a short command line gives a
//! cut title) and NUL-padded; the environment strings that follow are not
//! moved (that needs a copy of `environ` behind the back of std and libc,
//! or CAP_SYS_RESOURCE for PR_SET_MM). The area is taken from the kernel
//! rather than from argv pointers saved at start because the kernel's
//! bounds are the ones `ps` shows, and it is checked to hold exactly the
//! argv std was given before a byte is written.
//!
//! No crate does this well: `proctitle` only calls PR_SET_NAME on Linux,
//! and the setproctitle ports move `environ`.

use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, Ordering};

/// A master's `comm` (the pidfile's check of a running instance knows it).
pub(crate) const MASTER_COMM: &str = "rustgi-master";
/// A worker's `comm`.
pub(crate) const WORKER_COMM: &str = "rustgi-worker";

/// The argv area was checked and holds a title of ours (a forked worker
/// inherits the master's title, and this).
static TITLED: AtomicBool = AtomicBool::new(false);

/// Sets `comm` to `comm` (at most 15 bytes: the kernel's limit) and the
/// argv area to `title`; a failure is logged at debug level and changes
/// nothing (a title is a nicety).
///
/// # Safety
/// No other thread may run, and nothing may read the process's arguments
/// through std (`std::env::args`, which reads the argv strings in place)
/// from here on: the master copies them first (`remember_start`). `argv`
/// must be the process's arguments as std gave them.
pub(crate) unsafe fn set(comm: &str, title: &str, argv: &[OsString]) {
    if let Ok(comm) = CString::new(comm)
        && let Err(e) = nix::sys::prctl::set_name(&comm)
    {
        tracing::debug!("PR_SET_NAME {comm:?}: {e}");
    }
    let Some((start, end)) = argv_area() else {
        tracing::debug!("no argv area in /proc/self/stat: the process title stays");
        return;
    };
    let mut expected = Vec::new();
    for arg in argv {
        expected.extend_from_slice(arg.as_bytes());
        expected.push(0);
    }
    if end.checked_sub(start) != Some(expected.len()) {
        tracing::debug!("the argv area is not argv as started: the process title stays");
        return;
    }
    // SAFETY: [start, end) is this process's argv area as the kernel
    // records it: the argv strings on the initial stack, mapped readable
    // and writable for the life of the process. Its length is checked
    // just above, its contents below before the first write (later ones,
    // in this process or a forked child, find our title there). Nothing in Rust
    // holds a reference to it: std keeps raw argv pointers and reads
    // through them only in `std::env::args`, which the caller promises
    // nobody calls from here on, and no other thread runs (the caller's
    // promise too), so no access overlaps this one.
    let area = unsafe { std::slice::from_raw_parts_mut(start as *mut u8, expected.len()) };
    if !TITLED.load(Ordering::Relaxed) && area != expected.as_slice() {
        tracing::debug!("the argv area does not hold argv: the process title stays");
        return;
    }
    write_title(area, title.as_bytes());
    TITLED.store(true, Ordering::Relaxed);
}

/// `title`, cut to leave at least one NUL, then NULs to the end: the
/// kernel shows the area whole when its last byte is NUL, and `ps` turns
/// the NULs into spaces and drops the trailing ones.
fn write_title(area: &mut [u8], title: &[u8]) {
    let room = area.len().saturating_sub(1);
    let mut cut = title.len().min(room);
    // Not in the middle of a UTF-8 sequence: back to a character's start.
    while cut < title.len() && cut > 0 && title[cut] & 0xc0 == 0x80 {
        cut -= 1;
    }
    let shown = &title[..cut];
    area[..shown.len()].copy_from_slice(shown);
    area[shown.len()..].fill(0);
}

/// `arg_start` and `arg_end` from /proc/self/stat (fields 48 and 49).
fn argv_area() -> Option<(usize, usize)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // After the command name, which may hold spaces and parentheses.
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state).
    let start = fields.get(48 - 3)?.parse().ok()?;
    let end = fields.get(49 - 3)?.parse().ok()?;
    (start > 0 && end > start).then_some((start, end))
}

/// The app as a title shows it.
pub(crate) fn app_label(app: &rustgi_core::AppSpec) -> String {
    match app {
        rustgi_core::AppSpec::Demo => "demo".to_string(),
        app => app.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_title_is_cut_to_the_area_and_padded() {
        let mut area = *b"rustgi-gateway\0--socket\0/tmp/x.sock\0";
        write_title(&mut area, b"rustgi-gateway: master [app]");
        assert_eq!(&area[..28], b"rustgi-gateway: master [app]");
        assert!(area[28..].iter().all(|&b| b == 0));
        let mut small = [b'x'; 10];
        write_title(&mut small, b"rustgi-gateway: master");
        assert_eq!(&small, b"rustgi-ga\0");
        // Never half a character: "é" is two bytes.
        let mut small = [b'x'; 4];
        write_title(&mut small, "abé".as_bytes());
        assert_eq!(&small, b"ab\0\0");
    }

    #[test]
    fn the_argv_area_is_found() {
        let (start, end) = argv_area().expect("Linux 3.5 or later");
        let argv: usize = std::env::args_os().map(|a| a.len() + 1).sum();
        assert_eq!(end - start, argv);
    }
}
