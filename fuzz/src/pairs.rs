//! FastCGI name-value pairs decoded the plain way, for the targets to
//! check the state machine's decoder against: written from the spec
//! (section 3.4), sharing no code with `rustgi-fastcgi`.

/// A length: one byte under 0x80, else four bytes big-endian with the top
/// bit cleared. `None` if the stream ends inside it.
fn length(stream: &[u8], at: &mut usize) -> Option<usize> {
    let first = *stream.get(*at)?;
    if first < 0x80 {
        *at += 1;
        return Some(usize::from(first));
    }
    let bytes: [u8; 4] = stream.get(*at..*at + 4)?.try_into().ok()?;
    *at += 4;
    Some((u32::from_be_bytes(bytes) & 0x7fff_ffff) as usize)
}

/// The pairs of a whole stream, or `None` if one is cut short or has an
/// empty name (what the spec's senders never write).
pub fn decode(stream: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let mut pairs = Vec::new();
    let mut at = 0;
    while at < stream.len() {
        let name_len = length(stream, &mut at)?;
        let value_len = length(stream, &mut at)?;
        if name_len == 0 {
            return None;
        }
        let name = stream.get(at..at.checked_add(name_len)?)?;
        at += name_len;
        let value = stream.get(at..at.checked_add(value_len)?)?;
        at += value_len;
        pairs.push((name, value));
    }
    Some(pairs)
}

/// One record as the spec lays it out (version 1, content, `padding` zero
/// bytes), for targets that build streams around fuzzed content.
pub fn record(record_type: u8, id: u16, content: &[u8], padding: u8, out: &mut Vec<u8>) {
    let len = content.len().min(0xffff);
    out.push(1);
    out.push(record_type);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.push(padding);
    out.push(0);
    out.extend_from_slice(&content[..len]);
    out.resize(out.len() + usize::from(padding), 0);
}
