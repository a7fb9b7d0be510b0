//! One request's response between the application and its connection,
//! written once for every lane and protocol: the protocol's encoder turns
//! the application's events into bytes, which are held back while the
//! request body is still arriving and otherwise go to a sink (blocking on a
//! Python thread, async under tokio: see `sink`).
//!
//! Holding back matters because nginx stops sending a request body once a
//! response has started: an application that writes before it reads would
//! wait for ever. Held back (up to [`HOLD_LIMIT`]), such an application
//! blocks on its full channel while the body drains into the spool, then
//! carries on.

use crate::record::Trail;
use bytes::Bytes;
use rustgi_model::{ResponseEncoder, ResponseEvent, ResponseHead, Segments};

/// Response bytes held back per request while its body is still arriving.
pub(crate) const HOLD_LIMIT: usize = 256 * 1024;

/// How a response ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Whole: close gracefully (shutdown, then drain what the peer sends).
    Complete,
    /// Cut short: the connection must not pass it off as whole.
    Aborted,
}

/// See the module comment.
#[derive(Debug)]
pub(crate) struct ResponseFlow {
    out: Segments,
    /// The request body is still arriving.
    holding: bool,
    ending: Option<Ending>,
    /// The request's record (when one is wanted), finished as the flow is
    /// dropped: the request is over then (see `crate::record`).
    trail: Option<Trail>,
    /// The connection failed: what was not written is lost.
    gone: bool,
    /// The application's head did not fit the protocol's framing: our 500
    /// went instead, and the application's body is dropped.
    refused: bool,
}

impl ResponseFlow {
    /// `body_arrived`: the request body is already whole (nothing to hold
    /// back for).
    pub(crate) fn new(body_arrived: bool) -> Self {
        ResponseFlow {
            out: Segments::default(),
            holding: !body_arrived,
            ending: None,
            trail: None,
            gone: false,
            refused: false,
        }
    }

    /// The flow of the request whose record is `trail`.
    pub(crate) fn traced(mut self, trail: Option<Trail>) -> Self {
        self.trail = trail;
        self
    }

    /// The front server aborted the request (FastCGI ABORT_REQUEST).
    pub(crate) fn aborted_by_peer(&self) {
        if let Some(trail) = &self.trail {
            trail.aborted();
        }
    }

    /// Encodes a batch of the application's events. What is already queued
    /// is coalesced (the encoder joins small pieces); nothing waits for
    /// more.
    pub(crate) fn encode<E: ResponseEncoder + ?Sized>(
        &mut self,
        encoder: &mut E,
        events: impl IntoIterator<Item = ResponseEvent>,
    ) {
        encode_events(
            (&mut self.ending, &mut self.trail, &mut self.refused),
            encoder,
            events,
            &mut self.out,
        );
    }

    /// As [`encode`](Self::encode), for a connection that carries several
    /// responses (FastCGI): what may go out goes to the connection's `out`
    /// (after what was held), the rest stays here.
    pub(crate) fn encode_into<E: ResponseEncoder + ?Sized>(
        &mut self,
        encoder: &mut E,
        events: impl IntoIterator<Item = ResponseEvent>,
        out: &mut Segments,
    ) {
        if self.held() {
            self.encode(encoder, events);
            // An ending releases what was held.
            self.release_into(out);
            return;
        }
        out.append(&mut self.out);
        encode_events(
            (&mut self.ending, &mut self.trail, &mut self.refused),
            encoder,
            events,
            out,
        );
    }

    /// The request body is all in (or will never be): what was held goes
    /// to the connection's `out`, and nothing is held from here.
    pub(crate) fn body_arrived_into(&mut self, out: &mut Segments) {
        self.body_arrived();
        self.release_into(out);
    }

    fn release_into(&mut self, out: &mut Segments) {
        if !self.held() {
            out.append(&mut self.out);
        }
    }

    /// Remembers the first ending (`End`, `Abort`, or the connection gone).
    fn end(&mut self, ending: Ending) {
        self.ending.get_or_insert(ending);
    }

    /// The request body is all in (or will never be): stop holding back.
    pub(crate) fn body_arrived(&mut self) {
        self.holding = false;
    }

    /// What may be written now: nothing while holding back, unless the
    /// application is done (then what it sent goes out whatever the body).
    pub(crate) fn writable(&mut self) -> Option<&mut Segments> {
        (!self.held()).then_some(&mut self.out)
    }

    /// True while the response must wait for the body.
    pub(crate) fn held(&self) -> bool {
        self.holding && self.ending.is_none()
    }

    /// The hold is full: take no more events until the body is in.
    pub(crate) fn hold_full(&self) -> bool {
        self.held() && self.out.len() >= HOLD_LIMIT
    }

    pub(crate) fn ending(&self) -> Option<Ending> {
        self.ending
    }

    /// Encoded and not yet written.
    pub(crate) fn pending(&self) -> usize {
        self.out.len()
    }

    /// Encoded and not yet written, of `block` itself (referenced).
    pub(crate) fn pending_within(&self, block: &[u8]) -> usize {
        self.out.unwritten_within(block)
    }

    /// The connection is gone: drop what was not written.
    pub(crate) fn discard(&mut self) {
        self.out.clear();
        self.gone = true;
        self.end(Ending::Aborted);
    }
}

impl Drop for ResponseFlow {
    fn drop(&mut self) {
        if let Some(trail) = self.trail.take() {
            // Bytes never written: the connection went before they could.
            let gone = self.gone || !self.out.is_empty();
            trail.finish(self.ending, gone);
        }
    }
}

/// Encodes `events` into `out`, remembering the first ending. A head the
/// encoder says does not fit is logged and answered with a 500 of ours,
/// which the record shows; the application's body is then dropped.
fn encode_events<E: ResponseEncoder + ?Sized>(
    (ending, trail, refused): (&mut Option<Ending>, &mut Option<Trail>, &mut bool),
    encoder: &mut E,
    events: impl IntoIterator<Item = ResponseEvent>,
    out: &mut Segments,
) {
    for event in events {
        let mut extra = None;
        let event = match event {
            ResponseEvent::Head(head) if ending.is_none() => {
                let head = match encoder.check_head(&head) {
                    Ok(()) => head,
                    Err(e) => {
                        match trail {
                            Some(trail) => tracing::warn!(
                                request = %trail.name(),
                                "{e}: answering 500 Internal Server Error instead"
                            ),
                            None => {
                                tracing::warn!("{e}: answering 500 Internal Server Error instead")
                            }
                        }
                        *refused = true;
                        let (head, body) = refusal();
                        extra = Some(body);
                        head
                    }
                };
                if let Some(trail) = trail {
                    trail.head(&head);
                }
                ResponseEvent::Head(head)
            }
            ResponseEvent::Body(_) if *refused => continue,
            event => event,
        };
        match &event {
            ResponseEvent::End => _ = ending.get_or_insert(Ending::Complete),
            ResponseEvent::Abort => _ = ending.get_or_insert(Ending::Aborted),
            ResponseEvent::Body(data) if ending.is_none() => {
                if let Some(trail) = trail {
                    trail.body(data.len());
                }
            }
            _ => {}
        }
        encoder.encode(event, out);
        if let Some(body) = extra {
            if let Some(trail) = trail {
                trail.body(body.len());
            }
            encoder.encode(ResponseEvent::Body(body), out);
        }
    }
    encoder.end_batch(out);
}

/// The 500 that replaces a head too large for the protocol.
fn refusal() -> (ResponseHead, Bytes) {
    ResponseHead::own_answer("500 Internal Server Error", b"Internal Server Error\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustgi_model::HeadTooLarge;

    /// Writes a body as it is and the head as `H`: enough to see the flow.
    struct Plain;

    impl ResponseEncoder for Plain {
        fn encode(&mut self, event: ResponseEvent, out: &mut Segments) {
            match event {
                ResponseEvent::Head(_) => out.small().push(b'H'),
                ResponseEvent::Body(data) => out.push(data),
                _ => {}
            }
        }
    }

    fn head() -> ResponseEvent {
        ResponseEvent::Head(ResponseHead::new(Bytes::from_static(b"200 OK"), Vec::new()).unwrap())
    }

    fn body(len: usize) -> ResponseEvent {
        ResponseEvent::Body(Bytes::from(vec![b'x'; len]))
    }

    #[test]
    fn a_response_waits_for_the_body_until_the_app_is_done() {
        let mut flow = ResponseFlow::new(false);
        flow.encode(&mut Plain, [head(), body(10)]);
        assert!(flow.writable().is_none(), "held while the body arrives");
        assert!(!flow.hold_full());
        flow.encode(&mut Plain, [body(HOLD_LIMIT)]);
        assert!(flow.hold_full(), "past the limit the app must wait");
        flow.body_arrived();
        assert_eq!(flow.writable().unwrap().len(), 1 + 10 + HOLD_LIMIT);
        assert!(!flow.hold_full());
    }

    #[test]
    fn an_ended_response_goes_out_whatever_the_body() {
        let mut flow = ResponseFlow::new(false);
        flow.encode(&mut Plain, [head(), body(3), ResponseEvent::End]);
        assert_eq!(flow.ending(), Some(Ending::Complete));
        let out = flow.writable().expect("the app is done");
        assert_eq!(out.to_vec(), b"Hxxx");
        out.advance(4);
        assert_eq!(flow.pending(), 0);
    }

    #[test]
    fn an_abort_is_remembered_and_what_came_before_still_goes_out() {
        let mut flow = ResponseFlow::new(true);
        flow.encode(&mut Plain, [head(), body(2), ResponseEvent::Abort]);
        flow.encode(&mut Plain, [ResponseEvent::End]);
        assert_eq!(
            flow.ending(),
            Some(Ending::Aborted),
            "the first ending stands"
        );
        assert_eq!(flow.pending(), 3);
        flow.discard();
        assert_eq!(flow.pending(), 0);
        assert_eq!(flow.ending(), Some(Ending::Aborted));
    }

    #[test]
    fn a_shared_connection_gets_the_bytes_once_nothing_is_held() {
        let mut connection = Segments::default();
        let mut flow = ResponseFlow::new(false);
        flow.encode_into(&mut Plain, [head()], &mut connection);
        assert!(connection.is_empty(), "held while the body arrives");
        flow.body_arrived();
        flow.encode_into(&mut Plain, [body(2), ResponseEvent::End], &mut connection);
        assert_eq!(connection.to_vec(), b"Hxx", "what was held, then the rest");
        assert_eq!(flow.pending(), 0);
        assert_eq!(flow.ending(), Some(Ending::Complete));
    }

    #[test]
    fn without_a_body_to_wait_for_nothing_is_held() {
        let mut flow = ResponseFlow::new(true);
        flow.encode(&mut Plain, [head()]);
        assert_eq!(flow.writable().unwrap().len(), 1);
        assert!(!flow.held());
    }

    /// As [`Plain`], with heads of more than one header refused.
    struct Small;

    impl ResponseEncoder for Small {
        fn encode(&mut self, event: ResponseEvent, out: &mut Segments) {
            match event {
                ResponseEvent::Head(head) => {
                    out.small().extend_from_slice(head.status.as_ref());
                    out.small().push(b'|');
                }
                ResponseEvent::Body(data) => out.push(data),
                _ => {}
            }
        }

        fn check_head(&self, head: &ResponseHead) -> Result<(), HeadTooLarge> {
            if head.headers.len() > 2 {
                return Err(HeadTooLarge {
                    length: head.headers.len(),
                    limit: 2,
                    limit_name: "the test's limit",
                    option: "--none",
                });
            }
            Ok(())
        }
    }

    #[test]
    fn a_head_the_encoder_refuses_becomes_our_500_without_the_apps_body() {
        let mut flow = ResponseFlow::new(true);
        let big =
            ResponseHead::from_static("200 OK", &[("A", "1"), ("B", "2"), ("C", "3")]).unwrap();
        flow.encode(
            &mut Small,
            [ResponseEvent::Head(big), body(5), ResponseEvent::End],
        );
        let out = flow.writable().unwrap();
        let mut slices = [std::io::IoSlice::new(&[]); 8];
        let n = out.io_slices(&mut slices);
        let bytes: Vec<u8> = slices[..n].iter().flat_map(|s| s.iter().copied()).collect();
        assert_eq!(
            String::from_utf8_lossy(&bytes),
            "500 Internal Server Error|Internal Server Error\n"
        );
        assert_eq!(flow.ending(), Some(Ending::Complete));
        let mut fits = ResponseFlow::new(true);
        fits.encode(&mut Small, [head(), body(5)]);
        assert_eq!(fits.pending(), "200 OK|".len() + 5);
    }
}
