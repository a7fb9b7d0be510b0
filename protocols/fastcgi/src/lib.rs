//! FastCGI 1.0 (Open Market, 1996), the application's side.
//!
//! A connection carries records; each belongs to a request id (0 for
//! management records):
//!
//! ```text
//! record  = version:1 type:u8 requestId:u16be contentLength:u16be
//!           paddingLength:u8 reserved:u8 content padding
//! request = BEGIN_REQUEST (role, KEEP_CONN flag)
//!           PARAMS* empty-PARAMS      ; name-value pairs, as one stream
//!           STDIN*  empty-STDIN       ; the body
//!           [DATA* empty-DATA]        ; FILTER only
//!           [ABORT_REQUEST]
//! answer  = STDOUT* empty-STDOUT [STDERR* empty-STDERR]
//!           END_REQUEST (appStatus, protocolStatus)
//! ```
//!
//! The response in STDOUT is CGI style (`Status: 200 OK\r\n`, headers,
//! blank line, body). Requests may be multiplexed on one connection, and
//! with KEEP_CONN the web server keeps the connection for the next request.
//!
//! This crate does no I/O (no sockets, no logging, no Python), in the manner
//! of `quinn-proto`: the driver feeds the bytes it reads to a
//! [`Connection`], takes [`Event`]s and the replies the state machine made
//! by itself, and writes the bytes the encoders produce. That keeps it
//! testable on byte fixtures captured from nginx and fuzzable in isolation.
//!
//! Decoding is incremental and zero-copy: a partial record stays in the
//! buffer; STDIN data and params are slices of the received bytes (PARAMS
//! is copied only when it spans several records); what breaks the protocol
//! is a [`ProtocolError`] as soon as the bytes show it, and no length field
//! can make the decoder allocate beyond [`Config::max_params_size`].
//!
//! Modules: `record` (headers, types, padding), `pairs` (name-value pairs),
//! `begin`/`end` (request bodies), `management` (GET_VALUES, UNKNOWN_TYPE),
//! `encode` (STDOUT/STDERR/END_REQUEST), `connection` (the state machine),
//! [`client`] (the web server's side, for tests).

#![forbid(unsafe_code)]

mod begin;
pub mod client;
mod connection;
mod encode;
mod end;
mod error;
mod management;
mod pairs;
mod record;
mod response;

pub use begin::{BEGIN_REQUEST_LEN, BeginRequest, KEEP_CONN, Role, Roles};
pub use connection::{Config, Connection, DEFAULT_MAX_PARAMS_SIZE, Event};
pub use encode::{
    MAX_STDOUT_CONTENT, encode_end_request, encode_head_record, encode_response_head,
    encode_stderr, encode_stdout, record_header,
};
pub use end::{END_REQUEST_LEN, EndRequest, ProtocolStatus};
pub use error::{PairError, ProtocolError};
pub use management::{MAX_CONNS, MAX_REQS, MPXS_CONNS};
pub use record::{
    HEADER_LEN, Header, MANAGEMENT_ID, RecordType, VERSION_1, closing_notice, holds_abort_request,
    padding, padding_for,
};
pub use response::{RequestEncoder, SoleRequest};

#[cfg(test)]
mod tests;
