//! Building the PEP 3333 environ from a decoded request.
//!
//! One builder lives on each Python thread: fixed keys and constant values
//! are created once, parameter names are cached (capped, since they come
//! from clients), and values are made straight from the raw bytes as
//! latin-1, as PEP 3333's "bytes-as-str" demands. A front server sends most
//! values unchanged from one request to the next (SERVER_NAME,
//! SERVER_PROTOCOL, HTTP_HOST, ...): each name keeps its last short value's
//! `str`, which is immutable and so shared as it is.

use crate::paths::{Mount, SentPaths, split_paths};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};
use rustgi_model::Request;
use std::os::raw::c_char;

/// Parameter names are client data: never cache more than this many.
const MAX_CACHED_NAMES: usize = 512;
/// Values longer than this are not kept for the next request (a URI, a
/// cookie: they seldom repeat).
const MAX_CACHED_VALUE: usize = 64;

/// A parameter name's `str`, and its last short value's.
struct CachedName {
    key: Py<PyString>,
    last_value: Vec<u8>,
    last: Option<Py<PyString>>,
}

/// What every environ of this server shares.
#[derive(Clone, Debug, Default)]
pub struct EnvironSettings {
    pub mount: Option<Mount>,
    pub multithread: bool,
    pub multiprocess: bool,
    pub run_once: bool,
    /// Take SCRIPT_NAME and PATH_INFO exactly as sent (CGI, where RFC 3875
    /// makes them the script's own URL and the rest).
    pub paths_as_sent: bool,
    /// `--trusted-proxy-header`: the scheme a trusted balancer reports.
    pub forwarded: Option<crate::ForwardedScheme>,
}

/// Makes a `str` from bytes as latin-1: every byte is one code point.
pub fn latin1<'py>(py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyString>> {
    // SAFETY: the pointer and length describe `bytes`, alive for the call;
    // the call returns a new reference to a str, or NULL with an exception
    // set (which `from_owned_ptr_or_err` turns into the error).
    unsafe {
        let ptr = ffi::PyUnicode_DecodeLatin1(
            bytes.as_ptr().cast::<c_char>(),
            bytes.len() as ffi::Py_ssize_t,
            std::ptr::null(),
        );
        Ok(Bound::from_owned_ptr_or_err(py, ptr)?.cast_into_unchecked())
    }
}

fn interned<'py>(py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyString>> {
    let s = latin1(py, bytes)?;
    let mut ptr = s.into_ptr();
    // SAFETY: `ptr` is an owned reference to a str (from `into_ptr`), as
    // PyUnicode_InternInPlace requires; it leaves an owned reference to an
    // equal str in its place, which `from_owned_ptr` takes over.
    unsafe {
        ffi::PyUnicode_InternInPlace(&mut ptr);
        Ok(Bound::from_owned_ptr(py, ptr).cast_into_unchecked())
    }
}

struct Keys {
    script_name: Py<PyString>,
    path_info: Py<PyString>,
    request_method: Py<PyString>,
    server_name: Py<PyString>,
    server_port: Py<PyString>,
    server_protocol: Py<PyString>,
    query_string: Py<PyString>,
    version: Py<PyString>,
    url_scheme: Py<PyString>,
    input: Py<PyString>,
    errors: Py<PyString>,
    multithread: Py<PyString>,
    multiprocess: Py<PyString>,
    run_once: Py<PyString>,
    input_terminated: Py<PyString>,
    file_wrapper: Py<PyString>,
    https: Py<PyString>,
}

impl CachedName {
    fn keep(&mut self, value: &[u8], value_str: &Bound<'_, PyString>) {
        if value.len() <= MAX_CACHED_VALUE {
            self.last_value.clear();
            self.last_value.extend_from_slice(value);
            self.last = Some(value_str.clone().unbind());
        } else {
            self.last = None;
        }
    }
}

/// A per-thread environ factory.
pub struct EnvironBuilder {
    settings: EnvironSettings,
    keys: Keys,
    /// foldhash, not SipHash: this lookup runs for every param of every
    /// request, and the map is capped (MAX_CACHED_NAMES), so a peer that
    /// forces collisions gains little; the seed is still random.
    names: foldhash::HashMap<Box<[u8]>, CachedName>,
    version: Py<PyTuple>,
    http: Py<PyString>,
    https: Py<PyString>,
    empty: Py<PyString>,
    on: Py<PyString>,
    file_wrapper: Py<PyAny>,
}

impl EnvironBuilder {
    pub fn new(py: Python<'_>, settings: EnvironSettings) -> PyResult<Self> {
        let key = |s: &str| PyString::intern(py, s).unbind();
        Ok(EnvironBuilder {
            keys: Keys {
                script_name: key("SCRIPT_NAME"),
                path_info: key("PATH_INFO"),
                request_method: key("REQUEST_METHOD"),
                server_name: key("SERVER_NAME"),
                server_port: key("SERVER_PORT"),
                server_protocol: key("SERVER_PROTOCOL"),
                query_string: key("QUERY_STRING"),
                version: key("wsgi.version"),
                url_scheme: key("wsgi.url_scheme"),
                input: key("wsgi.input"),
                errors: key("wsgi.errors"),
                multithread: key("wsgi.multithread"),
                multiprocess: key("wsgi.multiprocess"),
                run_once: key("wsgi.run_once"),
                input_terminated: key("wsgi.input_terminated"),
                file_wrapper: key("wsgi.file_wrapper"),
                https: key("HTTPS"),
            },
            settings,
            names: foldhash::HashMap::default(),
            version: PyTuple::new(py, [1, 0])?.unbind(),
            http: key("http"),
            https: key("https"),
            empty: key(""),
            on: key("on"),
            file_wrapper: py.get_type::<crate::FileWrapper>().into_any().unbind(),
        })
    }

    /// The `str`s of a parameter's name and value.
    fn strings<'py>(
        names: &mut foldhash::HashMap<Box<[u8]>, CachedName>,
        py: Python<'py>,
        name: &[u8],
        value: &[u8],
    ) -> PyResult<(Bound<'py, PyString>, Bound<'py, PyString>)> {
        let Some(cached) = names.get_mut(name) else {
            let key = interned(py, name)?;
            let value_str = latin1(py, value)?;
            if names.len() < MAX_CACHED_NAMES {
                let mut cached = CachedName {
                    key: key.clone().unbind(),
                    last_value: Vec::new(),
                    last: None,
                };
                cached.keep(value, &value_str);
                names.insert(name.into(), cached);
            }
            return Ok((key, value_str));
        };
        let key = cached.key.bind(py).clone();
        if let Some(last) = &cached.last
            && cached.last_value == value
        {
            return Ok((key, last.bind(py).clone()));
        }
        let value_str = latin1(py, value)?;
        cached.keep(value, &value_str);
        Ok((key, value_str))
    }

    /// Builds the environ for `request`, with the given `wsgi.input` and
    /// `wsgi.errors` objects.
    pub fn build<'py>(
        &mut self,
        py: Python<'py>,
        request: &Request,
        input: Bound<'py, PyAny>,
        errors: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let environ = PyDict::new(py);
        let mut paths = SentPaths::default();
        let mut https = false;
        let mut seen = Seen::default();
        let forwarded = self.settings.forwarded.as_ref();
        let (mut remote_addr, mut forwarded_value) = (None, None);
        for param in &request.params {
            let (name, value) = (param.name.as_ref(), param.value.as_ref());
            match name {
                b"HTTP_CONTENT_TYPE" | b"HTTP_CONTENT_LENGTH" => continue,
                b"SCRIPT_NAME" => first(&mut paths.script_name, value),
                b"PATH_INFO" => first(&mut paths.path_info, value),
                b"DOCUMENT_URI" => first(&mut paths.document_uri, value),
                b"REQUEST_URI" => first(&mut paths.request_uri, value),
                b"SERVER_SOFTWARE" => first(&mut paths.server_software, value),
                b"HTTPS" => https |= value.eq_ignore_ascii_case(b"on") || value == b"1",
                b"REQUEST_SCHEME" => https |= value.eq_ignore_ascii_case(b"https"),
                b"REQUEST_METHOD" => seen.method = true,
                b"SERVER_NAME" => seen.server_name = true,
                b"SERVER_PORT" => seen.server_port = true,
                b"SERVER_PROTOCOL" => seen.protocol = true,
                b"QUERY_STRING" => seen.query = true,
                b"REMOTE_ADDR" => first(&mut remote_addr, value),
                _ => {
                    // The last line counts, as the last value of a list
                    // does: nginx 1.22 passes a repeated header line as
                    // its own parameter, the client's line before the one
                    // the balancer appended.
                    if let Some(f) = forwarded
                        && name == f.param()
                    {
                        forwarded_value = Some(value);
                    }
                }
            }
            let (key, value) = Self::strings(&mut self.names, py, name, value)?;
            set_or_merge(&environ, &key, &value, name)?;
        }

        if let Some(said) = forwarded.and_then(|f| f.https(remote_addr, forwarded_value)) {
            https = said;
            if said {
                environ.set_item(self.keys.https.bind(py), self.on.bind(py))?;
            } else if environ.contains(self.keys.https.bind(py))? {
                environ.del_item(self.keys.https.bind(py))?;
            }
        }

        let (script_name, path_info) =
            if self.settings.paths_as_sent && self.settings.mount.is_none() {
                (
                    std::borrow::Cow::Borrowed(paths.script_name.unwrap_or(b"")),
                    std::borrow::Cow::Borrowed(paths.path_info.unwrap_or(b"")),
                )
            } else {
                split_paths(&paths, self.settings.mount.as_ref())
            };
        let keys = &self.keys;
        environ.set_item(keys.script_name.bind(py), latin1(py, &script_name)?)?;
        environ.set_item(keys.path_info.bind(py), latin1(py, &path_info)?)?;
        let defaults = [
            (seen.method, &keys.request_method, "GET"),
            (seen.server_name, &keys.server_name, "localhost"),
            (
                seen.server_port,
                &keys.server_port,
                if https { "443" } else { "80" },
            ),
            (seen.protocol, &keys.server_protocol, "HTTP/1.0"),
        ];
        for (present, key, value) in defaults {
            if !present {
                environ.set_item(key.bind(py), value)?;
            }
        }
        if !seen.query {
            environ.set_item(keys.query_string.bind(py), self.empty.bind(py))?;
        }

        let scheme = if https { &self.https } else { &self.http };
        let settings = &self.settings;
        environ.set_item(keys.version.bind(py), self.version.bind(py))?;
        environ.set_item(keys.url_scheme.bind(py), scheme.bind(py))?;
        environ.set_item(keys.input.bind(py), input)?;
        environ.set_item(keys.errors.bind(py), errors)?;
        environ.set_item(keys.multithread.bind(py), settings.multithread)?;
        environ.set_item(keys.multiprocess.bind(py), settings.multiprocess)?;
        environ.set_item(keys.run_once.bind(py), settings.run_once)?;
        environ.set_item(keys.input_terminated.bind(py), true)?;
        environ.set_item(keys.file_wrapper.bind(py), self.file_wrapper.bind(py))?;
        Ok(environ)
    }
}

#[derive(Default)]
struct Seen {
    method: bool,
    server_name: bool,
    server_port: bool,
    protocol: bool,
    query: bool,
}

fn first<'a>(slot: &mut Option<&'a [u8]>, value: &'a [u8]) {
    if slot.is_none() {
        *slot = Some(value);
    }
}

/// Sets `key`, or merges a repeated header the way HTTP does: Cookie values
/// with "; ", any other header with ", " (nginx 1.22 repeats them); a
/// repeated HTTP_HOST is replaced instead.
fn set_or_merge(
    environ: &Bound<'_, PyDict>,
    key: &Bound<'_, PyString>,
    value: &Bound<'_, PyString>,
    name: &[u8],
) -> PyResult<()> {
    // SAFETY: all three are live objects; PyDict_SetDefault returns a
    // borrowed reference (or NULL with an exception set).
    let existing =
        unsafe { ffi::PyDict_SetDefault(environ.as_ptr(), key.as_ptr(), value.as_ptr()) };
    if existing.is_null() {
        return Err(PyErr::fetch(environ.py()));
    }
    // Only client headers merge; for a repeated CGI variable (a second
    // CONTENT_LENGTH, say) the first value, the one the protocol used, wins.
    if existing == value.as_ptr() || !name.starts_with(b"HTTP_") {
        return Ok(());
    }
    // A client cannot repeat Host (nginx answers 400), so a second HTTP_HOST
    // is the site's `fastcgi_param HTTP_HOST $http_host;` after Debian's
    // stock params, which send `$host`: the later line wins, as it does
    // under uWSGI and flup, whose environ is a dict filled in order.
    if name == b"HTTP_HOST" {
        return environ.set_item(key, value);
    }
    // SAFETY: `existing` is a borrowed reference owned by the dict.
    let previous = unsafe { Bound::from_borrowed_ptr(environ.py(), existing) };
    let separator = if name == b"HTTP_COOKIE" { "; " } else { ", " };
    let merged = format!("{}{separator}{}", previous.str()?, value.to_str()?);
    environ.set_item(key, merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustgi_model::{AllowedPeer, Param};

    /// The environ built from `params`, as (key, value) strings.
    fn environ(settings: EnvironSettings, params: &[(&str, &str)]) -> Vec<(String, String)> {
        crate::test_python::start();
        let request = Request {
            params: params
                .iter()
                .map(|(n, v)| Param::new(n.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect(),
            ..Request::default()
        };
        Python::attach(|py| {
            let mut builder = EnvironBuilder::new(py, settings).unwrap();
            let none = py.None().into_bound(py);
            let environ = builder.build(py, &request, none.clone(), none).unwrap();
            environ
                .iter()
                .filter_map(|(k, v)| Some((k.extract().ok()?, v.str().ok()?.to_string())))
                .collect()
        })
    }

    fn get<'a>(environ: &'a [(String, String)], key: &str) -> Option<&'a str> {
        environ
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn a_second_http_host_replaces_the_first_while_other_headers_merge() {
        let env = environ(
            EnvironSettings::default(),
            &[
                ("HTTP_HOST", "example.org"),
                ("HTTP_HOST", "example.org:8080"),
                ("HTTP_ACCEPT", "text/html"),
                ("HTTP_ACCEPT", "text/plain"),
            ],
        );
        assert_eq!(get(&env, "HTTP_HOST"), Some("example.org:8080"));
        assert_eq!(get(&env, "HTTP_ACCEPT"), Some("text/html, text/plain"));
    }

    fn behind_balancer() -> EnvironSettings {
        EnvironSettings {
            forwarded: Some(crate::ForwardedScheme::new(
                "X-Forwarded-Proto",
                vec![AllowedPeer::parse("10.0.0.0/8").unwrap()],
            )),
            ..EnvironSettings::default()
        }
    }

    #[test]
    fn a_trusted_balancer_sets_the_scheme() {
        let env = environ(
            behind_balancer(),
            &[
                ("REMOTE_ADDR", "10.0.0.5"),
                ("HTTP_X_FORWARDED_PROTO", "https"),
            ],
        );
        assert_eq!(get(&env, "wsgi.url_scheme"), Some("https"));
        assert_eq!(get(&env, "HTTPS"), Some("on"));
        assert_eq!(get(&env, "SERVER_PORT"), Some("443"));

        let env = environ(
            behind_balancer(),
            &[
                ("REMOTE_ADDR", "10.0.0.5"),
                ("HTTPS", "on"),
                ("HTTP_X_FORWARDED_PROTO", "http"),
            ],
        );
        assert_eq!(get(&env, "wsgi.url_scheme"), Some("http"));
        assert_eq!(get(&env, "HTTPS"), None);
    }

    #[test]
    fn a_repeated_header_line_counts_by_its_last_occurrence() {
        // nginx 1.22 sends each repeated header line as its own parameter:
        // the client's line first, the balancer's appended line last.
        let env = environ(
            behind_balancer(),
            &[
                ("REMOTE_ADDR", "10.0.0.5"),
                ("HTTP_X_FORWARDED_PROTO", "https"),
                ("HTTP_X_FORWARDED_PROTO", "http"),
            ],
        );
        assert_eq!(get(&env, "wsgi.url_scheme"), Some("http"));
        assert_eq!(get(&env, "HTTPS"), None);

        let env = environ(
            behind_balancer(),
            &[
                ("REMOTE_ADDR", "10.0.0.5"),
                ("HTTP_X_FORWARDED_PROTO", "http, http"),
                ("HTTP_X_FORWARDED_PROTO", "http, https"),
            ],
        );
        assert_eq!(get(&env, "wsgi.url_scheme"), Some("https"));
    }

    #[test]
    fn anyone_else_changes_nothing() {
        for settings in [behind_balancer(), EnvironSettings::default()] {
            let env = environ(
                settings,
                &[
                    ("REMOTE_ADDR", "192.0.2.7"),
                    ("HTTP_X_FORWARDED_PROTO", "https"),
                ],
            );
            assert_eq!(get(&env, "wsgi.url_scheme"), Some("http"));
            assert_eq!(get(&env, "HTTPS"), None);
            assert_eq!(get(&env, "HTTP_X_FORWARDED_PROTO"), Some("https"));
        }
    }
}
