//! An address or a network that a peer is checked against: `--allow-from`
//! (who may connect) and `--forwarded-allow-from` (whose forwarded
//! headers are believed) share this one parser, so that both flags read
//! `10.0.0.0/8` and `::1` the same way.

use std::fmt;
use std::net::IpAddr;

/// An address or a network (`10.0.0.0/8`, `::1`, `fd00::/8`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllowedPeer {
    network: IpAddr,
    prefix: u8,
}

impl AllowedPeer {
    /// `ADDR` or `ADDR/BITS` (IPv4 or IPv6, brackets allowed).
    pub fn parse(text: &str) -> Result<AllowedPeer, String> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = addr
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or network"))?;
        let network = canonical(network);
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {max}"))?,
        };
        Ok(AllowedPeer { network, prefix })
    }

    /// Whether `peer` is in this network (IPv4-mapped IPv6 as IPv4).
    pub fn contains(&self, peer: IpAddr) -> bool {
        match (self.network, canonical(peer)) {
            (IpAddr::V4(net), IpAddr::V4(peer)) => same_prefix(
                u128::from(u32::from(net)),
                u128::from(u32::from(peer)),
                self.prefix,
                32,
            ),
            (IpAddr::V6(net), IpAddr::V6(peer)) => {
                same_prefix(u128::from(net), u128::from(peer), self.prefix, 128)
            }
            _ => false,
        }
    }
}

impl fmt::Display for AllowedPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:127.0.0.1`, what a dual-stack
/// listener reports) compare as the IPv4 address they are.
fn canonical(addr: IpAddr) -> IpAddr {
    addr.to_canonical()
}

fn same_prefix(a: u128, b: u128, prefix: u8, bits: u32) -> bool {
    let shift = bits - u32::from(prefix);
    shift >= bits || (a >> shift) == (b >> shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(rule: &str, peer: &str) -> bool {
        AllowedPeer::parse(rule)
            .unwrap()
            .contains(peer.parse().unwrap())
    }

    #[test]
    fn addresses_and_networks() {
        assert!(allowed("127.0.0.1", "127.0.0.1"));
        assert!(!allowed("127.0.0.1", "127.0.0.2"));
        assert!(allowed("10.0.0.0/8", "10.200.3.4"));
        assert!(!allowed("10.0.0.0/8", "11.0.0.1"));
        assert!(allowed("0.0.0.0/0", "192.0.2.1"));
        assert!(allowed("::1", "::1"));
        assert!(allowed("[::1]", "::1"));
        assert!(allowed("fd00::/8", "fd12::5"));
        assert!(!allowed("::1", "127.0.0.1"));
        assert!(allowed("127.0.0.1", "::ffff:127.0.0.1"));
    }

    #[test]
    fn bad_rules_are_refused() {
        assert!(AllowedPeer::parse("localhost").is_err());
        assert!(AllowedPeer::parse("10.0.0.0/33").is_err());
        assert!(AllowedPeer::parse("::/129").is_err());
    }
}
