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
    /// `Front-End-Https`.
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
        let last = value.rsplit(|&b| b == b',').next()?.trim_ascii();
        if last.eq_ignore_ascii_case(b"https") || last.eq_ignore_ascii_case(b"on") {
            Some(true)
        } else if last.eq_ignore_ascii_case(b"http") || last.eq_ignore_ascii_case(b"off") {
            Some(false)
        } else {
            None
        }
    }
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
}
