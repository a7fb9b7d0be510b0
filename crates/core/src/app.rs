//! Which application to serve, and loading it.

use pyo3::prelude::*;
use pyo3::types::PyModule;
use std::ffi::CString;
use std::fmt;
use std::path::PathBuf;

const DEMO_SOURCE: &str = include_str!("demo_app.py");
const LOAD_ERROR_SOURCE: &str = include_str!("load_error.py");

/// `--app`: a module (`pkg.wsgi:application`), a file
/// (`path/to/app.py[:callable]`), a script (`dispatch.fcgi`), or the
/// built-in demo; `--paste`: a PasteDeploy ini file.
///
/// The callable part may be a dotted attribute path, and may end in `()` for
/// an application factory called with no arguments (`app:create_app()`).
///
/// A file that does not end in `.py` is a script, run as `__main__` the
/// way the web server ran it (a flup `dispatch.fcgi`, a CGI script): its
/// application is the one it hands to flup's `WSGIServer(app).run()`, or
/// else its global named by the callable part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppSpec {
    Module {
        module: String,
        callable: String,
    },
    File {
        path: PathBuf,
        callable: String,
    },
    /// `--paste PATH[#NAME]`.
    Paste {
        path: PathBuf,
        name: Option<String>,
    },
    Demo,
}

/// Names a script by its extension even without a `/`: a dotted module
/// name never ends so (`mysite.wsgi` stays a module).
const SCRIPT_EXTENSIONS: [&str; 3] = [".fcgi", ".scgi", ".cgi"];

const DEFAULT_CALLABLE: &str = "application";

impl AppSpec {
    pub fn parse(spec: &str) -> AppSpec {
        let (target, callable) = match spec.rsplit_once(':') {
            Some((target, callable)) if !callable.contains('/') && !callable.is_empty() => {
                (target, callable.to_string())
            }
            _ => (spec, DEFAULT_CALLABLE.to_string()),
        };
        if target.ends_with(".py")
            || target.contains('/')
            || SCRIPT_EXTENSIONS.iter().any(|ext| target.ends_with(ext))
        {
            AppSpec::File {
                path: PathBuf::from(target),
                callable,
            }
        } else {
            AppSpec::Module {
                module: target.to_string(),
                callable,
            }
        }
    }

    /// `--paste PATH[#NAME]`.
    pub fn paste(spec: &str) -> AppSpec {
        let (path, name) = match spec.rsplit_once('#') {
            Some((path, name)) if !name.is_empty() => (path, Some(name.to_string())),
            Some((path, _)) => (path, None),
            None => (spec, None),
        };
        AppSpec::Paste {
            path: PathBuf::from(path),
            name,
        }
    }
}

impl fmt::Display for AppSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppSpec::Module { module, callable } => write!(f, "{module}:{callable}"),
            AppSpec::File { path, callable } => write!(f, "{}:{callable}", path.display()),
            AppSpec::Paste { path, name } => {
                write!(
                    f,
                    "{}#{}",
                    path.display(),
                    name.as_deref().unwrap_or("main")
                )
            }
            AppSpec::Demo => write!(f, "the built-in demo app"),
        }
    }
}

/// Imports the application's module and finds its callable. The module's
/// directory (for a file) or the working directory (for a module) goes first
/// on `sys.path`, as `python -m` and gunicorn do.
pub(crate) fn load<'py>(py: Python<'py>, spec: &AppSpec) -> PyResult<Bound<'py, PyAny>> {
    let (module, callable) = match spec {
        AppSpec::Demo => {
            let source = CString::new(DEMO_SOURCE).expect("no NUL in the demo source");
            let module =
                PyModule::from_code(py, &source, c"rustgi_demo_app.py", c"rustgi_demo_app")?;
            return module.getattr("application");
        }
        AppSpec::Module { module, callable } => {
            let cwd = std::env::current_dir()?;
            prepend_sys_path(py, &cwd)?;
            match import(py, module)? {
                Imported::Module(module) => (module, callable),
                Imported::HandedOver(app) => return Ok(app),
            }
        }
        AppSpec::File { path, callable } => {
            let path = std::path::absolute(path)?;
            if !path.is_file() {
                return Err(pyo3::exceptions::PyFileNotFoundError::new_err(format!(
                    "no application file at {}",
                    path.display()
                )));
            }
            let dir = path.parent().expect("an absolute file path has a parent");
            prepend_sys_path(py, dir)?;
            if is_script(&path) {
                match crate::flup::run_script(py, &path)? {
                    crate::flup::Ran::HandedOver(app) => return Ok(app),
                    crate::flup::Ran::Globals(globals) => (globals, callable),
                }
            } else {
                let stem = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or_default();
                match import(py, stem)? {
                    Imported::Module(module) => (module, callable),
                    Imported::HandedOver(app) => return Ok(app),
                }
            }
        }
        AppSpec::Paste { path, name } => {
            let path = std::path::absolute(path)?;
            let dir = path.parent().expect("an absolute file path has a parent");
            prepend_sys_path(py, dir)?;
            return crate::paste::load(py, &path, name.as_deref());
        }
    };
    let (path, call) = match callable.strip_suffix("()") {
        Some(factory) => (factory, true),
        None => (callable.as_str(), false),
    };
    let mut object = module;
    for attr in path.split('.') {
        object = object.getattr(attr).map_err(|e| match spec {
            AppSpec::File { path, .. } if is_script(path) => {
                pyo3::exceptions::PyLookupError::new_err(format!(
                    "{} ran to its end without calling flup's WSGIServer(app).run(), \
                     and has no global {attr:?} to serve ({e})",
                    path.display()
                ))
            }
            _ => e,
        })?;
    }
    if call {
        object = object.call0()?;
    }
    if !object.is_callable() {
        return Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "{spec} is a {}, not a WSGI callable",
            object.get_type().name()?
        )));
    }
    Ok(object)
}

/// A file that is not a `.py` module: run as a script.
fn is_script(path: &std::path::Path) -> bool {
    path.extension().is_none_or(|ext| ext != "py")
}

/// Imports through `importlib.import_module`, so a failure carries the
/// Python traceback users know from `python -c 'import …'`.
///
/// A module that calls flup's `WSGIServer(app).run()` as it is imported
/// ends its import there; the application it handed over is what it gives.
fn import<'py>(py: Python<'py>, module: &str) -> PyResult<Imported<'py>> {
    match py
        .import("importlib")?
        .call_method1("import_module", (module,))
    {
        Ok(module) => Ok(Imported::Module(module)),
        Err(e) => match crate::flup::handed_over_on_import(py, &e, module)? {
            Some(app) => Ok(Imported::HandedOver(app)),
            None => Err(e),
        },
    }
}

enum Imported<'py> {
    Module(Bound<'py, PyAny>),
    HandedOver(Bound<'py, PyAny>),
}

/// What is reported when the application fails to load: its traceback
/// without importlib's frames, and for an ImportError the working
/// directory and `sys.path` (load_error.py).
pub(crate) fn format_load_error(py: Python<'_>, error: &PyErr) -> String {
    let source = CString::new(LOAD_ERROR_SOURCE).expect("no NUL in load_error.py");
    PyModule::from_code(py, &source, c"rustgi_load_error.py", c"rustgi_load_error")
        .and_then(|module| {
            module.call_method1("format_load_error", (error.value(py), error.traceback(py)))
        })
        .and_then(|text| text.extract::<String>())
        .unwrap_or_else(|_| crate::call::format_traceback(py, error))
}

/// Puts `dir` first on `sys.path` (once).
pub(crate) fn prepend_sys_path(py: Python<'_>, dir: &std::path::Path) -> PyResult<()> {
    let sys_path = py.import("sys")?.getattr("path")?;
    let dir = dir.to_string_lossy();
    if sys_path
        .get_item(0)
        .ok()
        .and_then(|first| first.extract::<String>().ok())
        .as_deref()
        != Some(&*dir)
    {
        sys_path.call_method1("insert", (0, dir.as_ref()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!(
            AppSpec::parse("pkg.wsgi:app"),
            AppSpec::Module {
                module: "pkg.wsgi".into(),
                callable: "app".into()
            }
        );
        assert_eq!(
            AppSpec::parse("pkg.wsgi"),
            AppSpec::Module {
                module: "pkg.wsgi".into(),
                callable: "application".into()
            }
        );
        assert_eq!(
            AppSpec::parse("site/app.py"),
            AppSpec::File {
                path: "site/app.py".into(),
                callable: "application".into()
            }
        );
        assert_eq!(
            AppSpec::parse("dispatch.fcgi"),
            AppSpec::File {
                path: "dispatch.fcgi".into(),
                callable: "application".into()
            }
        );
        assert_eq!(
            AppSpec::parse("mysite.wsgi"),
            AppSpec::Module {
                module: "mysite.wsgi".into(),
                callable: "application".into()
            }
        );
        assert_eq!(
            AppSpec::paste("/srv/production.ini#api"),
            AppSpec::Paste {
                path: "/srv/production.ini".into(),
                name: Some("api".into())
            }
        );
        assert_eq!(
            AppSpec::paste("production.ini"),
            AppSpec::Paste {
                path: "production.ini".into(),
                name: None
            }
        );
        assert_eq!(
            AppSpec::parse("/srv/app.py:create_app()"),
            AppSpec::File {
                path: "/srv/app.py".into(),
                callable: "create_app()".into()
            }
        );
    }
}
