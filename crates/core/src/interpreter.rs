//! Embedding CPython the way DESIGN.md's "Rules learned the hard way" say:
//! a venv through `program_name`, no Python signal handlers, the app
//! imported on the thread that initialised Python, finalisation only after
//! every Python thread is parked.

use crate::app::{AppSpec, format_load_error, load};
use crate::call::format_traceback;
use pyo3::ffi;
use pyo3::prelude::*;
use std::ffi::{CStr, CString};
use std::fmt;
use std::mem::MaybeUninit;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// What the interpreter is started with.
#[derive(Clone, Debug)]
pub struct PythonSetup {
    pub app: AppSpec,
    pub venv: Option<PathBuf>,
    /// Directories put first on `sys.path`, in order.
    pub pythonpath: Vec<PathBuf>,
}

impl PythonSetup {
    /// Decides the venv once, before anything is bound or forked: the
    /// `--venv` given, else the venv this executable sits in (venv.rs);
    /// checks it against the embedded Python (a venv of another
    /// installation is refused here, before the socket exists) and logs
    /// what it found.
    ///
    /// `start_dir` is the working directory the program started in
    /// (before `--chdir`), which a relative `argv[0]` is relative to.
    pub fn settle(&mut self, start_dir: Option<&Path>) -> Result<(), StartError> {
        let implicit = self.venv.is_none();
        if let Some(venv) = &self.venv {
            tracing::info!("serving the venv {} (--venv)", venv.display());
        } else if let Some((venv, invoked)) = crate::venv::implicit_venv(start_dir) {
            tracing::info!(
                "serving the venv {}: rustgi-gateway was started from its bin/, as {} (--venv DIR serves another)",
                venv.display(),
                invoked.display()
            );
            self.venv = Some(venv);
        } else {
            let python = match crate::embedded::BUILD_PREFIX {
                Some(prefix) => format!("the Python at {prefix}"),
                None => "the Python built against".to_string(),
            };
            tracing::info!("no venv: serving the packages of {python} (--venv DIR serves a venv)");
        }
        if let Some(venv) = &self.venv {
            let venv = std::path::absolute(venv).map_err(|e| StartError::Venv(e.to_string()))?;
            let checked = crate::venv::check(&venv).map_err(|why| {
                StartError::Venv(if implicit {
                    format!(
                        "{why} (no --venv was given: this venv is the one rustgi-gateway runs from)"
                    )
                } else {
                    why
                })
            })?;
            if let Some(warning) = checked {
                tracing::warn!("{warning}");
            }
            self.venv = Some(venv);
        }
        Ok(())
    }
}

/// Why the interpreter or the application could not start.
#[derive(Debug)]
pub enum StartError {
    Venv(String),
    Init(String),
    /// The application failed to import; carries the Python traceback.
    App {
        app: String,
        traceback: String,
    },
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Venv(msg) => write!(f, "--venv: {msg}"),
            StartError::Init(msg) => write!(f, "could not initialise Python: {msg}"),
            StartError::App { app, traceback } => {
                write!(f, "could not load the application {app}:\n{traceback}")
            }
        }
    }
}

impl std::error::Error for StartError {}

/// The embedded interpreter and the loaded application. Created and
/// finalised on the same thread (the main one).
pub struct Interpreter {
    app: Option<Py<PyAny>>,
    main_thread: *mut ffi::PyThreadState,
    /// "3.11.7 (…) at /usr", for the start-up log line.
    pub description: String,
}

/// The Python version this binary links against, "3.11".
pub const BUILD_PYTHON_VERSION: &str = env!("RUSTGI_BUILD_PYTHON_VERSION");

impl Interpreter {
    /// Initialises CPython on this thread and loads the application.
    pub fn start(setup: &PythonSetup) -> Result<Interpreter, StartError> {
        let program = match &setup.venv {
            Some(venv) => Some(venv_python(venv)?),
            None => option_env!("RUSTGI_BUILD_PYTHON")
                .map(PathBuf::from)
                .filter(|p| p.exists()),
        };
        initialize(program.as_deref())?;
        let loaded = Python::attach(|py| -> Result<(Py<PyAny>, String), StartError> {
            let fail = |e: PyErr| StartError::App {
                app: setup.app.to_string(),
                traceback: format_traceback(py, &e),
            };
            // Before the import: what the application prints then is logged too.
            crate::stdio::install(py).map_err(fail)?;
            crate::flup::install(py).map_err(fail)?;
            for dir in setup.pythonpath.iter().rev() {
                crate::app::prepend_sys_path(py, dir).map_err(fail)?;
            }
            let handlers_before = signal_handlers(py);
            let app = load(py, &setup.app).map_err(|e| StartError::App {
                app: setup.app.to_string(),
                traceback: format_load_error(py, &e),
            })?;
            warn_about_new_signal_handlers(py, &handlers_before);
            release_python_sigint(py).map_err(fail)?;
            let sys = py.import("sys").map_err(fail)?;
            let version: String = sys
                .getattr("version")
                .and_then(|v| v.extract())
                .map_err(fail)?;
            let prefix: String = sys
                .getattr("prefix")
                .and_then(|v| v.extract())
                .map_err(fail)?;
            let base: String = sys
                .getattr("base_prefix")
                .and_then(|v| v.extract())
                .map_err(fail)?;
            if let Some(built) = option_env!("RUSTGI_BUILD_PYTHON_PREFIX")
                && built != base
            {
                tracing::warn!(
                    "this is the Python at {base}, not the one rustgi-gateway was built against ({built}): \
                     the loader could not use the recorded library path (is {built}/lib readable by this user?) \
                     and found another libpython with the same name"
                );
            }
            Ok((
                app.unbind(),
                format!("{} (prefix {prefix})", version.replace('\n', " ")),
            ))
        });
        let (app, description) = match loaded {
            Ok(loaded) => loaded,
            Err(e) => {
                // SAFETY: this thread initialised Python and holds the GIL.
                unsafe { ffi::Py_FinalizeEx() };
                return Err(e);
            }
        };
        // SAFETY: this thread holds the GIL since initialisation; release it
        // so the Python threads can attach. Restored in `finalize`.
        let main_thread = unsafe { ffi::PyEval_SaveThread() };
        Ok(Interpreter {
            app: Some(app),
            main_thread,
            description,
        })
    }

    /// `gc.freeze()`: moves every object the import made into the permanent
    /// generation, so that the collector never writes to them and the pages
    /// a forked worker shares with the master stay shared (copy-on-write).
    pub fn freeze_gc(&self) -> Result<(), String> {
        Python::attach(|py| {
            py.import("gc")
                .and_then(|gc| gc.call_method0("freeze"))
                .map(drop)
                .map_err(|e| format_traceback(py, &e))
        })
    }

    /// Forks the process through CPython's hooks (`PyOS_BeforeFork`,
    /// `PyOS_AfterFork_Parent`, `PyOS_AfterFork_Child`), as `os.fork()`
    /// does: the import lock and other interpreter locks are taken across
    /// the fork, `os.register_at_fork` callbacks run, and the child's
    /// interpreter forgets the parent's other threads. Returns what fork()
    /// returns: 0 in the child, the child's pid in the parent.
    ///
    /// # Safety
    /// The process must be single-threaded, and this the thread that
    /// started the interpreter: a child forked from several threads holds
    /// copies of the other threads' locks (the allocator's among them)
    /// that nobody will ever release.
    pub unsafe fn fork(&self) -> std::io::Result<libc::pid_t> {
        Python::attach(|_py| {
            // SAFETY: the GIL is held, as these functions require; fork()
            // is called between them exactly as in CPython's os.fork().
            unsafe {
                ffi::PyOS_BeforeFork();
                let pid = libc::fork();
                let error = std::io::Error::last_os_error();
                if pid == 0 {
                    ffi::PyOS_AfterFork_Child();
                } else {
                    ffi::PyOS_AfterFork_Parent();
                }
                if pid < 0 { Err(error) } else { Ok(pid) }
            }
        })
    }

    /// The application callable.
    pub fn app(&self) -> &Py<PyAny> {
        self.app.as_ref().expect("present until finalize")
    }

    /// Runs atexit handlers and `logging.shutdown` through Py_FinalizeEx.
    /// Call it only after every Python thread has stopped.
    pub fn finalize(mut self) {
        Python::attach(|_py| drop(self.app.take()));
        // SAFETY: `main_thread` came from PyEval_SaveThread on this thread.
        unsafe {
            ffi::PyEval_RestoreThread(self.main_thread);
            ffi::Py_FinalizeEx();
        }
    }
}

fn initialize(program: Option<&Path>) -> Result<(), StartError> {
    // SAFETY: the PyConfig API as documented for embedding: init, set, use,
    // clear; each status is checked.
    unsafe {
        let mut config = MaybeUninit::<ffi::PyConfig>::zeroed();
        ffi::PyConfig_InitPythonConfig(config.as_mut_ptr());
        let mut config = config.assume_init();
        // rustgi owns SIGINT, SIGTERM and SIGHUP.
        config.install_signal_handlers = 0;
        config.parse_argv = 0;
        let argv0 = c"rustgi-gateway";
        let mut argv = [argv0.as_ptr()];
        let mut status = ffi::PyConfig_SetBytesArgv(&mut config, 1, argv.as_mut_ptr());
        if ffi::PyStatus_Exception(status) == 0
            && let Some(program) = program
        {
            let program = CString::new(program.as_os_str().as_bytes())
                .map_err(|_| StartError::Init("a NUL in the Python path".into()))?;
            let field = &raw mut config.program_name;
            status = ffi::PyConfig_SetBytesString(&mut config, field, program.as_ptr());
        }
        if ffi::PyStatus_Exception(status) == 0 {
            status = ffi::Py_InitializeFromConfig(&config);
        }
        ffi::PyConfig_Clear(&mut config);
        if ffi::PyStatus_Exception(status) != 0 {
            let msg = if status.err_msg.is_null() {
                "unknown error".to_string()
            } else {
                CStr::from_ptr(status.err_msg)
                    .to_string_lossy()
                    .into_owned()
            };
            return Err(StartError::Init(msg));
        }
    }
    Ok(())
}

/// `<venv>/bin/python`, after checking that the venv was made by the
/// installation this binary embeds (venv.rs).
fn venv_python(venv: &Path) -> Result<PathBuf, StartError> {
    crate::venv::check(venv).map_err(StartError::Venv)?;
    let python = std::path::absolute(venv.join("bin").join("python"))
        .map_err(|e| StartError::Venv(e.to_string()))?;
    if !python.exists() {
        return Err(StartError::Venv(format!(
            "{} does not exist",
            python.display()
        )));
    }
    Ok(python)
}

const OWNED_SIGNALS: [&str; 3] = ["SIGINT", "SIGTERM", "SIGHUP"];

/// Importing `signal` installs Python's own SIGINT handler even with
/// `install_signal_handlers = 0`. tokio chains to the handler it finds, so
/// a SIGINT would also raise KeyboardInterrupt at finalisation. Put the
/// default back (before the server registers its own handler).
fn release_python_sigint(py: Python<'_>) -> PyResult<()> {
    let signal = py.import("signal")?;
    let sigint = signal.getattr("SIGINT")?;
    let current = signal.call_method1("getsignal", (&sigint,))?;
    if current.is(&signal.getattr("default_int_handler")?) {
        signal.call_method1("signal", (sigint, signal.getattr("SIG_DFL")?))?;
    }
    Ok(())
}

/// The Python-level handlers of the signals rustgi owns.
fn signal_handlers(py: Python<'_>) -> Vec<Option<Py<PyAny>>> {
    let Ok(signal) = py.import("signal") else {
        return Vec::new();
    };
    OWNED_SIGNALS
        .iter()
        .map(|name| {
            signal
                .getattr(*name)
                .and_then(|num| signal.call_method1("getsignal", (num,)))
                .ok()
                .map(Bound::unbind)
        })
        .collect()
}

/// rustgi owns the process's signals; a handler the app installed while it
/// was imported would never run, so say so.
fn warn_about_new_signal_handlers(py: Python<'_>, before: &[Option<Py<PyAny>>]) {
    let after = signal_handlers(py);
    for ((name, old), new) in OWNED_SIGNALS.iter().zip(before).zip(&after) {
        let changed = match (old, new) {
            (Some(old), Some(new)) => !old.bind(py).is(new.bind(py)),
            _ => false,
        };
        if changed {
            tracing::warn!(
                "the application installed a Python handler for {name}; rustgi-gateway owns that signal and the handler will not run"
            );
        }
    }
}
