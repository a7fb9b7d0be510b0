//! The SCGI head decoder (netstring length, header block, comma), with the
//! body framing after a decoded head, under the default limit or a small
//! one, whole and cut into pieces.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rustgi_fuzz::{check_head, cuts, split};
use rustgi_scgi::Scgi;

fuzz_target!(|data: &[u8]| {
    let (mut u, stream) = split(data);
    let scgi = match u.int_in_range(0..=300).unwrap_or(0) {
        0 => Scgi::default(),
        limit => Scgi::new(limit - 1),
    };
    let cuts = cuts(&mut u, stream.len());
    check_head(&scgi, stream, &cuts);
});
