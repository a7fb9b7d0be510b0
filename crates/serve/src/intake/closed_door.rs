//! Stopping a TCP listener's arrivals and keeping its queue.
//!
//! Closing a TCP listener resets every connection in its accept queue,
//! and `shutdown` on it does the same. The front server has usually sent
//! its request on such a connection already (the kernel completes the
//! handshake before any accept), and nginx does not retry a POST it has
//! sent: each becomes a 502. Under a steady load a queue is never empty
//! for long, so waiting for a quiet moment still loses some (a rolling
//! restart of two hosts behind nginx lost 7 POSTs of 1,390 that way).
//!
//! A classic BPF socket filter attached to the listener stops arrivals:
//! it drops every segment that opens a connection (SYN without ACK), so
//! no new connection joins the queue, while those already in it stay and
//! are served. A peer whose SYN was dropped sends it again (after 1 s on
//! Linux) and by then finds the listener closed (refused: the front
//! server tries another host, a POST too, since nothing was sent) or a
//! new one listening. The filter belongs to the socket, so every worker
//! sharing it sees it, and a poll(2) on the listener then says truly
//! whether the queue is empty.
//!
//! Only the SYN may be dropped. Linux runs the listener's filter on every
//! segment that reaches a connection still in its handshake, too: in
//! `tcp_v4_rcv` (and `tcp_v6_rcv`), a segment for a request socket
//! (`TCP_NEW_SYN_RECV`) goes through `tcp_filter` with the listener
//! before `tcp_check_req` turns it into a connection. A filter that drops
//! everything drops the ACK that completes a handshake begun before it:
//! the peer believes it is connected and sends its request, which is
//! dropped as well, and the connection is reset when the listener closes.
//!
//! What the filter sees: `tcp_filter` hands it the segment with
//! `skb->data` at the TCP header (the IP header is already pulled), and a
//! classic BPF absolute load reads from `skb->data`; byte 13 of the TCP
//! header holds the flags (CWR ECE URG ACK PSH RST SYN FIN: ACK 0x10,
//! SYN 0x02). `tcp_v4_rcv` has made sure the whole header is there
//! before; if the load could not be done, the program would return 0 and
//! drop the segment. A return of 0 drops it; any other value is the
//! length to keep (`sk_filter_trim_cap` trims to at least the header),
//! so `u32::MAX` keeps it whole.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Offset of the flags byte in the TCP header.
const TCP_FLAGS: u32 = 13;
const SYN: u32 = 0x02;
const ACK: u32 = 0x10;

const fn instruction(code: u32, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

/// `ldb [13]; and #0x12; jeq #0x02, drop, keep; drop: ret #0; keep: ret
/// #0xffffffff`: drops a SYN without ACK, keeps every other segment.
const DROP_SYNS: [libc::sock_filter; 5] = [
    instruction(libc::BPF_LD | libc::BPF_B | libc::BPF_ABS, 0, 0, TCP_FLAGS),
    instruction(libc::BPF_ALU | libc::BPF_AND | libc::BPF_K, 0, 0, SYN | ACK),
    instruction(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, 0, 1, SYN),
    instruction(libc::BPF_RET | libc::BPF_K, 0, 0, 0),
    instruction(libc::BPF_RET | libc::BPF_K, 0, 0, u32::MAX),
];

/// Drops every new connection to the TCP listener `fd` from now on; the
/// ones already in its queue stay, and so do those whose handshake is
/// under way.
pub fn drop_new_connections(fd: BorrowedFd<'_>) -> io::Result<()> {
    attach(fd, &DROP_SYNS)
}

/// Attaches the classic BPF `program` to the socket `fd`.
fn attach(fd: BorrowedFd<'_>, program: &[libc::sock_filter]) -> io::Result<()> {
    let mut program = program.to_vec();
    let fprog = libc::sock_fprog {
        len: u16::try_from(program.len()).map_err(|_| io::ErrorKind::InvalidInput)?,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: `fprog` points at `program`, as many instructions long as
    // `len` says; both outlive the call, and the kernel copies the
    // program (and checks it: a bad one is EINVAL). `fd` is borrowed, so
    // it stays open meanwhile.
    let done = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&raw const fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if done == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether [`drop_new_connections`] was done to the socket `fd` (by this
/// process or another that shares the socket: the master).
pub(crate) fn drops_new_connections(fd: BorrowedFd<'_>) -> bool {
    let mut program = [instruction(0, 0, 0, 0); DROP_SYNS.len()];
    // In instructions, not bytes (SO_GET_FILTER's unit): the room in
    // `program`. A longer program does not fit (EINVAL) and is not ours.
    let mut len = DROP_SYNS.len() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` instructions into
    // `program`, which has room for that many, and the count into `len`;
    // both outlive the call. `fd` is borrowed, so it stays open meanwhile.
    let done = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_GET_FILTER,
            program.as_mut_ptr().cast(),
            &raw mut len,
        )
    };
    let fields = |i: &libc::sock_filter| (i.code, i.jt, i.jf, i.k);
    done == 0
        && len as usize == DROP_SYNS.len()
        && program.iter().map(fields).eq(DROP_SYNS.iter().map(fields))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{ErrorKind, Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsFd;
    use std::time::Duration;

    #[test]
    fn new_connections_are_dropped_and_queued_ones_stay() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let queued: Vec<_> = (0..3)
            .map(|_| TcpStream::connect(address).unwrap())
            .collect();
        assert!(!drops_new_connections(listener.as_fd()));

        drop_new_connections(listener.as_fd()).unwrap();
        assert!(drops_new_connections(listener.as_fd()));
        // The SYN gets no answer: the connect times out.
        let late = TcpStream::connect_timeout(&address, Duration::from_millis(300));
        assert_eq!(late.map_err(|e| e.kind()).unwrap_err(), ErrorKind::TimedOut);

        listener.set_nonblocking(true).unwrap();
        let mut accepted = 0;
        while listener.accept().is_ok() {
            accepted += 1;
        }
        assert_eq!(
            accepted,
            queued.len(),
            "the queue was kept, and nothing joined it"
        );
        drop(listener);
        // Closed: now refused.
        let after = TcpStream::connect_timeout(&address, Duration::from_secs(5));
        assert_eq!(
            after.map_err(|e| e.kind()).unwrap_err(),
            ErrorKind::ConnectionRefused
        );
    }

    /// Whether the listener has a connection to accept, waiting at most
    /// `ms` for one.
    fn queued(listener: &TcpListener, ms: u16) -> bool {
        let mut fds = [nix::poll::PollFd::new(
            listener.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        matches!(nix::poll::poll(&mut fds, ms), Ok(1..))
    }

    /// A connection whose handshake completes after the filter was
    /// attached is accepted, not left half-open to be reset at the close.
    /// TCP_DEFER_ACCEPT holds it in that state without timing: the
    /// listener ignores the bare handshake ACK and keeps the request
    /// socket until data comes, and the first data segment (it carries
    /// ACK) then completes the handshake through the listener's filter,
    /// as a late ACK would.
    #[test]
    fn a_handshake_under_way_completes() {
        for address in ["127.0.0.1:0", "[::1]:0"] {
            // A host without IPv6 tests IPv4 only.
            let Ok(listener) = TcpListener::bind(address) else {
                continue;
            };
            let seconds: libc::c_int = 30;
            // SAFETY: the option's value is a c_int on the stack, whose
            // size is passed; `listener` stays open for the call.
            let done = unsafe {
                libc::setsockopt(
                    listener.as_raw_fd(),
                    libc::IPPROTO_TCP,
                    libc::TCP_DEFER_ACCEPT,
                    (&raw const seconds).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            assert_eq!(done, 0, "{}", io::Error::last_os_error());
            let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            assert!(
                !queued(&listener, 0),
                "connected for the client, not yet for the listener"
            );

            drop_new_connections(listener.as_fd()).unwrap();
            client.write_all(b"request").unwrap();
            assert!(
                queued(&listener, 10_000),
                "{address}: the handshake completed after the filter"
            );
            let (mut served, _) = listener.accept().unwrap();
            let mut request = [0; 7];
            served.read_exact(&mut request).unwrap();
            assert_eq!(&request, b"request");
        }
    }

    #[test]
    fn another_filter_is_not_taken_for_ours() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        // `ret #65535`: keeps every packet whole.
        let keep_all = instruction(libc::BPF_RET | libc::BPF_K, 0, 0, 0xffff);
        attach(listener.as_fd(), &[keep_all]).unwrap();
        assert!(!drops_new_connections(listener.as_fd()));
        // Ours but for what it keeps of a segment.
        let mut almost = DROP_SYNS;
        almost[4].k = 0xffff;
        attach(listener.as_fd(), &almost).unwrap();
        assert!(!drops_new_connections(listener.as_fd()));
    }
}
