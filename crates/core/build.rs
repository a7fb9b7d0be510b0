//! Records the Python this crate was built against, so the embedded
//! interpreter can be given it as `program_name` (its prefix and
//! `sys.executable` then come out right without a venv). Runs again when
//! that Python changes: PYO3_PYTHON, or the interpreter, its libpython or
//! its patchlevel.h upgraded in place.
fn main() {
    let config = pyo3_build_config::get();
    if let Some(executable) = config.executable() {
        println!("cargo:rustc-env=RUSTGI_BUILD_PYTHON={executable}");
    }
    let version = config.version();
    println!(
        "cargo:rustc-env=RUSTGI_BUILD_PYTHON_VERSION={}.{}",
        version.major, version.minor
    );
    // The prefix and exact version of the Python built against: to tell at
    // run time whether the loader found that libpython or another one with
    // the same soname, and whether a venv was made by that installation.
    if let Some(executable) = config.executable()
        && let Ok(out) = std::process::Command::new(executable)
            .args([
                "-c",
                "import sys, sysconfig; print(sys.base_prefix); \
                 print('%d.%d.%d' % sys.version_info[:3]); print(sysconfig.get_paths()['include'])",
            ])
            .output()
        && out.status.success()
    {
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        if let (Some(prefix), Some(version)) = (lines.next(), lines.next()) {
            // An upgrade in place (a distribution's patch release, a
            // rebuilt pyenv version) changes the exact version without
            // changing PYO3_PYTHON: patchlevel.h is where the version is
            // written down, and the upgrade rewrites it.
            if let Some(include) = lines.next() {
                watch(&format!("{}/patchlevel.h", include.trim()));
            }
            println!(
                "cargo:rustc-env=RUSTGI_BUILD_PYTHON_PREFIX={}",
                prefix.trim()
            );
            println!(
                "cargo:rustc-env=RUSTGI_BUILD_PYTHON_FULL_VERSION={}",
                version.trim()
            );
        }
    }
    // The benches and tests embed Python: pin the libpython built against
    // (rpath), as the gateway's build.rs does, or the loader may take
    // another build with the same soname (Debian's, on this machine). The
    // crate has no binary, so this reaches only them.
    if let Some(lib_dir) = config.lib_dir() {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
        if let Some(name) = config.lib_name() {
            watch(&format!("{lib_dir}/lib{name}.so"));
        }
    }
    if let Some(executable) = config.executable() {
        watch(executable);
    }
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
}

/// Runs this script again when `path` changes, if it exists (cargo would
/// otherwise run it at every build).
fn watch(path: &str) {
    if std::path::Path::new(path).exists() {
        println!("cargo:rerun-if-changed={path}");
    }
}
