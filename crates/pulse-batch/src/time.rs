//! Instants as microseconds since the Unix epoch, a fast RFC 3339 parser and formatter.
//!
//! Parsing the reading time is the most expensive step of a row after number parsing, so
//! the common form `YYYY-MM-DDTHH:MM:SS[.fff](Z|±hh:mm)` is parsed by hand; everything
//! else RFC 3339 allows falls back to chrono. Readings are limited to
//! [`MIN_TIME`]..[`MAX_TIME`] (1970 to 2100): a health reading outside that span is a
//! clock error, and the bound lets window indexes fit in 32 bits.

use chrono::{DateTime, Utc};

/// Microseconds since 1970-01-01T00:00:00Z.
pub type Micros = i64;

/// Microseconds in one second.
pub const MICROS_PER_SEC: i64 = 1_000_000;
/// The earliest accepted reading time: 1970-01-01T00:00:00Z.
pub const MIN_TIME: Micros = 0;
/// The first instant after the accepted span: 2100-01-01T00:00:00Z.
pub const MAX_TIME: Micros = 4_102_444_800 * MICROS_PER_SEC;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number since 1970-01-01: (year, month, day).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

#[inline]
fn digits(bytes: &[u8], range: std::ops::Range<usize>) -> Option<u32> {
    let mut value = 0u32;
    for &b in bytes.get(range)? {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        value = value * 10 + u32::from(d);
    }
    Some(value)
}

/// Parses the common RFC 3339 form by hand; `None` means "not that form" (which may
/// still be valid RFC 3339 for the fallback).
#[inline]
fn parse_fast(s: &[u8]) -> Option<Micros> {
    if s.len() < 20 || s[4] != b'-' || s[7] != b'-' || s[13] != b':' || s[16] != b':' {
        return None;
    }
    if !matches!(s[10], b'T' | b't' | b' ') {
        return None;
    }
    let year = i64::from(digits(s, 0..4)?);
    let month = digits(s, 5..7)?;
    let day = digits(s, 8..10)?;
    let hour = i64::from(digits(s, 11..13)?);
    let minute = i64::from(digits(s, 14..16)?);
    let second = i64::from(digits(s, 17..19)?);
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    // Leap seconds (60) go to the fallback, which knows what to do with them.
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut i = 19;
    let mut micros = 0i64;
    if s[i] == b'.' {
        i += 1;
        let start = i;
        let mut scale = 100_000i64;
        while i < s.len() && s[i].is_ascii_digit() {
            micros += i64::from(s[i] - b'0') * scale;
            scale /= 10;
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    let offset_secs = match s.get(i)? {
        b'Z' | b'z' if i + 1 == s.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == s.len() && s[i + 3] == b':' => {
            let oh = i64::from(digits(s, i + 1..i + 3)?);
            let om = i64::from(digits(s, i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let off = oh * 3600 + om * 60;
            if *sign == b'+' {
                off
            } else {
                -off
            }
        }
        _ => return None,
    };
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
        - offset_secs;
    Some(secs * MICROS_PER_SEC + micros)
}

/// Parses an RFC 3339 timestamp into microseconds since the epoch (sub-microsecond
/// digits are truncated). `None` when the text is not RFC 3339.
///
/// ```
/// use pulse_batch::time::parse_rfc3339;
/// assert_eq!(parse_rfc3339(b"1970-01-01T00:01:00.5Z"), Some(60_500_000));
/// assert_eq!(parse_rfc3339(b"1970-01-01T08:00:00+08:00"), Some(0));
/// assert_eq!(parse_rfc3339(b"yesterday"), None);
/// ```
#[inline]
pub fn parse_rfc3339(s: &[u8]) -> Option<Micros> {
    if let Some(t) = parse_fast(s) {
        return Some(t);
    }
    let text = std::str::from_utf8(s).ok()?.trim();
    let parsed = DateTime::parse_from_rfc3339(text).ok()?;
    Some(parsed.timestamp_micros())
}

/// Formats an instant as RFC 3339 UTC ending in `Z`, with microseconds only when non-zero.
///
/// ```
/// use pulse_batch::time::format_rfc3339;
/// assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
/// assert_eq!(format_rfc3339(1_500_000), "1970-01-01T00:00:01.500000Z");
/// ```
pub fn format_rfc3339(t: Micros) -> String {
    let mut out = String::with_capacity(27);
    push_rfc3339(&mut out, t);
    out
}

/// Appends [`format_rfc3339`] of `t` to `out` without allocating.
pub fn push_rfc3339(out: &mut String, t: Micros) {
    let secs = t.div_euclid(MICROS_PER_SEC);
    let micros = t.rem_euclid(MICROS_PER_SEC);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let mut buf = [0u8; 27];
    let mut put = |pos: usize, value: i64, width: usize| {
        let mut v = value;
        for k in (0..width).rev() {
            buf[pos + k] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, year.clamp(0, 9999), 4);
    put(5, i64::from(month), 2);
    put(8, i64::from(day), 2);
    put(11, sod / 3600, 2);
    put(14, sod / 60 % 60, 2);
    put(17, sod % 60, 2);
    put(20, micros, 6);
    buf[4] = b'-';
    buf[7] = b'-';
    buf[10] = b'T';
    buf[13] = b':';
    buf[16] = b':';
    buf[19] = b'.';
    let len = if micros == 0 {
        buf[19] = b'Z';
        20
    } else {
        buf[26] = b'Z';
        27
    };
    // Only ASCII digits and separators were written above.
    out.extend(buf[..len].iter().map(|&b| char::from(b)));
}

/// The instant as a chrono UTC time.
pub fn to_datetime(t: Micros) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_common_forms() {
        let base = 1_764_000_000 * MICROS_PER_SEC; // 2025-11-24T16:00:00Z
        assert_eq!(parse_rfc3339(b"2025-11-24T16:00:00Z"), Some(base));
        assert_eq!(
            parse_rfc3339(b"2025-11-24T16:00:00.123Z"),
            Some(base + 123_000)
        );
        assert_eq!(
            parse_rfc3339(b"2025-11-24T16:00:00.123456789Z"),
            Some(base + 123_456)
        );
        assert_eq!(parse_rfc3339(b"2025-11-25T00:00:00+08:00"), Some(base));
        assert_eq!(parse_rfc3339(b"2025-11-24T11:00:00-05:00"), Some(base));
        assert_eq!(parse_rfc3339(b"2025-11-24 16:00:00z"), Some(base));
        // Leap second, through chrono.
        assert!(parse_rfc3339(b"2016-12-31T23:59:60Z").is_some());
    }

    #[test]
    fn rejects_what_is_not_rfc3339() {
        for bad in [
            &b""[..],
            b"2025-11-24",
            b"2025-13-01T00:00:00Z",
            b"2025-02-29T00:00:00Z",
            b"2025-11-24T24:00:00Z",
            b"2025-11-24T16:00:00",
            b"2025-11-24T16:00:00.Z",
            b"2025-11-24T16:00:00+0800",
            b"1732464000",
            b"\xff\xfe",
        ] {
            assert_eq!(
                parse_rfc3339(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(parse_rfc3339(b"2024-02-29T00:00:00Z").is_some());
    }

    proptest! {
        #[test]
        fn agrees_with_chrono(secs in 0i64..4_102_444_800, micros in 0i64..1_000_000, off_min in -1439i64..1440) {
            let t = secs * MICROS_PER_SEC + micros;
            let Some(utc) = to_datetime(t) else { return Err(TestCaseError::fail("range")) };
            let Some(zone) = chrono::FixedOffset::east_opt((off_min * 60) as i32) else {
                return Err(TestCaseError::fail("offset"))
            };
            let text = utc.with_timezone(&zone).to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
            prop_assert_eq!(parse_rfc3339(text.as_bytes()), Some(t));
            let formatted = format_rfc3339(t);
            prop_assert_eq!(parse_rfc3339(formatted.as_bytes()), Some(t));
            prop_assert_eq!(civil_from_days(secs.div_euclid(86_400)).0, i64::from(chrono::Datelike::year(&utc)));
        }
    }
}
