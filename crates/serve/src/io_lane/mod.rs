//! The I/O lane: connections served on the tokio loop, for what must wait
//! (a partial head, a body still arriving, a full socket, FastCGI kept and
//! multiplexed connections). Requests still run on the Python threads;
//! their responses come back through a channel and go out through the
//! flow (`crate::flow`) and the async sink.

pub(crate) mod ajp;
pub(crate) mod body_rate;
pub(crate) mod connection;
pub(crate) mod fastcgi;
pub(crate) mod gate;
pub(crate) mod shared;
pub(crate) mod stream;
pub(crate) mod to_python;
