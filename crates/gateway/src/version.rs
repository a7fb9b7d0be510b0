//! What `--version` says: this build (version, git commit) and the Python
//! it embeds (its version, the installation built against, the libpython
//! actually loaded), because a gateway embeds one Python and a venv, or a
//! bug report, must match it.

use std::sync::LazyLock;

/// The commit built, from build.rs; absent when built from an sdist or
/// without git.
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
