//! `--user`, `--group` and `--chown`: started as root to bind a socket
//! in a root-owned directory (or a port below 1024), rustgi gives root up
//! before Python starts, so no Python code (site, `.pth` files, the app)
//! ever runs as root; `--pidfile` is written before that, as root.
//!
//! Order, as in uWSGI and every daemon that does it right: bind, chown and
//! chmod the socket, write the pidfile, then `initgroups`/`setgroups`,
//! `setgid`, `setuid`, and check that root cannot be regained.

use crate::listener::BoundSocket;
use crate::pidfile::Pidfile;
use nix::unistd::{Gid, Uid, getegid, geteuid, getgid, getuid};
use std::ffi::CString;
use std::io;
use std::path::PathBuf;

/// Who the process becomes after binding, and who owns the socket file.
#[derive(Clone, Debug, Default)]
pub struct Privileges {
    /// `--user NAME|UID`.
    pub user: Option<String>,
    /// `--group NAME|GID`; with only `--user`, the user's primary group.
    pub group: Option<String>,
    /// `--chown USER[:GROUP]`: owner of the Unix socket file we create.
    pub socket_owner: Option<String>,
    /// `--web-user`: who must be able to connect to that socket (checked
    /// after the chown, with a warning naming the fix; without it, the
    /// users web servers usually run as).
    pub web_users: Vec<String>,
}

/// A user, resolved.
#[derive(Clone, Debug)]
struct User {
    uid: libc::uid_t,
    /// Primary group.
    gid: libc::gid_t,
    /// From the password database; `None` for a bare uid not in it.
    name: Option<CString>,
    home: Option<PathBuf>,
}

fn lookup_user(spec: &str) -> io::Result<User> {
    let numeric = spec.parse::<libc::uid_t>().ok();
    let found = match numeric {
        Some(uid) => nix::unistd::User::from_uid(Uid::from_raw(uid)),
        None => nix::unistd::User::from_name(no_nul(spec)?),
    };
    let found = match (found, numeric) {
        (Ok(Some(user)), _) => user,
        // A uid with no passwd entry: allowed (as in uWSGI); its group
        // must then be given, and it gets no supplementary groups.
        (_, Some(uid)) => {
            return Ok(User {
                uid,
                gid: libc::gid_t::MAX,
                name: None,
                home: None,
            });
        }
        (Ok(None), None) => return Err(io::Error::new(io::ErrorKind::NotFound, "no such user")),
        (Err(errno), None) => return Err(errno.into()),
    };
    Ok(User {
        uid: found.uid.as_raw(),
        gid: found.gid.as_raw(),
        name: Some(CString::new(found.name).map_err(|_| nul_error())?),
        home: Some(found.dir),
    })
}

fn lookup_group(spec: &str) -> io::Result<libc::gid_t> {
    if let Ok(gid) = spec.parse::<libc::gid_t>() {
        return Ok(gid);
    }
    match nix::unistd::Group::from_name(no_nul(spec)?) {
        Ok(Some(group)) => Ok(group.gid.as_raw()),
        Ok(None) => Err(io::Error::new(io::ErrorKind::NotFound, "no such group")),
        Err(errno) => Err(errno.into()),
    }
}

/// nix takes a name with a NUL for one that is not found: say what it is.
fn no_nul(name: &str) -> io::Result<&str> {
    if name.contains('\0') {
        return Err(nul_error());
    }
    Ok(name)
}

fn nul_error() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "a NUL in the name")
}

/// `--chown USER[:GROUP]` (also `USER:` for the user's primary group and
/// `:GROUP` for the group alone), resolved to ids.
fn socket_owner(spec: &str) -> Result<(Option<libc::uid_t>, Option<libc::gid_t>), String> {
    let (user, group) = match spec.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (spec, None),
    };
    let user = (!user.is_empty())
        .then(|| lookup_user(user).map_err(|e| format!("--chown {spec}: user {user:?}: {e}")))
        .transpose()?;
    let gid = match group {
        Some("") => user.as_ref().map(|u| u.gid),
        Some(group) => {
            Some(lookup_group(group).map_err(|e| format!("--chown {spec}: group {group:?}: {e}"))?)
        }
        None => None,
    };
    if user.is_none() && gid.is_none() {
        return Err(format!("--chown {spec:?}: give USER, USER:GROUP or :GROUP"));
    }
    Ok((user.map(|u| u.uid), gid))
}

fn owned_by(path: &std::path::Path, uid: Option<libc::uid_t>, gid: Option<libc::gid_t>) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .is_ok_and(|m| uid.is_none_or(|uid| m.uid() == uid) && gid.is_none_or(|gid| m.gid() == gid))
}

/// Everything between binding and starting Python: chown the socket file
/// we created, write the pidfile, drop privileges. Call it right after
/// [`crate::bind`], before Python starts and before any worker is forked.
/// The returned pidfile removes itself at exit (in this process only).
/// On an error, the socket file we created is removed before returning.
pub fn after_bind(
    privileges: &Privileges,
    pidfile: Option<&std::path::Path>,
    socket: &BoundSocket,
) -> Result<Option<Pidfile>, String> {
    let result = settle(privileges, pidfile, socket);
    if result.is_err()
        && let Some(path) = socket.created_path()
    {
        let _ = std::fs::remove_file(path);
    }
    result
}

fn settle(
    privileges: &Privileges,
    pidfile: Option<&std::path::Path>,
    socket: &BoundSocket,
) -> Result<Option<Pidfile>, String> {
    if let Some(spec) = &privileges.socket_owner {
        let (uid, gid) = socket_owner(spec)?;
        match socket.created_path() {
            // Already so after a re-exec, which may no longer be root.
            Some(path) if owned_by(path, uid, gid) => {}
            Some(path) => std::os::unix::fs::chown(path, uid, gid)
                .map_err(|e| format!("--chown {spec}: {}: {e}", path.display()))?,
            None => tracing::warn!(
                "--chown {spec} is ignored: rustgi did not create this socket \
                 (with socket activation, set SocketUser=/SocketGroup= in the .socket unit)"
            ),
        }
    }
    // As root still, who can look at every directory on the way.
    if let Some(path) = socket.created_path() {
        crate::listener::warn_unreachable(path, &privileges.web_users)?;
    }
    let pidfile = pidfile.map(Pidfile::create).transpose()?;
    drop_privileges(privileges)?;
    Ok(pidfile)
}

/// `--user`/`--group`: initgroups (or setgroups), setgid, setuid, in that
/// order; then checks that the ids took and that root cannot come back.
/// Does nothing without the flags, or when we already are that user and
/// group (a re-exec after the drop). Also sets HOME, USER and LOGNAME to
/// the user's, as `su` and systemd's `User=` do, so that the app does not
/// look for its files in root's home.
pub fn drop_privileges(privileges: &Privileges) -> Result<(), String> {
    if privileges.user.is_none() && privileges.group.is_none() {
        return Ok(());
    }
    let user = privileges
        .user
        .as_deref()
        .map(|spec| lookup_user(spec).map_err(|e| format!("--user {spec}: {e}")))
        .transpose()?;
    let gid = match (&privileges.group, &user) {
        (Some(spec), _) => lookup_group(spec).map_err(|e| format!("--group {spec}: {e}"))?,
        (None, Some(user)) if user.gid != libc::gid_t::MAX => user.gid,
        (None, _) => {
            return Err(format!(
                "--user {}: uid with no passwd entry: give --group too",
                privileges.user.as_deref().unwrap_or_default()
            ));
        }
    };
    let uid = user.as_ref().map(|u| u.uid);
    let (ruid, euid, rgid, egid) = credentials();
    let already = rgid == gid && egid == gid && uid.is_none_or(|uid| ruid == uid && euid == uid);
    if already && euid != 0 {
        return Ok(());
    }
    let describe = || match (&privileges.user, &privileges.group) {
        (Some(u), Some(g)) => format!("--user {u} --group {g}"),
        (Some(u), None) => format!("--user {u}"),
        (None, Some(g)) => format!("--group {g}"),
        (None, None) => unreachable!(),
    };
    let fail = |what: &str, errno: nix::errno::Errno| {
        let e = io::Error::from(errno);
        let hint = if e.raw_os_error() == Some(libc::EPERM) && euid != 0 {
            " (only root can switch users: start rustgi as root, or drop the flag)"
        } else {
            ""
        };
        format!("{}: {what} failed: {e}{hint}", describe())
    };
    // No other thread exists yet, so the whole process changes at once.
    match user.as_ref().and_then(|u| u.name.as_ref()) {
        Some(name) => nix::unistd::initgroups(name, Gid::from_raw(gid)),
        None => nix::unistd::setgroups(&[Gid::from_raw(gid)]),
    }
    .map_err(|e| fail("setting the supplementary groups", e))?;
    nix::unistd::setgid(Gid::from_raw(gid)).map_err(|e| fail("setgid", e))?;
    if let Some(uid) = uid {
        nix::unistd::setuid(Uid::from_raw(uid)).map_err(|e| fail("setuid", e))?;
    }
    // Check it took, and that root cannot be regained.
    let (ruid, euid, rgid, egid) = credentials();
    if rgid != gid || egid != gid || uid.is_some_and(|uid| ruid != uid || euid != uid) {
        return Err(format!(
            "{}: the ids did not take (uid {ruid}/{euid}, gid {rgid}/{egid})",
            describe()
        ));
    }
    let root = Uid::from_raw(0);
    if euid != 0 && (nix::unistd::setuid(root).is_ok() || nix::unistd::seteuid(root).is_ok()) {
        return Err(format!(
            "{}: root could be regained; refusing to run",
            describe()
        ));
    }
    let group_root = Gid::from_raw(0);
    if gid != 0
        && euid != 0
        && (nix::unistd::setgid(group_root).is_ok() || nix::unistd::setegid(group_root).is_ok())
    {
        return Err(format!(
            "{}: group root could be regained; refusing to run",
            describe()
        ));
    }
    if let Some(user) = &user
        && let (Some(name), Some(home)) = (&user.name, &user.home)
    {
        let name = name.to_string_lossy().into_owned();
        // SAFETY: no other thread exists yet (see above).
        unsafe {
            std::env::set_var("HOME", home);
            std::env::set_var("USER", &name);
            std::env::set_var("LOGNAME", &name);
        }
    }
    tracing::info!(
        "running as uid {} gid {}",
        uid.unwrap_or_else(|| getuid().as_raw()),
        gid
    );
    Ok(())
}

/// (real uid, effective uid, real gid, effective gid).
fn credentials() -> (libc::uid_t, libc::uid_t, libc::gid_t, libc::gid_t) {
    (
        getuid().as_raw(),
        geteuid().as_raw(),
        getgid().as_raw(),
        getegid().as_raw(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_and_groups_resolve_by_name_and_number() {
        let root = lookup_user("root").unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert_eq!(root.name.as_deref(), Some(c"root"));
        assert_eq!(lookup_user("0").unwrap().uid, 0);
        // A uid with no passwd entry is allowed, without a primary group.
        let bare = lookup_user("4000000").unwrap();
        assert_eq!((bare.uid, bare.name), (4_000_000, None));
        assert!(lookup_user("no-such-user-rustgi").is_err());
        assert_eq!(lookup_group("root").unwrap(), 0);
        assert_eq!(lookup_group("1234").unwrap(), 1234);
        assert!(lookup_group("no-such-group-rustgi").is_err());
    }

    #[test]
    fn chown_specs() {
        assert_eq!(socket_owner("root").unwrap(), (Some(0), None));
        assert_eq!(socket_owner("root:").unwrap(), (Some(0), Some(0)));
        assert_eq!(socket_owner(":root").unwrap(), (None, Some(0)));
        assert_eq!(socket_owner("0:5").unwrap(), (Some(0), Some(5)));
        assert!(socket_owner(":").is_err());
        let err = socket_owner("root:no-such-group-rustgi").unwrap_err();
        assert!(err.contains("no-such-group-rustgi"), "{err}");
    }

    #[test]
    fn without_flags_nothing_changes() {
        drop_privileges(&Privileges::default()).unwrap();
    }
}
