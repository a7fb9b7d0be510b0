//! `--access-log-format`: the named formats and templates, parsed once at
//! start, and the rendering of a [`Record`] in them.

use super::Record;
use super::escape;
use super::time;
use std::fmt;

/// The fields a template may name, in the order `--help` and errors list
/// them. `request_header:NAME` and `response_header:NAME` come on top.
pub const FIELDS: [&str; 17] = [
    "time",
    "time_clf",
    "request_id",
    "remote",
    "method",
    "path",
    "query",
    "uri",
    "protocol",
    "status",
    "bytes",
    "request_bytes",
    "duration_us",
    "ttfb_us",
    "pid",
    "front",
    "ended",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Time,
    TimeClf,
    RequestId,
    Remote,
    Method,
    Path,
    Query,
    Uri,
    Protocol,
    Status,
    Bytes,
    RequestBytes,
    DurationUs,
    TtfbUs,
    Pid,
    Front,
    Ended,
}

impl Field {
    fn from_name(name: &str) -> Option<Field> {
        let index = FIELDS.iter().position(|f| *f == name)?;
        Some(
            [
                Field::Time,
                Field::TimeClf,
                Field::RequestId,
                Field::Remote,
                Field::Method,
                Field::Path,
                Field::Query,
                Field::Uri,
                Field::Protocol,
                Field::Status,
                Field::Bytes,
                Field::RequestBytes,
                Field::DurationUs,
                Field::TtfbUs,
                Field::Pid,
                Field::Front,
                Field::Ended,
            ][index],
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Literal(Vec<u8>),
    Field(Field),
    RequestHeader(String),
    ResponseHeader(String),
}

/// How access log lines look: `combined` (Apache's, with Referer and
/// User-Agent), `json` (one object per line), `logfmt`, or a template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Format(Kind);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    Combined,
    Json,
    Logfmt,
    Template(Vec<Piece>),
}

/// A format that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError(String);

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FormatError {}

/// The headers the named formats show besides the fixed fields.
const NAMED_HEADERS: [&str; 2] = ["Referer", "User-Agent"];

fn known_fields() -> String {
    let mut list = FIELDS.join(", ");
    list.push_str(", request_header:NAME, response_header:NAME");
    list
}

fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// `combined`: what `--access-log-format` is when not given.
impl Default for Format {
    fn default() -> Format {
        Format(Kind::Combined)
    }
}

impl Format {
    /// `combined`, `json`, `logfmt`, or a template where `{field}` stands
    /// for a field, `{request_header:NAME}` and `{response_header:NAME}`
    /// for a header, and `{{`, `}}` for a brace.
    pub fn parse(spec: &str) -> Result<Format, FormatError> {
        match spec {
            "combined" => return Ok(Format(Kind::Combined)),
            "json" => return Ok(Format(Kind::Json)),
            "logfmt" => return Ok(Format(Kind::Logfmt)),
            _ => {}
        }
        let mut pieces = Vec::new();
        let mut literal = Vec::new();
        let mut rest = spec;
        while let Some(c) = rest.chars().next() {
            if rest.starts_with("{{") || rest.starts_with("}}") {
                literal.push(c as u8);
                rest = &rest[2..];
                continue;
            }
            if c == '}' {
                return Err(FormatError(format!(
                    "--access-log-format: a '}}' without its '{{' in {spec:?} (write '}}}}' for a brace)"
                )));
            }
            if c != '{' {
                literal.extend_from_slice(&rest.as_bytes()[..c.len_utf8()]);
                rest = &rest[c.len_utf8()..];
                continue;
            }
            let Some(end) = rest.find('}') else {
                return Err(FormatError(format!(
                    "--access-log-format: a '{{' without its '}}' in {spec:?} (write '{{{{' for a brace)"
                )));
            };
            let name = &rest[1..end];
            rest = &rest[end + 1..];
            if !literal.is_empty() {
                pieces.push(Piece::Literal(std::mem::take(&mut literal)));
            }
            pieces.push(Format::piece(name)?);
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        if !pieces.iter().any(|p| !matches!(p, Piece::Literal(_))) {
            return Err(FormatError(format!(
                "--access-log-format {spec:?} is not combined, json or logfmt, and names no field; \
                 a template names fields in braces, e.g. '{{remote}} {{method}} {{path}} {{status}}'; \
                 known fields: {}",
                known_fields()
            )));
        }
        Ok(Format(Kind::Template(pieces)))
    }

    fn piece(name: &str) -> Result<Piece, FormatError> {
        for (prefix, response) in [("request_header:", false), ("response_header:", true)] {
            if let Some(header) = name.strip_prefix(prefix) {
                if !valid_header_name(header) {
                    return Err(FormatError(format!(
                        "--access-log-format: {{{name}}}: {header:?} is not a header name"
                    )));
                }
                let header = header.to_string();
                return Ok(if response {
                    Piece::ResponseHeader(header)
                } else {
                    Piece::RequestHeader(header)
                });
            }
        }
        Field::from_name(name).map(Piece::Field).ok_or_else(|| {
            FormatError(format!(
                "--access-log-format: unknown field {{{name}}}; known fields: {}",
                known_fields()
            ))
        })
    }

    /// The request headers a line shows: the record must carry them.
    pub fn request_headers(&self) -> Vec<String> {
        self.headers(false)
    }

    /// The response headers a line shows: the record must carry them.
    pub fn response_headers(&self) -> Vec<String> {
        self.headers(true)
    }

    fn headers(&self, response: bool) -> Vec<String> {
        match &self.0 {
            Kind::Template(pieces) => pieces
                .iter()
                .filter_map(|p| match (p, response) {
                    (Piece::RequestHeader(h), false) | (Piece::ResponseHeader(h), true) => {
                        Some(h.clone())
                    }
                    _ => None,
                })
                .collect(),
            _ if response => Vec::new(),
            _ => NAMED_HEADERS.iter().map(|h| h.to_string()).collect(),
        }
    }

    /// Appends `record`'s line (with its newline) to `out`.
    pub fn render(&self, record: &Record, out: &mut Vec<u8>) {
        match &self.0 {
            Kind::Combined => combined(record, out),
            Kind::Json => json(record, out),
            Kind::Logfmt => logfmt(record, out),
            Kind::Template(pieces) => {
                for piece in pieces {
                    match piece {
                        Piece::Literal(text) => out.extend_from_slice(text),
                        Piece::Field(field) => text_field(record, *field, out),
                        Piece::RequestHeader(h) => {
                            escape::text(out, record.request_header(h).unwrap_or_default())
                        }
                        Piece::ResponseHeader(h) => {
                            escape::text(out, record.response_header(h).unwrap_or_default())
                        }
                    }
                }
            }
        }
        out.push(b'\n');
    }
}

fn number(out: &mut Vec<u8>, n: impl Into<u128>) {
    // Every figure a line carries fits in a u64; a u128 is cut there.
    let n = u64::try_from(n.into()).unwrap_or(u64::MAX);
    out.extend_from_slice(super::decimal(n, &mut [0; 20]));
}

/// `path?query`, or the path alone.
fn uri(record: &Record, out: &mut Vec<u8>) {
    if record.path.is_empty() && record.query.is_empty() {
        out.push(b'-');
        return;
    }
    escape::text_raw(out, record.path);
    if !record.query.is_empty() {
        out.push(b'?');
        escape::text_raw(out, record.query);
    }
}

/// A field in a text line: numbers bare, text escaped Apache-style,
/// what is unknown as `-`.
fn text_field(record: &Record, field: Field, out: &mut Vec<u8>) {
    match field {
        Field::Time => time::rfc3339(out, record.time),
        Field::TimeClf => time::clf(out, record.time),
        Field::RequestId => escape::text(out, record.request_id),
        Field::Remote => escape::text(out, record.remote),
        Field::Method => escape::text(out, record.method),
        Field::Path => escape::text(out, record.path),
        Field::Query => escape::text(out, record.query),
        Field::Uri => uri(record, out),
        Field::Protocol => escape::text(out, record.protocol),
        Field::Status => match record.status {
            Some(status) => number(out, status),
            None => out.push(b'-'),
        },
        Field::Bytes => number(out, record.response_bytes),
        Field::RequestBytes => number(out, record.request_bytes),
        Field::DurationUs => number(out, record.duration.as_micros()),
        Field::TtfbUs => match record.first_byte {
            Some(d) => number(out, d.as_micros()),
            None => out.push(b'-'),
        },
        Field::Pid => number(out, record.pid),
        Field::Front => out.extend_from_slice(record.front.as_str().as_bytes()),
        Field::Ended => out.extend_from_slice(record.ended.as_str().as_bytes()),
    }
}

/// Apache's combined format:
/// `remote - - [time] "method uri protocol" status bytes "referer" "user-agent"`.
fn combined(record: &Record, out: &mut Vec<u8>) {
    text_field(record, Field::Remote, out);
    out.extend_from_slice(b" - - [");
    time::clf(out, record.time);
    out.extend_from_slice(b"] \"");
    text_field(record, Field::Method, out);
    out.push(b' ');
    text_field(record, Field::Uri, out);
    out.push(b' ');
    text_field(record, Field::Protocol, out);
    out.extend_from_slice(b"\" ");
    text_field(record, Field::Status, out);
    out.push(b' ');
    // Apache writes `-` for an empty body.
    if record.response_bytes == 0 {
        out.push(b'-');
    } else {
        number(out, record.response_bytes);
    }
    for header in NAMED_HEADERS {
        out.extend_from_slice(b" \"");
        escape::text(out, record.request_header(header).unwrap_or_default());
        out.push(b'"');
    }
}

/// The fields of the `json` and `logfmt` lines, in order.
fn keyed(record: &Record, mut emit: impl FnMut(&str, Value<'_>)) {
    emit("time", Value::Time(record.time));
    emit("request_id", Value::Text(record.request_id));
    emit("remote", Value::Text(record.remote));
    emit("method", Value::Text(record.method));
    emit("path", Value::Text(record.path));
    emit("query", Value::Text(record.query));
    emit("protocol", Value::Text(record.protocol));
    emit("status", Value::Number(record.status.map(u128::from)));
    emit(
        "bytes",
        Value::Number(Some(u128::from(record.response_bytes))),
    );
    emit(
        "request_bytes",
        Value::Number(Some(u128::from(record.request_bytes))),
    );
    emit(
        "duration_us",
        Value::Number(Some(record.duration.as_micros())),
    );
    emit(
        "ttfb_us",
        Value::Number(record.first_byte.map(|d| d.as_micros())),
    );
    emit("pid", Value::Number(Some(u128::from(record.pid))));
    emit("front", Value::Text(record.front.as_str().as_bytes()));
    emit("ended", Value::Text(record.ended.as_str().as_bytes()));
    emit(
        "referer",
        Value::Text(record.request_header("Referer").unwrap_or_default()),
    );
    emit(
        "user_agent",
        Value::Text(record.request_header("User-Agent").unwrap_or_default()),
    );
}

enum Value<'a> {
    Text(&'a [u8]),
    /// RFC 3339: plain ASCII, written as it is (no escaping, no copy).
    Time(std::time::SystemTime),
    /// `None`: not known (JSON null, logfmt `-`).
    Number(Option<u128>),
}

fn json(record: &Record, out: &mut Vec<u8>) {
    out.push(b'{');
    let mut first = true;
    keyed(record, |key, value| {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        out.push(b'"');
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
        match value {
            Value::Text(text) => escape::json(out, text),
            Value::Time(at) => {
                out.push(b'"');
                time::rfc3339(out, at);
                out.push(b'"');
            }
            Value::Number(Some(n)) => number(out, n),
            Value::Number(None) => out.extend_from_slice(b"null"),
        }
    });
    out.push(b'}');
}

fn logfmt(record: &Record, out: &mut Vec<u8>) {
    let mut first = true;
    keyed(record, |key, value| {
        if !std::mem::take(&mut first) {
            out.push(b' ');
        }
        out.extend_from_slice(key.as_bytes());
        out.push(b'=');
        match value {
            Value::Text(text) => escape::logfmt(out, text),
            Value::Time(at) => time::rfc3339(out, at),
            Value::Number(Some(n)) => number(out, n),
            Value::Number(None) => out.push(b'-'),
        }
    });
}
