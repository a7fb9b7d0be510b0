//! How protocol errors show client bytes in a log line: exact, readable,
//! and bounded, so a 64 KiB garbage field never makes a 64 KiB log line.

/// `'G' (0x47)`, `'\x00' (0x00)`.
pub fn byte(byte: u8) -> String {
    format!("'{}' (0x{byte:02x})", byte.escape_ascii())
}

/// A name or value as latin-1, cut at 64 bytes (`…` marks the cut).
pub fn field(bytes: &[u8]) -> String {
    const MAX: usize = 64;
    let mut shown: String = bytes.iter().take(MAX).map(|&b| char::from(b)).collect();
    if bytes.len() > MAX {
        shown.push('…');
    }
    shown
}

#[cfg(test)]
mod tests {
    #[test]
    fn bytes_and_fields() {
        assert_eq!(super::byte(b'G'), "'G' (0x47)");
        assert_eq!(super::byte(0), "'\\x00' (0x00)");
        assert_eq!(super::field(b"caf\xe9"), "café");
        assert_eq!(super::field(&[b'a'; 70]).chars().count(), 65);
    }
}
