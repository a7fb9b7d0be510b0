//! The 4-byte packet header: `modifier1 (u8), datasize (u16 LE), modifier2 (u8)`.
//!
//! datasize is the length of the vars block that follows, not of the body.
//! Everything the header can tell is checked as soon as its four bytes are
//! in: an HTTP request sent here by mistake, a modifier1 other than 0 or 30,
//! a datasize over the limit. So a bad header is refused before the server
//! waits for a block that may never come ("GET " declares 21573 bytes).

use nom::{
    Parser,
    number::streaming::{le_u16, u8},
};

use crate::UwsgiError;

/// Length of the header.
pub(crate) const HEADER_LEN: usize = 4;

/// modifier1 of a WSGI request.
pub(crate) const MODIFIER_WSGI: u8 = 0;
/// modifier1 of a WSGI request whose PATH_INFO still begins with
/// SCRIPT_NAME (uWSGI's deprecated "manage PATH_INFO" hack).
pub(crate) const MODIFIER_STRIP_SCRIPT_NAME: u8 = 30;

/// The first four bytes of the HTTP requests people send to a uwsgi socket
/// by mistake (`PRI ` starts HTTP/2's connection preface).
const HTTP_STARTS: [&[u8; 4]; 10] = [
    b"GET ", b"POST", b"HEAD", b"PUT ", b"DELE", b"OPTI", b"PATC", b"CONN", b"TRAC", b"PRI ",
];

/// A checked header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub modifier1: u8,
    /// The vars block's length (datasize).
    pub size: usize,
}

impl Header {
    /// Length of the whole head: header and vars block.
    pub fn head_len(&self) -> usize {
        HEADER_LEN + self.size
    }
}

/// Reads and checks the header at the front of `buf`; `Ok(None)` until its
/// four bytes are in.
pub(crate) fn parse(buf: &[u8], limit: usize) -> Result<Option<Header>, UwsgiError> {
    let Ok((_, (modifier1, size, modifier2))) = (u8::<_, ()>, le_u16, u8).parse(buf) else {
        return Ok(None);
    };
    if let Some(&&start) = HTTP_STARTS.iter().find(|s| buf.starts_with(&s[..])) {
        return Err(UwsgiError::HttpRequest { start });
    }
    if modifier1 != MODIFIER_WSGI && modifier1 != MODIFIER_STRIP_SCRIPT_NAME {
        return Err(UwsgiError::UnsupportedModifier {
            modifier1,
            modifier2,
        });
    }
    let size = usize::from(size);
    if size > limit {
        return Err(UwsgiError::VarsOverLimit { size, limit });
    }
    Ok(Some(Header { modifier1, size }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_header() {
        assert_eq!(
            parse(b"\x00\x34\x12\x00rest", 65535),
            Ok(Some(Header {
                modifier1: 0,
                size: 0x1234
            }))
        );
        assert_eq!(
            parse(b"\x1e\x00\x00\x07", 0),
            Ok(Some(Header {
                modifier1: 30,
                size: 0
            }))
        );
        for k in 0..4 {
            assert_eq!(parse(&b"\x00\xff\xff\x00"[..k], 0), Ok(None), "{k} bytes");
        }
    }

    #[test]
    fn get_reads_as_modifier_g_and_datasize_21573() {
        assert_eq!(u16::from_le_bytes(*b"ET"), 21573);
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\n", 65535),
            Err(UwsgiError::HttpRequest { start: *b"GET " })
        );
        for start in HTTP_STARTS {
            assert!(matches!(
                parse(start, 65535),
                Err(UwsgiError::HttpRequest { .. })
            ));
        }
        // Methods are case-sensitive, and "GETX" is no request line.
        assert!(matches!(
            parse(b"get ", 65535),
            Err(UwsgiError::UnsupportedModifier {
                modifier1: b'g',
                ..
            })
        ));
        assert!(matches!(
            parse(b"GETX", 65535),
            Err(UwsgiError::UnsupportedModifier { .. })
        ));
    }
}
