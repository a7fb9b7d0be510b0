//! How a request ended, as the access log and the metrics name it.

/// How a request ended. The access log writes [`Ended::as_str`]; the
/// metrics use it as the `ended` label, so the names are part of the
/// interface operators build dashboards on: never rename one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ended {
    /// The whole response went to the front server.
    Complete,
    /// The client (or the front server) went away before the response was
    /// whole.
    ClientGone,
    /// The application raised, or answered something that is not HTTP:
    /// the client got a 500, or a cut response if the head was sent.
    AppError,
    /// `--timeout` (or a stalled peer's timeout) ended it.
    Timeout,
    /// The front server aborted it (FastCGI ABORT_REQUEST), or rustgi cut
    /// it (a limit, a stop).
    Aborted,
    /// The worker running it died; the master wrote its line.
    Killed,
}

impl Ended {
    /// Every value, in the order of their index (metrics keep one counter
    /// per value).
    pub const ALL: [Ended; 6] = [
        Ended::Complete,
        Ended::ClientGone,
        Ended::AppError,
        Ended::Timeout,
        Ended::Aborted,
        Ended::Killed,
    ];

    /// The name in the access log and in the metrics' `ended` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Ended::Complete => "complete",
            Ended::ClientGone => "client-gone",
            Ended::AppError => "app-error",
            Ended::Timeout => "timeout",
            Ended::Aborted => "aborted",
            Ended::Killed => "killed",
        }
    }

    /// Its place in [`Ended::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_is_the_place_in_all() {
        for (place, ended) in Ended::ALL.iter().enumerate() {
            assert_eq!(ended.index(), place, "{}", ended.as_str());
        }
    }
}
