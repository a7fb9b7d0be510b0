//! The BEGIN_REQUEST body and the roles it names.
//!
//! ```text
//! role:u16be flags:u8 reserved[5]        ; 8 bytes
//! role  = 1 RESPONDER / 2 AUTHORIZER / 3 FILTER
//! flags = bit 0 KEEP_CONN
//! ```

use std::fmt;
use std::ops::BitOr;

use nom::{
    IResult, Parser,
    bytes::complete::take,
    combinator::all_consuming,
    number::complete::{be_u8, be_u16},
};

/// The length of a BEGIN_REQUEST body.
pub const BEGIN_REQUEST_LEN: usize = 8;

/// `FCGI_KEEP_CONN`: the web server keeps the connection open after the
/// request; without it, the application closes it.
pub const KEEP_CONN: u8 = 1;

/// The role a request asks the application to play.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum Role {
    Responder = 1,
    Authorizer = 2,
    Filter = 3,
}

impl Role {
    /// The role a BEGIN_REQUEST code names, if FastCGI 1.0 defines it.
    pub fn from_code(code: u16) -> Option<Role> {
        match code {
            1 => Some(Role::Responder),
            2 => Some(Role::Authorizer),
            3 => Some(Role::Filter),
            _ => None,
        }
    }

    /// The code on the wire.
    pub fn code(self) -> u16 {
        self as u16
    }

    /// `"RESPONDER"`, `"AUTHORIZER"`, `"FILTER"`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Responder => "RESPONDER",
            Role::Authorizer => "AUTHORIZER",
            Role::Filter => "FILTER",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of roles: those the application accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Roles(u8);

impl Roles {
    pub const NONE: Roles = Roles(0);
    pub const RESPONDER: Roles = Roles(1 << 1);
    pub const AUTHORIZER: Roles = Roles(1 << 2);
    pub const FILTER: Roles = Roles(1 << 3);
    pub const ALL: Roles = Roles(Roles::RESPONDER.0 | Roles::AUTHORIZER.0 | Roles::FILTER.0);

    /// Whether `role` is in the set.
    pub fn contains(self, role: Role) -> bool {
        self.0 & Roles::from(role).0 != 0
    }
}

impl From<Role> for Roles {
    fn from(role: Role) -> Roles {
        Roles(1 << role.code())
    }
}

impl BitOr for Roles {
    type Output = Roles;

    fn bitor(self, rhs: Roles) -> Roles {
        Roles(self.0 | rhs.0)
    }
}

impl Default for Roles {
    /// Every role FastCGI 1.0 defines.
    fn default() -> Roles {
        Roles::ALL
    }
}

/// A decoded BEGIN_REQUEST body. The role stays a number: an unknown role
/// is answered with END_REQUEST/UNKNOWN_ROLE, not lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BeginRequest {
    pub role: u16,
    pub flags: u8,
}

fn body(input: &[u8]) -> IResult<&[u8], BeginRequest, ()> {
    all_consuming((be_u16, be_u8, take(5usize)))
        .map(|(role, flags, _reserved)| BeginRequest { role, flags })
        .parse(input)
}

impl BeginRequest {
    /// Decodes a body; `None` unless it is exactly 8 bytes.
    pub fn parse(content: &[u8]) -> Option<BeginRequest> {
        body(content).ok().map(|(_, b)| b)
    }

    /// The 8 bytes on the wire.
    pub fn encode(&self) -> [u8; BEGIN_REQUEST_LEN] {
        let [r1, r0] = self.role.to_be_bytes();
        [r1, r0, self.flags, 0, 0, 0, 0, 0]
    }

    /// Whether the web server keeps the connection after this request.
    pub fn keep_conn(&self) -> bool {
        self.flags & KEEP_CONN != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_body() {
        let b = BeginRequest::parse(&[0, 1, 1, 0, 0, 0, 0, 0]).unwrap();
        assert_eq!(b, BeginRequest { role: 1, flags: 1 });
        assert!(b.keep_conn());
        assert_eq!(b.encode(), [0, 1, 1, 0, 0, 0, 0, 0]);
        // Unknown flag bits and reserved bytes are ignored.
        let b = BeginRequest::parse(&[0x12, 0x34, 0xfe, 9, 9, 9, 9, 9]).unwrap();
        assert_eq!(b.role, 0x1234);
        assert!(!b.keep_conn());
    }

    #[test]
    fn needs_exactly_eight_bytes() {
        assert_eq!(BeginRequest::parse(&[0, 1, 0, 0, 0, 0, 0]), None);
        assert_eq!(BeginRequest::parse(&[0, 1, 0, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(BeginRequest::parse(&[]), None);
    }

    #[test]
    fn roles() {
        for code in 0..10 {
            if let Some(role) = Role::from_code(code) {
                assert_eq!(role.code(), code);
            }
        }
        assert_eq!(Role::from_code(0), None);
        assert_eq!(Role::from_code(4), None);
        let set = Roles::RESPONDER | Roles::FILTER;
        assert!(set.contains(Role::Responder));
        assert!(!set.contains(Role::Authorizer));
        assert!(set.contains(Role::Filter));
        assert!(!Roles::NONE.contains(Role::Responder));
        assert_eq!(Roles::default(), Roles::ALL);
        assert_eq!(Role::Authorizer.to_string(), "AUTHORIZER");
    }
}
