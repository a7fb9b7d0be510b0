//! How the daemon's log lines name a request: `#ID METHOD URI`, the id
//! being the one operators see (`RUSTGI_REQUEST_ID`, the access log's
//! `request_id`, a trusted header's included), as core's lines name it.
//! Written only when a line is: nothing is copied for a request whose
//! lines are filtered out, or that has none.

use rustgi_model::Request;
use rustgi_model::show::request_field;
use std::fmt;
use std::sync::Arc;

/// A request as its log lines name it: see the module comment.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Named<'a> {
    request: &'a Request,
    /// This process's number for it (the generated id's suffix).
    number: u64,
}

impl<'a> Named<'a> {
    pub(crate) fn new(request: &'a Request, number: u64) -> Self {
        Named { request, number }
    }
}

impl fmt::Display for Named<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let request = self.request;
        match crate::record::trusted_id(request) {
            // Printable ASCII (checked): as it is.
            Some(id) => write!(f, "#{}", String::from_utf8_lossy(id))?,
            None => write!(f, "#{}-{}", crate::record::id_prefix(), self.number)?,
        }
        let method = request.param(b"REQUEST_METHOD");
        let uri = request
            .param(b"REQUEST_URI")
            .or_else(|| request.param(b"DOCUMENT_URI"));
        write!(
            f,
            " {} {}",
            request_field(method.map_or(&[][..], |m| m.as_ref())),
            request_field(uri.map_or(&[][..], |u| u.as_ref()))
        )
    }
}

/// What [`Named`] borrows, for what holds a request past the scope that
/// decoded it (a response the Python lane writes, or hands on): the
/// request is shared, not copied.
#[derive(Clone, Debug)]
pub(crate) struct Naming {
    request: Arc<Request>,
    number: u64,
}

impl Naming {
    pub(crate) fn new(request: &Arc<Request>, number: u64) -> Self {
        Naming {
            request: request.clone(),
            number,
        }
    }

    pub(crate) fn named(&self) -> Named<'_> {
        Named::new(&self.request, self.number)
    }
}

impl fmt::Display for Naming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.named().fmt(f)
    }
}

/// A request id alone, for a line written before the request has more
/// to show.
pub(crate) struct Shown<'a>(pub(crate) &'a [u8]);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&request_field(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustgi_model::Param;

    #[test]
    fn a_request_is_named_by_its_id_method_and_uri() {
        let mut request = Request::default();
        request.params.push(Param::new("REQUEST_METHOD", "POST"));
        request
            .params
            .push(Param::new("REQUEST_URI", "/up\nload?a=1"));
        let shown = Named::new(&request, 17).to_string();
        let prefix = crate::record::id_prefix();
        assert_eq!(shown, format!("#{prefix}-17 POST /up\\nload?a=1"));
    }
}
