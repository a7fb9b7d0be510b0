//! "Coming from flup": a `dispatch.fcgi` that ends in
//! `WSGIServer(app).run()` is served unchanged. The flup server modules
//! come from `flup_shim.py`, compiled into the binary and put first on
//! `sys.meta_path` at start; its `run()` hands the application over instead
//! of serving. A script (a file that is not `.py`) is run as `__main__`,
//! as the web server ran it, so that its `if __name__ == "__main__":`
//! block reaches the `run()`.

use pyo3::prelude::*;
use pyo3::types::PyModule;
use std::ffi::CString;
use std::path::Path;

const SHIM_SOURCE: &str = include_str!("flup_shim.py");

/// Where the shim's messages go: what each flup argument became.
#[pyfunction]
fn log(level: &str, message: &str) {
    match level {
        "warn" => tracing::warn!(target: "rustgi::flup", "{message}"),
        _ => tracing::info!(target: "rustgi::flup", "{message}"),
    }
}

fn shim(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    if let Ok(module) = py.import("_rustgi_flup") {
        return Ok(module);
    }
    let source = CString::new(SHIM_SOURCE).expect("no NUL in the flup shim");
    PyModule::from_code(py, &source, c"<rustgi flup shim>", c"_rustgi_flup")
}

/// Puts flup's server modules on `sys.meta_path`, ahead of any real flup
/// (only the modules that hold a `WSGIServer` are taken over).
pub(crate) fn install(py: Python<'_>) -> PyResult<()> {
    let module = shim(py)?;
    let logger = wrap_pyfunction!(log, &module)?;
    module.call_method1("install", (logger,))?;
    Ok(())
}

/// The application a module handed to `WSGIServer(app).run()` while it
/// was imported (a `run()` with no `__main__` guard), if `error` is that.
pub(crate) fn handed_over_on_import<'py>(
    py: Python<'py>,
    error: &PyErr,
    module: &str,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let shim = shim(py)?;
    if !error.matches(py, shim.getattr("HandedOver")?)? {
        return Ok(None);
    }
    let app = shim.call_method1("take", (module,))?;
    Ok((!app.is_none()).then_some(app))
}

/// What running a script gave.
pub(crate) enum Ran<'py> {
    /// `WSGIServer(app).run()` was called: the application.
    HandedOver(Bound<'py, PyAny>),
    /// The script ended without it: its globals, to find a callable in.
    Globals(Bound<'py, PyAny>),
}

/// Runs the script at `path` as `__main__`.
pub(crate) fn run_script<'py>(py: Python<'py>, path: &Path) -> PyResult<Ran<'py>> {
    let (app, globals): (Bound<'py, PyAny>, Bound<'py, PyAny>) = shim(py)?
        .call_method1("run_script", (path.to_string_lossy().as_ref(),))?
        .extract()?;
    Ok(if app.is_none() {
        Ran::Globals(globals)
    } else {
        Ran::HandedOver(app)
    })
}
