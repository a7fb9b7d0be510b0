//! Records the Python this crate was built against, so the embedded
//! interpreter can be given it as `program_name` (its prefix and
//! `sys.executable` then come out right without a venv).
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
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
}
