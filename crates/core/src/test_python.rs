//! Tests that run Python: the interpreter is started once per test binary,
//! as plainly as pyo3 does it (no application, no venv).

use std::sync::Once;

/// Starts the interpreter (once); then `Python::attach` works anywhere.
pub(crate) fn start() {
    static STARTED: Once = Once::new();
    STARTED.call_once(pyo3::Python::initialize);
}
