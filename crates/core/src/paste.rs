//! `--paste PATH[#NAME]`: a PasteDeploy application and its middleware
//! pipeline, with the ini's logging applied first (see `paste_loader.py`).

use pyo3::prelude::*;
use pyo3::types::PyModule;
use std::ffi::CString;
use std::path::Path;

const LOADER_SOURCE: &str = include_str!("paste_loader.py");

/// Loads the ini's application `name` (`main` when `None`); `path` is
/// absolute.
pub(crate) fn load<'py>(
    py: Python<'py>,
    path: &Path,
    name: Option<&str>,
) -> PyResult<Bound<'py, PyAny>> {
    let source = CString::new(LOADER_SOURCE).expect("no NUL in the paste loader");
    let loader = PyModule::from_code(py, &source, c"<rustgi paste loader>", c"_rustgi_paste")?;
    let text = path.to_string_lossy();
    if loader
        .call_method1("configure_logging", (text.as_ref(),))?
        .extract()?
    {
        tracing::info!(
            "--paste: applied the logging sections of {} (logging.config.fileConfig)",
            path.display()
        );
    }
    let app = loader.call_method1("load", (text.as_ref(), name))?;
    tracing::info!(
        "--paste: loaded {}#{} with paste.deploy.loadapp",
        path.display(),
        name.unwrap_or("main")
    );
    Ok(app)
}
