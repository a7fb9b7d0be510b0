//! The shared secret (Apache's `secret=`, Tomcat's `secretRequired`).

use bytes::Bytes;

/// A configured secret. Compared in time that does not depend on where
/// the first difference is, so that a peer cannot find it byte by byte.
/// No `PartialEq`: `==` would not be constant-time; use
/// [`matches`](Secret::matches).
#[derive(Clone)]
pub struct Secret(Bytes);

impl Secret {
    pub fn new(secret: impl Into<Bytes>) -> Self {
        Secret(secret.into())
    }

    /// Whether `sent` is this secret. Every byte of the longer of the two
    /// is looked at whatever the others hold; only the length may show.
    pub fn matches(&self, sent: &[u8]) -> bool {
        let ours = self.0.as_ref();
        let longest = ours.len().max(sent.len());
        let mut difference = u8::from(ours.len() != sent.len());
        for i in 0..longest {
            let a = ours.get(i).copied().unwrap_or(0);
            let b = sent.get(i).copied().unwrap_or(0);
            difference |= a ^ b;
        }
        std::hint::black_box(difference) == 0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn only_the_same_bytes_match() {
        let secret = Secret::new("s3cret");
        assert!(secret.matches(b"s3cret"));
        assert!(!secret.matches(b"s3cre"));
        assert!(!secret.matches(b"s3cret!"));
        assert!(!secret.matches(b"S3cret"));
        assert!(!secret.matches(b""));
        assert!(Secret::new("").matches(b""));
    }
}
