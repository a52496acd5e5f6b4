//! Human durations as written in schedules and configs: `90s`, `5m`, `1h30m`, `1d`, `250ms`.
//!
//! The one duration grammar of Pulse: the configuration file's durations (`limits`,
//! `retention`, `groups`), schedules' periods and offsets and the scheduler's graces all
//! read it, so the same spelling (and the same error text) works wherever one is named.

use std::time::Duration;

/// A text that is not a duration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[error("invalid duration \"{input}\": {reason}")]
pub struct DurationError {
    /// The text that was read as a duration.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

/// The units a duration may use, largest first (the order [`format_duration`] emits them in).
const UNITS: [(&str, u64); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// Parses a duration such as `5m`, `90s`, `1h30m`, `1d` or `250ms` (whole numbers, one or more
/// `<number><unit>` parts, units `d`, `h`, `m`, `s`, `ms`).
///
/// ```
/// use std::time::Duration;
/// assert_eq!(pulse_core::parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
/// assert!(pulse_core::parse_duration("5 minutes").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let invalid = |reason: String| DurationError {
        input: text.to_owned(),
        reason,
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(invalid("it is empty".to_owned()));
    }
    let mut total_ms: u64 = 0;
    let mut rest = trimmed;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(invalid(format!(
                "expected a number at \"{rest}\" (a duration looks like 5m, 90s, 1h30m)"
            )));
        }
        let (number, after) = rest.split_at(digits);
        let unit_len = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, next) = after.split_at(unit_len);
        if unit.is_empty() {
            return Err(invalid(format!(
                "\"{number}\" has no unit (expected one of d, h, m, s, ms)"
            )));
        }
        let factor = UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, factor)| *factor)
            .ok_or_else(|| {
                invalid(format!(
                    "unknown unit \"{unit}\" (expected one of d, h, m, s, ms)"
                ))
            })?;
        let value: u64 = number
            .parse()
            .map_err(|_| invalid(format!("\"{number}\" is too large")))?;
        total_ms = value
            .checked_mul(factor)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(|| invalid("it is too large".to_owned()))?;
        rest = next;
    }
    Ok(Duration::from_millis(total_ms))
}

/// Formats a duration in the spelling [`parse_duration`] reads, largest units first
/// (`5400s` → `1h30m`); sub-millisecond parts are dropped, zero is `0s`.
pub fn format_duration(duration: Duration) -> String {
    let mut ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (name, factor) in UNITS {
        let count = ms / factor;
        if count > 0 {
            out.push_str(&count.to_string());
            out.push_str(name);
            ms %= factor;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_and_compound_units() {
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration(" 2m5s ").unwrap(), Duration::from_secs(125));
    }

    fn reason(text: &str) -> String {
        match parse_duration(text) {
            Err(DurationError { input, reason }) => {
                assert_eq!(input, text);
                reason
            }
            other => panic!("expected InvalidDuration for {text:?}, got {other:?}"),
        }
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(reason("").contains("empty"));
        assert!(reason("5").contains("no unit"));
        assert!(reason("5x").contains("unknown unit \"x\""));
        assert!(reason("m5").contains("expected a number"));
        assert!(reason("5 m").contains("expected a number") || reason("5 m").contains("no unit"));
        assert!(reason("99999999999999999999s").contains("too large"));
        assert!(reason("9999999999999999d").contains("too large"));
    }

    #[test]
    fn formats_round_trip() {
        for text in ["5m", "1h30m", "1d2h", "90ms", "1m30s", "0s"] {
            let parsed = parse_duration(text).unwrap();
            assert_eq!(parse_duration(&format_duration(parsed)).unwrap(), parsed);
        }
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn the_configuration_files_durations_parse() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse_duration("2").is_err());
        assert!(parse_duration("h").is_err());
    }
}
