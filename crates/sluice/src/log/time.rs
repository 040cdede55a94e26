//! Timestamps of log lines, all in UTC: nginx's `$time_local` and `$time_iso8601`, `$msec`,
//! HAProxy's accept date, RFC 3339 with microseconds (process log, syslog). No time zones
//! other than UTC, no clock reads here (callers pass the time).

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// A UTC calendar time.
struct Civil {
    y: i64,
    mo: u32,
    d: u32,
    h: u64,
    mi: u64,
    s: u64,
    micros: u32,
}

fn civil(t: SystemTime) -> Civil {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, mo, d) = civil_from_days(days as i64);
    Civil {
        y,
        mo,
        d,
        h: rem / 3600,
        mi: rem % 3600 / 60,
        s: rem % 60,
        micros: since.subsec_micros(),
    }
}

/// Days since 1970-01-01 to (year, month 1..=12, day 1..=31) (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// nginx's `$time_local` (in UTC): `25/Nov/2026:13:55:02 +0000`.
pub(crate) fn time_local(t: SystemTime) -> String {
    let c = civil(t);
    format!(
        "{:02}/{}/{:04}:{:02}:{:02}:{:02} +0000",
        c.d,
        MONTHS[(c.mo - 1) as usize],
        c.y,
        c.h,
        c.mi,
        c.s
    )
}

/// HAProxy's accept date: `25/Nov/2026:13:55:02.123`.
pub(crate) fn accept_date(t: SystemTime) -> String {
    let c = civil(t);
    format!(
        "{:02}/{}/{:04}:{:02}:{:02}:{:02}.{:03}",
        c.d,
        MONTHS[(c.mo - 1) as usize],
        c.y,
        c.h,
        c.mi,
        c.s,
        c.micros / 1000
    )
}

/// nginx's `$time_iso8601`: `2026-11-25T13:55:02+00:00`.
pub(crate) fn iso8601(t: SystemTime) -> String {
    let c = civil(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}+00:00",
        c.y, c.mo, c.d, c.h, c.mi, c.s
    )
}

/// RFC 3339 with microseconds: `2026-11-25T13:55:02.123456Z` (process log, syslog).
pub(crate) fn rfc3339_micros(t: SystemTime) -> String {
    let c = civil(t);
    let mut s = String::with_capacity(27);
    let _ = write!(
        s,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        c.y, c.mo, c.d, c.h, c.mi, c.s, c.micros
    );
    s
}

/// nginx's `$msec`: seconds since the epoch with milliseconds, `1764078902.123`.
pub(crate) fn msec(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("{}.{:03}", d.as_secs(), d.subsec_millis())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_agree_on_one_instant() {
        assert_eq!(time_local(UNIX_EPOCH), "01/Jan/1970:00:00:00 +0000");
        // 2024-02-29 23:59:59.250 UTC (leap day).
        let t = UNIX_EPOCH + Duration::from_millis(1_709_251_199_250);
        assert_eq!(time_local(t), "29/Feb/2024:23:59:59 +0000");
        assert_eq!(accept_date(t), "29/Feb/2024:23:59:59.250");
        assert_eq!(iso8601(t), "2024-02-29T23:59:59+00:00");
        assert_eq!(rfc3339_micros(t), "2024-02-29T23:59:59.250000Z");
        assert_eq!(msec(t), "1709251199.250");
    }
}
