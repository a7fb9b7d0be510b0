use crate::length::parse_length;
use crate::show;
use bytes::Bytes;
use std::fmt;

/// The largest response head an application may send: its status and
/// header lines as written, `Name: value\r\n` each. Front servers refuse
/// far less (nginx's default proxy buffer is 4 or 8 KiB); past this it is
/// an application error, not something to pass on.
pub const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// The status line and headers an application answered with, already checked
/// (latin-1, no control characters, no hop-by-hop headers), so encoders can
/// copy them to the wire as they are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    /// `"200 OK"`: the three-digit code, a space, the reason.
    pub status: Bytes,
    pub headers: Vec<(Bytes, Bytes)>,
}

/// Why an application's status or header was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderError {
    BadStatus(String),
    BadName(String),
    BadValue {
        name: String,
    },
    HopByHop(String),
    /// A Content-Length that is not ASCII digits (`abc`, `-5`, empty), or
    /// two that differ: the front server could not frame the body.
    BadContentLength(String),
    /// Over [`MAX_RESPONSE_HEAD`]: the head's size in bytes.
    TooLarge(usize),
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::BadStatus(s) => write!(
                f,
                "status {s:?} is not a three-digit code followed by a space and a reason"
            ),
            HeaderError::BadName(n) => write!(f, "header name {n:?} is not an HTTP token"),
            HeaderError::BadValue { name } => {
                write!(f, "header {name:?} has a control character in its value")
            }
            HeaderError::HopByHop(n) => write!(
                f,
                "header {n:?} is hop-by-hop; a WSGI application must not send it (PEP 3333)"
            ),
            HeaderError::BadContentLength(v) => write!(
                f,
                "Content-Length {v} is not a number of bytes (ASCII digits only, one value)"
            ),
            HeaderError::TooLarge(size) => write!(
                f,
                "the response head (status and headers) is {size} bytes, \
                 over the limit of {MAX_RESPONSE_HEAD}"
            ),
        }
    }
}

impl std::error::Error for HeaderError {}

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
];

impl ResponseHead {
    /// Checks an application's status and headers (already latin-1 encoded)
    /// before anything reaches the wire.
    pub fn new(status: Bytes, headers: Vec<(Bytes, Bytes)>) -> Result<Self, HeaderError> {
        let size = status.len() + header_lines_len(&headers);
        if size > MAX_RESPONSE_HEAD {
            return Err(HeaderError::TooLarge(size));
        }
        let s = status.as_ref();
        let valid_status = s.len() >= 4
            && s[..3].iter().all(u8::is_ascii_digit)
            && s[3] == b' '
            && !s.iter().any(|&b| is_control(b));
        if !valid_status {
            return Err(HeaderError::BadStatus(lossy(s)));
        }
        for (name, value) in &headers {
            if name.is_empty() || !name.iter().all(|&b| is_token_char(b)) {
                return Err(HeaderError::BadName(lossy(name)));
            }
            if value.iter().any(|&b| is_control(b)) {
                return Err(HeaderError::BadValue { name: lossy(name) });
            }
            if HOP_BY_HOP
                .iter()
                .any(|h| h.as_bytes().eq_ignore_ascii_case(name))
            {
                return Err(HeaderError::HopByHop(lossy(name)));
            }
        }
        let head = ResponseHead { status, headers };
        head.checked_content_length()?;
        Ok(head)
    }

    /// The Content-Length the application declared, if any (checked by
    /// [`ResponseHead::new`]: digits, and every value the same).
    pub fn content_length(&self) -> Option<u64> {
        self.checked_content_length().ok().flatten()
    }

    fn checked_content_length(&self) -> Result<Option<u64>, HeaderError> {
        let mut declared = None;
        for (_, value) in self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(b"content-length"))
        {
            let refused = || HeaderError::BadContentLength(format!("{:?}", show::field(value)));
            let length = parse_length(value).ok().flatten().ok_or_else(refused)?;
            if declared.is_some_and(|d| d != length) {
                return Err(refused());
            }
            declared = Some(length);
        }
        Ok(declared)
    }

    /// [`ResponseHead::new`] for a head known when the program is written
    /// (the gateway's own answers, tests).
    pub fn from_static(
        status: &'static str,
        headers: &[(&'static str, &'static str)],
    ) -> Result<Self, HeaderError> {
        let headers = headers
            .iter()
            .map(|&(name, value)| (Bytes::from(name), Bytes::from(value)))
            .collect();
        ResponseHead::new(Bytes::from(status), headers)
    }

    /// A plain-text answer of the gateway's own (a 500, a 504): its head,
    /// with the body's length, and the body.
    pub fn own_answer(status: &'static str, body: &'static [u8]) -> (Self, Bytes) {
        let head = ResponseHead::new(
            Bytes::from(status),
            vec![
                (Bytes::from("Content-Type"), Bytes::from("text/plain")),
                (
                    Bytes::from("Content-Length"),
                    Bytes::from(body.len().to_string()),
                ),
            ],
        )
        .expect("a valid fixed head");
        (head, Bytes::from_static(body))
    }

    /// The numeric status code (validated by [`ResponseHead::new`]).
    pub fn status_code(&self) -> u16 {
        self.status[..3]
            .iter()
            .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'))
    }

    /// The first value of a header, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&Bytes> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// Writes the CGI-style head SCGI and FastCGI answer with (RFC 3875
    /// §6.3.3): `Status: <status>\r\n`, the header lines, the blank line.
    pub fn write_cgi_head(&self, out: &mut Vec<u8>) {
        out.reserve(self.status.len() + 10);
        out.extend_from_slice(b"Status: ");
        out.extend_from_slice(&self.status);
        out.extend_from_slice(b"\r\n");
        self.write_header_lines(out);
    }

    /// Writes `Name: value\r\n` for every header and the closing blank line:
    /// the part every protocol's response head shares.
    pub fn write_header_lines(&self, out: &mut Vec<u8>) {
        // One allocation, not one per doubling as the lines go in.
        out.reserve(header_lines_len(&self.headers) + 2);
        for (name, value) in &self.headers {
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// `Name: value\r\n` for every header.
fn header_lines_len(headers: &[(Bytes, Bytes)]) -> usize {
    headers.iter().map(|(n, v)| n.len() + v.len() + 4).sum()
}

fn is_control(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn lossy(b: &[u8]) -> String {
    b.iter().map(|&c| char::from(c)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_plain_head() {
        let h =
            ResponseHead::from_static("404 Not Found", &[("Content-Type", "text/plain")]).unwrap();
        assert_eq!(h.status_code(), 404);
        assert_eq!(h.header("content-type").unwrap().as_ref(), b"text/plain");
    }

    #[test]
    fn refuses_what_pep_3333_forbids() {
        use HeaderError::*;
        let refused = |status, headers| ResponseHead::from_static(status, headers).unwrap_err();
        assert!(matches!(refused("200", &[]), BadStatus(_)));
        assert!(matches!(refused("20x OK", &[]), BadStatus(_)));
        assert!(matches!(refused("200 OK\r\nX: y", &[]), BadStatus(_)));
        assert!(matches!(
            refused("200 OK", &[("Bad Name", "v")]),
            BadName(_)
        ));
        assert!(matches!(
            refused("200 OK", &[("X", "a\r\nb")]),
            BadValue { .. }
        ));
        assert!(matches!(
            refused("200 OK", &[("Connection", "close")]),
            HopByHop(_)
        ));
        let chunked = &[("transfer-encoding", "chunked")];
        assert!(matches!(refused("200 OK", chunked), HopByHop(_)));
    }

    #[test]
    fn a_content_length_is_digits_and_one_value() {
        let with = |values: &[&'static str]| {
            let headers: Vec<_> = values.iter().map(|&v| ("Content-Length", v)).collect();
            ResponseHead::from_static("200 OK", &headers)
        };
        assert_eq!(with(&["12"]).unwrap().content_length(), Some(12));
        assert_eq!(with(&["12", "12"]).unwrap().content_length(), Some(12));
        assert_eq!(with(&[]).unwrap().content_length(), None);
        for bad in [&["abc"][..], &["-5"], &["+5"], &[""], &[" 5"], &["5", "6"]] {
            let refused = with(bad).unwrap_err();
            assert!(
                matches!(refused, HeaderError::BadContentLength(_)),
                "{bad:?}"
            );
        }
        let refused = with(&["-5"]).unwrap_err().to_string();
        assert!(
            refused.starts_with("Content-Length \"-5\" is not a number"),
            "{refused}"
        );
    }

    #[test]
    fn a_head_over_64_kib_is_refused() {
        let reason = format!("200 {}", "x".repeat(100_000));
        let refused = ResponseHead::new(Bytes::from(reason), Vec::new()).unwrap_err();
        assert_eq!(refused, HeaderError::TooLarge(100_004));
        let headers = (0..20_000)
            .map(|i| (Bytes::from(format!("X-{i}")), Bytes::from_static(b"y")))
            .collect();
        let refused = ResponseHead::new(Bytes::from_static(b"200 OK"), headers).unwrap_err();
        assert!(matches!(refused, HeaderError::TooLarge(_)), "{refused}");
        assert!(refused.to_string().contains("over the limit of 65536"));
        let at_limit = vec![(
            Bytes::from_static(b"X"),
            Bytes::from(vec![b'y'; 65536 - 6 - 5]),
        )];
        assert!(ResponseHead::new(Bytes::from_static(b"200 OK"), at_limit).is_ok());
    }

    #[test]
    fn writes_header_lines() {
        let h = ResponseHead::from_static("200 OK", &[("A", "1"), ("Set-Cookie", "x=1")]).unwrap();
        let mut out = Vec::new();
        h.write_header_lines(&mut out);
        assert_eq!(out, b"A: 1\r\nSet-Cookie: x=1\r\n\r\n");
    }

    #[test]
    fn writes_a_cgi_head() {
        let h = ResponseHead::from_static(
            "404 Not Found",
            &[("Content-Type", "text/plain"), ("Set-Cookie", "a=1")],
        )
        .unwrap();
        let mut out = b"kept".to_vec();
        h.write_cgi_head(&mut out);
        assert_eq!(
            out,
            b"keptStatus: 404 Not Found\r\nContent-Type: text/plain\r\nSet-Cookie: a=1\r\n\r\n"
        );
        let mut out = Vec::new();
        ResponseHead::from_static("204 No Content", &[])
            .unwrap()
            .write_cgi_head(&mut out);
        assert_eq!(out, b"Status: 204 No Content\r\n\r\n");
    }
}
