//! A browser's request as nginx 1.22 forwards it, for the benches and tests
//! of every crate, so that they all measure the same request. The gateway
//! never uses it.

use crate::Param;

/// The stock params file (Debian's `/etc/nginx/*_params`) the request went
/// through; each has its own variables, in its own order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamsFile {
    Scgi,
    Uwsgi,
    Fastcgi,
}

impl ParamsFile {
    /// The variables the file sends, in its order.
    pub fn variables(self) -> &'static [&'static str] {
        match self {
            ParamsFile::Scgi => SCGI,
            ParamsFile::Uwsgi => UWSGI,
            ParamsFile::Fastcgi => FASTCGI,
        }
    }
}

/// What varies between the sample requests.
#[derive(Clone, Copy, Debug)]
pub struct SampleRequest<'a> {
    pub method: &'a str,
    pub content_type: &'a str,
    /// Empty without a body, as nginx sends it (SCGI's file sends `0`).
    pub content_length: &'a str,
    pub cookie: &'a str,
}

impl<'a> SampleRequest<'a> {
    /// A page fetch.
    pub fn get(cookie: &'a str) -> Self {
        SampleRequest {
            method: "GET",
            content_type: "",
            content_length: "",
            cookie,
        }
    }
}

/// The bench cases every crate runs: an ordinary session cookie, and a
/// 16 KiB one (where per-byte costs show).
pub fn cookies() -> [(&'static str, String); 2] {
    let session = "sessionid=3f9a1c7e5b2d4f6a8c0e1b3d5f7a9c2e; csrftoken=Zx8Kq2Lm4Np6Rt8Vw0Yb";
    let big = format!("big={}", "x".repeat(16 * 1024 - 4));
    [("nginx_get", session.to_owned()), ("cookie_16k", big)]
}

/// Each file's variables in its order (kept in rows: one a line would
/// hide the order). SCGI's has CONTENT_LENGTH first, as SCGI requires.
#[rustfmt::skip]
const SCGI: &[&str] = &[
    "CONTENT_LENGTH", "REQUEST_METHOD", "REQUEST_URI", "QUERY_STRING", "CONTENT_TYPE",
    "DOCUMENT_URI", "DOCUMENT_ROOT", "SCGI", "SERVER_PROTOCOL", "REQUEST_SCHEME", "REMOTE_ADDR",
    "REMOTE_PORT", "SERVER_PORT", "SERVER_NAME",
];
#[rustfmt::skip]
const UWSGI: &[&str] = &[
    "QUERY_STRING", "REQUEST_METHOD", "CONTENT_TYPE", "CONTENT_LENGTH", "REQUEST_URI",
    "PATH_INFO", "DOCUMENT_ROOT", "SERVER_PROTOCOL", "REQUEST_SCHEME", "REMOTE_ADDR",
    "REMOTE_PORT", "SERVER_PORT", "SERVER_NAME",
];
#[rustfmt::skip]
const FASTCGI: &[&str] = &[
    "QUERY_STRING", "REQUEST_METHOD", "CONTENT_TYPE", "CONTENT_LENGTH", "SCRIPT_NAME",
    "REQUEST_URI", "DOCUMENT_URI", "DOCUMENT_ROOT", "SERVER_PROTOCOL", "REQUEST_SCHEME",
    "GATEWAY_INTERFACE", "SERVER_SOFTWARE", "REMOTE_ADDR", "REMOTE_PORT", "REMOTE_USER",
    "SERVER_ADDR", "SERVER_PORT", "SERVER_NAME", "REDIRECT_STATUS",
];

/// What Firefox sends for a page, as nginx forwards it (the cookie last).
const BROWSER_HEADERS: &[(&str, &str)] = &[
    ("HTTP_HOST", "example.org"),
    (
        "HTTP_USER_AGENT",
        "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    ),
    (
        "HTTP_ACCEPT",
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    ),
    ("HTTP_ACCEPT_LANGUAGE", "en-GB,en;q=0.5"),
    ("HTTP_ACCEPT_ENCODING", "gzip, deflate, br, zstd"),
    ("HTTP_REFERER", "http://example.org/articles/"),
    ("HTTP_CONNECTION", "keep-alive"),
];

/// The value a variable has in every sample request (nginx's own, the
/// server's root, a plain HTTP/1.1 request), if it is one of those.
pub fn fixed_value(name: &str) -> Option<&'static str> {
    let value = match name {
        "DOCUMENT_ROOT" => "/usr/share/nginx/html",
        "SCGI" => "1",
        "SERVER_PROTOCOL" => "HTTP/1.1",
        "REQUEST_SCHEME" => "http",
        "GATEWAY_INTERFACE" => "CGI/1.1",
        "SERVER_SOFTWARE" => "nginx/1.22.1",
        "REDIRECT_STATUS" => "200",
        _ => return None,
    };
    Some(value)
}

/// The params nginx sends for `request` through `file`, in its order, then
/// the browser's headers.
pub fn nginx_params(file: ParamsFile, request: &SampleRequest) -> Vec<Param> {
    let value = |name: &str| match name {
        "CONTENT_LENGTH" if file == ParamsFile::Scgi && request.content_length.is_empty() => "0",
        "CONTENT_LENGTH" => request.content_length,
        "REQUEST_METHOD" => request.method,
        "CONTENT_TYPE" => request.content_type,
        "QUERY_STRING" => "page=2&sort=new",
        "REQUEST_URI" => "/articles/2026/11/rustgi?page=2&sort=new",
        "DOCUMENT_URI" | "PATH_INFO" | "SCRIPT_NAME" => "/articles/2026/11/rustgi",
        "REMOTE_ADDR" => "192.0.2.17",
        "REMOTE_PORT" => "51234",
        "SERVER_ADDR" => "192.0.2.1",
        "SERVER_PORT" => "80",
        "SERVER_NAME" => "example.org",
        _ => fixed_value(name).unwrap_or(""),
    };
    let variables = file.variables().iter().map(|&name| (name, value(name)));
    let headers = BROWSER_HEADERS.iter().copied();
    variables
        .chain(headers)
        .chain([("HTTP_COOKIE", request.cookie)])
        .map(|(name, value)| Param::new(name.as_bytes().to_vec(), value.as_bytes().to_vec()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value<'a>(params: &'a [Param], name: &str) -> &'a [u8] {
        let found = params.iter().find(|p| p.name.as_ref() == name.as_bytes());
        found.unwrap().value.as_ref()
    }

    #[test]
    fn each_file_has_its_variables_and_the_headers() {
        let get = SampleRequest::get("a=1");
        let scgi = nginx_params(ParamsFile::Scgi, &get);
        assert_eq!(scgi.len(), 22);
        assert_eq!(scgi[0], Param::new("CONTENT_LENGTH", "0"));
        let uwsgi = nginx_params(ParamsFile::Uwsgi, &get);
        assert_eq!(uwsgi.len(), 21);
        assert_eq!(value(&uwsgi, "CONTENT_LENGTH"), b"");
        assert_eq!(value(&uwsgi, "HTTP_COOKIE"), b"a=1");
        let post = SampleRequest {
            method: "POST",
            content_type: "text/plain",
            content_length: "5",
            cookie: "",
        };
        let fastcgi = nginx_params(ParamsFile::Fastcgi, &post);
        assert_eq!(fastcgi.len(), 27);
        assert_eq!(value(&fastcgi, "CONTENT_LENGTH"), b"5");
        assert_eq!(value(&fastcgi, "REQUEST_METHOD"), b"POST");
        assert!(fastcgi.iter().all(|p| !p.value.is_empty()
            || [&b"REMOTE_USER"[..], b"HTTP_COOKIE"].contains(&p.name.as_ref())));
    }
}
