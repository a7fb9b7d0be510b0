//! Decoder tests on real nginx captures (fixtures/scgi/*.bin) and on
//! hand-made bad heads, one per error.

use super::*;
use crate::client::netstring;
use ScgiError::*;
use rustgi_model::{LengthError, ResponseEvent, ResponseHead, testing};

const GET_QUERY: &[u8] = include_bytes!("../../../fixtures/scgi/get_query.bin");
const POST_FORM: &[u8] = include_bytes!("../../../fixtures/scgi/post_form.bin");
const REPEATED_COOKIE: &[u8] = include_bytes!("../../../fixtures/scgi/repeated_cookie.bin");
const CAFE_PATH: &[u8] = include_bytes!("../../../fixtures/scgi/cafe_path.bin");
const FIXTURES: [(&str, &[u8]); 4] = [
    ("get_query", GET_QUERY),
    ("post_form", POST_FORM),
    ("repeated_cookie", REPEATED_COOKIE),
    ("cafe_path", CAFE_PATH),
];

fn decode(bytes: &[u8]) -> testing::Decoded<Scgi> {
    testing::decode(&Scgi::default(), bytes)
}

fn whole(bytes: &[u8]) -> (Request, BytesMut) {
    testing::whole(&Scgi::default(), bytes)
}

fn err(bytes: &[u8]) -> ScgiError {
    decode(bytes).0.unwrap_err()
}

/// Where the head ends in a fixture: after the netstring's `,`.
fn head_len(bytes: &[u8]) -> usize {
    let colon = bytes.iter().position(|&b| b == b':').unwrap();
    let len: usize = std::str::from_utf8(&bytes[..colon])
        .unwrap()
        .parse()
        .unwrap();
    colon + 1 + len + 1
}

fn param<'a>(request: &'a Request, name: &str) -> &'a [u8] {
    request.param(name.as_bytes()).unwrap().as_ref()
}

// --- Real requests from nginx 1.22 ---

#[test]
fn get_with_query_string() {
    let (request, rest) = whole(GET_QUERY);
    assert_eq!(request.content_length, 0);
    assert_eq!(param(&request, "CONTENT_LENGTH"), b"0");
    assert_eq!(request.params[0].name.as_ref(), b"CONTENT_LENGTH");
    assert_eq!(param(&request, "REQUEST_METHOD"), b"GET");
    assert_eq!(
        param(&request, "REQUEST_URI"),
        b"/hello/world?a=1&b=two%20words"
    );
    assert_eq!(param(&request, "QUERY_STRING"), b"a=1&b=two%20words");
    assert_eq!(param(&request, "DOCUMENT_URI"), b"/hello/world");
    assert_eq!(param(&request, "CONTENT_TYPE"), b"");
    assert_eq!(param(&request, "SCGI"), b"1");
    assert_eq!(request.params.len(), 17);
    assert!(request.warnings.is_empty());
    assert!(rest.is_empty());
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
    assert_eq!(rest.as_ref(), b"name=rustgi&lang=rust");
    assert!(request.warnings.is_empty());
}

#[test]
fn repeated_header_is_kept_as_sent() {
    let (request, _) = whole(REPEATED_COOKIE);
    let cookies: Vec<_> = request.values(b"HTTP_COOKIE").collect();
    assert_eq!(cookies, ["a=1", "b=2"]);
}

#[test]
fn non_ascii_path_stays_bytes() {
    let (request, _) = whole(CAFE_PATH);
    assert_eq!(param(&request, "REQUEST_URI"), b"/caf%C3%A9");
    assert_eq!(param(&request, "DOCUMENT_URI"), b"/caf\xc3\xa9");
}

#[test]
fn cut_anywhere_the_same_request() {
    for (name, bytes) in FIXTURES {
        let head = head_len(bytes);
        testing::check_split_points(&Scgi::default(), name, bytes, head, 1);
        testing::check_byte_by_byte(&Scgi::default(), name, bytes, head);
    }
}

#[test]
fn params_are_slices_of_the_read_buffer() {
    testing::check_params_are_slices(&Scgi::default(), POST_FORM, head_len(POST_FORM));
}

// --- Tolerated ---

#[test]
fn missing_or_wrong_scgi_header_warns() {
    let (request, _) = whole(&netstring(b"CONTENT_LENGTH\x000\x00"));
    assert_eq!(request.warnings.len(), 1);
    assert!(request.warnings[0].contains("SCGI header missing"));

    let (request, _) = whole(&netstring(b"CONTENT_LENGTH\x000\x00SCGI\x002\x00"));
    assert_eq!(
        request.warnings,
        ["SCGI header is \"2\", expected \"1\"; request accepted anyway"]
    );
}

#[test]
fn empty_values_and_repeated_names_are_fine() {
    let (request, _) = whole(&netstring(
        b"CONTENT_LENGTH\x000\x00SCGI\x001\x00X\x00\x00X\x00\x00",
    ));
    assert_eq!(request.params.len(), 4);
    assert_eq!(request.params[2], Param::new("X", ""));
    assert_eq!(request.params[3], Param::new("X", ""));
}

#[test]
fn the_limit_is_inclusive() {
    let block = b"CONTENT_LENGTH\x000\x00SCGI\x001\x00";
    let error = testing::limit_is_inclusive(Scgi::new, &netstring(block), block.len());
    assert!(matches!(error, LengthOverLimit { .. }), "{error:?}");
}

#[test]
fn the_trait_gives_the_cgi_head() {
    let head = ResponseHead::from_static("200 OK", &[("Content-Type", "text/plain")]).unwrap();
    let mut encoder = Scgi::default().encoder(&Request::default());
    let out = testing::encode_all(&mut encoder, [ResponseEvent::Head(head)]);
    assert_eq!(
        out.to_vec(),
        b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\n"
    );
    assert_eq!(Scgi::default().name(), "scgi");
}

// --- Refused, one test per error, with its message ---

#[track_caller]
fn refused(bytes: &[u8], expected: ScgiError, message: &str) {
    testing::check_refused(&Scgi::default(), bytes, expected, message);
}

#[test]
fn http_on_an_scgi_socket() {
    refused(
        b"GET / HTTP/1.1\r\n",
        LengthNotDigit {
            byte: b'G',
            offset: 0,
        },
        "SCGI netstring length must start with a decimal digit, found 'G' (0x47) at offset 0",
    );
    // Known from the first byte.
    assert!(matches!(err(b"G"), LengthNotDigit { .. }));
    assert!(matches!(err(b"\x00"), LengthNotDigit { byte: 0, .. }));
}

#[test]
fn empty_length() {
    refused(
        b":",
        EmptyLength { offset: 0 },
        "SCGI netstring length is empty: ':' at offset 0 with no digit before it",
    );
}

#[test]
fn leading_zero() {
    refused(
        b"012:",
        LeadingZero { offset: 0 },
        "SCGI netstring length has a leading zero at offset 0",
    );
    assert_eq!(err(b"00"), LeadingZero { offset: 0 });
}

#[test]
fn length_over_the_limit_before_the_block_arrives() {
    refused(
        b"70000",
        LengthOverLimit {
            length: 70000,
            digits: 5,
            limit: 65536,
        },
        "SCGI header length is over the limit of 65536 bytes: its first 5 digits already make 70000",
    );
    // More digits than the limit has: refused at the first digit too many.
    assert_eq!(
        err(b"1000000000000000000000000:"),
        LengthOverLimit {
            length: 100000,
            digits: 6,
            limit: 65536
        }
    );
}

#[test]
fn length_overflow() {
    let (result, _) = testing::decode(&Scgi::new(usize::MAX), &[b'9'; 30]);
    let expected_digits = usize::MAX.to_string().len();
    assert_eq!(
        result,
        Err(LengthOverflow {
            digits: expected_digits
        })
    );
    assert_eq!(
        result.unwrap_err().to_string(),
        format!(
            "SCGI netstring length has more digits ({expected_digits} so far) than fit in a usize"
        )
    );
}

#[test]
fn missing_colon() {
    refused(
        b"12;",
        MissingColon {
            length: 12,
            found: b';',
            offset: 2,
        },
        "SCGI netstring length 12 must be followed by ':', found ';' (0x3b) at offset 2",
    );
    assert_eq!(
        err(b"0x"),
        MissingColon {
            length: 0,
            found: b'x',
            offset: 1
        }
    );
}

#[test]
fn missing_comma() {
    let mut bytes = netstring(b"CONTENT_LENGTH\x000\x00SCGI\x001\x00");
    let last = bytes.len() - 1;
    bytes[last] = b'\n';
    refused(
        &bytes,
        MissingComma {
            found: b'\n',
            offset: last,
        },
        "SCGI header block must be followed by ',', found '\\n' (0x0a) at offset 27",
    );
}

#[test]
fn odd_field_count() {
    refused(
        &netstring(b"CONTENT_LENGTH\x000\x00SCGI\x00"),
        OddFieldCount {
            fields: 3,
            name: "SCGI".into(),
            offset: 20,
        },
        "SCGI header block has an odd number of NUL-terminated fields (3): name \"SCGI\" at offset 20 has no value",
    );
}

#[test]
fn block_not_ending_in_nul() {
    refused(
        &netstring(b"CONTENT_LENGTH\x000\x00SCGI\x001"),
        UnterminatedField { offset: 25, len: 1 },
        "SCGI header block does not end in NUL: the field at offset 25 (length 1) is unterminated",
    );
    assert_eq!(
        err(&netstring(b"CONTENT_LENGTH\x000\x00SCGI")),
        UnterminatedField { offset: 20, len: 4 }
    );
    assert_eq!(
        err(&netstring(b"CONTENT_LENGTH")),
        UnterminatedField { offset: 3, len: 14 }
    );
}

#[test]
fn empty_name() {
    refused(
        &netstring(b"CONTENT_LENGTH\x000\x00\x00x\x00"),
        EmptyName { offset: 20 },
        "SCGI header name at offset 20 is empty",
    );
    assert_eq!(err(b"5:\x00"), EmptyName { offset: 2 });
}

#[test]
fn content_length_missing() {
    refused(
        b"0:,",
        MissingContentLength { offset: 2 },
        "SCGI header CONTENT_LENGTH is missing: the header block at offset 2 is empty",
    );
    // Known as soon as the empty block has begun.
    assert_eq!(err(b"0:"), MissingContentLength { offset: 2 });
}

#[test]
fn content_length_not_first() {
    refused(
        &netstring(b"SCGI\x001\x00CONTENT_LENGTH\x000\x00"),
        ContentLengthNotFirst {
            found: "SCGI".into(),
            offset: 3,
        },
        "SCGI requires CONTENT_LENGTH as the first header, found \"SCGI\" at offset 3",
    );
    // Refused as soon as the first name is complete.
    assert!(matches!(
        err(b"99:REQUEST_METHOD\x00"),
        ContentLengthNotFirst { .. }
    ));
    // Names are compared exactly.
    assert!(matches!(
        err(&netstring(b"content_length\x000\x00")),
        ContentLengthNotFirst { .. }
    ));
}

#[test]
fn content_length_not_digit() {
    refused(
        &netstring(b"CONTENT_LENGTH\x00-1\x00"),
        ContentLength {
            offset: 18,
            error: LengthError::NotDigit {
                value: "-".into(),
                byte: b'-',
                index: 0,
            },
        },
        "SCGI CONTENT_LENGTH is not a decimal number: '-' (0x2d) at offset 18",
    );
    // Refused before the value's NUL arrives.
    assert_eq!(
        err(b"99:CONTENT_LENGTH\x0012 "),
        ContentLength {
            offset: 18,
            error: LengthError::NotDigit {
                value: "12 ".into(),
                byte: b' ',
                index: 2
            }
        }
    );
}

#[test]
fn content_length_empty() {
    refused(
        &netstring(b"CONTENT_LENGTH\x00\x00"),
        ContentLengthEmpty { offset: 18 },
        "SCGI CONTENT_LENGTH at offset 18 is empty",
    );
}

#[test]
fn content_length_overflow() {
    refused(
        &netstring(b"CONTENT_LENGTH\x0018446744073709551616\x00"),
        ContentLength {
            offset: 18,
            error: LengthError::Overflow {
                value: "18446744073709551616".into(),
                digits: 20,
            },
        },
        "SCGI CONTENT_LENGTH at offset 18 does not fit in 64 bits (20 digits so far)",
    );
    let (request, _) = whole(&netstring(
        b"CONTENT_LENGTH\x0018446744073709551615\x00SCGI\x001\x00",
    ));
    assert_eq!(request.content_length, u64::MAX);
}

#[test]
fn content_length_repeated() {
    let (request, rest) = whole(&netstring(
        b"CONTENT_LENGTH\x003\x00SCGI\x001\x00CONTENT_LENGTH\x003\x00",
    ));
    assert_eq!(request.content_length, 3);
    assert!(rest.is_empty());
    refused(
        &netstring(b"CONTENT_LENGTH\x003\x00SCGI\x001\x00CONTENT_LENGTH\x0030\x00"),
        ContentLength {
            offset: 42,
            error: LengthError::Conflicting {
                first: "3".into(),
                second: "30".into(),
            },
        },
        "SCGI CONTENT_LENGTH at offset 42 was sent twice with different values, \"3\" and \"30\" \
         (refused: the two could frame the body differently)",
    );
    // A repeat that is not a number conflicts with the first.
    assert!(matches!(
        err(&netstring(
            b"CONTENT_LENGTH\x003\x00CONTENT_LENGTH\x00x\x00"
        )),
        ContentLength {
            error: LengthError::Conflicting { .. },
            ..
        }
    ));
}

#[test]
fn long_names_are_cut_in_messages() {
    let mut block = vec![b'N'; 1000];
    block.push(0);
    let message = err(&netstring(&block)).to_string();
    assert!(message.len() < 200, "{message}");
    assert!(message.contains('…'));
}
