//! `--timeout`: a request that runs longer is answered at once (504, or its
//! connection cut once the head is out) and logged with the Python stack of
//! its thread, which is interrupted. Code stuck in a C call (a sleep, a
//! socket read) does not see the interruption until the call returns, so
//! the worker then retires: it stops accepting, lets its other requests
//! finish, and the master starts a fresh one.

use rustgi_core::{Overdue, PythonPool, TimeoutAnswer};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Watches `pool` on a thread of its own (taking the GIL for a stack must
/// never hold up anything else); calls `retire` after a timeout. Ends when
/// the pool is gone.
pub(crate) fn watch(
    pool: &Arc<PythonPool>,
    limit: Duration,
    retire: impl Fn(&str) + Send + 'static,
) -> std::io::Result<()> {
    let pool: Weak<PythonPool> = Arc::downgrade(pool);
    let tick = (limit / 4).clamp(Duration::from_millis(50), Duration::from_millis(500));
    std::thread::Builder::new()
        .name("timeout-watch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(tick);
                let Some(pool) = pool.upgrade() else {
                    return;
                };
                let overdue = pool.expire(limit);
                drop(pool);
                if overdue.is_empty() {
                    continue;
                }
                // The stack needs the GIL, which code stuck in C may hold:
                // retire after a second whether or not it was logged.
                let (logged, done) = std::sync::mpsc::channel();
                std::thread::spawn(move || {
                    for request in overdue {
                        log(&request, limit);
                    }
                    let _ = logged.send(());
                });
                let _ = done.recv_timeout(Duration::from_secs(1));
                retire("a request ran past --timeout");
            }
        })?;
    Ok(())
}

/// `--slow-request-log`: logs each request running longer than `limit`,
/// once, with its Python stack, and leaves it running. On a thread of its
/// own: taking the GIL for a stack may wait on code stuck in C.
pub(crate) fn watch_slow(pool: &Arc<PythonPool>, limit: Duration) -> std::io::Result<()> {
    let pool: Weak<PythonPool> = Arc::downgrade(pool);
    let tick = (limit / 4).clamp(Duration::from_millis(50), Duration::from_millis(500));
    std::thread::Builder::new()
        .name("slow-watch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(tick);
                let Some(pool) = pool.upgrade() else {
                    return;
                };
                let slow = pool.slow(limit);
                drop(pool);
                for request in slow {
                    tracing::warn!(
                        "request {} has run {:.1?}, past --slow-request-log {limit:?}; still running, its Python stack is:\n{}",
                        request.request,
                        request.elapsed,
                        request.stack()
                    );
                }
            }
        })?;
    Ok(())
}

fn log(request: &Overdue, limit: Duration) {
    let answer = match request.answer {
        TimeoutAnswer::GatewayTimeout => "answered 504",
        TimeoutAnswer::Cut => "its response had started: connection cut",
        TimeoutAnswer::Complete => "its response was complete",
    };
    tracing::error!(
        "request {} ran {:.1?}, past --timeout {limit:?}: {answer}; \
         interrupting its thread (TimeoutError), whose Python stack was:\n{}",
        request.request,
        request.elapsed,
        request.stack_and_interrupt()
    );
}
