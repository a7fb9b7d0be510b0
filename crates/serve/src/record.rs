//! The per-request record: begun where a request is decoded (every lane,
//! every protocol, CGI mode), filled in by the flow as the response's
//! events pass (status, headers, bytes, first byte), and finished when the
//! flow is dropped, which is when the request truly ends: its last byte
//! handed to the sink, or its connection failed. [`observe_finished`] is
//! the one place a finished record goes.

use bytes::Bytes;
use rustgi_model::{Request, ResponseHead};
use rustgi_observe::access::{self, Destination, Format, Record, Verdict, Writer, WriterConfig};
use rustgi_observe::{Ended, Front, board};
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime};

/// What operators asked to see of each request (the flags).
#[derive(Clone, Debug, Default)]
pub struct ObserveConfig {
    /// `--access-log`: `None` is off.
    pub access_log: Option<Destination>,
    /// `--access-log-format` (`combined` when `None`).
    pub access_log_format: Option<Format>,
    /// `--request-id-header`: a header the front server sets, trusted
    /// for the request id.
    pub request_id_header: Option<String>,
}

struct Observing {
    writer: Option<Writer>,
    /// Request headers the format shows: (name as written, CGI name).
    request_headers: Vec<(String, Vec<u8>)>,
    response_headers: Vec<String>,
    /// The CGI name of `--request-id-header`.
    id_param: Option<Vec<u8>>,
}

static OBSERVING: OnceLock<Observing> = OnceLock::new();

/// Starts what `config` asks for in this process (a worker, after the
/// fork: the writer is a thread). Once per process; the first call wins.
pub fn start(config: &ObserveConfig) -> std::io::Result<()> {
    if OBSERVING.get().is_some() {
        return Ok(());
    }
    let format = config.access_log_format.clone().unwrap_or_default();
    let writer = match &config.access_log {
        Some(destination) => Some(Writer::start(WriterConfig {
            destination: destination.clone(),
            format: format.clone(),
            queue: QUEUE,
            report: Box::new(|line| tracing::warn!("{line}")),
        })?),
        None => None,
    };
    let observing = Observing {
        request_headers: format
            .request_headers()
            .into_iter()
            .map(|h| {
                let cgi = access::cgi_name(&h);
                (h, cgi)
            })
            .collect(),
        response_headers: format.response_headers(),
        writer,
        id_param: config.request_id_header.as_deref().map(access::cgi_name),
    };
    let _first_wins = OBSERVING.set(observing);
    Ok(())
}

/// Writes what is queued, as the process ends.
pub fn stop() {
    if let Some(writer) = OBSERVING.get().and_then(|o| o.writer.as_ref()) {
        writer.stop(std::time::Duration::from_secs(2));
    }
}

/// Bytes of lines waiting for the writer at most; beyond, lines are
/// dropped and counted (a stuck disk must not grow memory).
const QUEUE: usize = 4 << 20;

/// Where every finished record goes: the access log and the worker's
/// counters on the scoreboard. Nowhere else.
pub(crate) fn observe_finished(record: &Record<'_>) {
    if let Some(writer) = OBSERVING.get().and_then(|o| o.writer.as_ref()) {
        writer.submit(record);
    }
    board::finished(&counted(record));
}

/// What the scoreboard counts of a record: its figures, none of its
/// text.
fn counted(record: &Record<'_>) -> board::Finished {
    board::Finished {
        front: record.front,
        status: record.status.unwrap_or(0),
        ended: record.ended,
        duration: record.duration,
        request_bytes: record.request_bytes,
        response_bytes: record.response_bytes,
    }
}

/// Whether records are wanted at all (otherwise none is built): for the
/// access log, or for the scoreboard's counters (a worker the master
/// gave a slot).
fn wanted() -> Option<&'static Observing> {
    OBSERVING
        .get()
        .filter(|o| o.writer.is_some() || board::attached())
}

/// The most bytes a trusted request id may have.
const ID_LIMIT: usize = 128;

/// The request's id: the trusted header's when it is printable ASCII of
/// at most [`ID_LIMIT`] bytes, otherwise generated.
pub(crate) fn request_id(request: &Request, id: u64) -> Bytes {
    if let Some(value) = trusted_id(request) {
        return value.clone();
    }
    let generated = generated(id);
    if OBSERVING
        .get()
        .and_then(|o| o.id_param.as_deref())
        .is_some_and(|param| request.param(param).is_some())
    {
        tracing::debug!(
            request = %crate::named::Shown(&generated),
            "the request id header's value is empty, over {ID_LIMIT} bytes or not printable ASCII: generated one"
        );
    }
    generated
}

/// The trusted header's value, when it may be the request's id (see
/// [`request_id`]): the log names a request the same way without a copy.
pub(crate) fn trusted_id(request: &Request) -> Option<&Bytes> {
    let param = OBSERVING.get()?.id_param.as_deref()?;
    request.param(param).filter(|value| {
        !value.is_empty() && value.len() <= ID_LIMIT && value.iter().all(|b| b.is_ascii_graphic())
    })
}

/// `<8 random base-32 characters, one set per process>-<the process's
/// request number>`: unique across workers and restarts, short, and its
/// number counts the requests of this process.
fn generated(id: u64) -> Bytes {
    let prefix = id_prefix();
    let mut digits = [0; 20];
    let number = access::decimal(id, &mut digits);
    // Exactly as long as it will be: `Bytes` takes it without a second
    // allocation (`format!` cost more than the rest of the id).
    let mut text = Vec::with_capacity(prefix.len() + 1 + number.len());
    text.extend_from_slice(prefix.as_bytes());
    text.push(b'-');
    text.extend_from_slice(number);
    Bytes::from(text)
}

/// The part of a generated id that is the same for each request of this
/// process.
pub(crate) fn id_prefix() -> &'static str {
    static PREFIX: OnceLock<String> = OnceLock::new();
    PREFIX.get_or_init(process_prefix)
}

/// Drawn after the fork (a worker's first request), so no two processes
/// share one.
fn process_prefix() -> String {
    use std::io::Read;
    let mut seed = [0u8; 8];
    let random = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut seed));
    let mut bits = u64::from_le_bytes(seed);
    if random.is_err() {
        // No /dev/urandom (a chroot): the pid and the time differ enough.
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        bits = now.as_nanos() as u64 ^ (u64::from(std::process::id()) << 40);
    }
    const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
    (0..8)
        .map(|i| ALPHABET[((bits >> (i * 5)) & 31) as usize] as char)
        .collect()
}

/// A request's record while it runs: what the flow fills in. It holds
/// the request itself (shared, not copied): the line borrows from it.
#[derive(Debug)]
pub(crate) struct Trail {
    request: Arc<Request>,
    request_id: Bytes,
    front: Front,
    time: SystemTime,
    started: Instant,
    status: Option<u16>,
    first_byte: Option<std::time::Duration>,
    response_bytes: u64,
    /// The response headers the format shows, as the head had them.
    response_headers: Vec<(&'static str, Bytes)>,
    verdict: Arc<Verdict>,
    observing: &'static Observing,
}

impl std::fmt::Debug for Observing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Observing")
    }
}

/// The headers of a live request, for the line: request headers from its
/// CGI parameters, response headers as the flow saw them.
struct LiveHeaders<'a> {
    request: &'a Request,
    observing: &'a Observing,
    /// The values of the format's first [`PASS_HEADERS`] request
    /// headers, found in the record's one pass over the parameters.
    found: &'a [Option<&'a [u8]>; PASS_HEADERS],
    response: &'a [(&'static str, Bytes)],
}

/// Request headers of the format looked for in the record's one pass
/// over the parameters (the named formats have two); any more are looked
/// up one by one.
const PASS_HEADERS: usize = 6;

impl access::Headers for LiveHeaders<'_> {
    fn request(&self, name: &str) -> Option<&[u8]> {
        let (i, (_, cgi)) = self
            .observing
            .request_headers
            .iter()
            .enumerate()
            // The formats ask by the name they listed: the exact match
            // first (a memcmp), any case second.
            .find(|(_, (n, _))| n == name)
            .or_else(|| {
                self.observing
                    .request_headers
                    .iter()
                    .enumerate()
                    .find(|(_, (n, _))| n.eq_ignore_ascii_case(name))
            })?;
        match self.found.get(i) {
            Some(value) => *value,
            None => self.request.param(cgi).map(|v| v.as_ref()),
        }
    }

    fn response(&self, name: &str) -> Option<&[u8]> {
        self.response
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref())
    }
}

impl Trail {
    /// Begins the record of `request` (`None` when no record is wanted).
    pub(crate) fn begin(request: &Arc<Request>, front: Front, request_id: &Bytes) -> Option<Trail> {
        let observing = wanted()?;
        Some(Trail {
            request: request.clone(),
            request_id: request_id.clone(),
            front,
            // Only a line shows it (the wall clock is the dearer one).
            time: match observing.writer {
                Some(_) => SystemTime::now(),
                None => SystemTime::UNIX_EPOCH,
            },
            started: Instant::now(),
            status: None,
            first_byte: None,
            response_bytes: 0,
            response_headers: Vec::new(),
            verdict: Arc::new(Verdict::default()),
            observing,
        })
    }

    /// The request as the daemon's log lines name it (`#ID METHOD URI`,
    /// see `crate::named`), for a line that has only the record at hand.
    pub(crate) fn name(&self) -> String {
        let field = |name: &[u8]| {
            let value = self.request.param(name);
            rustgi_model::show::request_field(value.map_or(&[][..], |v| v.as_ref())).to_string()
        };
        let uri = match self.request.param(b"REQUEST_URI") {
            Some(_) => field(b"REQUEST_URI"),
            None => field(b"DOCUMENT_URI"),
        };
        format!(
            "#{} {} {uri}",
            String::from_utf8_lossy(&self.request_id),
            field(b"REQUEST_METHOD")
        )
    }

    /// For the Python side (core), which knows what the bytes do not tell.
    pub(crate) fn verdict(&self) -> Arc<Verdict> {
        self.verdict.clone()
    }

    /// The response head is going out.
    pub(crate) fn head(&mut self, head: &ResponseHead) {
        if self.status.is_some() {
            return;
        }
        self.status = Some(head.status_code());
        self.first_byte = Some(self.started.elapsed());
        for wanted in &self.observing.response_headers {
            if let Some(value) = head.header(wanted) {
                self.response_headers.push((wanted.as_str(), value.clone()));
            }
        }
    }

    pub(crate) fn body(&mut self, len: usize) {
        self.response_bytes += len as u64;
    }

    /// The front server aborted the request (FastCGI ABORT_REQUEST).
    pub(crate) fn aborted(&self) {
        self.verdict.set(Ended::Aborted);
    }

    /// The request ended before it went to a Python thread (no flow
    /// carries it): `ended` says how.
    pub(crate) fn not_run(&self, ended: Ended) {
        self.verdict.set(ended);
        self.finish(None, false);
    }

    /// The request is over: `ending` as the flow saw it, `gone` when its
    /// connection failed.
    pub(crate) fn finish(&self, ending: Option<crate::flow::Ending>, gone: bool) {
        use crate::flow::Ending;
        let ended = match (self.verdict.get(), ending) {
            (Some(ended), _) => ended,
            _ if gone => Ended::ClientGone,
            (None, Some(Ending::Complete)) => Ended::Complete,
            // Cut after its head without a word from the Python side: a
            // body short of its Content-Length.
            (None, Some(Ending::Aborted)) => Ended::AppError,
            // Never ended: its channel closed (the worker stopping).
            (None, None) => Ended::Aborted,
        };
        let request = &*self.request;
        let mut record = Record {
            time: self.time,
            request_id: &self.request_id,
            remote: &[],
            method: &[],
            path: &[],
            query: &[],
            protocol: &[],
            status: self.status,
            response_bytes: self.response_bytes,
            request_bytes: request.content_length,
            duration: self.started.elapsed(),
            first_byte: self.first_byte,
            pid: access::pid(),
            front: self.front,
            ended,
            headers: &access::NO_HEADERS,
        };
        if self.observing.writer.is_none() {
            // Only the scoreboard: its figures need no pass over the
            // parameters (the pass cost more than the rest of the record).
            board::finished(&counted(&record));
            return;
        }
        // One pass over the parameters (each `param` would be one): the
        // fields, then the format's request headers. A `match` on the
        // names compares lengths, then the bytes inline (a search of a
        // list of names called memcmp: the pass cost as much as the line).
        let mut fixed: [Option<&[u8]>; 7] = [None; 7];
        let mut found: [Option<&[u8]>; PASS_HEADERS] = [None; PASS_HEADERS];
        let wanted = &self.observing.request_headers;
        let wanted = &wanted[..wanted.len().min(PASS_HEADERS)];
        for param in &request.params {
            let name = param.name.as_ref();
            let i = match name {
                b"REQUEST_URI" => 0,
                b"DOCUMENT_URI" => 1,
                b"SCRIPT_NAME" => 2,
                b"REMOTE_ADDR" => 3,
                b"REQUEST_METHOD" => 4,
                b"QUERY_STRING" => 5,
                b"SERVER_PROTOCOL" => 6,
                _ => {
                    if let Some(i) = wanted.iter().position(|(_, cgi)| cgi == name) {
                        found[i].get_or_insert(param.value.as_ref());
                    }
                    continue;
                }
            };
            fixed[i].get_or_insert(param.value.as_ref());
        }
        let [
            uri,
            document_uri,
            script_name,
            remote,
            method,
            query,
            protocol,
        ] = fixed;
        let uri = uri.or(document_uri).or(script_name).unwrap_or_default();
        let path = uri.split(|&b| b == b'?').next().unwrap_or_default();
        let headers = LiveHeaders {
            request,
            observing: self.observing,
            found: &found,
            response: &self.response_headers,
        };
        record.remote = remote.unwrap_or_default();
        record.method = method.unwrap_or_default();
        record.path = path;
        record.query = query.unwrap_or_default();
        record.protocol = protocol.unwrap_or_default();
        record.headers = &headers;
        observe_finished(&record);
    }
}
