//! Which CPython this binary embeds, known without starting it: what
//! `--version` prints and what a venv is checked against (venv.rs).
//!
//! Two answers can differ: the Python the binary was built against (its
//! prefix, recorded by build.rs) and the libpython the loader found at run
//! time (the rpath points at the first, but a user who cannot read that
//! directory gets another of the same soname). Both are reported.

use pyo3::ffi;
use std::ffi::CStr;
use std::path::{Path, PathBuf};

/// The prefix (`sys.base_prefix`) of the Python built against, if build.rs
/// could ask it.
pub const BUILD_PREFIX: Option<&str> = option_env!("RUSTGI_BUILD_PYTHON_PREFIX");

/// The exact version of the Python built against ("3.11.7"), if build.rs
/// could ask it.
pub const BUILD_VERSION: Option<&str> = option_env!("RUSTGI_BUILD_PYTHON_FULL_VERSION");

/// The loaded libpython's `Py_GetVersion()`, "3.11.7 (main, …) [GCC …]",
/// on one line.
pub fn version_line() -> String {
    // SAFETY: Py_GetVersion is one of the functions CPython documents as
    // safe before Py_Initialize; it returns a static NUL-terminated string.
    let text = unsafe { CStr::from_ptr(ffi::Py_GetVersion()) };
    text.to_string_lossy().replace('\n', " ")
}

/// The loaded libpython's version number alone ("3.11.7").
pub fn version() -> String {
    version_line()
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The file the loader took libpython from, as the dynamic linker says.
pub fn library_path() -> Option<PathBuf> {
    let mut info = std::mem::MaybeUninit::<libc::Dl_info>::zeroed();
    let symbol = ffi::Py_GetVersion as *const libc::c_void;
    // SAFETY: dladdr only reads the loader's tables and fills `info`; a
    // zero return leaves it unset, which is checked before any read.
    let found = unsafe { libc::dladdr(symbol, info.as_mut_ptr()) };
    if found == 0 {
        return None;
    }
    // SAFETY: dladdr returned non-zero, so it filled `info`.
    let info = unsafe { info.assume_init() };
    if info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dli_fname is a NUL-terminated string owned by the loader,
    // alive as long as the library stays loaded (for ever: it is ours).
    let name = unsafe { CStr::from_ptr(info.dli_fname) };
    use std::os::unix::ffi::OsStrExt;
    let path = Path::new(std::ffi::OsStr::from_bytes(name.to_bytes()));
    Some(std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()))
}

/// The interpreter to name in "make a venv with …": the built-against
/// installation's `python3` (or `python3.X`), else its recorded path.
pub fn base_python() -> Option<PathBuf> {
    let prefix = Path::new(BUILD_PREFIX?);
    let major_minor = crate::interpreter::BUILD_PYTHON_VERSION;
    [
        prefix.join("bin").join("python3"),
        prefix.join("bin").join(format!("python{major_minor}")),
    ]
    .into_iter()
    .find(|p| p.exists())
}

/// What `--version` prints about Python: the loaded version, the
/// installation built against, and the library actually loaded (with a
/// word when it is not that installation's).
pub fn describe() -> String {
    let mut text = format!("Python {}", version_line());
    if let Some(prefix) = BUILD_PREFIX {
        text.push_str(&format!("\nbuilt against the Python at {prefix}"));
        if let Some(built) = BUILD_VERSION {
            text.push_str(&format!(" ({built})"));
        }
    }
    if let Some(library) = library_path() {
        text.push_str(&format!("\nlibpython: {}", library.display()));
        if let Some(prefix) = BUILD_PREFIX
            && !library.starts_with(canonical(Path::new(prefix)))
        {
            text.push_str(&format!(
                " (not the one under {prefix}: this user cannot read it, or it is gone, \
                 and the loader took another with the same name)"
            ));
        }
    }
    text
}

pub(crate) fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loaded_python_is_the_one_built_against() {
        // The test binary gets the same rpath as the gateway (build.rs).
        let library = library_path().expect("dladdr finds libpython");
        let prefix = BUILD_PREFIX.expect("build.rs records the prefix");
        assert!(
            library.starts_with(canonical(Path::new(prefix))),
            "{} is not under {prefix}",
            library.display()
        );
        assert_eq!(Some(version().as_str()), BUILD_VERSION);
        let text = describe();
        assert!(text.starts_with(&format!("Python {}", version())), "{text}");
        assert!(text.contains(prefix), "{text}");
        assert!(!text.contains("not the one"), "{text}");
    }
}
