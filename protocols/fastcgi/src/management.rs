//! Management records, on request id 0.
//!
//! - GET_VALUES: name-value pairs whose values are empty; the answer,
//!   GET_VALUES_RESULT, gives a value for each name the application knows
//!   (FCGI_MAX_CONNS, FCGI_MAX_REQS, FCGI_MPXS_CONNS, as ASCII decimal) and
//!   leaves out the others.
//! - Any other type on id 0 is answered with UNKNOWN_TYPE, whose body is
//!   the type byte and 7 reserved bytes.

use crate::pairs::{decode_all, write_pair};
use crate::record::{MANAGEMENT_ID, RecordType, write_record};
use crate::{Config, PairError};

/// The most concurrent connections the application accepts.
pub const MAX_CONNS: &[u8] = b"FCGI_MAX_CONNS";
/// The most concurrent requests the application accepts.
pub const MAX_REQS: &[u8] = b"FCGI_MAX_REQS";
/// "1" if the application multiplexes connections, else "0".
pub const MPXS_CONNS: &[u8] = b"FCGI_MPXS_CONNS";

/// The value the application gives for a variable, if it knows it.
fn value(config: &Config, name: &[u8]) -> Option<String> {
    match name {
        MAX_CONNS => Some(config.max_connections.to_string()),
        MAX_REQS => Some(config.max_requests.to_string()),
        MPXS_CONNS => Some(u8::from(config.multiplex).to_string()),
        _ => None,
    }
}

/// Appends the GET_VALUES_RESULT record that answers the GET_VALUES body
/// `content`: the known names asked for, each once, in the order asked.
pub(crate) fn answer_get_values(
    content: &[u8],
    config: &Config,
    out: &mut Vec<u8>,
) -> Result<(), PairError> {
    let asked = decode_all(content)?;
    let mut answered: Vec<&[u8]> = Vec::new();
    let mut body = Vec::new();
    for (name, _value) in asked {
        let name = &content[name];
        if answered.contains(&name) {
            continue;
        }
        if let Some(value) = value(config, name) {
            write_pair(name, value.as_bytes(), &mut body);
            answered.push(name);
        }
    }
    // At most three short pairs: far below one record's 65535 bytes.
    write_record(RecordType::GetValuesResult, MANAGEMENT_ID, &body, out);
    Ok(())
}

/// Appends the UNKNOWN_TYPE record that answers a management record of a
/// type the application does not handle.
pub(crate) fn answer_unknown_type(record_type: u8, out: &mut Vec<u8>) {
    let body = [record_type, 0, 0, 0, 0, 0, 0, 0];
    write_record(RecordType::UnknownType, MANAGEMENT_ID, &body, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{encode_get_values, records};

    fn config() -> Config {
        Config {
            max_connections: 10,
            max_requests: 250,
            multiplex: true,
            ..Config::default()
        }
    }

    #[test]
    fn answers_known_names_only_once_each() {
        let mut asked = Vec::new();
        encode_get_values(
            &[MAX_REQS, b"FCGI_NOPE", MAX_CONNS, MPXS_CONNS, MAX_REQS],
            &mut asked,
        );
        let content = &asked[8..8 + usize::from(asked[5])];
        let mut out = Vec::new();
        answer_get_values(content, &config(), &mut out).unwrap();
        let answer = records(&out).unwrap();
        assert_eq!(answer.len(), 1);
        assert_eq!(
            answer[0].header.record_type,
            RecordType::GetValuesResult as u8
        );
        assert_eq!(answer[0].header.request_id, 0);
        assert_eq!(
            answer[0].content,
            b"\x0d\x03FCGI_MAX_REQS250\x0e\x02FCGI_MAX_CONNS10\x0f\x01FCGI_MPXS_CONNS1"
        );
        assert_eq!(out.len() % 8, 0);
    }

    #[test]
    fn nothing_known_gives_an_empty_result() {
        let mut out = Vec::new();
        answer_get_values(b"\x03\x00FOO", &config(), &mut out).unwrap();
        assert_eq!(out, b"\x01\x0a\x00\x00\x00\x00\x00\x00");
        let mut out = Vec::new();
        answer_get_values(b"", &config(), &mut out).unwrap();
        assert_eq!(out, b"\x01\x0a\x00\x00\x00\x00\x00\x00");
    }

    #[test]
    fn refuses_a_malformed_body() {
        let mut out = Vec::new();
        assert_eq!(
            answer_get_values(b"\x0e\x00FCGI", &config(), &mut out),
            Err(PairError::Truncated {
                at: 0,
                needed: 16,
                available: 6
            })
        );
        assert!(out.is_empty());
    }

    #[test]
    fn unknown_type() {
        let mut out = Vec::new();
        answer_unknown_type(42, &mut out);
        assert_eq!(out, b"\x01\x0b\x00\x00\x00\x08\x00\x00\x2a\0\0\0\0\0\0\0");
    }
}
