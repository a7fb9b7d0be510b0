//! Checks one response as the backend wrote it: a CGI-style head (`Status:
//! 200 OK` among the headers, or no Status at all) or an HTTP status line
//! (`HTTP/1.1 200 OK`, as uWSGI writes), then the body, compared byte by
//! byte with the expected one as it streams in.

/// The response every request must get.
pub struct Expect {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;

#[derive(Default)]
pub struct Check {
    head: Vec<u8>,
    in_body: bool,
    status: u16,
    content_length: Option<usize>,
    got: usize,
}

impl Check {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds response bytes (after any framing is removed).
    pub fn feed(&mut self, expect: &Expect, data: &[u8]) -> Result<(), String> {
        if self.in_body {
            return self.body(expect, data);
        }
        let scan_from = self.head.len().saturating_sub(2);
        self.head.extend_from_slice(data);
        let Some(end) = head_end(&self.head, scan_from) else {
            if self.head.len() > MAX_HEAD {
                return Err(format!("response head over {MAX_HEAD} bytes"));
            }
            return Ok(());
        };
        let rest = self.head.split_off(end);
        self.parse_head()?;
        self.in_body = true;
        if self.status != expect.status {
            return Err(format!(
                "status {} (want {}); head {:?}, body starts {:?}",
                self.status,
                expect.status,
                snippet(&self.head),
                snippet(&rest)
            ));
        }
        self.body(expect, &rest)
    }

    /// At the end of the response (EOF, or FastCGI END_REQUEST).
    pub fn finish(&self, expect: &Expect) -> Result<(), String> {
        if !self.in_body {
            return Err(format!(
                "response ended inside the head ({} bytes: {:?})",
                self.head.len(),
                snippet(&self.head)
            ));
        }
        if let Some(n) = self.content_length.filter(|&n| n != self.got) {
            return Err(format!(
                "Content-Length {n} but a body of {} bytes",
                self.got
            ));
        }
        if self.got != expect.body.len() {
            return Err(format!(
                "body of {} bytes (want {})",
                self.got,
                expect.body.len()
            ));
        }
        Ok(())
    }

    fn body(&mut self, expect: &Expect, data: &[u8]) -> Result<(), String> {
        let end = self.got + data.len();
        let Some(want) = expect.body.get(self.got..end) else {
            return Err(format!(
                "body longer than the expected {} bytes",
                expect.body.len()
            ));
        };
        if want != data {
            let at = want.iter().zip(data).position(|(a, b)| a != b).unwrap_or(0);
            return Err(format!("body differs at byte {}", self.got + at));
        }
        self.got = end;
        Ok(())
    }

    fn parse_head(&mut self) -> Result<(), String> {
        let text = String::from_utf8_lossy(&self.head).into_owned();
        let mut lines = text.lines().map(|l| l.trim_end_matches('\r'));
        let mut status = None;
        let mut location = false;
        if text.starts_with("HTTP/") {
            let line = lines.next().unwrap_or_default();
            status = Some(status_code(line.split_once(' ').map_or("", |(_, s)| s))?);
        }
        for line in lines.filter(|l| !l.is_empty()) {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| format!("header line without a colon: {line:?}"))?;
            let value = value.trim();
            if name.eq_ignore_ascii_case("status") {
                status = Some(status_code(value)?);
            } else if name.eq_ignore_ascii_case("content-length") {
                let n = value
                    .parse()
                    .map_err(|_| format!("bad Content-Length {value:?}"))?;
                self.content_length = Some(n);
            } else if name.eq_ignore_ascii_case("location") {
                location = true;
            }
        }
        // CGI (RFC 3875 6.2): no Status means 200, or 302 with a Location.
        self.status = status.unwrap_or(if location { 302 } else { 200 });
        Ok(())
    }

    /// The Content-Length the head announced, if any.
    #[cfg(test)]
    pub fn content_length(&self) -> Option<usize> {
        self.content_length
    }
}

/// Where the head ends (just past its empty line), searching from `from`.
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(p) = buf[i..].iter().position(|&b| b == b'\n') {
        let nl = i + p;
        let rest = &buf[nl + 1..];
        if rest.first() == Some(&b'\n') {
            return Some(nl + 2);
        }
        if rest.starts_with(b"\r\n") {
            return Some(nl + 3);
        }
        i = nl + 1;
    }
    None
}

fn status_code(s: &str) -> Result<u16, String> {
    s.get(..3)
        .and_then(|c| c.parse().ok())
        .filter(|c| (100..1000).contains(c))
        .ok_or_else(|| format!("bad status {s:?}"))
}

fn snippet(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(200)]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expect(body: &[u8]) -> Expect {
        Expect {
            status: 200,
            body: body.to_vec(),
        }
    }

    fn check_all(wire: &[u8], e: &Expect) -> Result<Check, String> {
        // Every cut point, fed in two pieces.
        let mut last = None;
        for cut in 0..=wire.len() {
            let mut c = Check::new();
            c.feed(e, &wire[..cut])?;
            c.feed(e, &wire[cut..])?;
            c.finish(e)?;
            last = Some(c);
        }
        Ok(last.unwrap())
    }

    #[test]
    fn cgi_head() {
        let e = expect(b"hi\n");
        let c = check_all(
            b"Content-Type: text/plain\r\nStatus: 200 OK\r\nContent-Length: 3\r\n\r\nhi\n",
            &e,
        )
        .unwrap();
        assert_eq!(c.content_length(), Some(3));
    }

    #[test]
    fn http_status_line_and_bare_lf() {
        let e = expect(b"hi\n");
        check_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhi\n",
            &e,
        )
        .unwrap();
        check_all(b"Status: 200 OK\nX: y\n\nhi\n", &e).unwrap();
        check_all(b"X: y\r\n\r\nhi\n", &e).unwrap(); // no Status: 200
    }

    #[test]
    fn wrong_responses_are_caught() {
        let e = expect(b"hi\n");
        let err = |wire: &[u8]| check_all(wire, &e).err().unwrap();
        assert!(err(b"Status: 502 Bad Gateway\r\n\r\nhi\n").contains("status 502"));
        assert!(err(b"HTTP/1.1 500 Oops\r\n\r\nhi\n").contains("status 500"));
        assert!(err(b"Status: 200 OK\r\n\r\nhx\n").contains("differs at byte 1"));
        assert!(err(b"Status: 200 OK\r\n\r\nhi").contains("2 bytes"));
        assert!(err(b"Status: 200 OK\r\n\r\nhi\n!").contains("longer"));
        assert!(err(b"Status: 200 OK\r\n").contains("inside the head"));
        assert!(err(b"garbage\r\n\r\nhi\n").contains("colon"));
        assert!(err(b"Location: /x\r\n\r\nhi\n").contains("status 302"));
    }
}
