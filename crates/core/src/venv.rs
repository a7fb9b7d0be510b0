//! Virtualenvs: which one to serve, and whether the embedded Python can.
//!
//! A venv holds no standard library: it borrows the one of the
//! installation that made it (`home` in its `pyvenv.cfg`). Served by a
//! Python of another installation, its packages run on that one's
//! standard library, with another patch level, other compiled modules and
//! other bugs; only the same installation is accepted.
//!
//! Without `--venv`, a gateway whose executable sits in a venv's `bin/`
//! (`<venv>/bin/rustgi-gateway` next to `<venv>/pyvenv.cfg`: what
//! `pip install` inside a venv makes) serves that venv, as gunicorn and
//! uwsgi do once installed there; so does one started as a venv's
//! `bin/rustgi-gateway` that is a symlink to a gateway elsewhere.

use crate::embedded;
use std::path::{Path, PathBuf};

/// What `pyvenv.cfg` says (venv and virtualenv write it).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct VenvConfig {
    /// The directory of the Python that made it (its `bin/`).
    pub home: Option<PathBuf>,
    /// "3.11.7" (venv's `version`, virtualenv's `version_info` cut to
    /// three numbers).
    pub version: Option<String>,
}

pub(crate) fn parse_config(text: &str) -> VenvConfig {
    let mut config = VenvConfig::default();
    for (key, value) in text.lines().filter_map(|line| line.split_once('=')) {
        let value = value.trim();
        match key.trim() {
            "home" => config.home = Some(PathBuf::from(value)),
            "version" | "version_info" if config.version.is_none() => {
                let numbers: Vec<&str> = value.split('.').take(3).collect();
                config.version = Some(numbers.join("."));
            }
            _ => {}
        }
    }
    config
}

fn read_config(venv: &Path) -> Result<VenvConfig, String> {
    let path = venv.join("pyvenv.cfg");
    std::fs::read_to_string(&path)
        .map(|text| parse_config(&text))
        .map_err(|e| {
            format!(
                "{} is not a virtualenv ({}: {e})",
                venv.display(),
                path.display()
            )
        })
}

/// The venv whose `bin/` holds `executable`, if any.
pub(crate) fn venv_of(executable: &Path) -> Option<PathBuf> {
    let bin = executable.parent()?;
    let root = bin.parent()?;
    (bin.file_name()? == "bin" && root.join("pyvenv.cfg").is_file()).then(|| root.to_path_buf())
}

/// The venv to serve without `--venv`, and the path that says so: the
/// venv of the path this program was started by (`argv[0]`, looked up in
/// PATH as the shell did when it has no slash), so that a venv's
/// `bin/rustgi-gateway` that is a symlink to one installed elsewhere
/// serves that venv; else the venv its real file sits in
/// (`/proc/self/exe`). `start_dir` is the working directory at start, which
/// a relative `argv[0]` is relative to.
pub fn implicit_venv(start_dir: Option<&Path>) -> Option<(PathBuf, PathBuf)> {
    let exe = std::env::current_exe().ok()?;
    let argv0 = std::env::args_os().next();
    let path = std::env::var_os("PATH");
    argv0
        .and_then(|argv0| invoked_as(Path::new(&argv0), path.as_deref(), start_dir, &exe))
        .and_then(|invoked| Some((venv_of(&invoked)?, invoked)))
        .or_else(|| Some((venv_of(&exe)?, exe)))
}

/// The path `argv0` started this program by, absolute, when it leads to
/// `exe` (the same file, symlinks followed): `argv[0]` is whatever the
/// caller put there, and only a path to this very program may choose the
/// venv.
pub(crate) fn invoked_as(
    argv0: &Path,
    path_var: Option<&std::ffi::OsStr>,
    start_dir: Option<&Path>,
    exe: &Path,
) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    let identity = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    let this = identity(exe)?;
    let from_start = |p: PathBuf| -> Option<PathBuf> {
        let p = if p.is_absolute() {
            p
        } else {
            start_dir?.join(p)
        };
        std::path::absolute(p).ok()
    };
    let candidates: Vec<PathBuf> = if argv0.as_os_str().as_bytes().contains(&b'/') {
        vec![argv0.to_path_buf()]
    } else {
        // The first match in PATH, as execvp takes it (an empty entry is
        // the working directory).
        let found = std::env::split_paths(path_var?)
            .map(|dir| {
                let dir = if dir.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    dir
                };
                dir.join(argv0)
            })
            .find(|candidate| {
                std::fs::metadata(from_start(candidate.clone()).unwrap_or_default())
                    .is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
            });
        found.into_iter().collect()
    };
    let invoked = from_start(candidates.into_iter().next()?)?;
    (identity(&invoked)? == this).then_some(invoked)
}

/// The embedded Python, as a venv is checked against it.
pub(crate) struct Embedded<'a> {
    /// `sys.base_prefix` of the installation built against.
    pub prefix: Option<&'a Path>,
    /// Its exact version ("3.11.7").
    pub version: &'a str,
    /// Its `python3`, to name in "make a venv with …".
    pub python: Option<&'a Path>,
}

impl Embedded<'_> {
    fn name(&self) -> String {
        match self.prefix {
            Some(prefix) => format!("Python {} at {}", self.version, prefix.display()),
            None => format!("Python {}", self.version),
        }
    }

    fn make_one(&self) -> String {
        let python = self.python.map_or_else(
            || format!("python{}", major_minor(self.version)),
            |p| p.display().to_string(),
        );
        format!(
            "make a venv with `{python} -m venv PATH` and install the application's packages into it"
        )
    }
}

fn major_minor(version: &str) -> String {
    version.split('.').take(2).collect::<Vec<_>>().join(".")
}

/// Accepts `venv` when the embedded Python's installation made it (a
/// warning when that installation was upgraded since, in place), and
/// refuses it, saying how to make a right one, when another did.
pub(crate) fn judge(
    venv: &Path,
    config: &VenvConfig,
    embedded: &Embedded<'_>,
) -> Result<Option<String>, String> {
    let theirs = config.version.as_deref().unwrap_or("of an unknown version");
    let same_minor = config
        .version
        .as_deref()
        .is_some_and(|v| major_minor(v) == major_minor(embedded.version));
    let same_installation = match (&config.home, embedded.prefix) {
        (Some(home), Some(prefix)) => {
            let home = embedded::canonical(home);
            Some(
                home == embedded::canonical(&prefix.join("bin"))
                    || home == embedded::canonical(prefix),
            )
        }
        _ => None,
    };
    let refuse = |why: String| {
        Err(format!(
            "{why}; its packages would run on another installation's standard library. \
             Either {}, or build rustgi-gateway against that Python \
             (`pip install rustgi-gateway` inside the venv, or PYO3_PYTHON=its python cargo build)",
            embedded.make_one()
        ))
    };
    match same_installation {
        Some(false) => refuse(format!(
            "{} was made by the Python in {} (Python {theirs}), but rustgi-gateway embeds {}",
            venv.display(),
            config.home.as_deref().unwrap_or(Path::new("?")).display(),
            embedded.name()
        )),
        _ if config.version.is_some() && !same_minor => refuse(format!(
            "{} was made by Python {theirs}, but rustgi-gateway embeds {}",
            venv.display(),
            embedded.name()
        )),
        None if config.version.is_none() => refuse(format!(
            "{} has a pyvenv.cfg that names neither the Python that made it (home) nor its version, \
             so it cannot be checked against the embedded {}",
            venv.display(),
            embedded.name()
        )),
        Some(true)
            if config
                .version
                .as_deref()
                .is_some_and(|v| v != embedded.version) =>
        {
            Ok(Some(format!(
                "{} was made by Python {theirs} of this installation, which is now {} \
             (upgraded in place): it works; `{} -m venv --upgrade {}` brings its pyvenv.cfg up to date",
                venv.display(),
                embedded.version,
                embedded
                    .python
                    .map_or("python3".into(), |p| p.display().to_string()),
                venv.display()
            )))
        }
        _ => Ok(None),
    }
}

/// Checks `venv` against the Python this binary embeds; the warning, if
/// any, for an accepted one.
pub(crate) fn check(venv: &Path) -> Result<Option<String>, String> {
    let config = read_config(venv)?;
    let version = embedded::BUILD_VERSION
        .map(str::to_string)
        .unwrap_or_else(embedded::version);
    let python = embedded::base_python();
    let embedded = Embedded {
        prefix: embedded::BUILD_PREFIX.map(Path::new),
        version: &version,
        python: python.as_deref(),
    };
    judge(venv, &config, &embedded)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PYENV: &str = "/root/.pyenv/versions/3.11.7";

    fn embedded(prefix: &Path) -> Embedded<'_> {
        Embedded {
            prefix: Some(prefix),
            version: "3.11.7",
            python: None,
        }
    }

    fn config(home: &Path, version: &str) -> VenvConfig {
        VenvConfig {
            home: Some(home.to_path_buf()),
            version: Some(version.into()),
        }
    }

    #[test]
    fn pyvenv_cfg_of_venv_and_of_virtualenv() {
        let venv = parse_config(
            "home = /usr/bin\ninclude-system-site-packages = false\nversion = 3.11.2\n\
             executable = /usr/bin/python3.11\ncommand = /usr/bin/python3.11 -m venv /srv/v\n",
        );
        assert_eq!(venv, config(Path::new("/usr/bin"), "3.11.2"));
        let virtualenv = parse_config(&format!(
            "home = {PYENV}/bin\nimplementation = CPython\nversion_info = 3.11.7.final.0\nvirtualenv = 20.25.0\n"
        ));
        assert_eq!(virtualenv, config(&Path::new(PYENV).join("bin"), "3.11.7"));
    }

    #[test]
    fn a_venv_of_another_installation_is_refused_with_the_command_for_a_right_one() {
        let dir = tempfile::tempdir().unwrap();
        let ours = dir.path().join("ours");
        let theirs = dir.path().join("theirs");
        std::fs::create_dir_all(ours.join("bin")).unwrap();
        std::fs::create_dir_all(theirs.join("bin")).unwrap();
        let python = ours.join("bin/python3");
        let mut ours_embedded = embedded(&ours);
        ours_embedded.python = Some(&python);
        // Debian's 3.11.2 under a gateway built on another 3.11: same
        // major.minor, and refused all the same.
        let err = judge(
            Path::new("/srv/v"),
            &config(&theirs.join("bin"), "3.11.2"),
            &ours_embedded,
        )
        .unwrap_err();
        assert!(err.contains("/srv/v was made by the Python in"), "{err}");
        assert!(err.contains("(Python 3.11.2)"), "{err}");
        assert!(err.contains("Python 3.11.7 at"), "{err}");
        assert!(
            err.contains(&format!("`{} -m venv PATH`", python.display())),
            "{err}"
        );
        // The same installation: accepted, also through a symlinked home.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&ours, &link).unwrap();
        for home in [ours.join("bin"), link.join("bin")] {
            assert_eq!(
                judge(Path::new("/v"), &config(&home, "3.11.7"), &ours_embedded),
                Ok(None)
            );
        }
    }

    #[test]
    fn an_installation_upgraded_in_place_is_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("bin")).unwrap();
        let warning = judge(
            Path::new("/v"),
            &config(&dir.path().join("bin"), "3.11.2"),
            &embedded(dir.path()),
        )
        .unwrap()
        .expect("a warning");
        assert!(warning.contains("upgraded in place"), "{warning}");
        assert!(warning.contains("-m venv --upgrade /v"), "{warning}");
    }

    #[test]
    fn another_minor_version_is_refused_even_without_home() {
        let config = VenvConfig {
            home: None,
            version: Some("3.12.1".into()),
        };
        let err = judge(Path::new("/v"), &config, &embedded(Path::new(PYENV))).unwrap_err();
        assert!(err.contains("made by Python 3.12.1"), "{err}");
        assert!(err.contains("`python3.11 -m venv PATH`"), "{err}");
    }

    #[test]
    fn the_venv_an_executable_sits_in() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let exe = bin.join("rustgi-gateway");
        assert_eq!(venv_of(&exe), None, "no pyvenv.cfg");
        std::fs::write(dir.path().join("pyvenv.cfg"), "home = /usr/bin\n").unwrap();
        assert_eq!(venv_of(&exe), Some(dir.path().to_path_buf()));
        // Next to pyvenv.cfg, but not in bin/: not a venv's program.
        assert_eq!(venv_of(&dir.path().join("rustgi-gateway")), None);
        assert_eq!(venv_of(Path::new("/usr/local/bin/rustgi-gateway")), None);
    }
    #[test]
    fn a_symlink_in_a_venvs_bin_serves_that_venv() {
        let exe = std::env::current_exe().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(dir.path().join("pyvenv.cfg"), "home = /usr/bin\n").unwrap();
        let link = bin.join("rustgi-gateway");
        std::os::unix::fs::symlink(&exe, &link).unwrap();

        // By its path, absolute or relative to the directory at start.
        let invoked = invoked_as(&link, None, None, &exe).unwrap();
        assert_eq!(invoked, link);
        assert_eq!(venv_of(&invoked), Some(dir.path().to_path_buf()));
        let relative = invoked_as(
            Path::new("./bin/rustgi-gateway"),
            None,
            Some(dir.path()),
            &exe,
        );
        assert_eq!(relative, Some(link.clone()));
        // By its name alone, found in PATH as the shell found it.
        let path = std::env::join_paths(["/nonexistent", bin.to_str().unwrap()]).unwrap();
        let by_name = invoked_as(Path::new("rustgi-gateway"), Some(&path), None, &exe);
        assert_eq!(by_name, Some(link.clone()));
        // An argv[0] that leads to another program chooses nothing.
        let other = bin.join("python");
        std::fs::write(&other, "").unwrap();
        assert_eq!(invoked_as(&other, None, None, &exe), None);
        assert_eq!(
            invoked_as(Path::new("rustgi-gateway"), None, None, &exe),
            None
        );
    }
}
