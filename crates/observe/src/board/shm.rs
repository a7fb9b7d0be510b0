//! The scoreboard's memory: the only unsafe code of this crate.
//!
//! A memfd (an anonymous file) mapped `MAP_SHARED`: the workers inherit the
//! mapping across fork, and its descriptor crosses the master's own
//! re-execution (a `--preload` reload), so that the new image sees the
//! slots the old workers keep writing. The memory is handed out as a slice
//! of `AtomicU64`: every access after the mapping is an atomic operation,
//! so processes that write it while others read it never race in Rust's
//! sense, and a process that dies half-way leaves only values that some
//! atomic store wrote.
//!
//! The mapping is never unmapped: the scoreboard lives as long as the
//! process (the master's whole life; a worker's, which inherits it), and
//! the `&'static` slice handed out relies on that.

use nix::fcntl::{FcntlArg, FdFlag, SealFlag, fcntl};
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::mman::{MapFlags, ProtFlags, mmap};
use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::AtomicU64;

/// The lowest descriptor number the memfd takes. The master's re-exec puts
/// the listener on fd 3 (dup2 over whatever is there): the board must never
/// be there.
const LOWEST_FD: i32 = 10;

const FIXED_SIZE: SealFlag = SealFlag::F_SEAL_SHRINK.union(SealFlag::F_SEAL_GROW);

pub(crate) struct Shared {
    words: &'static [AtomicU64],
    fd: OwnedFd,
}

impl Shared {
    /// A new zeroed mapping of `words` 64-bit words.
    pub(crate) fn create(words: usize) -> io::Result<Shared> {
        let fd = memfd_create(
            c"rustgi-scoreboard",
            MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
        )?;
        let fd = high_fd(fd)?;
        let bytes = words
            .checked_mul(8)
            .and_then(|b| i64::try_from(b).ok())
            .ok_or_else(|| io::Error::other("scoreboard too large"))?;
        nix::unistd::ftruncate(&fd, bytes)?;
        // Its size is fixed for good: no process can shrink it under a
        // mapping (which would turn reads into SIGBUS).
        fcntl(
            &fd,
            FcntlArg::F_ADD_SEALS(FIXED_SIZE | SealFlag::F_SEAL_SEAL),
        )?;
        Shared::map(fd)
    }

    /// The mapping a previous image of this process made (the descriptor it
    /// handed over across execve, where it had to lose close-on-exec: it
    /// gets it back, or the app's subprocesses would inherit the board).
    pub(crate) fn open(fd: OwnedFd) -> io::Result<Shared> {
        let fd = high_fd(fd)?;
        fcntl(&fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
        Shared::map(fd)
    }

    fn map(fd: OwnedFd) -> io::Result<Shared> {
        let bytes = check(fd.as_fd())?;
        // SAFETY: a fresh mapping chosen by the kernel (no address given)
        // overlaps no Rust object. `fd` is a memfd of `bytes` bytes (fstat
        // above) sealed against shrinking and growing (checked above), so
        // every mapped page stays backed and no access can raise SIGBUS.
        let ptr = unsafe {
            mmap(
                None,
                bytes,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                &fd,
                0,
            )
        }?;
        // SAFETY: the mapping is `bytes` long, page-aligned (so aligned for
        // u64) and `bytes` is a multiple of 8. `AtomicU64` has the size and
        // alignment of `u64`, every bit pattern is a valid value (a fresh
        // memfd reads as zeros), and all accesses through the slice are
        // atomic, which is the only way other processes touch it too. The
        // mapping is never unmapped (module comment), so `'static` holds.
        let words = unsafe {
            std::slice::from_raw_parts(ptr.as_ptr().cast::<AtomicU64>(), bytes.get() / 8)
        };
        Ok(Shared { words, fd })
    }

    pub(crate) fn words(&self) -> &'static [AtomicU64] {
        self.words
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The size in bytes of `fd` if it can be a scoreboard: a file sealed at
/// a fixed size (a memfd as [`Shared::create`] makes; another file could
/// be truncated under the mapping) of whole words, beyond the descriptors
/// a re-exec places. Checked on a borrowed descriptor, before anything
/// takes ownership of it.
pub(crate) fn check(fd: BorrowedFd<'_>) -> io::Result<NonZeroUsize> {
    use std::os::fd::AsRawFd;
    if fd.as_raw_fd() < LOWEST_FD {
        return Err(io::Error::other(format!(
            "descriptor {} is below {LOWEST_FD}, where the scoreboard never is",
            fd.as_raw_fd()
        )));
    }
    let seals = SealFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GET_SEALS)?);
    if !seals.contains(FIXED_SIZE) {
        return Err(io::Error::other("the scoreboard's size is not sealed"));
    }
    let size = nix::sys::stat::fstat(fd)?.st_size;
    usize::try_from(size)
        .ok()
        .and_then(NonZeroUsize::new)
        .filter(|b| b.get() % 8 == 0)
        .ok_or_else(|| io::Error::other(format!("scoreboard file of {size} bytes")))
}

/// Moves `fd` to a number at or above [`LOWEST_FD`] (close-on-exec).
fn high_fd(fd: OwnedFd) -> io::Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    if fd.as_raw_fd() >= LOWEST_FD {
        return Ok(fd);
    }
    let raw = fcntl(&fd, FcntlArg::F_DUPFD_CLOEXEC(LOWEST_FD))?;
    // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor that nothing else
    // owns; `fd`, the original, is closed when it drops here.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}
