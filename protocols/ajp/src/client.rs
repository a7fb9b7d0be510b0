//! The web server's side of the wire, kept small: a forward-request and
//! body-packet encoder, and a response decoder.
//!
//! The gateway never uses it. It exists so that tests, property tests and
//! the bench build requests with one definition of the format (the
//! integration tests' Python client keeps its own, written from the
//! specification, to check this one).

use crate::codes;
use crate::fields::put_string;
use crate::packet::MAGIC;

/// A forward request as a web server would send it.
#[derive(Clone, Debug, Default)]
pub struct ForwardRequest<'a> {
    pub method: &'a str,
    pub protocol: &'a [u8],
    pub req_uri: &'a [u8],
    pub remote_addr: &'a [u8],
    pub remote_host: Option<&'a [u8]>,
    pub server_name: &'a [u8],
    pub server_port: u16,
    pub is_ssl: bool,
    /// Names with a code are sent coded.
    pub headers: Vec<(&'a str, &'a [u8])>,
    /// (code, value); `?req_attribute` values are `name NUL value`.
    pub attributes: Vec<(u8, &'a [u8])>,
}

/// Wraps `payload` in a web-server packet.
pub fn packet(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 4);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A body packet carrying `data`.
pub fn body_packet(data: &[u8]) -> Vec<u8> {
    let mut payload = (data.len() as u16).to_be_bytes().to_vec();
    payload.extend_from_slice(data);
    packet(&payload)
}

/// The packet of a forward request.
pub fn encode_forward(request: &ForwardRequest<'_>) -> Vec<u8> {
    let mut p = vec![codes::FORWARD_REQUEST];
    match codes::method_code(request.method) {
        Some(code) => p.push(code),
        None => p.push(codes::STORED_METHOD),
    }
    put_string(&mut p, request.protocol);
    put_string(&mut p, request.req_uri);
    put_string(&mut p, request.remote_addr);
    match request.remote_host {
        Some(host) => put_string(&mut p, host),
        None => p.extend_from_slice(&[0xFF, 0xFF]),
    }
    put_string(&mut p, request.server_name);
    p.extend_from_slice(&request.server_port.to_be_bytes());
    p.push(u8::from(request.is_ssl));
    p.extend_from_slice(&(request.headers.len() as u16).to_be_bytes());
    for (name, value) in &request.headers {
        match codes::request_header_code(name) {
            Some(code) => p.extend_from_slice(&code.to_be_bytes()),
            None => put_string(&mut p, name.as_bytes()),
        }
        put_string(&mut p, value);
    }
    if codes::method_code(request.method).is_none() {
        p.push(codes::attribute::STORED_METHOD);
        put_string(&mut p, request.method.as_bytes());
    }
    for (code, value) in &request.attributes {
        p.push(*code);
        match *code {
            codes::attribute::SSL_KEY_SIZE => {
                let size: u16 = std::str::from_utf8(value).unwrap().parse().unwrap();
                p.extend_from_slice(&size.to_be_bytes());
            }
            codes::attribute::REQ_ATTRIBUTE => {
                let nul = value.iter().position(|&b| b == 0).unwrap();
                put_string(&mut p, &value[..nul]);
                put_string(&mut p, &value[nul + 1..]);
            }
            _ => put_string(&mut p, value),
        }
    }
    p.push(codes::attribute::ARE_DONE);
    packet(&p)
}

/// A CPING packet.
pub fn cping() -> Vec<u8> {
    packet(&[codes::CPING])
}

/// What the container sent, packet by packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponsePacket {
    Headers {
        status: u16,
        reason: Vec<u8>,
        /// Coded names as their lower-case names.
        headers: Vec<(Vec<u8>, Vec<u8>)>,
    },
    Body(Vec<u8>),
    End {
        reuse: bool,
    },
    GetBodyChunk(u16),
    Cpong,
}

/// Decodes container packets; `Err` names what was malformed.
pub fn decode_response(mut bytes: &[u8]) -> Result<Vec<ResponsePacket>, String> {
    fn u16_at(b: &[u8], at: usize) -> Result<u16, String> {
        b.get(at..at + 2)
            .map(|s| u16::from_be_bytes([s[0], s[1]]))
            .ok_or(format!("short at {at}"))
    }
    fn string(b: &[u8], at: &mut usize) -> Result<Vec<u8>, String> {
        let len = usize::from(u16_at(b, *at)?);
        let s = b
            .get(*at + 2..*at + 2 + len)
            .ok_or("short string")?
            .to_vec();
        if b.get(*at + 2 + len) != Some(&0) {
            return Err("string without NUL".into());
        }
        *at += len + 3;
        Ok(s)
    }
    let mut packets = Vec::new();
    while !bytes.is_empty() {
        if !bytes.starts_with(b"AB") {
            return Err(format!("bad magic {:?}", &bytes[..bytes.len().min(2)]));
        }
        let len = usize::from(u16_at(bytes, 2)?);
        let p = bytes.get(4..4 + len).ok_or("short packet")?;
        bytes = &bytes[4 + len..];
        let packet = match p.first() {
            Some(&codes::SEND_HEADERS) => {
                let status = u16_at(p, 1)?;
                let mut at = 3;
                let reason = string(p, &mut at)?;
                let count = u16_at(p, at)?;
                at += 2;
                let mut headers = Vec::new();
                for _ in 0..count {
                    let name = if p.get(at) == Some(&0xA0) {
                        let code = u16_at(p, at)?;
                        at += 2;
                        codes::response_header_name(code)
                            .ok_or(format!("unknown header code {code:#x}"))?
                            .as_bytes()
                            .to_vec()
                    } else {
                        string(p, &mut at)?
                    };
                    headers.push((name, string(p, &mut at)?));
                }
                ResponsePacket::Headers {
                    status,
                    reason,
                    headers,
                }
            }
            Some(&codes::SEND_BODY_CHUNK) => {
                let mut at = 1;
                ResponsePacket::Body(string(p, &mut at)?)
            }
            Some(&codes::END_RESPONSE) => ResponsePacket::End {
                reuse: p.get(1) == Some(&1),
            },
            Some(&codes::GET_BODY_CHUNK) => ResponsePacket::GetBodyChunk(u16_at(p, 1)?),
            Some(&codes::CPONG_REPLY) => ResponsePacket::Cpong,
            other => return Err(format!("unknown packet type {other:?}")),
        };
        packets.push(packet);
    }
    Ok(packets)
}
