//! Observability, shared by the workers (which record what each request
//! did) and the master (which gathers it and shows it to operators): the
//! access log, the scoreboard in shared memory, Prometheus metrics and the
//! status page. It knows nothing of Python or of sockets' protocols: it is
//! handed plain values.

mod ended;
pub mod reopen;

pub use ended::Ended;
