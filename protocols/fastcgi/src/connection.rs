//! The per-connection state machine.
//!
//! The driver feeds it the bytes it reads ([`Connection::receive`]), takes
//! the [`Event`]s it produced ([`Connection::poll_event`]) and the replies
//! it made by itself ([`Connection::take_output`]), and asks it to encode
//! the end of each request ([`Connection::end_request`]). It never does I/O
//! and never sends anything unsolicited.
//!
//! # Rules
//!
//! Checked as soon as a record's header is in (before its content arrives):
//! - version 1 only;
//! - id 0 carries management records only: BEGIN_REQUEST … DATA and the
//!   application's END_REQUEST/STDOUT/STDERR on id 0 are errors; GET_VALUES
//!   is answered with GET_VALUES_RESULT; any other type on id 0 (defined or
//!   not) is answered with UNKNOWN_TYPE;
//! - a management type on a request id is an error;
//! - END_REQUEST, STDOUT or STDERR on a request id is an error (only an
//!   application sends them);
//! - a type FastCGI 1.0 does not define, on a request id, is an error: the
//!   spec's way to extend the protocol is UNKNOWN_TYPE, which exists for
//!   management records only, so a request record of an unknown type means
//!   a peer out of step, and guessing its length of stream is unsafe.
//!
//! Checked when a whole record is in:
//! - records for an inactive id are ignored, except BEGIN_REQUEST, which
//!   starts one; BEGIN_REQUEST for an active id is an error; its body must be
//!   8 bytes;
//! - a role that is unknown or not in [`Config::roles`] gets
//!   END_REQUEST/UNKNOWN_ROLE, and the id stays inactive; a second concurrent
//!   request when [`Config::multiplex`] is off gets CANT_MPX_CONN; a request
//!   over [`Config::max_requests_per_connection`] gets OVERLOADED;
//! - PARAMS is decoded as one stream (a pair may straddle records); its
//!   total is bounded by [`Config::max_params_size`] as records arrive, and a
//!   pair whose declared lengths would pass the limit is refused before its
//!   bytes arrive; a pair running past the stream's end, or an empty name,
//!   is an error; the empty PARAMS record emits [`Event::Request`];
//! - CONTENT_LENGTH, when sent non-empty, must be decimal, and STDIN must
//!   bring exactly that many bytes (more is refused at the record that goes
//!   over, fewer at the empty STDIN record). nginx sends an empty
//!   CONTENT_LENGTH for a request without a body: that counts as absent.
//!   Absent, STDIN's end is the body's end (AUTHORIZER requests);
//! - STDIN or DATA before the PARAMS stream has ended, or any stream record
//!   after that stream's end, is an error; DATA is for FILTER requests only;
//! - ABORT_REQUEST for an active id emits [`Event::Abort`]; the driver then
//!   calls [`Connection::abort_complete`]. If the abort comes before the
//!   PARAMS stream ended, the driver has not heard of the request: the
//!   state machine ends it itself (END_REQUEST in [`Connection::take_output`])
//!   and emits nothing. After an abort, further records for the id are
//!   ignored.
//!
//! Every error is fatal: the stream of records can no longer be trusted, and
//! every later call to `receive` returns the same error.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use rustgi_model::{Param, Request};

use crate::ProtocolError;
use crate::begin::{BEGIN_REQUEST_LEN, BeginRequest, Role, Roles};
use crate::encode::{encode_end_request, encode_stderr, encode_stdout, encode_stream_end};
use crate::end::ProtocolStatus;
use crate::management::{answer_get_values, answer_unknown_type};
use crate::pairs::{FeedError, PairsDecoder};
use crate::record::{HEADER_LEN, Header, MANAGEMENT_ID, RecordType, VERSION_1};

/// The PARAMS limit the gateway uses unless told otherwise
/// (`--max-header-size`): 64 KiB, room for long cookies.
pub const DEFAULT_MAX_PARAMS_SIZE: usize = 65536;

/// What a connection accepts, and what it answers to GET_VALUES.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The roles accepted; others get END_REQUEST/UNKNOWN_ROLE.
    pub roles: Roles,
    /// The most bytes of one request's PARAMS stream (`--max-header-size`).
    pub max_params_size: usize,
    /// The most concurrent requests on one connection; beyond it, a new
    /// request gets END_REQUEST/OVERLOADED.
    pub max_requests_per_connection: usize,
    /// Reported as FCGI_MAX_CONNS; not enforced here.
    pub max_connections: usize,
    /// Reported as FCGI_MAX_REQS; not enforced here.
    pub max_requests: usize,
    /// Reported as FCGI_MPXS_CONNS; when false, a second concurrent request
    /// on a connection gets END_REQUEST/CANT_MPX_CONN.
    pub multiplex: bool,
}

impl Default for Config {
    /// Every role, 64 KiB of PARAMS, multiplexing with up to 16 requests per
    /// connection, and 64/64 reported for FCGI_MAX_CONNS/FCGI_MAX_REQS (the
    /// server overrides these from its flags).
    fn default() -> Config {
        Config {
            roles: Roles::ALL,
            max_params_size: DEFAULT_MAX_PARAMS_SIZE,
            max_requests_per_connection: 16,
            max_connections: 64,
            max_requests: 64,
            multiplex: true,
        }
    }
}

/// What the state machine tells the driver, in arrival order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The PARAMS stream is complete: the application may start.
    /// `content_length` is CONTENT_LENGTH when sent non-empty (and is then
    /// also `request.content_length`); when `None`, STDIN's end marks the
    /// body's end and `request.content_length` is 0.
    Request {
        id: u16,
        role: Role,
        keep_conn: bool,
        content_length: Option<u64>,
        request: Request,
    },
    /// Body bytes: slices of the received buffer, not copies.
    Stdin { id: u16, data: Bytes },
    /// The STDIN stream ended (exactly CONTENT_LENGTH bytes, when sent).
    StdinEnd { id: u16 },
    /// FILTER's DATA stream (the file to filter).
    Data { id: u16, data: Bytes },
    /// The DATA stream ended.
    DataEnd { id: u16 },
    /// ABORT_REQUEST for an active request: stop it, then call
    /// [`Connection::abort_complete`].
    Abort { id: u16 },
}

/// The PARAMS stream so far: the first record's content as it came (no
/// copy: nginx sends all its params in one record), copied into one buffer
/// only when a second record follows.
#[derive(Debug, Default)]
enum ParamsBuf {
    #[default]
    Empty,
    One(Bytes),
    Many(BytesMut),
}

impl ParamsBuf {
    fn len(&self) -> usize {
        self.as_slice().len()
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            ParamsBuf::Empty => &[],
            ParamsBuf::One(b) => b,
            ParamsBuf::Many(b) => b,
        }
    }

    fn push(&mut self, content: Bytes) {
        *self = match std::mem::take(self) {
            ParamsBuf::Empty => ParamsBuf::One(content),
            ParamsBuf::One(first) => {
                let mut all = BytesMut::with_capacity(first.len() + content.len());
                all.extend_from_slice(&first);
                all.extend_from_slice(&content);
                ParamsBuf::Many(all)
            }
            ParamsBuf::Many(mut all) => {
                all.extend_from_slice(&content);
                ParamsBuf::Many(all)
            }
        };
    }

    fn freeze(self) -> Bytes {
        match self {
            ParamsBuf::Empty => Bytes::new(),
            ParamsBuf::One(b) => b,
            ParamsBuf::Many(b) => b.freeze(),
        }
    }
}

/// The PARAMS stream of a request still receiving it.
#[derive(Debug, Default)]
struct ParamsState {
    buf: ParamsBuf,
    decoder: PairsDecoder,
}

/// One active request.
#[derive(Debug)]
pub(crate) struct Active<T> {
    id: u16,
    role: Role,
    keep_conn: bool,
    /// `Some` until the empty PARAMS record.
    params: Option<ParamsState>,
    content_length: Option<u64>,
    stdin_received: u64,
    stdin_ended: bool,
    data_ended: bool,
    aborted: bool,
    pub(crate) stderr_written: bool,
    /// STDOUT content not yet framed: the head waits here for the body
    /// that follows it, to share a record with it (see `response`).
    pub(crate) stdout: Vec<u8>,
    /// What the driver keeps with the request (its body pipe, its
    /// response's progress), so that it needs no map of its own.
    pub(crate) data: Option<T>,
}

/// One FastCGI connection, as seen by the application. `T` is what the
/// driver keeps with each active request ([`Connection::attach`]).
#[derive(Debug)]
pub struct Connection<T = ()> {
    config: Config,
    /// Few (one, from nginx): a linear search beats a map.
    pub(crate) requests: Vec<Active<T>>,
    events: VecDeque<Event>,
    output: Vec<u8>,
    /// Bytes consumed so far: the offset of the next record.
    offset: u64,
    /// A request without KEEP_CONN has ended.
    pub(crate) close_after: bool,
    /// A response was cut short with no other request to spare: the
    /// connection must close without pretending it ended well.
    pub(crate) cut: bool,
    failed: Option<ProtocolError>,
}

impl Connection {
    pub fn new(config: Config) -> Self {
        Connection::with_request_data(config)
    }
}

impl<T> Connection<T> {
    /// A connection whose driver keeps a `T` with each request.
    pub fn with_request_data(config: Config) -> Self {
        Connection {
            config,
            requests: Vec::new(),
            events: VecDeque::new(),
            output: Vec::new(),
            offset: 0,
            close_after: false,
            cut: false,
            failed: None,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Decodes every complete record at the front of `buf`, consuming them
    /// (a partial record stays, unless its header is already wrong), updates
    /// state, and queues events and any protocol replies. An `Err` is fatal
    /// for the connection.
    pub fn receive(&mut self, buf: &mut BytesMut) -> Result<(), ProtocolError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let result = self.receive_records(buf);
        if let Err(error) = &result {
            self.failed = Some(error.clone());
        }
        result
    }

    /// Call at EOF from the peer, after [`Connection::receive`]: bytes left
    /// in `buf` are a truncated record. Requests still active are the
    /// driver's to abandon ([`Connection::active_requests`]).
    pub fn receive_eof(&mut self, buf: &BytesMut) -> Result<(), ProtocolError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        if buf.is_empty() {
            return Ok(());
        }
        let error = match Header::parse(buf) {
            None => ProtocolError::TruncatedHeader {
                offset: self.offset,
                have: buf.len(),
            },
            Some(header) => ProtocolError::TruncatedRecord {
                offset: self.offset,
                record_type: header.record_type,
                id: header.request_id,
                have: buf.len(),
                need: header.record_len(),
            },
        };
        self.failed = Some(error.clone());
        Err(error)
    }

    /// The next event, in arrival order.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Appends the replies the state machine made by itself
    /// (GET_VALUES_RESULT, UNKNOWN_TYPE, END_REQUEST for a refused request or
    /// one aborted before its PARAMS ended) to `out`.
    pub fn take_output(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.output);
    }

    /// Whether [`Connection::take_output`] has something to give.
    pub fn has_output(&self) -> bool {
        !self.output.is_empty()
    }

    /// Appends `data` as STDOUT for request `id` if it is active; returns
    /// whether it was. (Free function: [`encode_stdout`].)
    pub fn write_stdout(&mut self, id: u16, data: &[u8], out: &mut Vec<u8>) -> bool {
        if !self.is_active(id) {
            return false;
        }
        encode_stdout(id, data, out);
        true
    }

    /// Appends `data` as STDERR for request `id` if it is active, and
    /// remembers to close the STDERR stream at the end; returns whether the
    /// request was active.
    pub fn write_stderr(&mut self, id: u16, data: &[u8], out: &mut Vec<u8>) -> bool {
        let Some(i) = self.index(id) else {
            return false;
        };
        if !data.is_empty() {
            self.requests[i].stderr_written = true;
            encode_stderr(id, data, out);
        }
        true
    }

    /// Ends request `id` (only while active; otherwise writes nothing):
    /// closes STDERR if [`Connection::write_stderr`] wrote to it, writes the
    /// empty STDOUT record that closes the response, then
    /// END_REQUEST/REQUEST_COMPLETE with `app_status`. The id is free at once:
    /// the web server may reuse it in its next record.
    pub fn end_request(&mut self, id: u16, app_status: u32, out: &mut Vec<u8>) -> Option<T> {
        let i = self.index(id)?;
        let request = self.requests.swap_remove(i);
        if request.stderr_written {
            encode_stream_end(RecordType::Stderr, id, out);
        }
        encode_stream_end(RecordType::Stdout, id, out);
        encode_end_request(id, app_status, ProtocolStatus::RequestComplete, out);
        if !request.keep_conn {
            self.close_after = true;
        }
        request.data
    }

    /// Ends request `id` whose response was cut short: END_REQUEST with
    /// appStatus 1 and its STDOUT left open. That is what nginx reads as a
    /// truncated response ("upstream prematurely closed FastCGI request"),
    /// closing its client's connection, buffered or not, kept or not;
    /// after a closed STDOUT, or at a bare close, it may instead keep its
    /// client waiting for the missing bytes (checked with nginx 1.22).
    pub fn end_request_truncated(&mut self, id: u16, out: &mut Vec<u8>) -> Option<T> {
        let i = self.index(id)?;
        let request = self.requests.swap_remove(i);
        if request.stderr_written {
            encode_stream_end(RecordType::Stderr, id, out);
        }
        encode_end_request(id, 1, ProtocolStatus::RequestComplete, out);
        request.data
    }

    /// Ends request `id` after [`Event::Abort`]: as
    /// [`Connection::end_request`] with appStatus 0. Returns what the
    /// driver kept with it.
    pub fn abort_complete(&mut self, id: u16, out: &mut Vec<u8>) -> Option<T> {
        self.end_request(id, 0, out)
    }

    /// Keeps `data` with active request `id` (its body pipe, its response's
    /// progress); gives it back when the request is not active (it ended).
    pub fn attach(&mut self, id: u16, data: T) -> Result<(), T> {
        match self.index(id) {
            Some(i) => {
                self.requests[i].data = Some(data);
                Ok(())
            }
            None => Err(data),
        }
    }

    /// Takes back what the driver kept with active request `id` (to
    /// [`attach`](Self::attach) it again after encoding its response).
    pub fn detach(&mut self, id: u16) -> Option<T> {
        let i = self.index(id)?;
        self.requests[i].data.take()
    }

    /// What the driver keeps with active request `id`.
    pub fn request_data(&mut self, id: u16) -> Option<&mut T> {
        let i = self.index(id)?;
        self.requests[i].data.as_mut()
    }

    /// What the driver keeps with each active request, for the
    /// connection's end (each is to be told).
    pub fn take_request_data(&mut self) -> impl Iterator<Item = T> + '_ {
        self.requests.iter_mut().filter_map(|r| r.data.take())
    }

    /// Whether a request the driver has started (its PARAMS are complete)
    /// still receives its body: reads are then bounded by the body timeout.
    pub fn receiving_body(&self) -> bool {
        self.requests
            .iter()
            .any(|r| r.params.is_none() && !r.stdin_ended && !r.aborted)
    }

    /// How many requests the driver has heard of ([`Event::Request`]) and
    /// that have not ended.
    pub fn started_requests(&self) -> usize {
        self.requests.iter().filter(|r| r.params.is_none()).count()
    }

    /// True once a response was cut short with no other request on the
    /// connection: close it at once, without a graceful shutdown.
    pub fn response_cut(&self) -> bool {
        self.cut
    }

    /// Whether request `id` is active: from its accepted BEGIN_REQUEST until
    /// it ends.
    pub fn is_active(&self, id: u16) -> bool {
        self.index(id).is_some()
    }

    /// How many requests are active.
    pub fn active_requests(&self) -> usize {
        self.requests.len()
    }

    /// True when a request without KEEP_CONN has ended (or was refused) and
    /// no request is active: the application closes the connection.
    pub fn should_close(&self) -> bool {
        self.cut || (self.close_after && self.requests.is_empty())
    }

    /// Bytes consumed so far (whole records).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub(crate) fn index(&self, id: u16) -> Option<usize> {
        self.requests.iter().position(|r| r.id == id)
    }

    fn receive_records(&mut self, buf: &mut BytesMut) -> Result<(), ProtocolError> {
        while let Some(header) = Header::parse(buf) {
            self.check_header(&header)?;
            let len = header.record_len();
            if buf.len() < len {
                break;
            }
            let record = buf.split_to(len).freeze();
            let content = record.slice(HEADER_LEN..HEADER_LEN + usize::from(header.content_length));
            let offset = self.offset;
            self.offset += len as u64;
            self.dispatch(header, content, offset)?;
        }
        Ok(())
    }

    /// What the header alone shows.
    fn check_header(&self, header: &Header) -> Result<(), ProtocolError> {
        use RecordType::*;
        let offset = self.offset;
        let record_type = header.record_type;
        let id = header.request_id;
        if header.version != VERSION_1 {
            return Err(ProtocolError::BadVersion {
                offset,
                version: header.version,
            });
        }
        match (header.known_type(), id) {
            (Some(t), MANAGEMENT_ID) if !t.is_management() => {
                Err(ProtocolError::RequestTypeOnManagementId {
                    offset,
                    record_type,
                })
            }
            (_, MANAGEMENT_ID) => Ok(()),
            (Some(t), _) if t.is_management() => Err(ProtocolError::ManagementTypeOnRequestId {
                offset,
                record_type,
                id,
            }),
            (Some(EndRequest | Stdout | Stderr), _) => Err(ProtocolError::ApplicationType {
                offset,
                record_type,
                id,
            }),
            (None, _) => Err(ProtocolError::UnknownType {
                offset,
                record_type,
                id,
            }),
            (Some(_), _) => Ok(()),
        }
    }

    fn dispatch(
        &mut self,
        header: Header,
        content: Bytes,
        offset: u64,
    ) -> Result<(), ProtocolError> {
        let id = header.request_id;
        if id == MANAGEMENT_ID {
            if header.record_type == RecordType::GetValues as u8 {
                return answer_get_values(&content, &self.config, &mut self.output)
                    .map_err(|error| ProtocolError::GetValues { offset, error });
            }
            answer_unknown_type(header.record_type, &mut self.output);
            return Ok(());
        }
        match header.known_type() {
            Some(RecordType::BeginRequest) => self.begin(id, &content, offset),
            Some(RecordType::AbortRequest) => {
                self.abort(id);
                Ok(())
            }
            Some(RecordType::Params) => self.params(id, content, offset),
            Some(RecordType::Stdin) => self.stdin(id, content, offset),
            Some(RecordType::Data) => self.data(id, content, offset),
            // Refused by check_header.
            _ => Ok(()),
        }
    }

    fn begin(&mut self, id: u16, content: &[u8], offset: u64) -> Result<(), ProtocolError> {
        let Some(body) = BeginRequest::parse(content) else {
            return Err(ProtocolError::BadBodyLength {
                offset,
                record_type: RecordType::BeginRequest as u8,
                id,
                length: u16::try_from(content.len()).unwrap_or(u16::MAX),
                expected: BEGIN_REQUEST_LEN as u16,
            });
        };
        if self.is_active(id) {
            return Err(ProtocolError::DuplicateBegin { offset, id });
        }
        let role = Role::from_code(body.role).filter(|&r| self.config.roles.contains(r));
        let refusal = match role {
            None => Some(ProtocolStatus::UnknownRole),
            Some(_) if !self.config.multiplex && !self.requests.is_empty() => {
                Some(ProtocolStatus::CantMpxConn)
            }
            Some(_) if self.requests.len() >= self.config.max_requests_per_connection => {
                Some(ProtocolStatus::Overloaded)
            }
            Some(_) => None,
        };
        match (role, refusal) {
            (Some(role), None) => self.requests.push(Active {
                id,
                role,
                keep_conn: body.keep_conn(),
                params: Some(ParamsState::default()),
                content_length: None,
                stdin_received: 0,
                stdin_ended: false,
                data_ended: false,
                aborted: false,
                stderr_written: false,
                stdout: Vec::new(),
                data: None,
            }),
            (_, status) => {
                let status = status.unwrap_or(ProtocolStatus::UnknownRole);
                encode_end_request(id, 0, status, &mut self.output);
                if !body.keep_conn() {
                    self.close_after = true;
                }
            }
        }
        Ok(())
    }

    fn abort(&mut self, id: u16) {
        let Some(i) = self.index(id) else {
            return;
        };
        let request = &mut self.requests[i];
        if request.aborted {
            return;
        }
        if request.params.is_none() {
            request.aborted = true;
            self.events.push_back(Event::Abort { id });
            return;
        }
        // The driver has not heard of this request yet: end it here.
        let request = self.requests.swap_remove(i);
        encode_end_request(id, 0, ProtocolStatus::RequestComplete, &mut self.output);
        if !request.keep_conn {
            self.close_after = true;
        }
    }

    fn params(&mut self, id: u16, content: Bytes, offset: u64) -> Result<(), ProtocolError> {
        let Some(i) = self.index(id) else {
            return Ok(());
        };
        let limit = self.config.max_params_size;
        let request = &mut self.requests[i];
        if request.aborted {
            return Ok(());
        }
        let Some(state) = request.params.as_mut() else {
            // A repeated end marker is harmless (see `stdin`).
            if content.is_empty() {
                return Ok(());
            }
            return Err(ProtocolError::AfterStreamEnd {
                offset,
                record_type: RecordType::Params as u8,
                id,
            });
        };
        if !content.is_empty() {
            let size = state.buf.len() as u64 + content.len() as u64;
            if size > limit as u64 {
                return Err(ProtocolError::ParamsTooLarge {
                    offset,
                    id,
                    size,
                    limit,
                });
            }
            state.buf.push(content);
            return state
                .decoder
                .feed(state.buf.as_slice(), limit)
                .map_err(|e| match e {
                    FeedError::Pair(error) => ProtocolError::Params { offset, id, error },
                    FeedError::OverLimit { size } => ProtocolError::ParamsTooLarge {
                        offset,
                        id,
                        size,
                        limit,
                    },
                });
        }
        // The empty record: the stream is complete.
        let ParamsState { buf, decoder } = request.params.take().unwrap_or_default();
        let stream = buf.freeze();
        let ranges = decoder
            .finish(&stream)
            .map_err(|error| ProtocolError::Params { offset, id, error })?;
        let params: Vec<Param> = ranges
            .into_iter()
            .map(|(name, value)| Param {
                name: stream.slice(name),
                value: stream.slice(value),
            })
            .collect();
        let content_length = content_length(id, &params)?;
        request.content_length = content_length;
        self.events.push_back(Event::Request {
            id,
            role: request.role,
            keep_conn: request.keep_conn,
            content_length,
            request: Request {
                params,
                content_length: content_length.unwrap_or(0),
                warnings: Vec::new(),
            },
        });
        Ok(())
    }

    fn stdin(&mut self, id: u16, content: Bytes, offset: u64) -> Result<(), ProtocolError> {
        let Some(i) = self.index(id) else {
            return Ok(());
        };
        let request = &mut self.requests[i];
        let record_type = RecordType::Stdin as u8;
        if request.aborted {
            return Ok(());
        }
        if request.params.is_some() {
            return Err(ProtocolError::BeforeParamsEnd {
                offset,
                record_type,
                id,
            });
        }
        if request.stdin_ended {
            // The fastcgi-client crate ends an empty body with two empty
            // STDIN records; PHP-FPM skips such repeats too. Only data after
            // the end is an error.
            if content.is_empty() {
                return Ok(());
            }
            return Err(ProtocolError::AfterStreamEnd {
                offset,
                record_type,
                id,
            });
        }
        let received = request.stdin_received;
        if content.is_empty() {
            match request.content_length {
                Some(content_length) if received < content_length => {
                    return Err(ProtocolError::StdinShort {
                        offset,
                        id,
                        received,
                        content_length,
                    });
                }
                _ => {}
            }
            request.stdin_ended = true;
            self.events.push_back(Event::StdinEnd { id });
            return Ok(());
        }
        let received = received + content.len() as u64;
        match request.content_length {
            Some(content_length) if received > content_length => {
                return Err(ProtocolError::StdinOverLength {
                    offset,
                    id,
                    received,
                    content_length,
                });
            }
            _ => {}
        }
        request.stdin_received = received;
        self.events.push_back(Event::Stdin { id, data: content });
        Ok(())
    }

    fn data(&mut self, id: u16, content: Bytes, offset: u64) -> Result<(), ProtocolError> {
        let Some(i) = self.index(id) else {
            return Ok(());
        };
        let request = &mut self.requests[i];
        let record_type = RecordType::Data as u8;
        if request.aborted {
            return Ok(());
        }
        if request.params.is_some() {
            return Err(ProtocolError::BeforeParamsEnd {
                offset,
                record_type,
                id,
            });
        }
        if request.role != Role::Filter {
            return Err(ProtocolError::DataWithoutFilter {
                offset,
                id,
                role: request.role,
            });
        }
        if request.data_ended {
            if content.is_empty() {
                return Ok(());
            }
            return Err(ProtocolError::AfterStreamEnd {
                offset,
                record_type,
                id,
            });
        }
        if content.is_empty() {
            request.data_ended = true;
            self.events.push_back(Event::DataEnd { id });
        } else {
            self.events.push_back(Event::Data { id, data: content });
        }
        Ok(())
    }
}

/// CONTENT_LENGTH by the policy every protocol shares.
fn content_length(id: u16, params: &[Param]) -> Result<Option<u64>, ProtocolError> {
    rustgi_model::content_length(params).map_err(|error| ProtocolError::ContentLength { id, error })
}
