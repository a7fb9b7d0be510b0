//! The front server's side of the wire, kept small: the request encoder.
//!
//! The gateway never uses it. It exists so that tests, property tests and
//! benches build requests with one definition of the format (the load
//! generator in bench/loadgen keeps its own on purpose, to check this one).

/// A vars block: `u16le keylen, key, u16le vallen, value` per param.
///
/// # Panics
/// On a key or value over 65535 bytes, which the format cannot carry.
pub fn encode_vars<K, V>(params: impl IntoIterator<Item = (K, V)>) -> Vec<u8>
where
    K: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    let mut block = Vec::new();
    for (key, value) in params {
        for field in [key.as_ref(), value.as_ref()] {
            let len = u16::try_from(field.len()).expect("a uwsgi var under 64 KiB");
            block.extend_from_slice(&len.to_le_bytes());
            block.extend_from_slice(field);
        }
    }
    block
}

/// A packet: `modifier1, u16le datasize, modifier2`, then the vars block.
///
/// # Panics
/// On a block over 65535 bytes, which the format cannot carry.
pub fn packet(modifier1: u8, modifier2: u8, vars: &[u8]) -> Vec<u8> {
    let size = u16::try_from(vars.len()).expect("a uwsgi vars block under 64 KiB");
    let mut out = vec![modifier1];
    out.extend_from_slice(&size.to_le_bytes());
    out.push(modifier2);
    out.extend_from_slice(vars);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn writes_what_nginx_sends() {
        assert_eq!(
            super::packet(30, 1, &super::encode_vars([("A", "bc")])),
            b"\x1e\x07\x00\x01\x01\x00A\x02\x00bc"
        );
    }
}
