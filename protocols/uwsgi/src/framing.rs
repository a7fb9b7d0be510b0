//! Where the body ends: CONTENT_LENGTH, or uWSGI's chunked extension.
//!
//! - CONTENT_LENGTH sent (and not empty): exactly that many bytes, and
//!   HTTP_TRANSFER_ENCODING is ignored. nginx 1.22 sends both for a chunked
//!   upload, with a body it has already de-chunked.
//! - Otherwise, HTTP_TRANSFER_ENCODING whose last coding is `chunked`: a
//!   chunked body (uWSGI's extension; no stock front server sends it).
//! - Otherwise no body.

use rustgi_model::{BodyFraming, Param, Request};

use rustgi_model::show;

const CONTENT_LENGTH: &[u8] = b"CONTENT_LENGTH";
const TRANSFER_ENCODING: &[u8] = b"HTTP_TRANSFER_ENCODING";

/// The framing of a request the decoder accepted (its CONTENT_LENGTH is
/// already checked and in `content_length`).
pub(crate) fn body_framing(request: &Request) -> BodyFraming {
    if sends_content_length(&request.params) || !is_chunked(&request.params) {
        BodyFraming::Length(request.content_length)
    } else {
        BodyFraming::Chunked
    }
}

/// The warning for a Transfer-Encoding that is not chunked on a request
/// without CONTENT_LENGTH: HTTP calls such a request bad, and its body
/// cannot be delimited, so it is taken as empty.
pub(crate) fn warning(params: &[Param]) -> Option<String> {
    if sends_content_length(params) || is_chunked(params) {
        return None;
    }
    let coding = params
        .iter()
        .rev()
        .find(|p| p.name.as_ref() == TRANSFER_ENCODING)?;
    Some(format!(
        "HTTP_TRANSFER_ENCODING is {:?}, not chunked, and there is no CONTENT_LENGTH: the body is taken as empty",
        show::field(&coding.value)
    ))
}

/// The first CONTENT_LENGTH was sent with a value (nginx sends it empty for
/// a request without a body).
fn sends_content_length(params: &[Param]) -> bool {
    params
        .iter()
        .find(|p| p.name.as_ref() == CONTENT_LENGTH)
        .is_some_and(|p| !p.value.is_empty())
}

/// The final transfer coding is `chunked`. A repeated header lists codings
/// in the order they were applied, so the last one of the last value counts.
fn is_chunked(params: &[Param]) -> bool {
    let Some(coding) = params
        .iter()
        .rev()
        .find(|p| p.name.as_ref() == TRANSFER_ENCODING)
    else {
        return false;
    };
    coding
        .value
        .split(|&b| b == b',')
        .map(|c| c.trim_ascii())
        .rfind(|c| !c.is_empty())
        .is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(params: &[(&'static str, &'static str)], content_length: u64) -> Request {
        Request {
            params: params.iter().map(|&(n, v)| Param::new(n, v)).collect(),
            content_length,
            warnings: vec![],
        }
    }

    #[test]
    fn content_length_wins() {
        let r = request(
            &[
                ("CONTENT_LENGTH", "1000"),
                ("HTTP_TRANSFER_ENCODING", "chunked"),
            ],
            1000,
        );
        assert_eq!(body_framing(&r), BodyFraming::Length(1000));
        assert_eq!(warning(&r.params), None);
    }

    #[test]
    fn chunked_without_content_length() {
        for te in [
            "chunked",
            "Chunked",
            "gzip, chunked",
            "gzip,chunked ,",
            " CHUNKED\t",
        ] {
            for cl in [&[][..], &[("CONTENT_LENGTH", "")][..]] {
                let mut params = cl.to_vec();
                params.push(("HTTP_TRANSFER_ENCODING", te));
                let r = request(&params, 0);
                assert_eq!(body_framing(&r), BodyFraming::Chunked, "{te:?} {cl:?}");
                assert_eq!(warning(&r.params), None);
            }
        }
        // The last of repeated headers counts.
        let r = request(
            &[
                ("HTTP_TRANSFER_ENCODING", "gzip"),
                ("HTTP_TRANSFER_ENCODING", "chunked"),
            ],
            0,
        );
        assert_eq!(body_framing(&r), BodyFraming::Chunked);
    }

    #[test]
    fn other_codings_and_no_header() {
        assert_eq!(body_framing(&request(&[], 0)), BodyFraming::Length(0));
        for te in ["chunked, gzip", "gzip", "", "chunkedx"] {
            let r = request(&[("HTTP_TRANSFER_ENCODING", te)], 0);
            assert_eq!(body_framing(&r), BodyFraming::Length(0), "{te:?}");
            assert!(warning(&r.params).unwrap().contains("taken as empty"));
        }
    }
}
