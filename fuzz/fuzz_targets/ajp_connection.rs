//! The AJP decoders as a connection drives them: commands between
//! requests, then each forward request's body packets (the first unasked
//! for a Content-Length, the others after GET_BODY_CHUNK), the stream fed
//! in pieces. Never a panic; "need more" consumes nothing; a body never
//! gives more than its Content-Length; in pieces, the same as whole.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rustgi_ajp::{Ajp, BodyKind, Chunk, Command, Secret};
use rustgi_fuzz::{cuts, pieces, split};

/// What the connection saw, in order, up to an error or the input's end.
#[derive(Debug, PartialEq)]
enum Seen {
    Command(String),
    Body(usize),
    BodyEnd,
    Error(String),
}

/// Drives `stream` through the decoders, fed in the pieces between `cuts`.
fn drive(ajp: &Ajp, stream: &[u8], cuts: &[usize]) -> Vec<Seen> {
    let mut seen = Vec::new();
    let mut buf = BytesMut::new();
    let mut body = None;
    let mut asked = Vec::new();
    for piece in pieces(stream, cuts) {
        buf.extend_from_slice(piece);
        loop {
            let before = buf.len();
            if let Some(reader) = body.as_mut() {
                let reader: &mut rustgi_ajp::BodyReader = reader;
                reader.ask(&mut asked);
                match reader.decode(&mut buf) {
                    Ok(None) => {
                        assert_eq!(buf.len(), before, "consumed on need more");
                        break;
                    }
                    Ok(Some(Chunk::Data(data))) => {
                        seen.push(Seen::Body(data.len()));
                        if let Some(length) = reader.length() {
                            assert!(reader.received() <= length, "more than Content-Length");
                        }
                    }
                    Ok(Some(Chunk::End | Chunk::Cut { .. })) => seen.push(Seen::BodyEnd),
                    Err(e) => {
                        seen.push(Seen::Error(e.to_string()));
                        return seen;
                    }
                }
                if reader.ended() {
                    body = None;
                }
                continue;
            }
            match ajp.decode_command(&mut buf) {
                Ok(None) => {
                    assert_eq!(buf.len(), before, "consumed on need more");
                    break;
                }
                Ok(Some(Command::Forward(forward))) => {
                    assert!(!forward.request.params.is_empty());
                    seen.push(Seen::Command(format!("{:?}", forward.request.params.len())));
                    let reader = ajp.body(forward.body);
                    if !reader.ended() {
                        body = Some(reader);
                    }
                    if let BodyKind::Length(n) = forward.body {
                        assert_eq!(n, forward.request.content_length);
                    }
                }
                Ok(Some(other)) => seen.push(Seen::Command(format!("{other:?}"))),
                Err(e) => {
                    assert!(!e.to_string().is_empty());
                    seen.push(Seen::Error(e.to_string()));
                    return seen;
                }
            }
        }
    }
    seen
}

fuzz_target!(|data: &[u8]| {
    let (mut u, stream) = split(data);
    let limit = match u.int_in_range(0..=300u16).unwrap_or(0) {
        0 => 65535,
        n => usize::from(n) * 32,
    };
    let secret = u.arbitrary::<bool>().unwrap_or(false);
    let ajp = Ajp::new(limit, secret.then(|| Secret::new("s3cret")));
    let cuts = cuts(&mut u, stream.len());
    let whole = drive(&ajp, stream, &[]);
    let in_pieces = drive(&ajp, stream, &cuts);
    // Body data may come in smaller pieces when cut; the rest must agree.
    let squash = |seen: Vec<Seen>| -> Vec<Seen> {
        let mut out: Vec<Seen> = Vec::new();
        for s in seen {
            match (out.last_mut(), s) {
                (Some(Seen::Body(total)), Seen::Body(n)) => *total += n,
                (_, s) => out.push(s),
            }
        }
        out
    };
    assert_eq!(
        squash(whole),
        squash(in_pieces),
        "decoded differently in pieces"
    );
});
