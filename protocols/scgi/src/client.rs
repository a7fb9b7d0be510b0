//! The front server's side of the wire, kept small: the request encoder.
//!
//! The gateway never uses it. It exists so that tests, property tests and
//! benches build requests with one definition of the format (the load
//! generator in bench/loadgen keeps its own on purpose, to check this one).

/// `length ":" block ","`: a netstring around a header block.
pub fn netstring(block: &[u8]) -> Vec<u8> {
    let mut out = format!("{}:", block.len()).into_bytes();
    out.extend_from_slice(block);
    out.push(b',');
    out
}

/// A request: each param as `name NUL value NUL` in a netstring, then the
/// body. The params go as given: SCGI wants CONTENT_LENGTH first.
pub fn encode_request<N, V>(params: impl IntoIterator<Item = (N, V)>, body: &[u8]) -> Vec<u8>
where
    N: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    let mut block = Vec::new();
    for (name, value) in params {
        for field in [name.as_ref(), value.as_ref()] {
            block.extend_from_slice(field);
            block.push(0);
        }
    }
    let mut out = netstring(&block);
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn writes_what_nginx_sends() {
        let params = [("CONTENT_LENGTH", "2"), ("SCGI", "1")];
        assert_eq!(
            super::encode_request(params, b"hi"),
            b"24:CONTENT_LENGTH\x002\x00SCGI\x001\x00,hi"
        );
    }
}
