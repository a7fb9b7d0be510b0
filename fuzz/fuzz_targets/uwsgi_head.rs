//! The uwsgi head decoder (4-byte header, vars block, modifier 30's
//! SCRIPT_NAME strip), with the body framing after a decoded head: by
//! length, or chunked when Transfer-Encoding says so and CONTENT_LENGTH is
//! absent.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rustgi_fuzz::{check_head, cuts, split};
use rustgi_uwsgi::Uwsgi;

fuzz_target!(|data: &[u8]| {
    let (mut u, stream) = split(data);
    let uwsgi = match u.int_in_range(0..=300).unwrap_or(0) {
        0 => Uwsgi::default(),
        limit => Uwsgi::new(limit - 1),
    };
    let cuts = cuts(&mut u, stream.len());
    check_head(&uwsgi, stream, &cuts);
});
