//! What every connection of a listener needs, whatever its protocol: each
//! protocol's context holds one, so a limit added for all is added once.

use super::gate::JobGate;
use crate::config::{BodyLimits, ServeConfig, Timeouts};
use rustgi_core::{PythonPool, SpoolLimits};
use std::sync::Arc;

/// The Python threads, the limits and the I/O loop a connection is served
/// with.
pub struct LaneShared {
    pub pool: Arc<PythonPool>,
    pub(crate) gate: JobGate,
    pub timeouts: Timeouts,
    pub spool: SpoolLimits,
    pub body: BodyLimits,
    /// Bound of a response channel, in bytes.
    pub response_buffer: usize,
    /// The I/O loop, where a Python-lane response goes once its
    /// connection is full.
    pub runtime: tokio::runtime::Handle,
}

impl LaneShared {
    /// Call it on the I/O loop.
    pub(crate) fn new(config: &ServeConfig, pool: Arc<PythonPool>, gate: JobGate) -> Self {
        LaneShared {
            pool,
            gate,
            timeouts: config.timeouts,
            spool: config.spool,
            body: config.body,
            response_buffer: config.response_buffer,
            runtime: tokio::runtime::Handle::current(),
        }
    }
}
