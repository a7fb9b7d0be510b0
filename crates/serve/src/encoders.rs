//! The response encoder of SCGI and uwsgi (and CGI mode): the protocol's
//! head, then the body as it comes.

use rustgi_model::{
    COALESCE_LIMIT, Request, ResponseEncoder, ResponseEvent, Segments, StreamProtocol,
};
use std::sync::Arc;

pub(crate) struct StreamEncoder<P> {
    pub(crate) protocol: P,
    pub(crate) request: Arc<Request>,
}

impl<P: StreamProtocol> ResponseEncoder for StreamEncoder<P> {
    fn encode(&mut self, event: ResponseEvent, out: &mut Segments) {
        match event {
            ResponseEvent::Head(head) => {
                self.protocol.encode_head(&self.request, &head, out.small())
            }
            ResponseEvent::Body(data) if data.len() <= COALESCE_LIMIT => {
                out.small().extend_from_slice(&data)
            }
            ResponseEvent::Body(data) => out.push(data),
            // Already in the log; SCGI and uwsgi have no channel for it.
            ResponseEvent::Stderr(_) | ResponseEvent::End | ResponseEvent::Abort => {}
        }
    }
}
