//! What `--version` says: this build (version, git commit) and the Python
//! it embeds (its version, the installation built against, the libpython
//! actually loaded), because a gateway embeds one Python and a venv, or a
//! bug report, must match it.

use std::sync::LazyLock;

/// The commit built, from build.rs, with `-dirty` when the files built
/// from had changes; absent when built from an sdist or without git.
const COMMIT: Option<&str> = option_env!("RUSTGI_GIT_COMMIT");

static TEXT: LazyLock<String> = LazyLock::new(|| {
    let build = match COMMIT {
        Some(commit) => format!("{} (git {commit})", env!("CARGO_PKG_VERSION")),
        None => env!("CARGO_PKG_VERSION").to_string(),
    };
    format!("{build}\n{}", rustgi_core::embedded::describe())
});

/// The text after "rustgi-gateway " (clap prints the name first).
pub fn text() -> &'static str {
    &TEXT
}

#[cfg(test)]
mod tests {
    include!("../built_from.rs");

    /// The marker says what the tree says now: build.rs ran again after
    /// the last edit (it watches the files built from), so a test built
    /// from this tree sees the same state.
    #[test]
    fn dirty_says_whether_the_files_built_from_have_changes() {
        let Some(commit) = super::COMMIT else {
            return; // not built from a git checkout
        };
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
        let out = std::process::Command::new("git")
            .args(["-C", root, "status", "--porcelain", "--"])
            .args(BUILT_FROM)
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_eq!(
            commit.ends_with("-dirty"),
            !out.stdout.is_empty(),
            "{commit}, and git status says:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
