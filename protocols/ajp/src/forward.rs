//! The forward-request packet (prefix code 2) and the CGI-style request it
//! becomes:
//!
//! ```text
//! method (byte), protocol, req_uri, remote_addr, remote_host, server_name
//! (strings), server_port (integer), is_ssl (boolean), num_headers (integer),
//! headers: name (0xA0xx code or string), value (string),
//! attributes: code (byte), value (string; ?req_attribute: name and value;
//! ?ssl_key_size: integer), ..., 0xFF
//! ```
//!
//! The request gets the names flup's AJP server gives (REQUEST_METHOD,
//! SERVER_PROTOCOL, REQUEST_URI, REMOTE_ADDR, REMOTE_HOST, SERVER_NAME,
//! SERVER_PORT, HTTPS, HTTP_*, CONTENT_TYPE, CONTENT_LENGTH, and the
//! attributes by their names: REMOTE_USER, AUTH_TYPE, QUERY_STRING,
//! SSL_CIPHER…). REQUEST_URI carries the query, as CGI's does: the core
//! takes PATH_INFO from its path, percent-decoded, and SCRIPT_NAME from
//! `--mount`.

use crate::codes::{self, attribute};
use crate::fields::Fields;
use crate::secret::Secret;
use crate::{AjpError, BodyKind};
use bytes::{Bytes, BytesMut};
use rustgi_model::{Param, Request, content_length};

/// A decoded forward request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forward {
    pub request: Request,
    /// How its body comes (see [`BodyKind`]).
    pub body: BodyKind,
}

/// Names the packet itself sets, or that the gateway reads (REQUEST_SCHEME
/// makes the request https, SERVER_SOFTWARE chooses how paths split): a
/// `?req_attribute` may not set them (Apache forwards any `AJP_*`
/// environment variable as one, without its prefix).
const RESERVED: [&str; 19] = [
    "REQUEST_METHOD",
    "SERVER_PROTOCOL",
    "REQUEST_URI",
    "REMOTE_ADDR",
    "REMOTE_HOST",
    "SERVER_NAME",
    "SERVER_PORT",
    "HTTPS",
    "QUERY_STRING",
    "REMOTE_USER",
    "AUTH_TYPE",
    "CONTENT_LENGTH",
    "CONTENT_TYPE",
    "SCRIPT_NAME",
    "PATH_INFO",
    "DOCUMENT_URI",
    "REQUEST_SCHEME",
    "SERVER_SOFTWARE",
    "GATEWAY_INTERFACE",
];

/// Request attributes mod_proxy_ajp and mod_jk send, and the CGI names
/// they also go by.
const RENAMED: [(&str, &str); 2] = [
    ("AJP_REMOTE_PORT", "REMOTE_PORT"),
    ("AJP_LOCAL_ADDR", "SERVER_ADDR"),
];

/// Decodes the payload of a forward-request packet (its prefix code
/// included) and checks its secret.
pub(crate) fn decode(payload: Bytes, secret: Option<&Secret>) -> Result<Forward, AjpError> {
    let mut fields = Fields::new(payload);
    let _prefix = fields.byte("prefix code")?;
    let method_code = fields.byte("method")?;
    let protocol = fields.string("protocol")?;
    let req_uri = fields.string("req_uri")?;
    let remote_addr = fields.string("remote_addr")?;
    let remote_host = fields.string("remote_host")?;
    let server_name = fields.string("server_name")?;
    let server_port = fields.integer("server_port")?;
    let is_ssl = fields.byte("is_ssl")?;
    let headers = fields.integer("num_headers")?;

    // Room for the fixed ones, the headers and a few attributes; bounded
    // by the packet's size, not by num_headers.
    let capacity = 12 + usize::from(headers).min(fields.remaining() / 4);
    let mut params = Vec::with_capacity(capacity);
    let mut warnings = Vec::new();
    let mut put = |name: &'static str, value: Bytes| params.push(Param::new(name, value));
    put("SERVER_PROTOCOL", protocol.unwrap_or_default());
    put("REMOTE_ADDR", remote_addr.unwrap_or_default());
    if let Some(host) = remote_host {
        put("REMOTE_HOST", host);
    }
    put("SERVER_NAME", server_name.unwrap_or_default());
    put("SERVER_PORT", Bytes::from(server_port.to_string()));
    if is_ssl != 0 {
        put("HTTPS", Bytes::from_static(b"on"));
    }
    for _ in 0..headers {
        let offset = fields.offset();
        let name = if fields.peek("header name")? == 0xA0 {
            let code = fields.integer("header name")?;
            let cgi =
                codes::request_header(code).ok_or(AjpError::UnknownHeaderCode { code, offset })?;
            Some(Bytes::from_static(cgi.as_bytes()))
        } else {
            let name = fields.string("header name")?.unwrap_or_default();
            cgi_header_name(&name, &mut warnings)
        };
        let value = fields.string("header value")?.unwrap_or_default();
        if let Some(name) = name {
            params.push(Param::new(name, value));
        }
    }

    let mut query = None;
    let mut stored_method = None;
    let mut sent_secret = None;
    loop {
        let offset = fields.offset();
        let code = fields.byte("attribute code")?;
        match code {
            attribute::ARE_DONE => break,
            attribute::QUERY_STRING => query = fields.string("?query_string")?,
            attribute::SECRET => {
                let sent = fields.string("?secret")?.unwrap_or_default();
                if sent_secret.replace(sent).is_some() {
                    return Err(AjpError::SecretRepeated);
                }
            }
            attribute::STORED_METHOD => stored_method = fields.string("?stored_method")?,
            attribute::SSL_KEY_SIZE => {
                let size = fields.integer("?ssl_key_size")?;
                params.push(Param::new("SSL_KEY_SIZE", size.to_string()));
            }
            attribute::REQ_ATTRIBUTE => {
                let name = fields.string("?req_attribute name")?.unwrap_or_default();
                let value = fields.string("?req_attribute value")?.unwrap_or_default();
                req_attribute(name, value, &mut params, &mut warnings);
            }
            code => {
                let name = codes::attribute_name(code)
                    .ok_or(AjpError::UnknownAttribute { code, offset })?;
                let value = fields.string(name)?.unwrap_or_default();
                params.push(Param::new(name, value));
            }
        }
    }
    if fields.remaining() > 0 {
        return Err(AjpError::TrailingBytes {
            count: fields.remaining(),
            offset: fields.offset(),
        });
    }
    if let Some(secret) = secret {
        match sent_secret {
            None => return Err(AjpError::SecretMissing),
            Some(sent) if !secret.matches(&sent) => return Err(AjpError::SecretWrong),
            Some(_) => {}
        }
    }

    let method = match method_code {
        codes::STORED_METHOD => stored_method.ok_or(AjpError::MissingStoredMethod)?,
        code => Bytes::from_static(
            codes::method(code)
                .ok_or(AjpError::UnknownMethod { code })?
                .as_bytes(),
        ),
    };
    params.push(Param::new("REQUEST_METHOD", method));
    let query = query.unwrap_or_default();
    let req_uri = req_uri.unwrap_or_default();
    let request_uri = if query.is_empty() {
        req_uri
    } else {
        let mut uri = BytesMut::with_capacity(req_uri.len() + 1 + query.len());
        uri.extend_from_slice(&req_uri);
        uri.extend_from_slice(b"?");
        uri.extend_from_slice(&query);
        uri.freeze()
    };
    params.push(Param::new("REQUEST_URI", request_uri));
    params.push(Param::new("QUERY_STRING", query));

    let length = content_length(&params).map_err(AjpError::ContentLength)?;
    let chunked = params.iter().any(|p| {
        p.name.as_ref() == b"HTTP_TRANSFER_ENCODING"
            && p.value
                .split(|&b| b == b',')
                .any(|coding| coding.trim_ascii().eq_ignore_ascii_case(b"chunked"))
    });
    let body = match length {
        Some(length) => BodyKind::Length(length),
        None if chunked => BodyKind::UntilEmpty,
        None => BodyKind::Length(0),
    };
    Ok(Forward {
        request: Request {
            params,
            content_length: length.unwrap_or(0),
            warnings,
        },
        body,
    })
}

/// `Content-Type` → CONTENT_TYPE, `X-Thing` → HTTP_X_THING. A name with
/// `_` is dropped: it would pass for the `-` one (`X_Thing` for
/// `X-Thing`), as Apache's CGI and nginx drop it.
fn cgi_header_name(name: &[u8], warnings: &mut Vec<String>) -> Option<Bytes> {
    if name.is_empty() || name.contains(&b'_') {
        warnings.push(format!(
            "request header {} dropped: empty, or with '_' (it would pass for one with '-')",
            rustgi_model::show::field(name)
        ));
        return None;
    }
    let upper = |b: &u8| {
        if *b == b'-' {
            b'_'
        } else {
            b.to_ascii_uppercase()
        }
    };
    if name.eq_ignore_ascii_case(b"content-type") || name.eq_ignore_ascii_case(b"content-length") {
        return Some(Bytes::from(name.iter().map(upper).collect::<Vec<u8>>()));
    }
    let mut cgi = Vec::with_capacity(5 + name.len());
    cgi.extend_from_slice(b"HTTP_");
    cgi.extend(name.iter().map(upper));
    Some(Bytes::from(cgi))
}

/// A `?req_attribute`: by its own name, unless that is one the packet sets
/// (then dropped, with a warning); Apache's AJP_REMOTE_PORT and
/// AJP_LOCAL_ADDR also as REMOTE_PORT and SERVER_ADDR.
fn req_attribute(name: Bytes, value: Bytes, params: &mut Vec<Param>, warnings: &mut Vec<String>) {
    let reserved = RESERVED.iter().any(|r| r.as_bytes() == name.as_ref())
        || name.starts_with(b"HTTP_")
        || name.starts_with(b"wsgi.")
        || name.starts_with(b"RUSTGI_")
        || name.is_empty();
    if reserved {
        warnings.push(format!(
            "AJP request attribute {} dropped: the request itself sets that name",
            rustgi_model::show::field(&name)
        ));
        return;
    }
    if let Some((_, cgi)) = RENAMED
        .iter()
        .find(|(ajp, _)| ajp.as_bytes() == name.as_ref())
    {
        params.push(Param::new(*cgi, value.clone()));
    }
    params.push(Param::new(name, value));
}
