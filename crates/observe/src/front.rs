//! The protocol a request came in with, as logs and metrics name it.

/// The front server's protocol. Its name is the access log's `front` field
/// and the metrics' `protocol` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Front {
    Fastcgi,
    Scgi,
    Uwsgi,
    /// Run as a CGI program (no master, no metrics: the access log only).
    Cgi,
    Ajp,
}

impl Front {
    /// Every value, in the order of their index.
    pub const ALL: [Front; 5] = [
        Front::Fastcgi,
        Front::Scgi,
        Front::Uwsgi,
        Front::Cgi,
        Front::Ajp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Front::Fastcgi => "fastcgi",
            Front::Scgi => "scgi",
            Front::Uwsgi => "uwsgi",
            Front::Cgi => "cgi",
            Front::Ajp => "ajp",
        }
    }

    /// Its place in [`Front::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}
