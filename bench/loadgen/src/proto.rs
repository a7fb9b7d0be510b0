//! Request encoders and the FastCGI record reader, written from the
//! specifications (SCGI: python.ca/scgi/protocol.txt; FastCGI 1.0; uWSGI's
//! "The uwsgi Protocol" page). Deliberately independent of rustgi's own
//! protocol crates, so that each checks the other; only the names of the
//! variables nginx's params files send, and their fixed values, come from
//! `rustgi_model::sample`. AJP's encoder and reader are in `ajp.rs`.

use rustgi_model::sample::{ParamsFile, fixed_value};

/// Which wire protocol to speak to the backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Proto {
    Scgi,
    /// FastCGI, one request per connection (as nginx without keep-conn).
    Fastcgi,
    /// FastCGI with FCGI_KEEP_CONN, reusing each connection.
    FastcgiKeep,
    Uwsgi,
    /// AJP 1.3 as Apache's mod_proxy_ajp speaks it (connections reused).
    Ajp,
}

/// One request as a front server would describe it.
pub struct Request<'a> {
    pub method: &'a str,
    /// Path and optional `?query`, as the client sent it.
    pub uri: &'a str,
    pub body: &'a [u8],
}

/// The browser-like headers every request carries (nginx passes them on as
/// `HTTP_*`, after the variables of its params file).
const HEADERS: &[(&str, &str)] = &[
    ("HTTP_HOST", "localhost"),
    (
        "HTTP_USER_AGENT",
        "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    ),
    (
        "HTTP_ACCEPT",
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    ),
    ("HTTP_ACCEPT_LANGUAGE", "en-US,en;q=0.5"),
    ("HTTP_ACCEPT_ENCODING", "gzip, deflate, br"),
    ("HTTP_CONNECTION", "keep-alive"),
];

/// The variables nginx 1.22 sends through the protocol's params file, then
/// the request headers.
pub fn params(proto: Proto, req: &Request) -> Vec<(String, String)> {
    let (path, query) = req.uri.split_once('?').unwrap_or((req.uri, ""));
    let length = req.body.len().to_string();
    let has_body = !req.body.is_empty();
    let content_type = if has_body {
        "application/octet-stream"
    } else {
        ""
    };
    let file = match proto {
        Proto::Scgi => ParamsFile::Scgi,
        Proto::Fastcgi | Proto::FastcgiKeep => ParamsFile::Fastcgi,
        Proto::Uwsgi => ParamsFile::Uwsgi,
        Proto::Ajp => unreachable!("AJP sends no CGI variables (see ajp.rs)"),
    };
    let value = |name: &str| match name {
        // SCGI's is always sent; the others' are empty without a body.
        "CONTENT_LENGTH" if has_body || proto == Proto::Scgi => length.as_str(),
        "REQUEST_METHOD" => req.method,
        "REQUEST_URI" => req.uri,
        "QUERY_STRING" => query,
        "CONTENT_TYPE" => content_type,
        "DOCUMENT_URI" | "SCRIPT_NAME" | "PATH_INFO" => path,
        "REMOTE_ADDR" | "SERVER_ADDR" => "127.0.0.1",
        "REMOTE_PORT" => "54321",
        "SERVER_PORT" => "8080",
        "SERVER_NAME" => "localhost",
        _ => fixed_value(name).unwrap_or(""),
    };
    let variables = file.variables().iter();
    let mut p: Vec<(&str, &str)> = variables.map(|&name| (name, value(name))).collect();
    p.extend_from_slice(HEADERS);
    if has_body {
        p.push(("HTTP_CONTENT_TYPE", content_type));
        p.push(("HTTP_CONTENT_LENGTH", length.as_str()));
    }
    p.into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The complete request bytes: head and body (for AJP, the body's first
/// packet; `secret` is AJP's `?secret`).
pub fn encode(proto: Proto, req: &Request, secret: Option<&str>) -> Vec<u8> {
    if proto == Proto::Ajp {
        return crate::ajp::encode(req, secret);
    }
    let params = params(proto, req);
    let pairs: Vec<(&[u8], &[u8])> = params
        .iter()
        .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
        .collect();
    match proto {
        Proto::Scgi => scgi(&pairs, req.body),
        Proto::Uwsgi => uwsgi(&pairs, req.body),
        Proto::Fastcgi => fastcgi(1, false, &pairs, req.body),
        Proto::FastcgiKeep => fastcgi(1, true, &pairs, req.body),
        Proto::Ajp => unreachable!(),
    }
}

/// SCGI: a netstring `LEN:` headers `,` (each header `NAME\0VALUE\0`), then
/// the body.
pub fn scgi(pairs: &[(&[u8], &[u8])], body: &[u8]) -> Vec<u8> {
    let mut headers = Vec::new();
    for (k, v) in pairs {
        headers.extend_from_slice(k);
        headers.push(0);
        headers.extend_from_slice(v);
        headers.push(0);
    }
    let mut out = format!("{}:", headers.len()).into_bytes();
    out.extend_from_slice(&headers);
    out.push(b',');
    out.extend_from_slice(body);
    out
}

/// uwsgi: a 4-byte header (modifier1 0, the vars block's size as u16
/// little-endian, modifier2 0), the vars (each key and value preceded by its
/// u16 little-endian length), then the body.
pub fn uwsgi(pairs: &[(&[u8], &[u8])], body: &[u8]) -> Vec<u8> {
    let mut vars = Vec::new();
    for (k, v) in pairs {
        for item in [k, v] {
            let len = u16::try_from(item.len()).expect("uwsgi var longer than 65535 bytes");
            vars.extend_from_slice(&len.to_le_bytes());
            vars.extend_from_slice(item);
        }
    }
    let size = u16::try_from(vars.len()).expect("uwsgi vars block over 65535 bytes");
    let mut out = vec![0];
    out.extend_from_slice(&size.to_le_bytes());
    out.push(0);
    out.extend_from_slice(&vars);
    out.extend_from_slice(body);
    out
}

pub const FCGI_BEGIN_REQUEST: u8 = 1;
pub const FCGI_END_REQUEST: u8 = 3;
pub const FCGI_PARAMS: u8 = 4;
pub const FCGI_STDIN: u8 = 5;
pub const FCGI_STDOUT: u8 = 6;
pub const FCGI_STDERR: u8 = 7;
const FCGI_RESPONDER: u16 = 1;
const FCGI_KEEP_CONN: u8 = 1;
/// STDIN is cut into records of this size, as nginx does.
const STDIN_RECORD: usize = 32 * 1024;

/// One record, content padded to a multiple of 8 as the spec recommends.
fn record(out: &mut Vec<u8>, kind: u8, id: u16, content: &[u8]) {
    let len = u16::try_from(content.len()).expect("FastCGI record over 65535 bytes");
    let padding = (8 - content.len() % 8) % 8;
    out.extend_from_slice(&[1, kind]);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&[padding as u8, 0]);
    out.extend_from_slice(content);
    out.resize(out.len() + padding, 0);
}

/// A name-value pair length: one byte below 128, else four bytes
/// big-endian with the top bit set.
fn nv_length(out: &mut Vec<u8>, len: usize) {
    if len < 128 {
        out.push(len as u8);
    } else {
        let len = u32::try_from(len).expect("FastCGI name or value too long");
        out.extend_from_slice(&(len | 0x8000_0000).to_be_bytes());
    }
}

/// FastCGI RESPONDER request: BEGIN_REQUEST, the PARAMS stream, the STDIN
/// stream, each stream closed by an empty record.
pub fn fastcgi(id: u16, keep_conn: bool, pairs: &[(&[u8], &[u8])], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 1024);
    let mut begin = FCGI_RESPONDER.to_be_bytes().to_vec();
    begin.push(if keep_conn { FCGI_KEEP_CONN } else { 0 });
    begin.extend_from_slice(&[0; 5]);
    record(&mut out, FCGI_BEGIN_REQUEST, id, &begin);
    let mut stream = Vec::new();
    for (k, v) in pairs {
        nv_length(&mut stream, k.len());
        nv_length(&mut stream, v.len());
        stream.extend_from_slice(k);
        stream.extend_from_slice(v);
    }
    for chunk in stream.chunks(65535) {
        record(&mut out, FCGI_PARAMS, id, chunk);
    }
    record(&mut out, FCGI_PARAMS, id, &[]);
    for chunk in body.chunks(STDIN_RECORD) {
        record(&mut out, FCGI_STDIN, id, chunk);
    }
    record(&mut out, FCGI_STDIN, id, &[]);
    out
}

/// What the FastCGI reader hands on.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    Stdout(&'a [u8]),
    Stderr(&'a [u8]),
    /// END_REQUEST: (appStatus, protocolStatus).
    End(u32, u8),
}

/// Incremental FastCGI record reader for the web server's side: feed it
/// bytes as they arrive, in any cuts.
#[derive(Default)]
pub struct RecordReader {
    header: [u8; 8],
    have: usize,
    /// Content bytes left in the current record, then its padding.
    content_left: usize,
    padding_left: usize,
    end_body: Vec<u8>,
}

impl RecordReader {
    /// Consumes from `data` and calls `on` for each piece of content.
    /// Stops right after END_REQUEST and returns how many bytes it used.
    pub fn feed<'a>(
        &mut self,
        expect_id: u16,
        mut data: &'a [u8],
        mut on: impl FnMut(Event<'a>) -> Result<(), String>,
    ) -> Result<usize, String> {
        let total = data.len();
        while !data.is_empty() {
            if self.have < 8 {
                let n = (8 - self.have).min(data.len());
                self.header[self.have..self.have + n].copy_from_slice(&data[..n]);
                self.have += n;
                data = &data[n..];
                if self.have < 8 {
                    break;
                }
                let h = self.header;
                if h[0] != 1 {
                    return Err(format!("FastCGI record version {} (want 1)", h[0]));
                }
                let id = u16::from_be_bytes([h[2], h[3]]);
                if id != expect_id {
                    return Err(format!("FastCGI record for id {id} (want {expect_id})"));
                }
                if ![FCGI_STDOUT, FCGI_STDERR, FCGI_END_REQUEST].contains(&h[1]) {
                    return Err(format!("unexpected FastCGI record type {}", h[1]));
                }
                self.content_left = u16::from_be_bytes([h[4], h[5]]) as usize;
                self.padding_left = h[6] as usize;
                if h[1] == FCGI_END_REQUEST && self.content_left != 8 {
                    return Err(format!("END_REQUEST of {} bytes", self.content_left));
                }
            }
            let kind = self.header[1];
            let n = self.content_left.min(data.len());
            let (content, rest) = data.split_at(n);
            data = rest;
            self.content_left -= n;
            match kind {
                FCGI_STDOUT if n > 0 => on(Event::Stdout(content))?,
                FCGI_STDERR if n > 0 => on(Event::Stderr(content))?,
                FCGI_END_REQUEST => self.end_body.extend_from_slice(content),
                _ => {}
            }
            let skip = self.padding_left.min(data.len());
            data = &data[skip..];
            self.padding_left -= skip;
            if self.content_left == 0 && self.padding_left == 0 {
                self.have = 0;
                if kind == FCGI_END_REQUEST {
                    let b = std::mem::take(&mut self.end_body);
                    on(Event::End(
                        u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
                        b[4],
                    ))?;
                    return Ok(total - data.len());
                }
            }
        }
        Ok(total - data.len())
    }

    /// True between records (nothing half read).
    #[cfg(test)]
    pub fn idle(&self) -> bool {
        self.have == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAIRS: &[(&[u8], &[u8])] = &[(b"CONTENT_LENGTH", b"5"), (b"SCGI", b"1")];

    /// The spec's own example shape: "70:CONTENT_LENGTH\027\0...,".
    #[test]
    fn scgi_netstring() {
        let got = scgi(PAIRS, b"hello");
        let want = b"24:CONTENT_LENGTH\x005\x00SCGI\x001\x00,hello";
        assert_eq!(got, want.to_vec());
    }

    #[test]
    fn uwsgi_packet() {
        let got = uwsgi(&[(b"PATH_INFO", b"/a"), (b"Q", b"")], b"xy");
        #[rustfmt::skip]
        let want: &[u8] = &[
            0, 20, 0, 0,                       // modifier1, size 20 LE, modifier2
            9, 0, b'P', b'A', b'T', b'H', b'_', b'I', b'N', b'F', b'O',
            2, 0, b'/', b'a',
            1, 0, b'Q',
            0, 0,
            b'x', b'y',
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn fastcgi_request_records() {
        let got = fastcgi(1, true, &[(b"A", b"bc")], b"xyz");
        #[rustfmt::skip]
        let want: &[u8] = &[
            1, 1, 0, 1, 0, 8, 0, 0,   0, 1, 1, 0, 0, 0, 0, 0, // BEGIN_REQUEST, RESPONDER, KEEP_CONN
            1, 4, 0, 1, 0, 5, 3, 0,   1, 2, b'A', b'b', b'c', 0, 0, 0, // PARAMS, 3 bytes padding
            1, 4, 0, 1, 0, 0, 0, 0,                                      // end of PARAMS
            1, 5, 0, 1, 0, 3, 5, 0,   b'x', b'y', b'z', 0, 0, 0, 0, 0, // STDIN, 5 padding
            1, 5, 0, 1, 0, 0, 0, 0,                                      // end of STDIN
        ];
        assert_eq!(got, want);
        let plain = fastcgi(1, false, &[], b"");
        assert_eq!(&plain[8..11], &[0, 1, 0], "no KEEP_CONN flag");
    }

    #[test]
    fn fastcgi_long_lengths_use_four_bytes() {
        let value = vec![b'v'; 200];
        let got = fastcgi(1, false, &[(b"K", &value)], b"");
        // After BEGIN_REQUEST (16 bytes) and the PARAMS header (8):
        assert_eq!(&got[24..29], &[1, 0x80, 0, 0, 200]);
        assert_eq!(u16::from_be_bytes([got[20], got[21]]), 1 + 4 + 1 + 200);
    }

    #[test]
    fn fastcgi_body_cut_into_32k_records() {
        let body = vec![7u8; STDIN_RECORD + 1];
        let got = fastcgi(1, false, &[], &body);
        // BEGIN (16), empty PARAMS (8), then STDIN of 32768 with no padding.
        assert_eq!(&got[24..32], &[1, 5, 0, 1, 0x80, 0, 0, 0]);
        let second = 32 + STDIN_RECORD;
        assert_eq!(&got[second..second + 8], &[1, 5, 0, 1, 0, 1, 7, 0]);
        assert_eq!(got.len(), second + 16 + 8);
    }

    #[test]
    fn record_reader_any_cuts() {
        #[rustfmt::skip]
        let wire: &[u8] = &[
            1, 6, 0, 1, 0, 3, 5, 0,  b'a', b'b', b'c', 0, 0, 0, 0, 0,
            1, 7, 0, 1, 0, 1, 0, 0,  b'!',
            1, 6, 0, 1, 0, 0, 0, 0,
            1, 3, 0, 1, 0, 8, 0, 0,  0, 0, 0, 0, 0, 0, 0, 0,
            0xff, // a byte after END_REQUEST stays unread
        ];
        for cut in 0..wire.len() {
            let mut r = RecordReader::default();
            let mut out = Vec::new();
            let mut errs = Vec::new();
            let mut ended = None;
            let mut used = 0;
            for part in [&wire[..cut], &wire[cut..]] {
                if ended.is_some() {
                    break;
                }
                used += r
                    .feed(1, part, |e| {
                        match e {
                            Event::Stdout(b) => out.extend_from_slice(b),
                            Event::Stderr(b) => errs.extend_from_slice(b),
                            Event::End(app, proto) => ended = Some((app, proto)),
                        }
                        Ok(())
                    })
                    .unwrap();
            }
            assert_eq!(out, b"abc", "cut at {cut}");
            assert_eq!(errs, b"!");
            assert_eq!(ended, Some((0, 0)));
            assert_eq!(used, wire.len() - 1);
            assert!(r.idle());
        }
    }

    #[test]
    fn record_reader_refuses_other_ids_and_types() {
        let mut r = RecordReader::default();
        let err = r
            .feed(1, &[1, 6, 0, 2, 0, 0, 0, 0], |_| Ok(()))
            .unwrap_err();
        assert!(err.contains("id 2"), "{err}");
        let mut r = RecordReader::default();
        let err = r
            .feed(1, &[1, 10, 0, 1, 0, 0, 0, 0], |_| Ok(()))
            .unwrap_err();
        assert!(err.contains("type 10"), "{err}");
    }

    #[test]
    fn params_follow_nginx_stock_files() {
        let req = Request {
            method: "POST",
            uri: "/up?x=1",
            body: b"abc",
        };
        let scgi = params(Proto::Scgi, &req);
        assert_eq!(scgi[0], ("CONTENT_LENGTH".into(), "3".into()));
        assert!(scgi.contains(&("QUERY_STRING".into(), "x=1".into())));
        assert!(scgi.contains(&("DOCUMENT_URI".into(), "/up".into())));
        let fcgi = params(Proto::Fastcgi, &req);
        assert!(fcgi.contains(&("SCRIPT_NAME".into(), "/up".into())));
        assert!(!fcgi.iter().any(|(k, _)| k == "PATH_INFO"));
        let uw = params(Proto::Uwsgi, &req);
        assert!(uw.contains(&("PATH_INFO".into(), "/up".into())));
        let get = Request {
            method: "GET",
            uri: "/",
            body: b"",
        };
        assert!(params(Proto::Uwsgi, &get).contains(&("CONTENT_LENGTH".into(), "".into())));
    }
}
