//! `--trusted-proxy-header X-Forwarded-Proto` with `--forwarded-allow-from`:
//! behind a load balancer that ends TLS and talks plain HTTP to the front
//! server, the balancer's header is the only witness of the client's
//! scheme. It is believed only when the request's REMOTE_ADDR, as the
//! front server sends it (for nginx, `$remote_addr`: the balancer's
//! address, the peer of nginx's connection), is in one of the allowed
//! networks; from anyone else the header is a client's claim and changes
//! nothing.

use rustgi_model::AllowedPeer;
use std::net::IpAddr;

/// Which header says the scheme, and whose word is taken for it.
#[derive(Clone, Debug)]
pub struct ForwardedScheme {
    /// The header as the front server names it: `HTTP_X_FORWARDED_PROTO`.
    param: Box<[u8]>,
    from: Vec<AllowedPeer>,
}

impl ForwardedScheme {
    pub fn new(header: &str, from: Vec<AllowedPeer>) -> ForwardedScheme {
        let param = format!("HTTP_{}", header.to_ascii_uppercase().replace('-', "_"));
        ForwardedScheme {
            param: param.into_bytes().into(),
            from,
        }
    }

    /// The parameter name this header arrives as.
    pub(crate) fn param(&self) -> &[u8] {
        &self.param
    }

    /// `Some(true)` for https, `Some(false)` for http, `None` when the
    /// header is absent, not believed (REMOTE_ADDR outside the networks,
    /// or missing), or says something else.
    ///
    /// A balancer that appends to a header the client already sent puts
    /// its own value last, so the last comma-separated value is the one
    /// read. `on`/`off` are accepted too, for `X-Forwarded-Ssl` and
    /// `Front-End-Https`, and so is RFC 7239's `Forwarded` (its `proto=`).
    pub(crate) fn https(&self, remote_addr: Option<&[u8]>, value: Option<&[u8]>) -> Option<bool> {
        let value = value?;
        let peer: IpAddr = std::str::from_utf8(remote_addr?)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        if !self.from.iter().any(|net| net.contains(peer)) {
            return None;
        }
        let last = scheme_word(value.rsplit(|&b| b == b',').next()?.trim_ascii())?;
        if last.eq_ignore_ascii_case(b"https") || last.eq_ignore_ascii_case(b"on") {
            Some(true)
        } else if last.eq_ignore_ascii_case(b"http") || last.eq_ignore_ascii_case(b"off") {
            Some(false)
        } else {
            None
        }
    }
}

/// The scheme word of one forwarded value: the value itself, or the
/// `proto=` of RFC 7239's `for=192.0.2.60;proto=https`, unquoted.
fn scheme_word(value: &[u8]) -> Option<&[u8]> {
    let word = if value.contains(&b'=') {
        value.split(|&b| b == b';').find_map(|pair| {
            let (name, word) = pair.split_at(pair.iter().position(|&b| b == b'=')?);
            name.trim_ascii()
                .eq_ignore_ascii_case(b"proto")
                .then(|| word[1..].trim_ascii())
        })?
    } else {
        value
    };
    let word = word.strip_prefix(b"\"").unwrap_or(word);
    Some(word.strip_suffix(b"\"").unwrap_or(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(nets: &[&str]) -> ForwardedScheme {
        ForwardedScheme::new(
            "X-Forwarded-Proto",
            nets.iter()
                .map(|n| AllowedPeer::parse(n).unwrap())
                .collect(),
        )
    }

    #[test]
    fn the_header_becomes_its_parameter_name() {
        assert_eq!(from(&[]).param(), b"HTTP_X_FORWARDED_PROTO");
        assert_eq!(
            ForwardedScheme::new("front-end-https", vec![]).param(),
            b"HTTP_FRONT_END_HTTPS"
        );
    }

    #[test]
    fn only_allowed_peers_are_believed() {
        let f = from(&["10.0.0.0/8", "::1"]);
        assert_eq!(f.https(Some(b"10.1.2.3"), Some(b"https")), Some(true));
        assert_eq!(f.https(Some(b"::1"), Some(b"HTTPS")), Some(true));
        assert_eq!(
            f.https(Some(b"::ffff:10.0.0.1"), Some(b"https")),
            Some(true)
        );
        assert_eq!(f.https(Some(b"192.0.2.1"), Some(b"https")), None);
        assert_eq!(f.https(None, Some(b"https")), None);
        assert_eq!(f.https(Some(b"not an address"), Some(b"https")), None);
        assert_eq!(f.https(Some(b"10.1.2.3"), None), None);
    }

    #[test]
    fn the_last_value_counts() {
        let f = from(&["127.0.0.1"]);
        assert_eq!(f.https(Some(b"127.0.0.1"), Some(b"http")), Some(false));
        assert_eq!(
            f.https(Some(b"127.0.0.1"), Some(b"https, http")),
            Some(false)
        );
        assert_eq!(
            f.https(Some(b"127.0.0.1"), Some(b"http , https ")),
            Some(true)
        );
        assert_eq!(f.https(Some(b"127.0.0.1"), Some(b"on")), Some(true));
        assert_eq!(f.https(Some(b"127.0.0.1"), Some(b"wss")), None);
    }

    #[test]
    fn forwarded_says_proto() {
        let f = ForwardedScheme::new("Forwarded", vec![AllowedPeer::parse("::1").unwrap()]);
        assert_eq!(f.param(), b"HTTP_FORWARDED");
        let https = |v: &[u8]| f.https(Some(b"::1"), Some(v));
        assert_eq!(
            https(b"for=192.0.2.60;proto=https;by=203.0.113.43"),
            Some(true)
        );
        assert_eq!(
            https(b"for=192.0.2.43, for=198.51.100.17; Proto=\"http\""),
            Some(false)
        );
        assert_eq!(https(b"proto=https, for=198.51.100.17"), None);
        assert_eq!(https(b"for=192.0.2.60"), None);
    }
}
