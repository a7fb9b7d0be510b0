//! Whether the front server will be able to connect to the Unix socket we
//! created: a connect needs write permission on the socket file and search
//! (x) permission on every directory on the way, and without them the
//! front server answers 502 while rustgi, which never sees the attempt,
//! logs nothing. Checked at start, for the users web servers usually run
//! as (or `--web-user`), by the mode bits alone (no ACLs, no
//! capabilities): a warning names the fix.

use nix::unistd::{Gid, Group, User};
use std::ffi::CString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The users Debian/Ubuntu (www-data), RHEL and nginx.org's packages
/// (nginx, apache), Arch (http) and others (lighttpd) run their web
/// servers as.
pub(crate) const USUAL_WEB_USERS: [&str; 5] = ["www-data", "nginx", "http", "apache", "lighttpd"];

/// Someone who would connect: a user and every group it is in.
#[derive(Clone, Debug)]
pub(crate) struct Peer {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

impl Peer {
    /// The user of that name, with its groups; `None` when there is none.
    pub(crate) fn lookup(name: &str) -> Result<Option<Peer>, String> {
        let user = match User::from_name(name) {
            Ok(Some(user)) => user,
            Ok(None) => return Ok(None),
            Err(e) => return Err(format!("user {name:?}: {e}")),
        };
        let c_name = CString::new(name).map_err(|_| format!("user {name:?}: a NUL in the name"))?;
        let groups = nix::unistd::getgrouplist(&c_name, user.gid)
            .map(|groups| groups.into_iter().map(Gid::as_raw).collect())
            .unwrap_or_else(|_| vec![user.gid.as_raw()]);
        Ok(Some(Peer {
            name: name.to_string(),
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            groups,
        }))
    }
}

/// A file on the way to the socket: its owner and mode.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub path: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

impl Node {
    fn stat(path: &Path) -> Option<Node> {
        let meta = std::fs::metadata(path).ok()?;
        Some(Node {
            path: path.to_path_buf(),
            uid: meta.uid(),
            gid: meta.gid(),
            mode: meta.mode() & 0o7777,
        })
    }

    /// "drwx------ root:root"-like, for the message.
    fn show(&self) -> String {
        format!(
            "mode {:03o}, owner {}:{}",
            self.mode & 0o777,
            user_name(self.uid),
            group_name(self.gid)
        )
    }
}

const SEARCH: u32 = 0o1;
const WRITE: u32 = 0o2;

/// Whether `peer` has `bit` on `node`, as the kernel decides it from the
/// mode: the owner's bits for the owner, else the group's for a member,
/// else the others'. Root passes.
fn may(peer: &Peer, node: &Node, bit: u32) -> bool {
    if peer.uid == 0 {
        return true;
    }
    let shift = if peer.uid == node.uid {
        6
    } else if peer.groups.contains(&node.gid) {
        3
    } else {
        0
    };
    (node.mode >> shift) & bit != 0
}

/// What stops `peer`: the first directory it cannot pass, or the socket
/// file it cannot write.
#[derive(Debug)]
pub(crate) enum Blocked<'a> {
    Directory(&'a Node),
    Socket(&'a Node),
}

pub(crate) fn blocked<'a>(peer: &Peer, dirs: &'a [Node], socket: &'a Node) -> Option<Blocked<'a>> {
    if let Some(dir) = dirs.iter().find(|dir| !may(peer, dir, SEARCH)) {
        return Some(Blocked::Directory(dir));
    }
    (!may(peer, socket, WRITE)).then_some(Blocked::Socket(socket))
}

/// Why `peer` is blocked, with the fix: the warning, after the user's
/// name.
pub(crate) fn advice(peer: &Peer, socket: &Node, why: &Blocked<'_>) -> String {
    let head = format!(
        "cannot connect to {}: a web server running as {} will answer 502",
        socket.path.display(),
        peer.name
    );
    match why {
        Blocked::Directory(dir) => format!(
            "{head}; the directory {} ({}) does not let it through: give it o+x \
             (chmod o+x {}), or put the socket in a directory it can reach, such as /run/rustgi \
             (mkdir -m 755, or RuntimeDirectory= under systemd)",
            dir.path.display(),
            dir.show(),
            dir.path.display()
        ),
        Blocked::Socket(node) => {
            let group = group_name(peer.gid);
            let fix = if peer.groups.contains(&node.gid) {
                // Its group already: the group bits lack w.
                "--chmod 660".to_string()
            } else if node.mode & 0o020 != 0 {
                format!("--chown :{group}")
            } else {
                format!("--chown :{group} --chmod 660")
            };
            format!(
                "{head}; the socket ({}) is not writable by it: give {fix}, or --chmod 666 \
                 (anyone on this machine may then connect)",
                node.show()
            )
        }
    }
}

/// Logs a warning for each of `wanted` (`--web-user`; without it, the
/// usual web users that exist here) who could not connect to the socket
/// at `path`. Run it after the chown and before privileges are dropped,
/// while every directory on the way can still be looked at.
pub(crate) fn warn_unreachable(path: &Path, wanted: &[String]) -> Result<(), String> {
    let peers: Vec<Peer> = if wanted.is_empty() {
        USUAL_WEB_USERS
            .iter()
            .filter_map(|name| Peer::lookup(name).ok().flatten())
            .collect()
    } else {
        wanted
            .iter()
            .map(|name| match Peer::lookup(name) {
                Ok(Some(peer)) => Ok(peer),
                Ok(None) => Err(format!("--web-user {name}: no such user")),
                Err(e) => Err(format!("--web-user {name}: {e}")),
            })
            .collect::<Result<_, _>>()?
    };
    if peers.is_empty() {
        return Ok(());
    }
    let Some(socket) = Node::stat(path) else {
        return Ok(());
    };
    let Some(dirs) = dirs_on_the_way(path) else {
        return Ok(()); // not ours to see: no verdict
    };
    for peer in &peers {
        if let Some(why) = blocked(peer, &dirs, &socket) {
            let who = if wanted.is_empty() {
                "a user web servers usually run as; --web-user NAME names yours"
            } else {
                "--web-user"
            };
            tracing::warn!(
                "{} ({who}) {} (judged by the mode bits and the groups the user database gives {}: \
                 a web server given more groups, by systemd's SupplementaryGroups= say, may connect all the same)",
                peer.name,
                advice(peer, &socket, &why),
                peer.name
            );
        }
    }
    Ok(())
}

/// The directories the kernel walks to reach the socket at `path`, root
/// first: those of the path as given and those of its real path. With a
/// symlink on the way, the kernel passes the directories that hold the
/// link as well as those the link leads to, and each must let the user
/// through. `None` when one of them cannot be looked at.
fn dirs_on_the_way(path: &Path) -> Option<Vec<Node>> {
    let given = path.parent()?;
    let real = std::fs::canonicalize(given).ok()?;
    let mut seen = std::collections::HashSet::new();
    let mut dirs = Vec::new();
    for walk in [given, real.as_path()] {
        let mut ancestors: Vec<&Path> = walk.ancestors().collect();
        ancestors.reverse();
        for ancestor in ancestors {
            if seen.insert(ancestor.to_path_buf()) {
                dirs.push(Node::stat(ancestor)?);
            }
        }
    }
    Some(dirs)
}

fn user_name(uid: u32) -> String {
    match User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(user)) => user.name,
        _ => uid.to_string(),
    }
}

fn group_name(gid: u32) -> String {
    match Group::from_gid(Gid::from_raw(gid)) {
        Ok(Some(group)) => group.name,
        _ => gid.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(path: &str, uid: u32, gid: u32, mode: u32) -> Node {
        Node {
            path: path.into(),
            uid,
            gid,
            mode,
        }
    }

    fn www() -> Peer {
        Peer {
            name: "www-data".into(),
            uid: 33,
            gid: 33,
            groups: vec![33],
        }
    }

    fn open_dirs() -> Vec<Node> {
        vec![node("/", 0, 0, 0o755), node("/run", 0, 0, 0o755)]
    }

    #[test]
    fn root_660_without_chown_is_blocked_and_the_fix_is_named() {
        let socket = node("/run/app.sock", 0, 0, 0o660);
        let dirs = open_dirs();
        let why = blocked(&www(), &dirs, &socket).expect("blocked");
        assert!(matches!(why, Blocked::Socket(_)));
        let text = advice(&www(), &socket, &why);
        assert!(text.contains("--chown :"), "{text}");
        assert!(text.contains("--chmod 666"), "{text}");
        assert!(text.contains("mode 660"), "{text}");
        // The group's write bit is missing too: both flags are named.
        let socket = node("/run/app.sock", 0, 0, 0o600);
        let why = blocked(&www(), &dirs, &socket).unwrap();
        assert!(advice(&www(), &socket, &why).contains("--chmod 660"));
    }

    #[test]
    fn the_group_or_666_lets_it_in() {
        let dirs = open_dirs();
        assert!(blocked(&www(), &dirs, &node("/run/app.sock", 0, 33, 0o660)).is_none());
        assert!(blocked(&www(), &dirs, &node("/run/app.sock", 0, 0, 0o666)).is_none());
        assert!(blocked(&www(), &dirs, &node("/run/app.sock", 33, 0, 0o600)).is_none());
        // Its group, without the group's w: --chmod 660 is the fix.
        let socket = node("/run/app.sock", 0, 33, 0o640);
        let why = blocked(&www(), &dirs, &socket).unwrap();
        let text = advice(&www(), &socket, &why);
        assert!(text.contains("give --chmod 660"), "{text}");
        // Root passes anything.
        let root = Peer {
            name: "root".into(),
            uid: 0,
            gid: 0,
            groups: vec![0],
        };
        assert!(blocked(&root, &dirs, &node("/run/app.sock", 5, 5, 0o600)).is_none());
    }

    #[test]
    fn a_closed_directory_on_the_way_is_named() {
        let dirs = vec![
            node("/", 0, 0, 0o755),
            node("/root", 0, 0, 0o700),
            node("/root/app", 0, 0, 0o755),
        ];
        let socket = node("/root/app/app.sock", 0, 0, 0o666);
        let why = blocked(&www(), &dirs, &socket).expect("blocked");
        let Blocked::Directory(dir) = why else {
            panic!("{why:?}")
        };
        assert_eq!(dir.path, Path::new("/root"));
        let text = advice(&www(), &socket, &why);
        assert!(text.contains("the directory /root (mode 700"), "{text}");
        assert!(text.contains("chmod o+x /root"), "{text}");
        // A group that may search is enough.
        let dirs = vec![node("/", 0, 0, 0o755), node("/srv", 0, 33, 0o710)];
        assert!(blocked(&www(), &dirs, &node("/srv/a.sock", 0, 33, 0o660)).is_none());
    }
    #[test]
    fn the_directories_holding_a_symlink_are_checked_too() {
        use std::os::unix::fs::PermissionsExt;
        let top = std::env::temp_dir().join(format!("rustgi-access-{}", std::process::id()));
        let (closed, real) = (top.join("closed"), top.join("open").join("real"));
        std::fs::create_dir_all(&closed).unwrap();
        std::fs::create_dir_all(&real).unwrap();
        std::os::unix::fs::symlink(&real, closed.join("link")).unwrap();
        std::fs::write(real.join("app.sock"), b"").unwrap();
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).unwrap();

        let path = closed.join("link").join("app.sock");
        let dirs = dirs_on_the_way(&path).unwrap();
        let socket = Node::stat(&path).unwrap();
        let socket = Node {
            mode: 0o666,
            ..socket
        };
        let walked: Vec<&Path> = dirs.iter().map(|d| d.path.as_path()).collect();
        assert!(walked.contains(&closed.as_path()), "{walked:?}");
        assert!(
            walked.contains(&real.canonicalize().unwrap().as_path()),
            "{walked:?}"
        );
        assert_eq!(walked.first(), Some(&Path::new("/")));
        let why = blocked(&www(), &dirs, &socket).expect("blocked by the link's directory");
        let Blocked::Directory(dir) = why else {
            panic!("{why:?}")
        };
        assert_eq!(dir.path, closed);
        std::fs::remove_dir_all(&top).unwrap();
    }
}
