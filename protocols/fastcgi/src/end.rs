//! The END_REQUEST body.
//!
//! ```text
//! appStatus:u32be protocolStatus:u8 reserved[3]      ; 8 bytes
//! protocolStatus = 0 REQUEST_COMPLETE / 1 CANT_MPX_CONN / 2 OVERLOADED / 3 UNKNOWN_ROLE
//! ```

use nom::{
    IResult, Parser,
    bytes::complete::take,
    combinator::all_consuming,
    number::complete::{be_u8, be_u32},
};

/// The length of an END_REQUEST body.
pub const END_REQUEST_LEN: usize = 8;

/// How a request ended, as far as the protocol is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ProtocolStatus {
    /// The request ran (its outcome is in appStatus and the response).
    RequestComplete = 0,
    /// A second concurrent request on a connection that does not multiplex.
    CantMpxConn = 1,
    /// Refused for want of resources.
    Overloaded = 2,
    /// A role the application does not play.
    UnknownRole = 3,
}

impl ProtocolStatus {
    /// The status a byte names, if FastCGI 1.0 defines it.
    pub fn from_u8(byte: u8) -> Option<ProtocolStatus> {
        use ProtocolStatus::*;
        [RequestComplete, CantMpxConn, Overloaded, UnknownRole]
            .into_iter()
            .find(|s| *s as u8 == byte)
    }
}

/// A decoded END_REQUEST body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndRequest {
    pub app_status: u32,
    pub protocol_status: u8,
}

fn body(input: &[u8]) -> IResult<&[u8], EndRequest, ()> {
    all_consuming((be_u32, be_u8, take(3usize)))
        .map(|(app_status, protocol_status, _reserved)| EndRequest {
            app_status,
            protocol_status,
        })
        .parse(input)
}

impl EndRequest {
    pub fn new(app_status: u32, status: ProtocolStatus) -> EndRequest {
        EndRequest {
            app_status,
            protocol_status: status as u8,
        }
    }

    /// Decodes a body; `None` unless it is exactly 8 bytes. (The gateway
    /// only writes END_REQUEST; this is for tests and clients.)
    pub fn parse(content: &[u8]) -> Option<EndRequest> {
        body(content).ok().map(|(_, e)| e)
    }

    /// The 8 bytes on the wire.
    pub fn encode(&self) -> [u8; END_REQUEST_LEN] {
        let [a3, a2, a1, a0] = self.app_status.to_be_bytes();
        [a3, a2, a1, a0, self.protocol_status, 0, 0, 0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let e = EndRequest::new(0x0102_0304, ProtocolStatus::Overloaded);
        assert_eq!(e.encode(), [1, 2, 3, 4, 2, 0, 0, 0]);
        assert_eq!(EndRequest::parse(&e.encode()), Some(e));
        assert_eq!(EndRequest::parse(&[0; 7]), None);
        assert_eq!(
            ProtocolStatus::from_u8(3),
            Some(ProtocolStatus::UnknownRole)
        );
        assert_eq!(ProtocolStatus::from_u8(4), None);
    }
}
