//! AJP 1.3 as Apache 2.4's mod_proxy_ajp speaks it, written from the
//! specification (tomcat.apache.org, "AJPv13") and the packets Apache was
//! seen to send (fixtures/ajp): a forward request with the `?secret`
//! attribute, the body's first packet unasked and the others as the
//! container asks (GET_BODY_CHUNK), an empty packet once the body is all
//! sent; then SEND_HEADERS, SEND_BODY_CHUNKs and END_RESPONSE, whose reuse
//! flag says whether the connection carries the next request.

use crate::proto::Request;

const FORWARD_REQUEST: u8 = 2;
const SEND_BODY_CHUNK: u8 = 3;
const SEND_HEADERS: u8 = 4;
const END_RESPONSE: u8 = 5;
const GET_BODY_CHUNK: u8 = 6;
/// The most body bytes in one packet of Apache's default 8 KiB.
pub const BODY_CHUNK: usize = 8186;

/// Request headers with a code (0xA001...), as the spec lists them.
const REQUEST_HEADER_CODES: [&str; 14] = [
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "authorization",
    "connection",
    "content-type",
    "content-length",
    "cookie",
    "cookie2",
    "host",
    "pragma",
    "referer",
    "user-agent",
];

/// Response header names by code (0xA001...).
const RESPONSE_HEADER_NAMES: [&str; 11] = [
    "Content-Type",
    "Content-Language",
    "Content-Length",
    "Date",
    "Last-Modified",
    "Location",
    "Set-Cookie",
    "Set-Cookie2",
    "Servlet-Engine",
    "Status",
    "WWW-Authenticate",
];

/// The browser-like headers every request carries (the ones the other
/// protocols send as HTTP_*).
const HEADERS: &[(&str, &str)] = &[
    ("host", "localhost"),
    (
        "user-agent",
        "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    ),
    (
        "accept",
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    ),
    ("accept-language", "en-US,en;q=0.5"),
    ("accept-encoding", "gzip, deflate, br"),
    ("connection", "keep-alive"),
];

/// A string: length (u16), bytes, NUL.
fn string(out: &mut Vec<u8>, s: &[u8]) {
    let len = u16::try_from(s.len()).expect("AJP string longer than 65535 bytes");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s);
    out.push(0);
}

/// Wraps a payload in a web-server packet: 0x12 0x34, length.
fn packet(out: &mut Vec<u8>, payload: &[u8]) {
    let len = u16::try_from(payload.len()).expect("AJP packet over 65535 bytes");
    out.extend_from_slice(&[0x12, 0x34]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
}

/// A body packet: the data's length, then the data (empty: the body ended).
pub fn body_packet(data: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(data.len() + 2);
    payload.extend_from_slice(&(data.len() as u16).to_be_bytes());
    payload.extend_from_slice(data);
    let mut out = Vec::with_capacity(payload.len() + 4);
    packet(&mut out, &payload);
    out
}

/// The forward request, followed by the body's first packet when there is
/// a body (Apache sends it unasked).
pub fn encode(req: &Request, secret: Option<&str>) -> Vec<u8> {
    let (path, query) = req.uri.split_once('?').unwrap_or((req.uri, ""));
    let mut p = vec![FORWARD_REQUEST];
    let method = ["OPTIONS", "GET", "HEAD", "POST", "PUT", "DELETE"]
        .iter()
        .position(|m| *m == req.method)
        .expect("a method with an AJP code");
    p.push(method as u8 + 1);
    string(&mut p, b"HTTP/1.1");
    string(&mut p, path.as_bytes());
    string(&mut p, b"127.0.0.1"); // remote_addr
    p.extend_from_slice(&[0xFF, 0xFF]); // remote_host: none, as Apache sends
    string(&mut p, b"localhost");
    p.extend_from_slice(&8080u16.to_be_bytes());
    p.push(0); // is_ssl
    let length = req.body.len().to_string();
    let mut headers: Vec<(&str, &str)> = HEADERS.to_vec();
    if !req.body.is_empty() {
        headers.push(("content-type", "application/octet-stream"));
        headers.push(("content-length", &length));
    }
    p.extend_from_slice(&(headers.len() as u16).to_be_bytes());
    for (name, value) in headers {
        match REQUEST_HEADER_CODES.iter().position(|c| *c == name) {
            Some(i) => p.extend_from_slice(&(0xA001 + i as u16).to_be_bytes()),
            None => string(&mut p, name.as_bytes()),
        }
        string(&mut p, value.as_bytes());
    }
    if let Some(secret) = secret {
        p.push(0x0C);
        string(&mut p, secret.as_bytes());
    }
    if !query.is_empty() {
        p.push(0x05);
        string(&mut p, query.as_bytes());
    }
    for (name, value) in [
        ("AJP_REMOTE_PORT", "54321"),
        ("AJP_LOCAL_ADDR", "127.0.0.1"),
    ] {
        p.push(0x0A);
        string(&mut p, name.as_bytes());
        string(&mut p, value.as_bytes());
    }
    p.push(0xFF);
    let mut out = Vec::with_capacity(p.len() + 4 + req.body.len().min(BODY_CHUNK) + 6);
    packet(&mut out, &p);
    if !req.body.is_empty() {
        out.extend(body_packet(&req.body[..req.body.len().min(BODY_CHUNK)]));
    }
    out
}

/// What the container sent, packet by packet.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// SEND_HEADERS, as a CGI head (`Status: ...`, headers, empty line).
    Head(Vec<u8>),
    Body(&'a [u8]),
    /// GET_BODY_CHUNK: the most bytes wanted.
    GetBody(usize),
    /// END_RESPONSE: whether the connection may carry the next request.
    End(bool),
}

/// Incremental reader of container packets: bytes in any cuts.
#[derive(Default)]
pub struct Reader {
    pending: Vec<u8>,
}

impl Reader {
    /// Consumes `data`, calling `on` for each whole packet; stops right
    /// after END_RESPONSE and returns how many bytes of `data` it used.
    pub fn feed(
        &mut self,
        data: &[u8],
        mut on: impl FnMut(Event) -> Result<(), String>,
    ) -> Result<usize, String> {
        let before = self.pending.len();
        self.pending.extend_from_slice(data);
        let mut at = 0;
        let mut ended = false;
        while !ended {
            let buf = &self.pending[at..];
            if buf.len() < 4 {
                break;
            }
            if buf[..2] != *b"AB" {
                return Err(format!("AJP packet magic {:02x?} (want 'AB')", &buf[..2]));
            }
            let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
            let Some(payload) = buf.get(4..4 + len) else {
                break;
            };
            at += 4 + len;
            let event = decode(payload)?;
            ended = matches!(event, Event::End(_));
            on(event)?;
        }
        self.pending.drain(..at);
        // Of `data`, everything but what is still pending was used.
        // What is left over after END_RESPONSE came in this call's data.
        debug_assert!(!ended || at >= before);
        Ok(if ended {
            data.len() - self.pending.len()
        } else {
            data.len()
        })
    }
}

fn u16_at(p: &[u8], at: usize) -> Result<usize, String> {
    p.get(at..at + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
        .ok_or_else(|| format!("AJP packet of {} bytes cut short at {at}", p.len()))
}

/// A string at `*at`: length, bytes, NUL.
fn string_at<'a>(p: &'a [u8], at: &mut usize) -> Result<&'a [u8], String> {
    let len = u16_at(p, *at)?;
    let s = p
        .get(*at + 2..*at + 2 + len)
        .ok_or("AJP string longer than its packet")?;
    if p.get(*at + 2 + len) != Some(&0) {
        return Err("AJP string without its NUL".into());
    }
    *at += len + 3;
    Ok(s)
}

fn decode(p: &[u8]) -> Result<Event<'_>, String> {
    match p.first() {
        Some(&SEND_HEADERS) => {
            let status = u16_at(p, 1)?;
            let mut at = 3;
            let reason = string_at(p, &mut at)?;
            let mut head = format!("Status: {status} ").into_bytes();
            head.extend_from_slice(reason);
            head.extend_from_slice(b"\r\n");
            let count = u16_at(p, at)?;
            at += 2;
            for _ in 0..count {
                if p.get(at) == Some(&0xA0) {
                    let code = u16_at(p, at)?;
                    at += 2;
                    let name = RESPONSE_HEADER_NAMES
                        .get(code.wrapping_sub(0xA001))
                        .ok_or_else(|| format!("unknown response header code {code:#x}"))?;
                    head.extend_from_slice(name.as_bytes());
                } else {
                    head.extend_from_slice(string_at(p, &mut at)?);
                }
                head.extend_from_slice(b": ");
                head.extend_from_slice(string_at(p, &mut at)?);
                head.extend_from_slice(b"\r\n");
            }
            head.extend_from_slice(b"\r\n");
            Ok(Event::Head(head))
        }
        Some(&SEND_BODY_CHUNK) => {
            let len = u16_at(p, 1)?;
            let data = p
                .get(3..3 + len)
                .ok_or("SEND_BODY_CHUNK longer than its packet")?;
            Ok(Event::Body(data))
        }
        Some(&GET_BODY_CHUNK) => Ok(Event::GetBody(u16_at(p, 1)?)),
        Some(&END_RESPONSE) => Ok(Event::End(p.get(1) == Some(&1))),
        other => Err(format!("unexpected AJP packet type {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of Apache's forward request (fixtures/ajp/get_query_cookie.bin).
    #[test]
    fn forward_request() {
        let req = Request {
            method: "GET",
            uri: "/a?x=1",
            body: b"",
        };
        let got = encode(&req, Some("s"));
        assert_eq!(&got[..2], &[0x12, 0x34]);
        assert_eq!(u16::from_be_bytes([got[2], got[3]]) as usize, got.len() - 4);
        assert_eq!(&got[4..6], &[2, 2], "FORWARD_REQUEST, GET");
        assert_eq!(&got[6..17], b"\x00\x08HTTP/1.1\x00");
        assert_eq!(&got[17..22], b"\x00\x02/a\x00");
        assert!(got.windows(5).any(|w| w == b"\x0c\x00\x01s\x00"), "secret");
        assert!(got.windows(7).any(|w| w == b"\x05\x00\x03x=1\x00"), "query");
        assert_eq!(got.last(), Some(&0xFF));
        // The host header goes coded.
        assert!(got.windows(4).any(|w| w == [0xA0, 0x0B, 0, 9]));
    }

    #[test]
    fn a_body_sends_its_first_packet_unasked() {
        let body = vec![7u8; BODY_CHUNK + 10];
        let req = Request {
            method: "POST",
            uri: "/",
            body: &body,
        };
        let got = encode(&req, None);
        let forward = 4 + u16::from_be_bytes([got[2], got[3]]) as usize;
        let first = &got[forward..];
        assert_eq!(first.len(), 4 + 2 + BODY_CHUNK);
        assert_eq!(&first[..6], &[0x12, 0x34, 0x1f, 0xfc, 0x1f, 0xfa]);
        assert_eq!(body_packet(b""), vec![0x12, 0x34, 0, 2, 0, 0]);
    }

    #[test]
    fn reader_any_cuts() {
        #[rustfmt::skip]
        let wire: &[u8] = &[
            b'A', b'B', 0, 23, 4, 0, 200, 0, 2, b'O', b'K', 0, 0, 2,
                0xA0, 0x01, 0, 1, b't', 0,  0, 1, b'X', 0, 0, 0, 0,
            b'A', b'B', 0, 3, 6, 0x1f, 0xfa,
            b'A', b'B', 0, 7, 3, 0, 3, b'h', b'i', b'\n', 0,
            b'A', b'B', 0, 2, 5, 1,
            0xff, // after END_RESPONSE: left unread
        ];
        for cut in 0..wire.len() {
            let mut r = Reader::default();
            let mut events = Vec::new();
            let mut used = 0;
            for part in [&wire[..cut], &wire[cut..]] {
                if events.last() == Some(&"end".to_string()) {
                    break;
                }
                used += r
                    .feed(part, |e| {
                        events.push(match e {
                            Event::Head(h) => String::from_utf8(h).unwrap(),
                            Event::Body(b) => String::from_utf8(b.to_vec()).unwrap(),
                            Event::GetBody(n) => format!("get {n}"),
                            Event::End(reuse) => {
                                assert!(reuse);
                                "end".into()
                            }
                        });
                        Ok(())
                    })
                    .unwrap();
            }
            assert_eq!(
                events,
                [
                    "Status: 200 OK\r\nContent-Type: t\r\nX: \r\n\r\n",
                    "get 8186",
                    "hi\n",
                    "end"
                ],
                "cut at {cut}"
            );
            assert_eq!(used, wire.len() - 1, "cut at {cut}");
        }
    }

    #[test]
    fn bad_packets_are_errors() {
        let mut r = Reader::default();
        assert!(
            r.feed(b"XY\x00\x01\x05", |_| Ok(()))
                .unwrap_err()
                .contains("magic")
        );
        let mut r = Reader::default();
        let err = r.feed(b"AB\x00\x01\x09", |_| Ok(())).unwrap_err();
        assert!(err.contains("type"), "{err}");
    }
}
