//! Pins the libpython this binary was built against (rpath), so that on a
//! machine with two CPython builds of one soname the right one loads; and
//! records the git commit for `--version`, when there is one (an sdist or
//! a crate has no .git: the version then stands alone), marked `-dirty`
//! when the files built from had changes.
include!("built_from.rs");

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
        // Changes to the files the binary is built from, staged or not,
        // and new files among them: the commit alone does not say what
        // was built.
        let root = root.to_string_lossy();
        let mut status = vec!["-C", &root, "status", "--porcelain", "--"];
        status.extend(BUILT_FROM);
        let dirty = if git(&status).is_some() { "-dirty" } else { "" };
        println!("cargo:rustc-env=RUSTGI_GIT_COMMIT={commit}{dirty}");
        // A commit or a checkout moves HEAD (the file, or the branch it
        // names, and appends to its reflog), and an edit changes the
        // files: run again then. --git-path finds them in a worktree too;
        // a ref that git has packed lives in packed-refs.
        let mut watched = vec!["HEAD".to_string(), "logs/HEAD".to_string()];
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watched.push(branch);
            watched.push("packed-refs".to_string());
        }
        for file in &watched {
            if let Some(path) = git(&["rev-parse", "--path-format=absolute", "--git-path", file])
                && std::path::Path::new(&path).exists()
            {
                println!("cargo:rerun-if-changed={path}");
            }
        }
        for path in BUILT_FROM {
            println!("cargo:rerun-if-changed={root}/{path}");
        }
    }
}
