//! The open-file limit against `--max-connections`: each connection held
//! is a descriptor, and a worker that runs out of them can no longer
//! accept (EMFILE), open a spool file, or let the application open one.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// Descriptors a worker needs besides its connections: the listener, the
/// epoll sets and wake-ups, the log, spool files of requests in progress,
/// and what the application itself opens.
const MARGIN: u64 = 256;

/// Raises the soft RLIMIT_NOFILE to the hard limit (as Go's runtime and
/// nginx's `worker_rlimit_nofile` do: the soft default of 1024 predates
/// servers holding thousands of connections), and warns when even that
/// leaves too few descriptors for `max_connections`. Workers inherit it.
pub(crate) fn raise_for(max_connections: usize) {
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(limits) => limits,
        Err(e) => {
            tracing::warn!("reading RLIMIT_NOFILE failed: {e}; --max-connections is not checked");
            return;
        }
    };
    let mut available = soft;
    if soft < hard {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => available = hard,
            Err(e) => tracing::warn!("raising RLIMIT_NOFILE from {soft} to {hard} failed: {e}"),
        }
    }
    let needed = (max_connections as u64).saturating_add(MARGIN);
    if available < needed {
        tracing::warn!(
            "RLIMIT_NOFILE is {available} (hard limit {hard}): fewer open files than \
             --max-connections {max_connections} needs with a margin of {MARGIN}; \
             past it accepts fail with EMFILE and pause. Raise the limit (ulimit -n, \
             LimitNOFILE= in a systemd unit) or lower --max-connections"
        );
    } else {
        tracing::debug!("RLIMIT_NOFILE {available}: room for --max-connections {max_connections}");
    }
}
