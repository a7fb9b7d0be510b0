//! The master's HTTP endpoint: `--metrics` (TCP or a Unix socket path)
//! and the status socket that `rustgi-gateway status --pidfile` reaches
//! (an abstract Unix socket named from the master's pid, answering only
//! its own user and root). Served from the master's poll(2) loop: every
//! socket is non-blocking, a connection has [`HEAD_DEADLINE`] to send its
//! request head and [`DEADLINE`] to read the answer, and at most
//! [`MAX_CONNECTIONS`] are open at once: when full, a new connection
//! replaces the oldest one still without a whole head (idle connections
//! cannot lock a scraper out), or is closed if every one has its head.
//! The answer is made from the scoreboard, so it never waits for a
//! worker, busy or not.
//!
//! `GET /metrics` (Prometheus), `GET /status.json` (the status page's
//! data), `GET /status.txt` (the status command's text), `GET /` (the
//! status page); another path is a 404, another method a 405.

use nix::poll::{PollFd, PollFlags};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A scraper that has not sent its request and read the answer by then is
/// dropped.
const DEADLINE: Duration = Duration::from_secs(5);
/// A connection that has not sent a whole request head by then is dropped
/// (a scraper sends it at once).
const HEAD_DEADLINE: Duration = Duration::from_secs(1);
/// Connections accepted from one listener per wake-up of the master, so
/// that a flood of them does not hold up its other duties.
const MAX_ACCEPTS: usize = 16;
/// Unread input read and dropped before a close, at most (a close with
/// unread input resets the connection, and the peer may lose the answer).
const MAX_DRAIN: usize = 64 * 1024;
/// Connections open at once, all listeners together.
const MAX_CONNECTIONS: usize = 32;
/// A request head longer than this is refused.
const MAX_HEAD: usize = 8 * 1024;

/// Where `--metrics` listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetricsAddr {
    Tcp(String),
    Unix(PathBuf),
}

impl MetricsAddr {
    /// A path (it has a `/`) or HOST:PORT.
    pub fn parse(spec: &str) -> MetricsAddr {
        if spec.contains('/') {
            MetricsAddr::Unix(PathBuf::from(spec))
        } else {
            MetricsAddr::Tcp(spec.to_string())
        }
    }
}

impl std::fmt::Display for MetricsAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MetricsAddr::Tcp(addr) => write!(f, "{addr}"),
            MetricsAddr::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

/// The abstract socket name of the status socket of master `pid`.
pub fn status_socket_name(pid: u32) -> String {
    format!("rustgi-gateway/{pid}/status")
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
    /// The status socket: peers are checked (same uid, or root).
    Status(UnixListener),
}

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn io(&mut self) -> &mut dyn ReadWrite {
        match self {
            Stream::Tcp(s) => s,
            Stream::Unix(s) => s,
        }
    }

    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.as_fd(),
            Stream::Unix(s) => s.as_fd(),
        }
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

struct Conn {
    stream: Stream,
    head: Vec<u8>,
    /// The answer, once the head is in.
    answer: Option<Vec<u8>>,
    written: usize,
    accepted: Instant,
    deadline: Instant,
}

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Page {
    Metrics,
    StatusJson,
    StatusText,
    Html,
}

/// The master's listeners and their connections.
pub struct Endpoint {
    listeners: Vec<Listener>,
    conns: Vec<Conn>,
    /// A `--metrics` socket file we created, removed when dropped.
    created: Option<PathBuf>,
}

impl Endpoint {
    /// Binds `--metrics` (if given) and the status socket. A `--metrics`
    /// that cannot be bound is an error (said with the address); a status
    /// socket that cannot is only logged.
    pub fn bind(metrics: Option<&MetricsAddr>) -> Result<Endpoint, String> {
        let mut endpoint = Endpoint {
            listeners: Vec::new(),
            conns: Vec::new(),
            created: None,
        };
        match metrics {
            Some(MetricsAddr::Tcp(addr)) => {
                let listener = bind_tcp(addr).map_err(|e| format!("--metrics {addr}: {e}"))?;
                endpoint.listeners.push(Listener::Tcp(listener));
            }
            Some(MetricsAddr::Unix(path)) => {
                let listener =
                    bind_unix(path).map_err(|e| format!("--metrics {}: {e}", path.display()))?;
                endpoint.created = Some(path.clone());
                endpoint.listeners.push(Listener::Unix(listener));
            }
            None => {}
        }
        match bind_status(std::process::id()) {
            Ok(listener) => endpoint.listeners.push(Listener::Status(listener)),
            Err(e) => tracing::warn!(
                "the status socket (for `rustgi-gateway status --pidfile`) could not be bound: {e}"
            ),
        }
        Ok(endpoint)
    }

    /// The descriptors to poll, in the order [`Endpoint::ready`] takes
    /// their results.
    pub fn poll_fds(&self) -> Vec<PollFd<'_>> {
        let mut fds: Vec<PollFd<'_>> = self
            .listeners
            .iter()
            .map(|l| {
                let fd = match l {
                    Listener::Tcp(l) => l.as_fd(),
                    Listener::Unix(l) | Listener::Status(l) => l.as_fd(),
                };
                PollFd::new(fd, PollFlags::POLLIN)
            })
            .collect();
        for conn in &self.conns {
            let events = if conn.answer.is_some() {
                PollFlags::POLLOUT
            } else {
                PollFlags::POLLIN
            };
            fds.push(PollFd::new(conn.stream.fd(), events));
        }
        fds
    }

    /// The next connection deadline, if any connection is open.
    pub fn deadline(&self) -> Option<Instant> {
        self.conns.iter().map(|c| c.deadline).min()
    }

    /// Acts on what poll(2) said (`ready[i]`: descriptor `i` of
    /// [`Endpoint::poll_fds`] has something; empty when nothing was),
    /// answering with `answer`; drops connections done or past their
    /// deadline. Called on every pass of the master's loop.
    pub fn ready(&mut self, ready: &[bool], answer: &mut dyn FnMut(Page) -> Vec<u8>) {
        let listeners = self.listeners.len();
        for (i, conn) in self.conns.iter_mut().enumerate() {
            if ready.get(listeners + i) == Some(&true) {
                conn.step(answer);
            }
        }
        self.expire(Instant::now());
        for i in 0..listeners {
            if ready.get(i) == Some(&true) {
                self.accept(i);
            }
        }
    }

    /// Closes the connections that are done or past their deadline.
    fn expire(&mut self, now: Instant) {
        self.conns.retain_mut(|c| {
            let keep = !c.done() && c.deadline > now;
            if !keep {
                c.drain();
            }
            keep
        });
    }

    /// Room for one more connection: true if there is, or if the oldest
    /// connection still without a whole head was closed to make it.
    fn make_room(&mut self) -> bool {
        if self.conns.len() < MAX_CONNECTIONS {
            return true;
        }
        let oldest = self
            .conns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.answer.is_none())
            .min_by_key(|(_, c)| c.accepted)
            .map(|(i, _)| i);
        match oldest {
            Some(i) => {
                self.conns.remove(i).drain();
                true
            }
            None => false,
        }
    }

    fn accept(&mut self, listener: usize) {
        for _ in 0..MAX_ACCEPTS {
            let stream = match &self.listeners[listener] {
                Listener::Tcp(l) => l.accept().map(|(s, _)| Stream::Tcp(s)),
                Listener::Unix(l) => l.accept().map(|(s, _)| Stream::Unix(s)),
                Listener::Status(l) => match l.accept() {
                    Ok((s, _)) if peer_allowed(&s) => Ok(Stream::Unix(s)),
                    Ok(_) => continue,
                    Err(e) => Err(e),
                },
            };
            let stream = match stream {
                Ok(stream) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => continue,
                Err(e) => {
                    tracing::debug!("metrics endpoint: accept failed: {e}");
                    return;
                }
            };
            if !self.make_room() {
                tracing::debug!(
                    "metrics endpoint: {MAX_CONNECTIONS} connections open, each answering; one more closed"
                );
                continue;
            }
            let nonblocking = match &stream {
                Stream::Tcp(s) => s.set_nonblocking(true),
                Stream::Unix(s) => s.set_nonblocking(true),
            };
            if nonblocking.is_err() {
                continue;
            }
            let now = Instant::now();
            self.conns.push(Conn {
                stream,
                head: Vec::new(),
                answer: None,
                written: 0,
                accepted: now,
                deadline: now + HEAD_DEADLINE,
            });
        }
    }

    /// Closes every connection and listener (a forked worker's copy).
    pub fn close_in_child(mut self) {
        // The socket file is the master's to remove.
        self.created = None;
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        if let Some(path) = self.created.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Conn {
    /// Reads and drops what the peer sent and we did not read, without
    /// waiting, before the close (DESIGN's close rule: a close with unread
    /// input resets the connection, and the answer may be lost).
    fn drain(&mut self) {
        let _ = match &self.stream {
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Write),
        };
        let mut buf = [0u8; 4096];
        let mut drained = 0;
        while drained < MAX_DRAIN {
            match self.stream.io().read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => drained += n,
            }
        }
    }

    fn done(&self) -> bool {
        self.answer
            .as_ref()
            .is_some_and(|a| self.written >= a.len())
    }

    fn step(&mut self, answer: &mut dyn FnMut(Page) -> Vec<u8>) {
        if self.answer.is_none() {
            let mut buf = [0u8; 2048];
            loop {
                match self.stream.io().read(&mut buf) {
                    Ok(0) => {
                        // Closed before a whole head: nothing to answer.
                        self.answer = Some(Vec::new());
                        return;
                    }
                    Ok(n) => self.head.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        self.answer = Some(Vec::new());
                        return;
                    }
                }
                if self.head.len() > MAX_HEAD {
                    break;
                }
            }
            let Some(reply) = respond(&self.head, answer) else {
                return;
            };
            self.answer = Some(reply);
            self.deadline = self.accepted + DEADLINE;
        }
        let Some(reply) = &self.answer else { return };
        while self.written < reply.len() {
            match self.stream.io().write(&reply[self.written..]) {
                Ok(0) => break,
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.written = reply.len();
                    return;
                }
            }
        }
    }
}

/// The whole answer to a request head, or None while it is incomplete.
pub fn respond(head: &[u8], answer: &mut dyn FnMut(Page) -> Vec<u8>) -> Option<Vec<u8>> {
    let end = head.windows(4).position(|w| w == b"\r\n\r\n");
    let end = match end {
        Some(end) => end,
        None if head.len() > MAX_HEAD => {
            return Some(reply(
                "431 Request Header Fields Too Large",
                "text/plain",
                b"too large\n",
                false,
            ));
        }
        None => return None,
    };
    let line = head[..end]
        .split(|&b| b == b'\n')
        .next()
        .unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    let page = match path {
        b"/metrics" => Some(Page::Metrics),
        b"/status.json" => Some(Page::StatusJson),
        b"/status.txt" => Some(Page::StatusText),
        b"/" => Some(Page::Html),
        _ => None,
    };
    let head_only = method == b"HEAD";
    if method != b"GET" && !head_only {
        return Some(reply(
            "405 Method Not Allowed",
            "text/plain",
            b"only GET\n",
            false,
        ));
    }
    let Some(page) = page else {
        return Some(reply(
            "404 Not Found",
            "text/plain",
            b"not found: try /metrics, /status.json, /status.txt or /\n",
            head_only,
        ));
    };
    let body = answer(page);
    let kind = match page {
        Page::Metrics => "text/plain; version=0.0.4; charset=utf-8",
        Page::StatusJson => "application/json",
        Page::StatusText => "text/plain; charset=utf-8",
        Page::Html => "text/html; charset=utf-8",
    };
    Some(reply("200 OK", kind, &body, head_only))
}

fn reply(status: &str, kind: &str, body: &[u8], head_only: bool) -> Vec<u8> {
    let allow = if status.starts_with("405") {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n{allow}Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

fn bind_tcp(addr: &str) -> io::Result<TcpListener> {
    let addrs: Vec<SocketAddr> = addr.to_socket_addrs()?.collect();
    let listener = TcpListener::bind(&addrs[..])?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Binds a Unix socket path; a stale socket file (nobody accepts on it)
/// is replaced, a live one is an error.
fn bind_unix(path: &Path) -> io::Result<UnixListener> {
    let listener = match UnixListener::bind(path) {
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            if UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "another process listens on it",
                ));
            }
            let is_socket = {
                use std::os::unix::fs::FileTypeExt;
                std::fs::symlink_metadata(path)?.file_type().is_socket()
            };
            if !is_socket {
                return Err(e);
            }
            std::fs::remove_file(path)?;
            UnixListener::bind(path)?
        }
        other => other?,
    };
    listener.set_nonblocking(true)?;
    Ok(listener)
}

fn bind_status(pid: u32) -> io::Result<UnixListener> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(status_socket_name(pid))?;
    let listener = UnixListener::bind_addr(&addr)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// The status socket answers its own user and root only: it shows request
/// paths and queries.
fn peer_allowed(stream: &UnixStream) -> bool {
    let Ok(peer) = nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerCredentials)
    else {
        return false;
    };
    peer.uid() == 0 || peer.uid() == nix::unistd::geteuid().as_raw()
}

/// Fetches `path` from a master: over `--metrics` (HOST:PORT or a socket
/// path) or over the status socket of master `pid`. For `rustgi-gateway
/// status`.
pub fn fetch(from: &Source, path: &str) -> io::Result<Vec<u8>> {
    let mut stream: Box<dyn ReadWrite> = match from {
        Source::Metrics(MetricsAddr::Tcp(addr)) => {
            let stream = connect_tcp(addr)?;
            stream.set_read_timeout(Some(DEADLINE))?;
            stream.set_write_timeout(Some(DEADLINE))?;
            Box::new(stream)
        }
        Source::Metrics(MetricsAddr::Unix(path)) => {
            let stream = UnixStream::connect(path)?;
            stream.set_read_timeout(Some(DEADLINE))?;
            stream.set_write_timeout(Some(DEADLINE))?;
            Box::new(stream)
        }
        Source::Pid(pid) => {
            use std::os::linux::net::SocketAddrExt;
            let addr =
                std::os::unix::net::SocketAddr::from_abstract_name(status_socket_name(*pid))?;
            let stream = UnixStream::connect_addr(&addr)?;
            // Anyone can bind an abstract name: the one listening must be
            // the master the pidfile names, or what it says is not asked.
            let peer =
                nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials)?;
            if peer.pid() != *pid as libc::pid_t {
                return Err(io::Error::other(format!(
                    "the status socket of {pid} is held by process {} (uid {}), not by the master",
                    peer.pid(),
                    peer.uid()
                )));
            }
            stream.set_read_timeout(Some(DEADLINE))?;
            stream.set_write_timeout(Some(DEADLINE))?;
            Box::new(stream)
        }
    };
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: rustgi\r\nConnection: close\r\n\r\n"
    )?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply)?;
    let end = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| io::Error::other("no HTTP answer"))?;
    if !reply.starts_with(b"HTTP/1.1 200") {
        let line = String::from_utf8_lossy(reply.split(|&b| b == b'\r').next().unwrap_or_default())
            .into_owned();
        return Err(io::Error::other(format!("the server answered {line}")));
    }
    Ok(reply[end + 4..].to_vec())
}

/// Connects to the first address of `addr` that answers within
/// [`DEADLINE`] each (an unreachable one would otherwise take the
/// system's minutes).
fn connect_tcp(addr: &str) -> io::Result<TcpStream> {
    let mut last = io::Error::other(format!("{addr}: no address"));
    for one in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&one, DEADLINE) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Which master `rustgi-gateway status` asks.
pub enum Source {
    Metrics(MetricsAddr),
    Pid(u32),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(head: &[u8]) -> Option<String> {
        respond(head, &mut |page| format!("{page:?}").into_bytes())
            .map(|r| String::from_utf8(r).unwrap())
    }

    #[test]
    fn pages_and_refusals() {
        let ok = ask(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(ok.contains("version=0.0.4"));
        assert!(ok.ends_with("\r\n\r\nMetrics"));
        assert!(
            ask(b"GET /status.json?x=1 HTTP/1.1\r\n\r\n")
                .unwrap()
                .ends_with("StatusJson")
        );
        assert!(ask(b"GET / HTTP/1.0\r\n\r\n").unwrap().ends_with("Html"));
        assert!(
            ask(b"GET /nope HTTP/1.1\r\n\r\n")
                .unwrap()
                .starts_with("HTTP/1.1 404")
        );
        let post = ask(b"POST /metrics HTTP/1.1\r\n\r\n").unwrap();
        assert!(post.starts_with("HTTP/1.1 405"));
        assert!(post.contains("Allow: GET, HEAD\r\n"));
        let head = ask(b"HEAD /metrics HTTP/1.1\r\n\r\n").unwrap();
        assert!(head.ends_with("\r\n\r\n") && head.contains("Content-Length: 7"));
    }

    #[test]
    fn an_incomplete_head_waits_and_a_huge_one_is_refused() {
        assert!(ask(b"GET /metrics HTTP/1.1\r\n").is_none());
        let huge = vec![b'a'; MAX_HEAD + 1];
        assert!(ask(&huge).unwrap().starts_with("HTTP/1.1 431"));
    }

    #[test]
    fn a_live_unix_socket_is_not_taken_over_and_a_stale_one_is() {
        let dir = tempdir();
        let path = dir.join("m.sock");
        let live = bind_unix(&path).unwrap();
        assert!(bind_unix(&path).is_err());
        drop(live);
        // The file stays, nobody accepts: stale.
        assert!(path.exists());
        bind_unix(&path).unwrap();
        let _ = std::fs::remove_dir_all(dir);
    }

    fn tempdir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "rustgi-endpoint-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
