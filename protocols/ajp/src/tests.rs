//! Decoder tests on packets captured from Apache 2.4.71's mod_proxy_ajp
//! and lighttpd 1.4.69's mod_ajp13 (fixtures/ajp/*.bin, see its README),
//! and on each bad input.

use super::*;
use crate::client::{ForwardRequest, body_packet, encode_forward};
use bytes::Bytes;
use rustgi_model::Request;

const GET_QUERY_COOKIE: &[u8] = include_bytes!("../../../fixtures/ajp/get_query_cookie.bin");
const PATCH: &[u8] = include_bytes!("../../../fixtures/ajp/patch_stored_method.bin");
const CHUNKED_HEAD: &[u8] = include_bytes!("../../../fixtures/ajp/chunked_head.bin");
const POST_HEAD: &[u8] = include_bytes!("../../../fixtures/ajp/post_head.bin");
const POST_BODY: &[u8] = include_bytes!("../../../fixtures/ajp/post_body_packets.bin");
const BODY_END: &[u8] = include_bytes!("../../../fixtures/ajp/body_end.bin");
const LIGHTTPD_GET: &[u8] = include_bytes!("../../../fixtures/ajp/lighttpd_get.bin");

fn apache() -> Ajp {
    Ajp::new(65536, Some(Secret::new("s3cret")))
}

fn forward(ajp: &Ajp, bytes: &[u8]) -> (Forward, BytesMut) {
    let mut buf = BytesMut::from(bytes);
    match ajp.decode_command(&mut buf) {
        Ok(Some(Command::Forward(forward))) => (*forward, buf),
        other => panic!("not a forward request: {other:?}"),
    }
}

fn param<'a>(request: &'a Request, name: &str) -> &'a [u8] {
    request
        .param(name.as_bytes())
        .unwrap_or_else(|| panic!("no {name} in {:?}", request.params))
}

#[test]
fn apache_get_with_query_cookie_and_headers() {
    let (forward, rest) = forward(&apache(), GET_QUERY_COOKIE);
    assert!(rest.is_empty());
    let r = &forward.request;
    assert_eq!(param(r, "REQUEST_METHOD"), b"GET");
    assert_eq!(param(r, "SERVER_PROTOCOL"), b"HTTP/1.1");
    // ProxyPass /app ajp://host/: Apache joins "/" and "/a%20b/…".
    assert_eq!(param(r, "REQUEST_URI"), b"//a%20b/caf%C3%A9?x=1&y=%C3%A9");
    assert_eq!(param(r, "QUERY_STRING"), b"x=1&y=%C3%A9");
    assert_eq!(param(r, "REMOTE_ADDR"), b"127.0.0.1");
    assert!(r.param(b"REMOTE_HOST").is_none(), "sent as a null string");
    assert_eq!(param(r, "SERVER_NAME"), b"127.0.0.1");
    assert_eq!(param(r, "SERVER_PORT"), b"18180");
    assert!(r.param(b"HTTPS").is_none());
    assert_eq!(param(r, "HTTP_HOST"), b"127.0.0.1:18180");
    assert_eq!(param(r, "HTTP_COOKIE"), b"a=1");
    assert_eq!(param(r, "HTTP_X_CUSTOM"), b"v");
    assert_eq!(param(r, "HTTP_ACCEPT"), b"*/*");
    assert!(!param(r, "REMOTE_PORT").is_empty());
    assert_eq!(param(r, "SERVER_ADDR"), b"127.0.0.1");
    assert!(
        r.param(b"SECRET").is_none(),
        "the secret stays out of the environ"
    );
    assert_eq!(forward.body, BodyKind::Length(0));
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
}

#[test]
fn a_method_outside_the_table_comes_as_a_stored_method() {
    let (forward, _) = forward(&apache(), PATCH);
    assert_eq!(param(&forward.request, "REQUEST_METHOD"), b"PATCH");
}

#[test]
fn a_post_body_comes_in_packets_the_first_unasked() {
    let ajp = apache();
    let (forward, _) = forward(&ajp, POST_HEAD);
    assert_eq!(forward.body, BodyKind::Length(20000));
    assert_eq!(param(&forward.request, "CONTENT_LENGTH"), b"20000");
    assert_eq!(
        param(&forward.request, "CONTENT_TYPE"),
        b"application/x-www-form-urlencoded"
    );
    let mut body = ajp.body(forward.body);
    let mut buf = BytesMut::from(POST_BODY);
    let mut data = Vec::new();
    let mut asked = Vec::new();
    while !body.ended() {
        body.ask(&mut asked);
        match body.decode(&mut buf).unwrap().unwrap() {
            Chunk::Data(d) => data.extend_from_slice(&d),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(data.len(), 20000);
    assert_eq!(&data[..4], &[0xa9, 0xc7, 0xce, 0xf3]);
    assert!(buf.is_empty());
    // Two packets were asked for after the unasked first one.
    assert_eq!(asked.len(), 14);
}

#[test]
fn a_chunked_body_is_asked_for_and_ended_by_an_empty_packet() {
    let ajp = apache();
    let (forward, _) = forward(&ajp, CHUNKED_HEAD);
    assert_eq!(forward.body, BodyKind::UntilEmpty);
    let mut body = ajp.body(forward.body);
    assert!(
        !body.due(),
        "Apache sends nothing unasked for a chunked body"
    );
    let mut out = Vec::new();
    assert!(body.ask(&mut out));
    let mut buf = BytesMut::from(BODY_END);
    assert_eq!(body.decode(&mut buf), Ok(Some(Chunk::End)));
}

#[test]
fn lighttpd_get_and_its_empty_packet() {
    let ajp = Ajp::new(65536, None);
    let (forward, mut rest) = forward(&ajp, LIGHTTPD_GET);
    assert_eq!(param(&forward.request, "REQUEST_URI"), b"/app?x=1");
    assert_eq!(forward.body, BodyKind::Length(0));
    assert_eq!(ajp.decode_command(&mut rest), Ok(Some(Command::Empty)));
}

#[test]
fn the_secret_is_required_when_configured() {
    let ajp = Ajp::new(65536, Some(Secret::new("other")));
    let mut buf = BytesMut::from(GET_QUERY_COOKIE);
    assert_eq!(ajp.decode_command(&mut buf), Err(AjpError::SecretWrong));
    let mut buf = BytesMut::from(LIGHTTPD_GET);
    assert_eq!(ajp.decode_command(&mut buf), Err(AjpError::SecretMissing));
    // Without one configured, any secret (or none) is taken.
    let open = Ajp::new(65536, None);
    forward(&open, GET_QUERY_COOKIE);
}

fn sample<'a>() -> ForwardRequest<'a> {
    ForwardRequest {
        method: "POST",
        protocol: b"HTTP/1.1",
        req_uri: b"/app/x",
        remote_addr: b"10.0.0.1",
        remote_host: Some(b"client.example"),
        server_name: b"example.org",
        server_port: 443,
        is_ssl: true,
        headers: vec![("Content-Length", b"3"), ("X-A", b"1")],
        attributes: vec![
            (codes::attribute::REMOTE_USER, b"alice"),
            (codes::attribute::AUTH_TYPE, b"Basic"),
            (codes::attribute::SSL_CIPHER, b"TLS_AES_128_GCM_SHA256"),
            (codes::attribute::SSL_KEY_SIZE, b"128"),
            (codes::attribute::REQ_ATTRIBUTE, b"AJP_REMOTE_PORT\x004242"),
            (codes::attribute::SECRET, b"s3cret"),
        ],
    }
}

#[test]
fn attributes_become_environ_names() {
    let (forward, _) = forward(&apache(), &encode_forward(&sample()));
    let r = &forward.request;
    assert_eq!(param(r, "HTTPS"), b"on");
    assert_eq!(param(r, "REMOTE_HOST"), b"client.example");
    assert_eq!(param(r, "REMOTE_USER"), b"alice");
    assert_eq!(param(r, "AUTH_TYPE"), b"Basic");
    assert_eq!(param(r, "SSL_CIPHER"), b"TLS_AES_128_GCM_SHA256");
    assert_eq!(param(r, "SSL_KEY_SIZE"), b"128");
    assert_eq!(param(r, "REMOTE_PORT"), b"4242");
    assert_eq!(param(r, "QUERY_STRING"), b"");
    assert_eq!(forward.body, BodyKind::Length(3));
}

#[test]
fn reserved_names_and_underscored_headers_are_dropped_with_a_warning() {
    let mut request = sample();
    request.headers.push(("X_A", b"spoof"));
    request
        .attributes
        .push((codes::attribute::REQ_ATTRIBUTE, b"REMOTE_ADDR\x001.2.3.4"));
    let (forward, _) = forward(&apache(), &encode_forward(&request));
    let r = &forward.request;
    assert_eq!(r.values(b"HTTP_X_A").count(), 1);
    assert_eq!(
        r.values(b"REMOTE_ADDR").collect::<Vec<_>>(),
        [&b"10.0.0.1"[..]]
    );
    assert_eq!(r.warnings.len(), 2, "{:?}", r.warnings);
}

#[test]
fn names_the_gateway_reads_cannot_come_as_request_attributes() {
    // REQUEST_SCHEME=https would make the request https; SERVER_SOFTWARE
    // chooses how paths split.
    for attribute in [
        &b"REQUEST_SCHEME\x00https"[..],
        b"SERVER_SOFTWARE\x00lighttpd",
        b"GATEWAY_INTERFACE\x00CGI/9",
        b"RUSTGI_REQUEST_ID\x00forged",
    ] {
        let mut request = sample();
        request.is_ssl = false;
        request
            .attributes
            .push((codes::attribute::REQ_ATTRIBUTE, attribute));
        let (forward, _) = forward(&apache(), &encode_forward(&request));
        let name = attribute.split(|&b| b == 0).next().unwrap();
        assert_eq!(forward.request.values(name).count(), 0, "{attribute:?}");
        assert_eq!(forward.request.warnings.len(), 1, "{attribute:?}");
    }
}

#[test]
fn a_second_secret_is_refused_even_after_the_right_one() {
    for order in [
        [&b"wrong"[..], b"s3cret"],
        [b"s3cret", b"wrong"],
        [b"s3cret", b"s3cret"],
    ] {
        let mut request = sample();
        request
            .attributes
            .retain(|(code, _)| *code != codes::attribute::SECRET);
        request
            .attributes
            .push((codes::attribute::SECRET, order[0]));
        request
            .attributes
            .push((codes::attribute::SECRET, order[1]));
        let mut buf = BytesMut::from(&encode_forward(&request)[..]);
        assert_eq!(
            apache().decode_command(&mut buf),
            Err(AjpError::SecretRepeated)
        );
    }
}

#[test]
fn a_body_packet_of_one_byte_is_truncated_not_an_end() {
    let ajp = apache();
    let (forward, _) = forward(&ajp, &encode_forward(&sample()));
    let mut body = ajp.body(forward.body);
    assert!(body.due(), "a body with a length comes unasked");
    let mut buf = packet(b"\x00");
    assert_eq!(
        body.decode(&mut buf),
        Err(AjpError::Truncated {
            what: "body chunk length",
            offset: 0
        })
    );
}

/// The packet of `payload`.
fn packet(payload: &[u8]) -> BytesMut {
    BytesMut::from(&client::packet(payload)[..])
}

#[test]
fn each_bad_input_is_a_typed_error() {
    let ajp = Ajp::new(8188, None);
    let cases: Vec<(BytesMut, AjpError)> = vec![
        (
            BytesMut::from(&b"GET / HTTP/1.1\r\n"[..]),
            AjpError::WrongMagic {
                found: b"G".to_vec(),
            },
        ),
        (
            BytesMut::from(&[0x12, 0x34, 0x20, 0x00][..]),
            AjpError::PacketTooLong {
                length: 8192,
                limit: 8188,
            },
        ),
        // protocol "HTTP" with an 'X' where its NUL belongs
        (
            packet(b"\x02\x02\x00\x04HTTPX"),
            AjpError::StringWithoutNul {
                what: "protocol",
                offset: 12,
                found: b'X',
            },
        ),
        (packet(b"\x63"), AjpError::UnknownPacketType { code: 0x63 }),
        (
            packet(b"\x02\x63"),
            AjpError::Truncated {
                what: "protocol",
                offset: 6,
            },
        ),
    ];
    for (mut buf, expected) in cases {
        let before = buf.len();
        let got = ajp.decode_command(&mut buf);
        assert_eq!(got, Err(expected.clone()));
        assert!(!expected.to_string().is_empty());
        if !matches!(
            expected,
            AjpError::WrongMagic { .. } | AjpError::PacketTooLong { .. }
        ) {
            assert!(buf.len() < before);
        }
    }
    let mut unknown_attribute = sample();
    unknown_attribute.attributes.push((0x42, b"x"));
    let mut buf = BytesMut::from(&encode_forward(&unknown_attribute)[..]);
    match ajp.decode_command(&mut buf) {
        Err(AjpError::UnknownAttribute { code: 0x42, .. }) => {}
        other => panic!("{other:?}"),
    }
    let mut body = ajp.body(BodyKind::Length(2));
    let mut buf = BytesMut::from(&body_packet(b"abc")[..]);
    assert!(matches!(
        body.decode(&mut buf),
        Err(AjpError::BodyBeyondLength { .. })
    ));
}

#[test]
fn cping_ping_shutdown_and_cpong() {
    let ajp = apache();
    for (payload, command) in [
        (&b"\x0a"[..], Command::Cping),
        (b"\x08", Command::Ping),
        (b"\x07", Command::Shutdown),
    ] {
        assert_eq!(ajp.decode_command(&mut packet(payload)), Ok(Some(command)));
    }
    assert_eq!(cpong(), *b"AB\x00\x01\x09");
}

#[test]
fn every_prefix_of_a_request_is_need_more() {
    let ajp = apache();
    let bytes = Bytes::from_static(POST_HEAD);
    for cut in 0..bytes.len() {
        let mut buf = BytesMut::from(&bytes[..cut]);
        assert_eq!(ajp.decode_command(&mut buf), Ok(None), "cut at {cut}");
        assert_eq!(buf.len(), cut);
    }
}
