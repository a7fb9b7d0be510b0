//! The built `rustgi-gateway --proto fastcgi` against an independent FastCGI
//! client, the `fastcgi-client` crate, in keep-alive mode (FCGI_KEEP_CONN):
//! many requests, GETs and POSTs with bodies, over ONE connection, then a
//! SIGTERM that must end the gateway with exit code 0.
//!
//! The application is the integration suite's conformance app
//! (tests/apps/conformance.py), whose routes are wrapped in
//! wsgiref.validate.validator.
//!
//! Requests without a body are sent the way the crate's own examples do
//! (`io::empty()`): fastcgi-client 0.12 then sends two empty STDIN records
//! (the empty body's record, then the end-of-stream record). PHP-FPM skips
//! such stray empty STDIN records; the gateway has to accept them too.

use std::fs::File;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fastcgi_client::{Client, Params, Request, io};
use tokio::net::UnixStream;

/// Whole-test limit: past it a watchdog kills the gateway, so a hang turns
/// into a failed request instead of a stuck `cargo test`.
const WATCHDOG: Duration = Duration::from_secs(120);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Gateway {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
}

impl Gateway {
    fn start(name: &str) -> Gateway {
        let dir = std::env::temp_dir();
        let tag = format!("rustgi-{name}-{}", std::process::id());
        let socket = dir.join(format!("{tag}.sock"));
        let log = dir.join(format!("{tag}.log"));
        let _ = std::fs::remove_file(&socket);
        let out = File::create(&log).expect("create the gateway log");
        let err = out.try_clone().expect("clone the log file");
        let app = repo_root().join("tests/apps/conformance.py");
        let child = Command::new(env!("CARGO_BIN_EXE_rustgi-gateway"))
            .arg("--proto")
            .arg("fastcgi")
            .arg("--socket")
            .arg(&socket)
            .arg("--app")
            .arg(&app)
            .arg("--threads")
            .arg("2")
            .env_remove("PYTHONPATH")
            .env_remove("PYTHONHOME")
            .env_remove("VIRTUAL_ENV")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn rustgi-gateway");
        let mut gateway = Gateway { child, socket, log };
        gateway.wait_listening(Duration::from_secs(30));
        gateway
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_listening(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!(
                    "gateway exited with {status} before listening:\n{}",
                    self.log_text()
                );
            }
            if StdUnixStream::connect(&self.socket).is_ok() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "gateway not listening on {:?} after {timeout:?}:\n{}",
                    self.socket,
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn pid(&self) -> libc::pid_t {
        self.child.id() as libc::pid_t
    }

    fn sigterm_and_wait(&mut self, timeout: Duration) -> ExitStatus {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        assert_eq!(rc, 0, "kill(SIGTERM) failed");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > deadline {
                panic!(
                    "gateway still running {timeout:?} after SIGTERM:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.socket);
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// Kills `pid` with SIGKILL unless `done` is set within `limit`.
fn watchdog(pid: libc::pid_t, limit: Duration) -> Arc<AtomicBool> {
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    std::thread::spawn(move || {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if flag.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if !flag.load(Ordering::SeqCst) {
            eprintln!("watchdog: killing the gateway after {limit:?}");
            // SAFETY: kill(2) on the gateway child's pid.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    });
    done
}

/// A CGI-style response: `Status: ...` and headers, a blank line, the body.
#[derive(Debug)]
struct CgiResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl CgiResponse {
    fn parse(raw: &[u8]) -> CgiResponse {
        let end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| {
                panic!(
                    "no end of head in {:?}",
                    String::from_utf8_lossy(&raw[..raw.len().min(300)])
                )
            });
        let head = std::str::from_utf8(&raw[..end]).expect("head is ASCII");
        let mut status = 200;
        let mut headers = Vec::new();
        for line in head.split("\r\n") {
            let (name, value) = line
                .split_once(':')
                .unwrap_or_else(|| panic!("bad header line {line:?}"));
            let (name, value) = (name.trim().to_string(), value.trim().to_string());
            if name.eq_ignore_ascii_case("status") {
                status = value
                    .split(' ')
                    .next()
                    .unwrap()
                    .parse()
                    .expect("numeric status");
            } else {
                headers.push((name, value));
            }
        }
        CgiResponse {
            status,
            headers,
            body: raw[end + 4..].to_vec(),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The params nginx's stock fastcgi_params would send for `method path?query`.
fn params<'a>(
    method: &'a str,
    path: &'a str,
    query: &'a str,
    content_type: &'a str,
    length: usize,
) -> Params<'a> {
    let uri = if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{query}")
    };
    Params::default()
        .request_method(method)
        .script_name(path)
        .script_filename(format!("/srv{path}"))
        .query_string(query)
        .request_uri(uri)
        .document_uri(path)
        .document_root("/srv")
        .remote_addr("127.0.0.1")
        .remote_port(40000)
        .server_addr("127.0.0.1")
        .server_port(80)
        .server_name("localhost")
        .content_type(content_type)
        .content_length(length)
        .custom("REQUEST_SCHEME", "http")
        .custom("HTTP_HOST", "localhost")
}

/// Deterministic bytes of every value, for request bodies.
fn body_of(len: usize, seed: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 31 + seed * 7) % 251) as u8)
        .collect()
}

#[tokio::test(flavor = "current_thread")]
async fn keep_alive_gets_and_posts_then_sigterm() {
    let mut gateway = Gateway::start("fcgi-client");
    let done = watchdog(gateway.pid(), WATCHDOG);

    let stream = UnixStream::connect(&gateway.socket)
        .await
        .expect("connect to the gateway");
    let mut client = Client::new_keep_alive_tokio(stream);
    let mut served = 0;

    // 50 GETs over the one connection, with a 404 and an environ dump mixed in.
    for i in 0..50 {
        let (path, query) = match i % 10 {
            3 => ("/nowhere", ""),
            7 => ("/environ", ""),
            _ => ("/hello", ""),
        };
        let output = client
            .execute(Request::new(params("GET", path, query, "", 0), io::empty()))
            .await
            .unwrap_or_else(|e| panic!("GET #{i} {path} failed: {e}\n{}", gateway.log_text()));
        let stdout = output.stdout.unwrap_or_default();
        let response = CgiResponse::parse(&stdout);
        match path {
            "/hello" => {
                assert_eq!(response.status, 200, "GET #{i}: {response:?}");
                assert_eq!(response.body, b"hello", "GET #{i}");
                assert_eq!(response.header("Content-Length"), Some("5"), "GET #{i}");
            }
            "/nowhere" => {
                assert_eq!(response.status, 404, "GET #{i}: {response:?}");
                assert_eq!(response.body, b"no route for '/nowhere'", "GET #{i}");
            }
            _ => {
                assert_eq!(response.status, 200, "GET #{i}: {response:?}");
                let environ = String::from_utf8(response.body).unwrap();
                assert!(
                    environ.contains(r#""PATH_INFO": "/environ""#),
                    "GET #{i}: {environ}"
                );
                assert!(
                    environ.contains(r#""SCRIPT_NAME": """#),
                    "GET #{i}: {environ}"
                );
                assert!(
                    environ.contains(r#""REQUEST_METHOD": "GET""#),
                    "GET #{i}: {environ}"
                );
            }
        }
        served += 1;
    }

    // POSTs with bodies: empty, small, one byte over a record (65535), and
    // several records' worth; echoed back whole.
    for (n, len) in [0usize, 1, 100, 65_536, 300_000].into_iter().enumerate() {
        let body = body_of(len, n);
        let output = client
            .execute(Request::new(
                params("POST", "/echo", "", "application/x-test", len),
                io::Cursor::new(body.clone()),
            ))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "POST #{n} of {len} bytes failed: {e}\n{}",
                    gateway.log_text()
                )
            });
        let response = CgiResponse::parse(&output.stdout.unwrap_or_default());
        assert_eq!(response.status, 200, "POST #{n}: {:?}", response.headers);
        assert_eq!(
            response.header("Content-Type"),
            Some("application/x-test"),
            "POST #{n}"
        );
        assert_eq!(
            response.header("Content-Length"),
            Some(len.to_string().as_str()),
            "POST #{n}"
        );
        assert!(
            response.body == body,
            "POST #{n}: echoed body of {} bytes differs from the {len} sent",
            response.body.len()
        );
        served += 1;

        // and a GET after each POST, on the same connection
        let output = client
            .execute(Request::new(
                params("GET", "/hello", "x=1", "", 0),
                io::empty(),
            ))
            .await
            .unwrap_or_else(|e| panic!("GET after POST #{n} failed: {e}\n{}", gateway.log_text()));
        let response = CgiResponse::parse(&output.stdout.unwrap_or_default());
        assert_eq!(
            (response.status, response.body.as_slice()),
            (200, &b"hello"[..])
        );
        served += 1;
    }

    // /sha256 reads the body in pieces of varying sizes and checks that
    // reading past its end gives b''.
    let body = body_of(200_000, 9);
    let output = client
        .execute(Request::new(
            params(
                "POST",
                "/sha256",
                "",
                "application/octet-stream",
                body.len(),
            ),
            io::Cursor::new(body),
        ))
        .await
        .unwrap_or_else(|e| panic!("POST /sha256 failed: {e}\n{}", gateway.log_text()));
    let response = CgiResponse::parse(&output.stdout.unwrap_or_default());
    assert_eq!(response.status, 200);
    let text = String::from_utf8(response.body).unwrap();
    assert!(text.ends_with(" 200000 past_end=0"), "{text}");
    served += 1;
    assert_eq!(served, 50 + 5 * 2 + 1);

    drop(client);
    done.store(true, Ordering::SeqCst);

    let status = gateway.sigterm_and_wait(Duration::from_secs(30));
    assert_eq!(
        status.code(),
        Some(0),
        "exit after SIGTERM: {status}\n{}",
        gateway.log_text()
    );
    assert!(
        !gateway.socket.exists(),
        "the socket file is still there after exit"
    );
}
