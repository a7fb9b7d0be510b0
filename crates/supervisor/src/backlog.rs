//! The listen queue's depth and limit, as the kernel counts them: for TCP
//! from `TCP_INFO` on the listener (`tcpi_unacked` is the accept queue's
//! length, `tcpi_sacked` its limit), for a Unix socket from socket
//! diagnostics (NETLINK_SOCK_DIAG, `UNIX_DIAG_RQLEN` of the listener's
//! inode: its receive queue is the accept queue, its write-queue field the
//! limit). Read by the master for each scrape; nothing here blocks.

use crate::listener::BoundSocket;
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, recv, sendto, socket,
};
use rustgi_observe::metrics::Backlog;
use std::os::fd::{AsFd, AsRawFd};

/// The queue of `socket`, or unknowns if the kernel does not say.
pub(crate) fn of(socket: &BoundSocket) -> Backlog {
    match socket {
        BoundSocket::Tcp(listener) => tcp(listener.as_fd()).unwrap_or_default(),
        BoundSocket::Unix { listener, .. } => {
            let Ok(stat) = nix::sys::stat::fstat(listener.as_fd()) else {
                return Backlog::default();
            };
            unix(stat.st_ino).unwrap_or_default()
        }
    }
}

fn tcp(fd: std::os::fd::BorrowedFd<'_>) -> Option<Backlog> {
    // SAFETY: tcp_info is plain integers: all zeros is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `info`, which is
    // that large and lives for the call; `fd` is an open socket.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &mut len,
        )
    };
    if rc != 0 || info.tcpi_state != 10 {
        // Not a listener (TCP_LISTEN is 10): the fields mean other things.
        return None;
    }
    Some(Backlog {
        depth: Some(u64::from(info.tcpi_unacked)),
        limit: Some(u64::from(info.tcpi_sacked)),
    })
}

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const UDIAG_SHOW_RQLEN: u32 = 0x10;
const UNIX_DIAG_RQLEN: u16 = 4;
const TCP_LISTEN: u32 = 10;
const NLMSG_ERROR: u16 = 2;

/// The netlink request for the Unix socket of inode `ino`.
fn unix_request(ino: u64) -> Vec<u8> {
    let mut msg = Vec::with_capacity(40);
    // struct nlmsghdr: len, type, flags (NLM_F_REQUEST), seq, pid.
    msg.extend_from_slice(&40u32.to_ne_bytes());
    msg.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    msg.extend_from_slice(&1u16.to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    // struct unix_diag_req: family, protocol, pad, states, ino, show,
    // cookie (none: ~0).
    msg.push(libc::AF_UNIX as u8);
    msg.push(0);
    msg.extend_from_slice(&0u16.to_ne_bytes());
    msg.extend_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes());
    msg.extend_from_slice(&(ino as u32).to_ne_bytes());
    msg.extend_from_slice(&UDIAG_SHOW_RQLEN.to_ne_bytes());
    msg.extend_from_slice(&u32::MAX.to_ne_bytes());
    msg.extend_from_slice(&u32::MAX.to_ne_bytes());
    msg
}

/// The queue from the kernel's answer: nlmsghdr (16), unix_diag_msg (16),
/// then attributes (len u16, type u16, value, padded to 4).
fn parse_unix_answer(answer: &[u8]) -> Option<Backlog> {
    let u16_at = |at: usize| Some(u16::from_ne_bytes(answer.get(at..at + 2)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_ne_bytes(answer.get(at..at + 4)?.try_into().ok()?));
    let len = u32_at(0)? as usize;
    if u16_at(4)? == NLMSG_ERROR {
        return None;
    }
    let mut at = 32;
    while at + 4 <= len.min(answer.len()) {
        let attr_len = u16_at(at)? as usize;
        if attr_len < 4 {
            return None;
        }
        if u16_at(at + 2)? == UNIX_DIAG_RQLEN {
            return Some(Backlog {
                depth: Some(u64::from(u32_at(at + 4)?)),
                limit: Some(u64::from(u32_at(at + 8)?)),
            });
        }
        at += attr_len.div_ceil(4) * 4;
    }
    None
}

fn unix(ino: u64) -> Option<Backlog> {
    let sock = socket(
        AddressFamily::Netlink,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )
    .ok()?;
    let kernel = NetlinkAddr::new(0, 0);
    sendto(
        sock.as_raw_fd(),
        &unix_request(ino),
        &kernel,
        MsgFlags::empty(),
    )
    .ok()?;
    let mut answer = [0u8; 512];
    // The kernel answers a request before sendto returns: no waiting.
    let n = recv(sock.as_raw_fd(), &mut answer, MsgFlags::MSG_DONTWAIT).ok()?;
    parse_unix_answer(&answer[..n])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::{UnixListener, UnixStream};

    #[test]
    fn a_unix_listeners_queue_is_counted() {
        let dir = std::env::temp_dir().join(format!("rustgi-backlog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("q.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let ino = nix::sys::stat::fstat(listener.as_fd()).unwrap().st_ino;
        assert_eq!(unix(ino).unwrap().depth, Some(0));
        let _waiting: Vec<UnixStream> = (0..3)
            .map(|_| UnixStream::connect(&path).unwrap())
            .collect();
        let backlog = unix(ino).unwrap();
        assert_eq!(backlog.depth, Some(3));
        assert!(backlog.limit.unwrap() >= 3);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_tcp_listeners_queue_is_counted() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let _waiting: Vec<_> = (0..2)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        let backlog = tcp(listener.as_fd()).unwrap();
        assert_eq!(backlog.depth, Some(2));
        assert!(backlog.limit.unwrap() >= 2);
    }

    #[test]
    fn an_error_answer_is_no_backlog() {
        let mut answer = vec![0u8; 36];
        answer[..4].copy_from_slice(&36u32.to_ne_bytes());
        answer[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        assert_eq!(parse_unix_answer(&answer), None);
    }
}
