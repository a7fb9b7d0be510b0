//! Observability, shared by the workers (which record what each request
//! did) and the master (which gathers it and shows it to operators): the
//! access log, the scoreboard in shared memory, Prometheus metrics and the
//! status page. It knows nothing of Python or of the wire protocols: it is
//! handed plain values.

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod access;
pub mod board;
mod ended;
mod front;
pub mod history;
pub mod json;
pub mod metrics;
pub mod page;
pub mod reopen;
pub mod totals;

pub use ended::Ended;
pub use front::Front;
pub use totals::Totals;
