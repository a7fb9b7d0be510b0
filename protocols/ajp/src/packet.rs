//! Packet framing: `0x12 0x34, length (u16), payload` from the web server,
//! `'A' 'B', length (u16), payload` from the container.

use crate::AjpError;
use bytes::{Bytes, BytesMut};
use nom::{Parser, bytes::streaming::tag, number::streaming::be_u16};

/// The two bytes that start every packet the web server sends.
pub const MAGIC: [u8; 2] = [0x12, 0x34];
/// The two bytes that start every packet the container sends.
pub(crate) const REPLY_MAGIC: [u8; 2] = *b"AB";
/// Magic and length.
pub const HEADER_LEN: usize = 4;
/// AJP's usual packet size (mod_proxy_ajp's, mod_jk's and Tomcat's
/// default, and lighttpd's only one), header included.
pub const DEFAULT_PACKET_SIZE: usize = 8192;
/// The largest payload the u16 length field can announce.
pub const MAX_PAYLOAD: usize = u16::MAX as usize;

/// The payload of the packet at the front of `buf`, split off it; `None`
/// ("need more") consumes nothing. The length is checked against `limit`
/// as soon as the header is in, so no buffer grows beyond it.
pub fn split_packet(buf: &mut BytesMut, limit: usize) -> Result<Option<Bytes>, AjpError> {
    // Refused at the first byte that differs, and named up to it: the
    // same error however the bytes were cut.
    if let Some(wrong) = buf.iter().zip(MAGIC).position(|(b, m)| *b != m) {
        return Err(AjpError::WrongMagic {
            found: buf[..=wrong].to_vec(),
        });
    }
    let parsed: nom::IResult<&[u8], u16> = (tag(&MAGIC[..]), be_u16)
        .map(|(_, length)| length)
        .parse(&buf[..]);
    let length = match parsed {
        Ok((_, length)) => usize::from(length),
        Err(nom::Err::Incomplete(_)) => return Ok(None),
        Err(_) => unreachable!("the magic was checked above"),
    };
    if length > limit {
        return Err(AjpError::PacketTooLong { length, limit });
    }
    if buf.len() < HEADER_LEN + length {
        return Ok(None);
    }
    let mut packet = buf.split_to(HEADER_LEN + length);
    Ok(Some(packet.split_off(HEADER_LEN).freeze()))
}

/// Drops the whole empty packets at the front of `buf`: lighttpd follows a
/// request that has no body with one, which may come in a read of its own,
/// while the response runs. They mean nothing there, nor between requests.
pub fn skip_empty_packets(buf: &mut BytesMut) {
    const EMPTY: [u8; HEADER_LEN] = [MAGIC[0], MAGIC[1], 0, 0];
    while buf.starts_with(&EMPTY) {
        let _ = buf.split_to(HEADER_LEN);
    }
}

/// Appends a container packet holding `payload` to `out`.
pub(crate) fn reply(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(&REPLY_MAGIC);
    out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packet_is_split_off_whole_and_need_more_consumes_nothing() {
        let mut buf = BytesMut::from(&[0x12, 0x34, 0, 2, 10][..]);
        assert_eq!(split_packet(&mut buf, 100), Ok(None));
        assert_eq!(buf.len(), 5);
        buf.extend_from_slice(&[7, 0x12]);
        assert_eq!(split_packet(&mut buf, 100).unwrap().unwrap(), &[10, 7][..]);
        assert_eq!(&buf[..], &[0x12]);
        assert_eq!(split_packet(&mut buf, 100), Ok(None));
    }

    #[test]
    fn only_whole_empty_packets_are_skipped() {
        let mut buf = BytesMut::from(&[0x12, 0x34, 0, 0, 0x12, 0x34, 0, 0, 0x12, 0x34, 0][..]);
        skip_empty_packets(&mut buf);
        assert_eq!(&buf[..], &[0x12, 0x34, 0], "a cut one stays");
        let mut forward = BytesMut::from(&[0x12, 0x34, 0, 1, 2][..]);
        skip_empty_packets(&mut forward);
        assert_eq!(forward.len(), 5);
    }

    #[test]
    fn wrong_magic_and_long_packets_are_refused_from_the_header() {
        let mut http = BytesMut::from(&b"GE"[..]);
        let error = split_packet(&mut http, 100).unwrap_err();
        assert_eq!(
            error,
            AjpError::WrongMagic {
                found: b"G".to_vec()
            }
        );
        assert!(error.to_string().contains("an HTTP request?"), "{error}");
        let mut second = BytesMut::from(&[0x12, 0x35, 0][..]);
        assert_eq!(
            split_packet(&mut second, 100),
            Err(AjpError::WrongMagic {
                found: vec![0x12, 0x35]
            })
        );
        let mut long = BytesMut::from(&[0x12, 0x34, 0x20, 0x01][..]);
        assert_eq!(
            split_packet(&mut long, 8188),
            Err(AjpError::PacketTooLong {
                length: 8193,
                limit: 8188
            })
        );
    }
}
