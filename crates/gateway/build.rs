//! Pins the libpython this binary was built against (rpath), so that on a
//! machine with two CPython builds of one soname the right one loads; and
//! records the git commit for `--version`, when there is one (an sdist or
//! a crate has no .git: the version then stands alone).
fn main() {
    pyo3_build_config::add_libpython_rpath_link_args();
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
            .filter(|text| !text.is_empty())
    };
    // Only this project's own repository: an sdist unpacked inside
    // another one must not take that one's commit.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let ours = git(&["rev-parse", "--show-toplevel"])
        .is_some_and(|top| std::fs::canonicalize(top).ok() == std::fs::canonicalize(&root).ok());
    if ours && let Some(commit) = git(&["rev-parse", "--short", "HEAD"]) {
        println!("cargo:rustc-env=RUSTGI_GIT_COMMIT={commit}");
        // A commit or a checkout moves HEAD (and appends to its reflog):
        // run again then. --git-path finds them in a worktree too.
        for file in ["HEAD", "logs/HEAD"] {
            if let Some(path) = git(&["rev-parse", "--path-format=absolute", "--git-path", file])
                && std::path::Path::new(&path).exists()
            {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
}
