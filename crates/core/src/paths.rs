//! SCRIPT_NAME and PATH_INFO, rebuilt from what the front server sent.
//!
//! Front servers disagree (see PROTOCOLS.md): nginx's stock `scgi_params`
//! sends neither, its `fastcgi_params` sends the whole path as SCRIPT_NAME,
//! `uwsgi_params` sends PATH_INFO alone, Apache's mod_proxy_fcgi sends the
//! whole path as SCRIPT_NAME, and lighttpd makes SCRIPT_NAME out of the
//! first path segment below its prefix. The rule, in order:
//!
//! 1. With `--mount PREFIX`, the full path is split at PREFIX: SCRIPT_NAME is
//!    the prefix and PATH_INFO the rest (a path outside the prefix keeps
//!    SCRIPT_NAME empty and PATH_INFO whole).
//! 2. Otherwise a split the front server made on purpose is kept: a
//!    non-empty SCRIPT_NAME and a PATH_INFO (empty for the app's root) both
//!    sent, adding up to the full path, and not from lighttpd. (nginx's `fastcgi_split_path_info`,
//!    Apache's `ProxyPass /app` for uwsgi.) lighttpd's split is never taken:
//!    for a prefix "/" it names the first path segment SCRIPT_NAME, which
//!    cannot be told from a real mount, so lighttpd users say `--mount`.
//! 3. Otherwise SCRIPT_NAME is empty and PATH_INFO is the full path.
//!
//! The full path is the front server's decoded, normalised path: DOCUMENT_URI
//! when sent, else SCRIPT_NAME + PATH_INFO, else REQUEST_URI's path
//! percent-decoded. Routing on the front server's own normalised path keeps
//! `//admin` or `/%61dmin` from reaching a route its `location` rules denied.

use std::borrow::Cow;

/// The path-related parameters of one request, first value of each.
#[derive(Default, Clone, Copy, Debug)]
pub struct SentPaths<'a> {
    pub script_name: Option<&'a [u8]>,
    pub path_info: Option<&'a [u8]>,
    pub document_uri: Option<&'a [u8]>,
    pub request_uri: Option<&'a [u8]>,
    pub server_software: Option<&'a [u8]>,
}

/// A mount prefix such as `/app`: leading slash, no trailing slash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount(Vec<u8>);

impl Mount {
    /// Normalises `/app/`, `app` and `/app` to `/app`; `/` mounts at the root.
    pub fn new(prefix: &str) -> Mount {
        let trimmed = prefix.trim_matches('/');
        if trimmed.is_empty() {
            Mount(Vec::new())
        } else {
            Mount(format!("/{trimmed}").into_bytes())
        }
    }
}

/// Returns `(SCRIPT_NAME, PATH_INFO)` as raw bytes (decoded later as latin-1).
pub fn split_paths<'a>(
    sent: &SentPaths<'a>,
    mount: Option<&Mount>,
) -> (Cow<'a, [u8]>, Cow<'a, [u8]>) {
    let full = full_path(sent);
    match mount {
        Some(Mount(prefix)) if !prefix.is_empty() && under_prefix(&full, prefix) => {
            let rest = match full {
                Cow::Borrowed(b) => Cow::Borrowed(&b[prefix.len()..]),
                Cow::Owned(v) => Cow::Owned(v[prefix.len()..].to_vec()),
            };
            (Cow::Owned(prefix.clone()), rest)
        }
        Some(_) => (Cow::Borrowed(&b""[..]), full),
        None => match deliberate_split(sent, &full) {
            Some((script, path)) => (Cow::Borrowed(script), Cow::Borrowed(path)),
            None => (Cow::Borrowed(&b""[..]), full),
        },
    }
}

/// The front server's own split, when it is one made on purpose.
fn deliberate_split<'a>(sent: &SentPaths<'a>, full: &[u8]) -> Option<(&'a [u8], &'a [u8])> {
    let script = sent.script_name.filter(|s| !s.is_empty())?;
    let path = sent.path_info?;
    let from_lighttpd = sent
        .server_software
        .is_some_and(|s| s.starts_with(b"lighttpd"));
    let adds_up =
        full.len() == script.len() + path.len() && full.starts_with(script) && full.ends_with(path);
    (adds_up && !from_lighttpd).then_some((script, path))
}

fn under_prefix(path: &[u8], prefix: &[u8]) -> bool {
    path.starts_with(prefix) && matches!(path.get(prefix.len()), None | Some(b'/'))
}

fn full_path<'a>(sent: &SentPaths<'a>) -> Cow<'a, [u8]> {
    if let Some(uri) = sent.document_uri {
        return Cow::Borrowed(uri);
    }
    match (sent.script_name, sent.path_info) {
        (Some(script), Some(path)) => return Cow::Owned([script, path].concat()),
        (Some(only), None) | (None, Some(only)) => return Cow::Borrowed(only),
        (None, None) => {}
    }
    match sent.request_uri {
        Some(uri) => {
            let path = uri.split(|&b| b == b'?').next().unwrap_or(b"");
            Cow::Owned(percent_decode(path))
        }
        None => Cow::Borrowed(&b""[..]),
    }
}

/// `%XX` decoding; a `%` not followed by two hex digits stays as it is.
pub fn percent_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%'
            && i + 2 < input.len()
            && let (Some(h), Some(l)) = (hex(input[i + 1]), hex(input[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(input[i]);
        i += 1;
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(sent: SentPaths<'_>, mount: Option<&str>) -> (String, String) {
        let mount = mount.map(Mount::new);
        let (s, p) = split_paths(&sent, mount.as_ref());
        (
            String::from_utf8(s.into_owned()).unwrap(),
            String::from_utf8(p.into_owned()).unwrap(),
        )
    }

    fn s(v: &str) -> (String, String) {
        let (a, b) = v.split_once('|').unwrap();
        (a.to_string(), b.to_string())
    }

    #[test]
    fn nginx_scgi_params_route_on_document_uri() {
        let sent = SentPaths {
            document_uri: Some(b"/a/b"),
            request_uri: Some(b"/a/%62?x=1"),
            ..Default::default()
        };
        assert_eq!(split(sent, None), s("|/a/b"));
        assert_eq!(split(sent, Some("/a/")), s("/a|/b"));
        assert_eq!(split(sent, Some("/x")), s("|/a/b"));
        assert_eq!(split(sent, Some("/")), s("|/a/b"));
    }

    #[test]
    fn a_mount_matches_whole_segments_only() {
        let sent = SentPaths {
            document_uri: Some(b"/application"),
            ..Default::default()
        };
        assert_eq!(split(sent, Some("/app")), s("|/application"));
        let exact = SentPaths {
            document_uri: Some(b"/app"),
            ..Default::default()
        };
        assert_eq!(split(exact, Some("/app")), s("/app|"));
    }

    #[test]
    fn nginx_fastcgi_params_send_the_whole_path_as_script_name() {
        let sent = SentPaths {
            script_name: Some(b"/a/b"),
            document_uri: Some(b"/a/b"),
            ..Default::default()
        };
        assert_eq!(split(sent, None), s("|/a/b"));
        assert_eq!(split(sent, Some("/a")), s("/a|/b"));
    }

    #[test]
    fn the_common_workaround_gives_the_full_path() {
        let sent = SentPaths {
            script_name: Some(b""),
            path_info: Some(b"/a/b"),
            document_uri: Some(b"/a/b"),
            ..Default::default()
        };
        assert_eq!(split(sent, None), s("|/a/b"));
    }

    #[test]
    fn apache_proxy_fcgi_sends_the_whole_path_as_script_name() {
        let sent = SentPaths {
            script_name: Some(b"/a/b"),
            request_uri: Some(b"/a/b?x"),
            server_software: Some(b"Apache/2.4.62 (Debian)"),
            ..Default::default()
        };
        assert_eq!(split(sent, None), s("|/a/b"));
    }

    #[test]
    fn a_deliberate_split_is_kept() {
        let sent = SentPaths {
            script_name: Some(b"/pre"),
            path_info: Some(b"/x/y"),
            document_uri: Some(b"/pre/x/y"),
            server_software: Some(b"nginx/1.22.1"),
            ..Default::default()
        };
        assert_eq!(split(sent, None), s("/pre|/x/y"));
        assert_eq!(split(sent, Some("/pre/x")), s("/pre/x|/y"));
        let root_of_the_app = SentPaths {
            script_name: Some(b"/app"),
            path_info: Some(b""),
            ..Default::default()
        };
        assert_eq!(split(root_of_the_app, None), s("/app|"));
    }

    #[test]
    fn a_split_that_does_not_add_up_is_ignored() {
        let sent = SentPaths {
            script_name: Some(b"/index.php"),
            path_info: Some(b"/x"),
            document_uri: Some(b"/somewhere/else"),
            ..Default::default()
        };
        assert_eq!(split(sent, None), s("|/somewhere/else"));
    }

    #[test]
    fn lighttpd_splits_are_never_taken() {
        let root_prefix = SentPaths {
            script_name: Some(b"/a"),
            path_info: Some(b"/b/c"),
            server_software: Some(b"lighttpd/1.4.69"),
            ..Default::default()
        };
        assert_eq!(split(root_prefix, None), s("|/a/b/c"));
        let dir_prefix = SentPaths {
            script_name: Some(b"/pre/x"),
            path_info: Some(b"/y/z"),
            server_software: Some(b"lighttpd/1.4.69"),
            ..Default::default()
        };
        assert_eq!(split(dir_prefix, None), s("|/pre/x/y/z"));
        assert_eq!(split(dir_prefix, Some("/pre")), s("/pre|/x/y/z"));
        let no_path_info = SentPaths {
            script_name: Some(b"/pre2"),
            server_software: Some(b"lighttpd/1.4.69"),
            ..Default::default()
        };
        assert_eq!(split(no_path_info, None), s("|/pre2"));
        assert_eq!(split(no_path_info, Some("/pre2")), s("/pre2|"));
    }

    #[test]
    fn request_uri_is_the_last_resort() {
        let sent = SentPaths {
            request_uri: Some(b"/caf%C3%A9/%zz?q=%41"),
            ..Default::default()
        };
        let (_, p) = split_paths(&sent, None);
        assert_eq!(p.as_ref(), b"/caf\xc3\xa9/%zz");
    }

    #[test]
    fn percent_decoding_edges() {
        assert_eq!(percent_decode(b"%"), b"%");
        assert_eq!(percent_decode(b"%4"), b"%4");
        assert_eq!(percent_decode(b"%41"), b"A");
        assert_eq!(percent_decode(b"a%2fb%"), b"a/b%");
    }
}
