//! Property tests of the AJP decoders: any bytes give a command, "need
//! more" (nothing consumed) or a typed error, never a panic; a forward
//! request round-trips; body packets never give more than they announce.

use bytes::BytesMut;
use proptest::prelude::*;
use rustgi_ajp::client::{ForwardRequest, body_packet, encode_forward};
use rustgi_ajp::{Ajp, BodyKind, Chunk, Command, Secret, codes};
use rustgi_model::testing::mutate;

fn check_command(ajp: &Ajp, bytes: &[u8]) {
    let mut buf = BytesMut::from(bytes);
    match ajp.decode_command(&mut buf) {
        Ok(None) => assert_eq!(buf.len(), bytes.len(), "need more consumed bytes"),
        Ok(Some(_)) => assert!(buf.len() < bytes.len()),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

fn field(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z][A-Za-z0-9-]{0,12}"
}

proptest! {
    #[test]
    fn any_bytes_decode_or_fail_cleanly(bytes in field(300)) {
        check_command(&Ajp::new(8188, None), &bytes);
        check_command(&Ajp::new(8188, Some(Secret::new("x"))), &bytes);
    }

    #[test]
    fn any_payload_in_a_packet_decodes_or_fails_cleanly(payload in field(300), code in 0u8..12) {
        let mut p = vec![code];
        p.extend(payload);
        check_command(&Ajp::new(8188, None), &rustgi_ajp::client::packet(&p));
    }

    #[test]
    fn forward_requests_round_trip_and_near_ones_fail_cleanly(
        uri in field(40),
        query in field(20),
        headers in prop::collection::vec((token(), field(30)), 0..6),
        user in field(10),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        how in 0..3u8,
    ) {
        let headers: Vec<(&str, &[u8])> = headers
            .iter()
            .filter(|(n, _)| !n.eq_ignore_ascii_case("content-length"))
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect();
        let request = ForwardRequest {
            method: "GET",
            protocol: b"HTTP/1.1",
            req_uri: &uri,
            remote_addr: b"127.0.0.1",
            server_name: b"h",
            server_port: 80,
            headers: headers.clone(),
            attributes: vec![
                (codes::attribute::QUERY_STRING, &query),
                (codes::attribute::REMOTE_USER, &user),
            ],
            ..Default::default()
        };
        let bytes = encode_forward(&request);
        let ajp = Ajp::new(65535, None);
        let mut buf = BytesMut::from(&bytes[..]);
        let Ok(Some(Command::Forward(forward))) = ajp.decode_command(&mut buf) else {
            panic!("did not decode");
        };
        prop_assert!(buf.is_empty());
        let r = &forward.request;
        prop_assert_eq!(r.param(b"REMOTE_USER").map(|v| v.to_vec()), Some(user.clone()));
        prop_assert_eq!(r.param(b"QUERY_STRING").map(|v| v.to_vec()), Some(query.clone()));
        let expected_uri = if query.is_empty() {
            uri.clone()
        } else {
            [&uri[..], b"?", &query[..]].concat()
        };
        prop_assert_eq!(r.param(b"REQUEST_URI").map(|v| v.to_vec()), Some(expected_uri));
        let mutated = mutate(bytes.clone(), at.index(bytes.len()), byte, how);
        check_command(&ajp, &mutated);
        for cut in [0, 1, 3, bytes.len() / 2, bytes.len() - 1] {
            let mut buf = BytesMut::from(&bytes[..cut]);
            prop_assert_eq!(ajp.decode_command(&mut buf), Ok(None));
        }
    }

    #[test]
    fn body_packets_never_give_more_than_announced(
        chunks in prop::collection::vec(field(100), 1..6),
        garbage in field(40),
        length in 0u64..400,
    ) {
        let ajp = Ajp::new(8188, None);
        let mut body = ajp.body(BodyKind::Length(length));
        let mut wire: Vec<u8> = chunks.iter().flat_map(|c| body_packet(c)).collect();
        wire.extend(garbage);
        let mut buf = BytesMut::from(&wire[..]);
        let mut out = Vec::new();
        let mut got = 0u64;
        while !body.ended() {
            body.ask(&mut out);
            match body.decode(&mut buf) {
                Ok(Some(Chunk::Data(d))) => got += d.len() as u64,
                Ok(Some(_)) | Ok(None) | Err(_) => break,
            }
        }
        prop_assert!(got <= length);
    }
}
