//! AJP's code tables: methods, coded request header names, attributes,
//! coded response header names and packet types.

/// Prefix codes of the packets a web server sends.
pub(crate) const FORWARD_REQUEST: u8 = 2;
pub(crate) const SHUTDOWN: u8 = 7;
pub(crate) const PING: u8 = 8;
pub(crate) const CPING: u8 = 10;

/// Prefix codes of the packets the container sends.
pub(crate) const SEND_BODY_CHUNK: u8 = 3;
pub(crate) const SEND_HEADERS: u8 = 4;
pub(crate) const END_RESPONSE: u8 = 5;
pub(crate) const GET_BODY_CHUNK: u8 = 6;
pub(crate) const CPONG_REPLY: u8 = 9;

/// The method code that says "the method is in ?stored_method".
pub(crate) const STORED_METHOD: u8 = 0xFF;

/// Method codes 1..=27.
const METHODS: [&str; 27] = [
    "OPTIONS",
    "GET",
    "HEAD",
    "POST",
    "PUT",
    "DELETE",
    "TRACE",
    "PROPFIND",
    "PROPPATCH",
    "MKCOL",
    "COPY",
    "MOVE",
    "LOCK",
    "UNLOCK",
    "ACL",
    "REPORT",
    "VERSION-CONTROL",
    "CHECKIN",
    "CHECKOUT",
    "UNCHECKOUT",
    "SEARCH",
    "MKWORKSPACE",
    "UPDATE",
    "LABEL",
    "MERGE",
    "BASELINE-CONTROL",
    "MKACTIVITY",
];

pub(crate) fn method(code: u8) -> Option<&'static str> {
    METHODS.get(usize::from(code).checked_sub(1)?).copied()
}

/// The method's code, for encoders (tests and the bench client).
pub fn method_code(method: &str) -> Option<u8> {
    METHODS
        .iter()
        .position(|m| *m == method)
        .map(|i| i as u8 + 1)
}

/// Coded request header names 0xA001..=0xA00E, as the CGI names they
/// become.
const REQUEST_HEADERS: [(&str, &str); 14] = [
    ("accept", "HTTP_ACCEPT"),
    ("accept-charset", "HTTP_ACCEPT_CHARSET"),
    ("accept-encoding", "HTTP_ACCEPT_ENCODING"),
    ("accept-language", "HTTP_ACCEPT_LANGUAGE"),
    ("authorization", "HTTP_AUTHORIZATION"),
    ("connection", "HTTP_CONNECTION"),
    ("content-type", "CONTENT_TYPE"),
    ("content-length", "CONTENT_LENGTH"),
    ("cookie", "HTTP_COOKIE"),
    ("cookie2", "HTTP_COOKIE2"),
    ("host", "HTTP_HOST"),
    ("pragma", "HTTP_PRAGMA"),
    ("referer", "HTTP_REFERER"),
    ("user-agent", "HTTP_USER_AGENT"),
];

/// The CGI name of coded request header `code` (0xA0xx).
pub(crate) fn request_header(code: u16) -> Option<&'static str> {
    let index = usize::from(code.checked_sub(0xA001)?);
    REQUEST_HEADERS.get(index).map(|(_, cgi)| *cgi)
}

/// The code of a request header name (any case), for encoders.
pub fn request_header_code(name: &str) -> Option<u16> {
    REQUEST_HEADERS
        .iter()
        .position(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|i| 0xA001 + i as u16)
}

/// Coded response header names 0xA001..=0xA00B.
const RESPONSE_HEADERS: [&str; 11] = [
    "content-type",
    "content-language",
    "content-length",
    "date",
    "last-modified",
    "location",
    "set-cookie",
    "set-cookie2",
    "servlet-engine",
    "status",
    "www-authenticate",
];

/// The code of a response header name (any case), if it has one.
pub(crate) fn response_header_code(name: &[u8]) -> Option<u16> {
    RESPONSE_HEADERS
        .iter()
        .position(|n| n.as_bytes().eq_ignore_ascii_case(name))
        .map(|i| 0xA001 + i as u16)
}

/// The name of coded response header `code`, for decoders (tests).
pub fn response_header_name(code: u16) -> Option<&'static str> {
    let index = usize::from(code.checked_sub(0xA001)?);
    RESPONSE_HEADERS.get(index).copied()
}

/// Attribute codes.
pub mod attribute {
    pub const CONTEXT: u8 = 0x01;
    pub const SERVLET_PATH: u8 = 0x02;
    pub const REMOTE_USER: u8 = 0x03;
    pub const AUTH_TYPE: u8 = 0x04;
    pub const QUERY_STRING: u8 = 0x05;
    pub const JVM_ROUTE: u8 = 0x06;
    pub const SSL_CERT: u8 = 0x07;
    pub const SSL_CIPHER: u8 = 0x08;
    pub const SSL_SESSION: u8 = 0x09;
    pub const REQ_ATTRIBUTE: u8 = 0x0A;
    pub const SSL_KEY_SIZE: u8 = 0x0B;
    pub const SECRET: u8 = 0x0C;
    pub const STORED_METHOD: u8 = 0x0D;
    pub const ARE_DONE: u8 = 0xFF;
}

/// The environ name of a string attribute (flup's names).
pub(crate) fn attribute_name(code: u8) -> Option<&'static str> {
    use attribute::*;
    Some(match code {
        CONTEXT => "CONTEXT",
        SERVLET_PATH => "SERVLET_PATH",
        REMOTE_USER => "REMOTE_USER",
        AUTH_TYPE => "AUTH_TYPE",
        QUERY_STRING => "QUERY_STRING",
        JVM_ROUTE => "JVM_ROUTE",
        SSL_CERT => "SSL_CERT",
        SSL_CIPHER => "SSL_CIPHER",
        SSL_SESSION => "SSL_SESSION",
        _ => return None,
    })
}
