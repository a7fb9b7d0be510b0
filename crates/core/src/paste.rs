//! `--paste PATH[#NAME]`: a PasteDeploy application and its middleware
//! pipeline, with the ini's logging applied first (see `paste_loader.py`).

use pyo3::prelude::*;
use pyo3::types::PyModule;
use std::ffi::CString;
use std::path::Path;

const LOADER_SOURCE: &str = include_str!("paste_loader.py");

/// Loads the ini's application `name` (`main` when `None`).
pub(crate) fn load<'py>(
    py: Python<'py>,
    path: &Path,
    name: Option<&str>,
) -> PyResult<Bound<'py, PyAny>> {
    let source = CString::new(LOADER_SOURCE).expect("no NUL in the paste loader");
    let loader = PyModule::from_code(py, &source, c"<rustgi paste loader>", c"_rustgi_paste")?;
    let (app, logging): (Bound<'py, PyAny>, bool) = loader
        .call_method1("load", (path.to_string_lossy().as_ref(), name))?
        .extract()?;
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    if logging {
        tracing::info!(
            "--paste: applied the logging sections of {} (logging.config.fileConfig)",
            path.display()
        );
    }
    tracing::info!(
        "--paste: loaded {}#{} with paste.deploy.loadapp",
        path.display(),
        name.unwrap_or("main")
    );
    Ok(app)
}
