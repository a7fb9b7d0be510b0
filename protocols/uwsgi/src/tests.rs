//! Decoder tests on real nginx captures (fixtures/uwsgi/*.bin) and on
//! hand-made bad heads, one per error.

use super::*;
use UwsgiError::*;
use bytes::Bytes;
use rustgi_model::{Chunked, ChunkedDecoder, LengthError, ResponseEvent, ResponseHead, testing};

const GET_QUERY: &[u8] = include_bytes!("../../../fixtures/uwsgi/get_query.bin");
const POST_FORM: &[u8] = include_bytes!("../../../fixtures/uwsgi/post_form.bin");
const REPEATED_COOKIE: &[u8] = include_bytes!("../../../fixtures/uwsgi/repeated_cookie.bin");
const CAFE_PATH: &[u8] = include_bytes!("../../../fixtures/uwsgi/cafe_path.bin");
const BIG_COOKIE: &[u8] = include_bytes!("../../../fixtures/uwsgi/big_cookie.bin");
const CHUNKED_UPLOAD: &[u8] = include_bytes!("../../../fixtures/uwsgi/chunked_upload.bin");
const MODIFIER30: &[u8] = include_bytes!("../../../fixtures/uwsgi/modifier30.bin");
/// Name, bytes, and the step between split points tried.
const FIXTURES: [(&str, &[u8], usize); 7] = [
    ("get_query", GET_QUERY, 1),
    ("post_form", POST_FORM, 1),
    ("repeated_cookie", REPEATED_COOKIE, 1),
    ("cafe_path", CAFE_PATH, 1),
    ("big_cookie", BIG_COOKIE, 97),
    ("chunked_upload", CHUNKED_UPLOAD, 1),
    ("modifier30", MODIFIER30, 1),
];

fn decode(bytes: &[u8]) -> testing::Decoded<Uwsgi> {
    testing::decode(&Uwsgi::default(), bytes)
}

fn whole(bytes: &[u8]) -> (Request, BytesMut) {
    testing::whole(&Uwsgi::default(), bytes)
}

fn err(bytes: &[u8]) -> UwsgiError {
    decode(bytes).0.unwrap_err()
}

/// A packet: header with `modifier1` around the vars block `vars`.
fn packet(modifier1: u8, vars: &[u8]) -> Vec<u8> {
    crate::client::packet(modifier1, 0, vars)
}

/// A vars block from `key`/`value` pairs.
fn vars(pairs: &[(&str, &str)]) -> Vec<u8> {
    crate::client::encode_vars(pairs.iter().copied())
}

/// Where the head ends in a fixture: after the vars block.
fn head_len(bytes: &[u8]) -> usize {
    4 + usize::from(u16::from_le_bytes([bytes[1], bytes[2]]))
}

fn param<'a>(request: &'a Request, name: &str) -> &'a [u8] {
    request.param(name.as_bytes()).unwrap().as_ref()
}

fn all<'a>(request: &'a Request, name: &'a str) -> Vec<&'a [u8]> {
    request
        .values(name.as_bytes())
        .map(|v| v.as_ref())
        .collect()
}

// --- Real requests from nginx 1.22 ---

#[test]
fn get_with_query_string() {
    let (request, rest) = whole(GET_QUERY);
    assert_eq!(GET_QUERY[0], 0, "modifier1");
    assert_eq!(request.content_length, 0);
    // nginx's uwsgi_params send CONTENT_LENGTH empty when there is no body.
    assert_eq!(param(&request, "CONTENT_LENGTH"), b"");
    assert_eq!(request.params[0].name.as_ref(), b"QUERY_STRING");
    assert_eq!(param(&request, "QUERY_STRING"), b"a=1&b=two%20words");
    assert_eq!(param(&request, "REQUEST_METHOD"), b"GET");
    assert_eq!(
        param(&request, "REQUEST_URI"),
        b"/hello/world?a=1&b=two%20words"
    );
    assert_eq!(param(&request, "PATH_INFO"), b"/hello/world");
    assert_eq!(param(&request, "SERVER_PROTOCOL"), b"HTTP/1.1");
    assert!(request.param(b"SCRIPT_NAME").is_none());
    assert_eq!(request.params.len(), 16);
    assert!(request.warnings.is_empty());
    assert!(rest.is_empty());
    assert_eq!(
        Uwsgi::default().body_framing(&request),
        BodyFraming::Length(0)
    );
}

#[test]
fn post_leaves_its_body_in_the_buffer() {
    let (request, rest) = whole(POST_FORM);
    assert_eq!(request.content_length, 21);
    assert_eq!(param(&request, "REQUEST_METHOD"), b"POST");
    assert_eq!(
        param(&request, "CONTENT_TYPE"),
        b"application/x-www-form-urlencoded"
    );
    // nginx forwards the client's header too; the core drops it.
    assert_eq!(param(&request, "HTTP_CONTENT_LENGTH"), b"21");
    assert_eq!(rest.as_ref(), b"name=rustgi&lang=rust");
    assert!(request.warnings.is_empty());
    assert_eq!(
        Uwsgi::default().body_framing(&request),
        BodyFraming::Length(21)
    );
}

#[test]
fn repeated_header_is_kept_as_sent() {
    let (request, _) = whole(REPEATED_COOKIE);
    assert_eq!(all(&request, "HTTP_COOKIE"), [&b"a=1"[..], b"b=2"]);
}

#[test]
fn non_ascii_path_stays_bytes() {
    let (request, _) = whole(CAFE_PATH);
    assert_eq!(param(&request, "REQUEST_URI"), b"/caf%C3%A9");
    assert_eq!(param(&request, "PATH_INFO"), b"/caf\xc3\xa9");
}

#[test]
fn a_60_kib_cookie_fits_the_default_limit() {
    let (request, rest) = whole(BIG_COOKIE);
    let expected: Vec<u8> = b"big="
        .iter()
        .copied()
        .chain((0..60 * 1024 - 4).map(|i| b'a' + (i % 26) as u8))
        .collect();
    assert_eq!(param(&request, "HTTP_COOKIE"), &expected[..]);
    let size = head_len(BIG_COOKIE) - 4;
    assert!(size > 61440 && size <= 65535, "{size}");
    assert!(rest.is_empty());
    // With uWSGI's default buffer-size of 4 KiB it would not.
    let (result, buf) = testing::decode(&Uwsgi::new(4096), BIG_COOKIE);
    assert_eq!(result, Err(VarsOverLimit { size, limit: 4096 }));
    assert_eq!(buf.len(), BIG_COOKIE.len());
}

#[test]
fn chunked_upload_arrives_de_chunked_with_content_length() {
    let (request, rest) = whole(CHUNKED_UPLOAD);
    assert_eq!(param(&request, "HTTP_TRANSFER_ENCODING"), b"chunked");
    assert_eq!(param(&request, "CONTENT_LENGTH"), b"1000");
    assert_eq!(request.content_length, 1000);
    assert_eq!(
        Uwsgi::default().body_framing(&request),
        BodyFraming::Length(1000)
    );
    let body: Vec<u8> = (0..1000).map(|i| b'0' + (i % 10) as u8).collect();
    assert_eq!(rest.as_ref(), &body[..]);
    assert!(request.warnings.is_empty());
}

#[test]
fn modifier30_from_nginx_strips_script_name() {
    let (request, _) = whole(MODIFIER30);
    assert_eq!(MODIFIER30[0], 30, "modifier1");
    assert_eq!(param(&request, "SCRIPT_NAME"), b"/app");
    assert_eq!(param(&request, "PATH_INFO"), b"/hello/world");
    assert_eq!(param(&request, "REQUEST_URI"), b"/app/hello/world?x=1");
    assert!(request.warnings.is_empty());
}

#[test]
fn cut_anywhere_the_same_request() {
    for (name, bytes, step) in FIXTURES {
        let head = head_len(bytes);
        testing::check_split_points(&Uwsgi::default(), name, bytes, head, step);
        if step == 1 {
            testing::check_byte_by_byte(&Uwsgi::default(), name, bytes, head);
        }
    }
}

#[test]
fn params_are_slices_of_the_read_buffer() {
    for bytes in [POST_FORM, MODIFIER30] {
        testing::check_params_are_slices(&Uwsgi::default(), bytes, head_len(bytes));
    }
}

// --- Bodies ---

#[test]
fn chunked_body_without_content_length() {
    let mut bytes = packet(
        0,
        &vars(&[
            ("REQUEST_METHOD", "POST"),
            ("HTTP_TRANSFER_ENCODING", "chunked"),
        ]),
    );
    bytes.extend_from_slice(b"5\r\nhello\r\n0\r\n\r\n");
    let (request, mut rest) = whole(&bytes);
    assert_eq!(request.content_length, 0);
    assert!(request.warnings.is_empty());
    assert_eq!(
        Uwsgi::default().body_framing(&request),
        BodyFraming::Chunked
    );
    let mut decoder = ChunkedDecoder::new();
    assert_eq!(
        decoder.decode(&mut rest),
        Ok(Chunked::Data(Bytes::from_static(b"hello")))
    );
    assert_eq!(decoder.decode(&mut rest), Ok(Chunked::End));

    // An empty CONTENT_LENGTH (nginx's "no body") is no CONTENT_LENGTH.
    let (request, _) = whole(&packet(
        0,
        &vars(&[
            ("CONTENT_LENGTH", ""),
            ("HTTP_TRANSFER_ENCODING", "chunked"),
        ]),
    ));
    assert_eq!(
        Uwsgi::default().body_framing(&request),
        BodyFraming::Chunked
    );
}

#[test]
fn content_length_wins_over_transfer_encoding() {
    let (request, _) = whole(&packet(
        0,
        &vars(&[
            ("CONTENT_LENGTH", "7"),
            ("HTTP_TRANSFER_ENCODING", "chunked"),
        ]),
    ));
    assert_eq!(request.content_length, 7);
    assert_eq!(
        Uwsgi::default().body_framing(&request),
        BodyFraming::Length(7)
    );
}

#[test]
fn another_transfer_encoding_without_content_length_warns() {
    let (request, _) = whole(&packet(0, &vars(&[("HTTP_TRANSFER_ENCODING", "gzip")])));
    assert_eq!(
        Uwsgi::default().body_framing(&request),
        BodyFraming::Length(0)
    );
    assert_eq!(
        request.warnings,
        [
            "HTTP_TRANSFER_ENCODING is \"gzip\", not chunked, and there is no CONTENT_LENGTH: the body is taken as empty"
        ]
    );
}

#[test]
fn content_length_edge_values() {
    let (request, _) = whole(&packet(
        0,
        &vars(&[("CONTENT_LENGTH", "18446744073709551615")]),
    ));
    assert_eq!(request.content_length, u64::MAX);
    let (request, _) = whole(&packet(0, &vars(&[("CONTENT_LENGTH", "0012")])));
    assert_eq!(request.content_length, 12);
}

#[test]
fn content_length_repeated() {
    let (request, _) = whole(&packet(
        0,
        &vars(&[("CONTENT_LENGTH", "3"), ("A", ""), ("CONTENT_LENGTH", "3")]),
    ));
    assert_eq!(request.content_length, 3);
    refused(
        &packet(
            0,
            &vars(&[("CONTENT_LENGTH", "3"), ("CONTENT_LENGTH", "x")]),
        ),
        ContentLength {
            offset: 41,
            error: LengthError::Conflicting {
                first: "3".into(),
                second: "x".into(),
            },
        },
        "uwsgi CONTENT_LENGTH at offset 41 was sent twice with different values, \"3\" and \"x\" \
         (refused: the two could frame the body differently)",
    );
}

// --- Tolerated ---

#[test]
fn empty_block_values_and_repeated_names_are_fine() {
    let (request, rest) = whole(&packet(0, b""));
    assert!(request.params.is_empty() && rest.is_empty());
    assert_eq!(request.content_length, 0);

    let (request, _) = whole(&packet(0, &vars(&[("X", ""), ("X", "")])));
    assert_eq!(request.params, [Param::new("X", ""), Param::new("X", "")]);
}

#[test]
fn modifier2_is_ignored() {
    let mut bytes = packet(0, &vars(&[("A", "b")]));
    bytes[3] = 7;
    let (request, _) = whole(&bytes);
    assert_eq!(request.params, [Param::new("A", "b")]);
}

#[test]
fn the_limit_is_inclusive() {
    let block = vars(&[("REQUEST_METHOD", "GET")]);
    assert_eq!(
        testing::limit_is_inclusive(Uwsgi::new, &packet(0, &block), block.len()),
        VarsOverLimit {
            size: block.len(),
            limit: block.len() - 1
        }
    );
    assert_eq!(Uwsgi::default(), Uwsgi::new(65535));
}

// --- modifier1 30 ---

fn modifier30(pairs: &[(&str, &str)]) -> Request {
    whole(&packet(30, &vars(pairs))).0
}

#[test]
fn modifier30_strips_a_real_prefix() {
    let request = modifier30(&[("SCRIPT_NAME", "/app"), ("PATH_INFO", "/app/x/y")]);
    assert_eq!(param(&request, "PATH_INFO"), b"/x/y");
    assert!(request.warnings.is_empty());
    // Exactly the prefix: PATH_INFO becomes empty.
    let request = modifier30(&[("PATH_INFO", "/app"), ("SCRIPT_NAME", "/app")]);
    assert_eq!(param(&request, "PATH_INFO"), b"");
    assert!(request.warnings.is_empty());
}

#[test]
fn modifier30_leaves_a_path_that_is_not_under_script_name() {
    let request = modifier30(&[("SCRIPT_NAME", "/app"), ("PATH_INFO", "/other")]);
    assert_eq!(param(&request, "PATH_INFO"), b"/other");
    assert_eq!(request.warnings.len(), 1);
    // A prefix, but not at a path-segment boundary.
    let request = modifier30(&[("SCRIPT_NAME", "/app"), ("PATH_INFO", "/application")]);
    assert_eq!(param(&request, "PATH_INFO"), b"/application");
    assert!(request.warnings[0].contains("not a prefix of PATH_INFO \"/application\""));
}

#[test]
fn modifier30_without_script_name_changes_nothing() {
    let request = modifier30(&[("PATH_INFO", "/app/x")]);
    assert_eq!(param(&request, "PATH_INFO"), b"/app/x");
    assert!(request.warnings[0].contains("without a SCRIPT_NAME var"));
}

#[test]
fn modifier0_never_strips() {
    let (request, _) = whole(&packet(
        0,
        &vars(&[("SCRIPT_NAME", "/app"), ("PATH_INFO", "/app/x")]),
    ));
    assert_eq!(param(&request, "PATH_INFO"), b"/app/x");
    assert!(request.warnings.is_empty());
}

// --- The response ---

#[test]
fn the_trait_gives_the_request_s_status_line() {
    let head = ResponseHead::from_static("200 OK", &[("Content-Type", "text/plain")]).unwrap();
    for (request, line) in [
        (whole(GET_QUERY).0, "HTTP/1.1"),
        (Request::default(), "HTTP/1.0"),
    ] {
        let mut encoder = Uwsgi::default().encoder(&request);
        let out = testing::encode_all(&mut encoder, [ResponseEvent::Head(head.clone())]);
        let expected = format!("{line} 200 OK\r\nContent-Type: text/plain\r\n\r\n");
        assert_eq!(out.to_vec(), expected.as_bytes());
    }
    assert_eq!(Uwsgi::default().name(), "uwsgi");
}

// --- Refused, one test per error, with its message ---

#[track_caller]
fn refused(bytes: &[u8], expected: UwsgiError, message: &str) {
    testing::check_refused(&Uwsgi::default(), bytes, expected, message);
}

#[test]
fn http_on_a_uwsgi_socket() {
    refused(
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        HttpRequest { start: *b"GET " },
        "an HTTP request (\"GET \") was sent to the uwsgi socket; point an HTTP client at the \
         front server, or the front server's uwsgi_pass here",
    );
    // Known from the first four bytes, though "GET " declares 21573 bytes.
    assert_eq!(err(b"GET "), HttpRequest { start: *b"GET " });
    assert_eq!(decode(b"GET").0, Ok(None));
    for request in [
        &b"POST /x HTTP/1.1"[..],
        b"HEAD / HTTP/1.0",
        b"PUT /x HTTP/1.1",
        b"DELETE /x HTTP/1.1",
        b"OPTIONS * HTTP/1.1",
        b"PATCH /x HTTP/1.1",
        b"CONNECT a:443 HTTP/1.1",
        b"TRACE / HTTP/1.1",
        b"PRI * HTTP/2.0",
    ] {
        let start: [u8; 4] = request[..4].try_into().unwrap();
        assert_eq!(err(request), HttpRequest { start });
    }
    // Even with a limit that "GET " would be under.
    let (result, _) = testing::decode(&Uwsgi::new(65535), b"GET /");
    assert!(matches!(result, Err(HttpRequest { .. })));
}

#[test]
fn unsupported_modifier() {
    refused(
        &[5, 0, 0, 0],
        UnsupportedModifier {
            modifier1: 5,
            modifier2: 0,
        },
        "uwsgi modifier1 5 (modifier2 0) is not supported: only 0 (WSGI) and 30 are",
    );
    // A FastCGI record, sent here by mistake: version 1, BEGIN_REQUEST.
    assert_eq!(
        err(b"\x01\x01\x00\x01\x00\x08\x00\x00"),
        UnsupportedModifier {
            modifier1: 1,
            modifier2: 1
        }
    );
    // An SCGI netstring.
    assert!(matches!(
        err(b"70:CONTENT_LENGTH"),
        UnsupportedModifier {
            modifier1: b'7',
            ..
        }
    ));
}

#[test]
fn vars_over_the_limit_before_the_block_arrives() {
    let (result, buf) = testing::decode(&Uwsgi::new(100), &[0, 0x70, 0x11, 0]);
    let error = result.unwrap_err();
    assert_eq!(
        error,
        VarsOverLimit {
            size: 0x1170,
            limit: 100
        }
    );
    assert_eq!(
        error.to_string(),
        "uwsgi vars block of 4464 bytes is over the limit of 100"
    );
    assert_eq!(buf.len(), 4);
    assert_eq!(
        VarsOverLimit {
            size: 70000,
            limit: 65535
        }
        .to_string(),
        "uwsgi vars block of 70000 bytes is over the limit of 65535"
    );
    // With the default limit no datasize is over it.
    assert_eq!(decode(&[0, 0xff, 0xff, 0]).0, Ok(None));
}

#[test]
fn key_length_cut() {
    let mut block = vars(&[("A", "b")]);
    block.push(1);
    refused(
        &packet(0, &block),
        KeyLengthCut {
            offset: 10,
            room: 1,
        },
        "uwsgi var at offset 10: its 2-byte key length runs past the block (1 byte left)",
    );
}

#[test]
fn key_past_block() {
    refused(
        &packet(0, b"\x05\x00AB\x00\x00"),
        KeyPastBlock {
            offset: 4,
            len: 5,
            room: 4,
        },
        "uwsgi var at offset 4: key length 5 runs past the block (4 bytes left)",
    );
    // Known from the length field, before the key's bytes arrive.
    assert_eq!(
        err(&[0, 10, 0, 0, 0xff, 0xff]),
        KeyPastBlock {
            offset: 4,
            len: 65535,
            room: 8
        }
    );
}

#[test]
fn empty_key() {
    let mut block = vars(&[("A", "b")]);
    block.extend_from_slice(b"\x00\x00\x01\x00x");
    refused(
        &packet(0, &block),
        EmptyKey { offset: 10 },
        "uwsgi var at offset 10 has an empty key",
    );
}

#[test]
fn value_length_cut() {
    refused(
        &packet(0, b"\x03\x00KEY\x01"),
        ValueLengthCut {
            offset: 4,
            key: "KEY".into(),
            room: 1,
        },
        "uwsgi var \"KEY\" at offset 4: its 2-byte value length runs past the block (1 byte left)",
    );
    assert_eq!(
        err(&packet(0, b"\x03\x00KEY")),
        ValueLengthCut {
            offset: 4,
            key: "KEY".into(),
            room: 0
        }
    );
}

#[test]
fn value_past_block() {
    let mut block = vars(&[("A", "b")]);
    block.extend_from_slice(b"\x04\x00PATH\x09\x00/short");
    refused(
        &packet(0, &block),
        ValuePastBlock {
            offset: 10,
            key: "PATH".into(),
            len: 9,
            room: 6,
        },
        "uwsgi var \"PATH\" at offset 10: value length 9 runs past the block (6 bytes left)",
    );
}

#[test]
fn content_length_not_digit() {
    refused(
        &packet(0, &vars(&[("CONTENT_LENGTH", "-1")])),
        ContentLength {
            offset: 22,
            error: LengthError::NotDigit {
                value: "-".into(),
                byte: b'-',
                index: 0,
            },
        },
        "uwsgi CONTENT_LENGTH is not a decimal number: '-' (0x2d) at offset 22",
    );
    assert!(matches!(
        err(&packet(0, &vars(&[("CONTENT_LENGTH", " 5")]))),
        ContentLength {
            error: LengthError::NotDigit { byte: b' ', .. },
            ..
        }
    ));
}

#[test]
fn content_length_overflow() {
    refused(
        &packet(0, &vars(&[("CONTENT_LENGTH", "18446744073709551616")])),
        ContentLength {
            offset: 22,
            error: LengthError::Overflow {
                value: "18446744073709551616".into(),
                digits: 20,
            },
        },
        "uwsgi CONTENT_LENGTH at offset 22 does not fit in 64 bits (20 digits so far)",
    );
}

#[test]
fn long_keys_are_cut_in_messages() {
    let key = "K".repeat(1000);
    let mut block = vars(&[(&key, "")]);
    block.truncate(block.len() - 2);
    let message = err(&packet(0, &block)).to_string();
    assert!(message.len() < 200, "{message}");
    assert!(message.contains('…'));
}
