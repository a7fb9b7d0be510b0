//! The load loop: one thread, non-blocking Unix sockets and epoll.
//!
//! Connection-per-request protocols make the client pay for a socket's
//! whole life on every request (socket, connect, close: most of its CPU is
//! in the kernel), so the loop adds as little as it can: one epoll_ctl per
//! socket (closing it deregisters it), no read that can only say EAGAIN,
//! each request's bytes encoded once up front and written with one call.

use crate::ajp;
use crate::proto::{Event, Proto, RecordReader};
use crate::response::{Check, Expect};
use std::collections::BTreeMap;
use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

const IN: u32 = libc::EPOLLIN as u32;
const OUT: u32 = libc::EPOLLOUT as u32;

pub struct Plan {
    pub proto: Proto,
    pub request: Vec<u8>,
    /// The request body (AJP sends all but its first packet as asked).
    pub body: Vec<u8>,
    pub expect: Expect,
    pub connections: usize,
    pub measure_from: Instant,
    pub end: Instant,
    pub timeout: Duration,
    /// Stop after starting this many requests.
    pub limit: Option<u64>,
}

/// What the run saw.
#[derive(Default)]
pub struct Tally {
    /// Completed within the measured window.
    pub requests: u64,
    /// Completed at all (warm-up and the tail after the window included).
    pub total: u64,
    pub latencies_us: Vec<u32>,
    pub errors: BTreeMap<&'static str, u64>,
    pub first_error: Option<String>,
    pub connects: u64,
    pub connect_retries: u64,
    /// Kept FastCGI connections the backend had closed, replaced.
    pub reconnects: u64,
    pub stderr_bytes: u64,
}

impl Tally {
    fn error(&mut self, kind: &'static str, message: String) {
        *self.errors.entry(kind).or_default() += 1;
        self.first_error
            .get_or_insert_with(|| format!("{kind}: {message}"));
    }
}

/// One request in flight.
struct Conn {
    stream: UnixStream,
    /// Request bytes written so far.
    written: usize,
    /// Waiting for EPOLLOUT (a large request body) rather than EPOLLIN.
    polling_out: bool,
    begin: Instant,
    check: Check,
    reader: RecordReader,
    ajp: ajp::Reader,
    /// AJP: body packets asked for (GET_BODY_CHUNK), not yet written.
    more: Vec<u8>,
    /// AJP: body bytes sent so far.
    body_sent: usize,
    received: usize,
    /// A kept connection that already carried a request.
    reused: bool,
}

#[derive(Default)]
struct Slot {
    conn: Option<Conn>,
    /// After an error or a full backlog: no new request before this.
    wait_until: Option<Instant>,
    done: bool,
}

enum Outcome {
    Pending,
    /// Complete and correct; whether the connection may be kept.
    Done(bool),
    /// A kept connection closed before any byte of the answer.
    Closed,
    Failed(&'static str, String),
}

/// A non-blocking connect; a full listen backlog is `WouldBlock` (Unix
/// sockets never give EINPROGRESS).
fn connect(addr: &libc::sockaddr_un) -> io::Result<UnixStream> {
    // SAFETY: plain socket(2); the fd is owned by the UnixStream at once.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let stream = unsafe { UnixStream::from_raw_fd(fd) };
    // SAFETY: addr is a valid sockaddr_un of the size we pass.
    let rc = unsafe {
        libc::connect(
            fd,
            (addr as *const libc::sockaddr_un).cast(),
            size_of::<libc::sockaddr_un>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(stream)
}

pub fn socket_address(path: &Path) -> Result<libc::sockaddr_un, String> {
    // SAFETY: an all-zero sockaddr_un is valid.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_encoded_bytes();
    if bytes.len() >= addr.sun_path.len() {
        return Err(format!("socket path too long: {}", path.display()));
    }
    for (dst, &src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    Ok(addr)
}

struct Engine<'p> {
    plan: &'p Plan,
    addr: libc::sockaddr_un,
    epoll: OwnedFd,
    tally: Tally,
    started: u64,
    buf: Vec<u8>,
}

fn epoll_ctl(epoll: &OwnedFd, op: libc::c_int, fd: RawFd, events: u32, slot: usize) {
    let mut ev = libc::epoll_event {
        events,
        u64: slot as u64,
    };
    // SAFETY: both fds are open; ev is a valid epoll_event.
    let rc = unsafe { libc::epoll_ctl(epoll.as_raw_fd(), op, fd, &mut ev) };
    assert!(rc == 0, "epoll_ctl: {}", io::Error::last_os_error());
}

pub fn run(plan: &Plan, addr: libc::sockaddr_un) -> Tally {
    // SAFETY: plain epoll_create1; the fd is owned at once.
    let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(epoll >= 0, "epoll_create1: {}", io::Error::last_os_error());
    let mut e = Engine {
        plan,
        addr,
        // SAFETY: a fresh descriptor nobody else owns.
        epoll: unsafe { OwnedFd::from_raw_fd(epoll) },
        tally: Tally::default(),
        started: 0,
        buf: vec![0; 64 * 1024],
    };
    let mut slots: Vec<Slot> = (0..plan.connections.max(1))
        .map(|_| Slot::default())
        .collect();
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; slots.len()];
    loop {
        let now = Instant::now();
        let mut wake = now + Duration::from_millis(100);
        for (i, slot) in slots.iter_mut().enumerate() {
            if slot.conn.is_none() && !slot.done && slot.wait_until.is_none_or(|t| t <= now) {
                e.start(i, slot, None, now);
            }
            if let Some(c) = &slot.conn {
                if now - c.begin > plan.timeout {
                    slot.conn = None;
                    let message = format!("no complete response in {:?}", plan.timeout);
                    e.fail(slot, "timeout", message);
                } else {
                    wake = wake.min(c.begin + plan.timeout);
                }
            }
            if let Some(t) = slot.wait_until.filter(|_| !slot.done) {
                wake = wake.min(t);
            }
        }
        if slots.iter().all(|s| s.done && s.conn.is_none()) {
            break;
        }
        let ms = wake
            .saturating_duration_since(now)
            .as_millis()
            .clamp(1, 100) as libc::c_int;
        // SAFETY: events is a valid array of events.len() epoll_event structs.
        let ready = unsafe {
            libc::epoll_wait(
                e.epoll.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as libc::c_int,
                ms,
            )
        };
        for ev in &events[..ready.max(0) as usize] {
            let i = ev.u64 as usize;
            e.progress(i, &mut slots[i]);
        }
    }
    e.tally
}

impl Engine<'_> {
    /// Starts the next request in a free slot (on `kept`, a connection kept
    /// from the last one, if any), unless the run is over.
    fn start(&mut self, idx: usize, slot: &mut Slot, kept: Option<UnixStream>, now: Instant) {
        let over = now >= self.plan.end || self.plan.limit.is_some_and(|l| self.started >= l);
        if over {
            slot.done = true;
            return;
        }
        slot.wait_until = None;
        let reused = kept.is_some();
        let stream = match kept {
            Some(s) => s,
            None => match connect(&self.addr) {
                Ok(s) => {
                    self.tally.connects += 1;
                    // Closing the socket takes it out of the epoll set.
                    epoll_ctl(&self.epoll, libc::EPOLL_CTL_ADD, s.as_raw_fd(), IN, idx);
                    s
                }
                Err(err) if err.kind() == ErrorKind::WouldBlock => {
                    // Listen backlog full: try again shortly.
                    self.tally.connect_retries += 1;
                    slot.wait_until = Some(now + Duration::from_millis(1));
                    return;
                }
                Err(err) => return self.fail(slot, "connect", err.to_string()),
            },
        };
        self.started += 1;
        slot.conn = Some(Conn {
            stream,
            written: 0,
            polling_out: false,
            begin: now,
            check: Check::new(),
            reader: RecordReader::default(),
            ajp: ajp::Reader::default(),
            more: Vec::new(),
            body_sent: self.plan.body.len().min(ajp::BODY_CHUNK),
            received: 0,
            reused,
        });
        // The socket is usually writable at once: write without waiting.
        self.progress(idx, slot);
    }

    fn fail(&mut self, slot: &mut Slot, kind: &'static str, message: String) {
        self.tally.error(kind, message);
        // Do not spin on a broken backend.
        slot.wait_until = Some(Instant::now() + Duration::from_millis(10));
    }

    /// Moves the slot's request on as far as the socket allows.
    fn progress(&mut self, idx: usize, slot: &mut Slot) {
        let Some(conn) = slot.conn.as_mut() else {
            return;
        };
        match self.step(idx, conn) {
            Outcome::Pending => {}
            Outcome::Done(keep) => {
                let conn = slot.conn.take().expect("busy slot");
                let done = Instant::now();
                self.tally.total += 1;
                if conn.begin >= self.plan.measure_from && done <= self.plan.end {
                    self.tally.requests += 1;
                    let us = (done - conn.begin).as_micros().min(u32::MAX as u128);
                    self.tally.latencies_us.push(us as u32);
                }
                self.start(idx, slot, keep.then_some(conn.stream), done);
            }
            Outcome::Closed => {
                slot.conn = None;
                self.tally.reconnects += 1;
                self.started -= 1; // the same request again, on a new connection
                self.start(idx, slot, None, Instant::now());
            }
            Outcome::Failed(kind, message) => {
                slot.conn = None;
                self.fail(slot, kind, message);
            }
        }
    }

    fn step(&mut self, idx: usize, c: &mut Conn) -> Outcome {
        let interest = |c: &Conn, events| {
            epoll_ctl(
                &self.epoll,
                libc::EPOLL_CTL_MOD,
                c.stream.as_raw_fd(),
                events,
                idx,
            );
        };
        let plan = self.plan;
        let keep = plan.proto == Proto::FastcgiKeep;
        let unsent = c.written < plan.request.len() || !c.more.is_empty();
        if unsent {
            loop {
                let out = if c.written < plan.request.len() {
                    &plan.request[c.written..]
                } else if !c.more.is_empty() {
                    &c.more[..]
                } else {
                    break;
                };
                match c.stream.write(out) {
                    Ok(n) if c.written < plan.request.len() => c.written += n,
                    Ok(n) => drop(c.more.drain(..n)),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        if !c.polling_out {
                            c.polling_out = true;
                            interest(c, OUT);
                        }
                        return Outcome::Pending;
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) if c.reused && e.kind() == ErrorKind::BrokenPipe => {
                        return Outcome::Closed;
                    }
                    Err(e) => return Outcome::Failed("io", format!("write: {e}")),
                }
            }
            if c.polling_out {
                c.polling_out = false;
                interest(c, IN);
            }
            // The answer cannot be there yet: wait for epoll rather than
            // spend a read on EAGAIN.
            return Outcome::Pending;
        }
        if plan.proto == Proto::Ajp {
            return self.step_ajp(idx, c);
        }
        loop {
            let n = match read_some(c, &mut self.buf) {
                ReadResult::Bytes(n) => n,
                ReadResult::Again => continue,
                ReadResult::Stop(outcome) => return outcome,
            };
            if n == 0 {
                return match plan.proto {
                    Proto::Scgi | Proto::Uwsgi => match c.check.finish(&plan.expect) {
                        Ok(()) => Outcome::Done(false),
                        Err(e) => Outcome::Failed("response", e),
                    },
                    Proto::Fastcgi | Proto::FastcgiKeep | Proto::Ajp => {
                        Outcome::Failed("protocol", "connection closed before END_REQUEST".into())
                    }
                };
            }
            c.received += n;
            let data = &self.buf[..n];
            if let Proto::Scgi | Proto::Uwsgi = plan.proto {
                if let Err(e) = c.check.feed(&plan.expect, data) {
                    return Outcome::Failed("response", e);
                }
                continue;
            }
            let mut ended = None;
            let mut bad_response = false;
            let check = &mut c.check;
            let stderr = &mut self.tally.stderr_bytes;
            let fed = c.reader.feed(1, data, |event| match event {
                Event::Stdout(b) => check.feed(&plan.expect, b).inspect_err(|_| {
                    bad_response = true;
                }),
                Event::Stderr(b) => {
                    *stderr += b.len() as u64;
                    Ok(())
                }
                Event::End(app, status) => {
                    ended = Some((app, status));
                    Ok(())
                }
            });
            let used = match fed {
                Ok(used) => used,
                Err(e) if bad_response => return Outcome::Failed("response", e),
                Err(e) => return Outcome::Failed("protocol", e),
            };
            if let Some((_, status)) = ended {
                if status != 0 {
                    return Outcome::Failed(
                        "protocol",
                        format!("END_REQUEST protocolStatus {status}"),
                    );
                }
                if used != n {
                    return Outcome::Failed(
                        "protocol",
                        format!("{} bytes after END_REQUEST", n - used),
                    );
                }
                return match c.check.finish(&plan.expect) {
                    Ok(()) => Outcome::Done(keep),
                    Err(e) => Outcome::Failed("response", e),
                };
            }
        }
    }

    /// AJP: the request was written by `step`; reads the container's
    /// packets, answers GET_BODY_CHUNK with the body's next packet.
    fn step_ajp(&mut self, idx: usize, c: &mut Conn) -> Outcome {
        let plan = self.plan;
        loop {
            let n = match read_some(c, &mut self.buf) {
                ReadResult::Bytes(n) => n,
                ReadResult::Again => continue,
                ReadResult::Stop(outcome) => return outcome,
            };
            if n == 0 {
                return Outcome::Failed("protocol", "connection closed before END_RESPONSE".into());
            }
            c.received += n;
            let mut ended = None;
            let mut bad_response = false;
            let check = &mut c.check;
            let (more, body_sent) = (&mut c.more, &mut c.body_sent);
            let fed = c.ajp.feed(&self.buf[..n], |event| match event {
                ajp::Event::Head(head) => check.feed(&plan.expect, &head).inspect_err(|_| {
                    bad_response = true;
                }),
                ajp::Event::Body(b) => check.feed(&plan.expect, b).inspect_err(|_| {
                    bad_response = true;
                }),
                ajp::Event::GetBody(want) => {
                    let rest = &plan.body[*body_sent..];
                    let next = &rest[..rest.len().min(want).min(ajp::BODY_CHUNK)];
                    *body_sent += next.len();
                    more.extend(ajp::body_packet(next));
                    Ok(())
                }
                ajp::Event::End(reuse) => {
                    ended = Some(reuse);
                    Ok(())
                }
            });
            let used = match fed {
                Ok(used) => used,
                Err(e) if bad_response => return Outcome::Failed("response", e),
                Err(e) => return Outcome::Failed("protocol", e),
            };
            if let Some(reuse) = ended {
                if used != n {
                    return Outcome::Failed(
                        "protocol",
                        format!("{} bytes after END_RESPONSE", n - used),
                    );
                }
                return match c.check.finish(&plan.expect) {
                    Ok(()) => Outcome::Done(reuse),
                    Err(e) => Outcome::Failed("response", e),
                };
            }
            if !c.more.is_empty() {
                // Body packets asked for: written now, or on EPOLLOUT.
                while !c.more.is_empty() {
                    match c.stream.write(&c.more) {
                        Ok(n) => drop(c.more.drain(..n)),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            c.polling_out = true;
                            let fd = c.stream.as_raw_fd();
                            epoll_ctl(&self.epoll, libc::EPOLL_CTL_MOD, fd, OUT, idx);
                            return Outcome::Pending;
                        }
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => return Outcome::Failed("io", format!("write: {e}")),
                    }
                }
            }
        }
    }
}

/// What one read on a connection gave.
enum ReadResult {
    /// `n` bytes; 0 is the end of the stream, which the protocol judges.
    Bytes(usize),
    /// Interrupted: read again.
    Again,
    /// Nothing to read yet, a kept connection the backend closed before a
    /// byte of this response (replaced, not a failure), or an error.
    Stop(Outcome),
}

/// Reads into `buf`, with the cases every protocol treats alike.
fn read_some(c: &mut Conn, buf: &mut [u8]) -> ReadResult {
    let closed_unused = c.reused && c.received == 0;
    match c.stream.read(buf) {
        Ok(0) if closed_unused => ReadResult::Stop(Outcome::Closed),
        Ok(n) => ReadResult::Bytes(n),
        Err(e) if e.kind() == ErrorKind::WouldBlock => ReadResult::Stop(Outcome::Pending),
        Err(e) if e.kind() == ErrorKind::Interrupted => ReadResult::Again,
        Err(e) if closed_unused && e.kind() == ErrorKind::ConnectionReset => {
            ReadResult::Stop(Outcome::Closed)
        }
        Err(e) => ReadResult::Stop(Outcome::Failed("io", format!("read: {e}"))),
    }
}
