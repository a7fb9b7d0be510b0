//! Pins the libpython this binary was built against (rpath), so that on a
//! machine with two CPython builds of one soname the right one loads.
fn main() {
    pyo3_build_config::add_libpython_rpath_link_args();
}
