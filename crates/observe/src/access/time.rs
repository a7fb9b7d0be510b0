//! Wall-clock times as log lines write them, in UTC (std has no time
//! zones, and a log in UTC sorts the same on every host).

use std::time::{SystemTime, UNIX_EPOCH};

struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// `civil_from_days`).
fn civil(time: SystemTime) -> Civil {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() as i64;
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    Civil {
        year,
        month,
        day,
        hour: (rest / 3600) as u32,
        minute: (rest / 60 % 60) as u32,
        second: (rest % 60) as u32,
    }
}

/// RFC 3339 with milliseconds: `2026-12-07T17:38:00.123Z`. The part up
/// to the second is written once per second and thread (as [`clf`]).
pub(crate) fn rfc3339(out: &mut Vec<u8>, time: SystemTime) {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    LAST_RFC3339.with_borrow_mut(|(last, text)| {
        if *last != since.as_secs() {
            text.clear();
            rfc3339_second(text, time);
            *last = since.as_secs();
        }
        out.extend_from_slice(text);
    });
    let millis = since.subsec_millis();
    out.extend_from_slice(&[
        b'.',
        b'0' + (millis / 100) as u8,
        b'0' + (millis / 10 % 10) as u8,
        b'0' + (millis % 10) as u8,
        b'Z',
    ]);
}

fn rfc3339_second(out: &mut Vec<u8>, time: SystemTime) {
    use std::io::Write;
    let c = civil(time);
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    );
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

thread_local! {
    /// The last second written, as `clf` wrote it: lines come many to a
    /// second.
    static LAST_CLF: std::cell::RefCell<(u64, Vec<u8>)> = const { std::cell::RefCell::new((u64::MAX, Vec::new())) };
    /// The same for [`rfc3339`], up to the second.
    static LAST_RFC3339: std::cell::RefCell<(u64, Vec<u8>)> = const { std::cell::RefCell::new((u64::MAX, Vec::new())) };
}

/// Apache's common log format: `07/Dec/2026:17:38:00 +0000`.
pub(crate) fn clf(out: &mut Vec<u8>, time: SystemTime) {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    LAST_CLF.with_borrow_mut(|(last, text)| {
        if *last != secs {
            text.clear();
            clf_uncached(text, time);
            *last = secs;
        }
        out.extend_from_slice(text);
    });
}

fn clf_uncached(out: &mut Vec<u8>, time: SystemTime) {
    use std::io::Write;
    let c = civil(time);
    let _ = write!(
        out,
        "{:02}/{}/{:04}:{:02}:{:02}:{:02} +0000",
        c.day,
        MONTHS[(c.month - 1) as usize],
        c.year,
        c.hour,
        c.minute,
        c.second
    );
}
