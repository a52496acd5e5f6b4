//! Fixed-interval schedules: `every 5m`, `every 1h offset 10m`.
//!
//! Ticks are the instants `offset + k × period` counted from the Unix epoch, so they do not
//! depend on when the process started: two instances agree on every tick (which is what lets a
//! lease backend make each tick run once), and a restart neither shifts nor repeats them.
//! Elapsed time knows no daylight saving; use a cron schedule for wall-clock times.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

use crate::error::ScheduleError;
use pulse_core::duration::{format_duration, parse_duration};

/// Every `period`, at `offset` past each multiple of the period since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    period_ms: i64,
    offset_ms: i64,
}

impl Interval {
    /// Every `period`, aligned to multiples of the period since the epoch (`every 5m` ticks at
    /// :00, :05, :10, ...). Periods are counted in whole milliseconds.
    pub fn new(period: Duration) -> Result<Self, ScheduleError> {
        Self::with_offset(period, Duration::ZERO)
    }

    /// Every `period`, `offset` after each aligned multiple (`every 1h offset 10m` ticks at
    /// 00:10, 01:10, ... UTC). The offset must be shorter than the period.
    pub fn with_offset(period: Duration, offset: Duration) -> Result<Self, ScheduleError> {
        let period_ms = i64::try_from(period.as_millis()).unwrap_or(i64::MAX);
        let offset_ms = i64::try_from(offset.as_millis()).unwrap_or(i64::MAX);
        if period_ms == 0 {
            return Err(ScheduleError::ZeroInterval);
        }
        if offset_ms >= period_ms {
            return Err(ScheduleError::OffsetTooLarge { offset, period });
        }
        Ok(Self {
            period_ms,
            offset_ms,
        })
    }

    /// Reads `every <duration> [offset <duration>]`.
    pub fn parse(text: &str) -> Result<Self, ScheduleError> {
        let invalid = |reason: &str| ScheduleError::InvalidInterval {
            input: text.to_owned(),
            reason: reason.to_owned(),
        };
        let words: Vec<&str> = text.split_whitespace().collect();
        match words.as_slice() {
            [every, period] if every.eq_ignore_ascii_case("every") => {
                Self::new(parse_duration(period)?)
            }
            [every, period, offset_word, offset]
                if every.eq_ignore_ascii_case("every")
                    && offset_word.eq_ignore_ascii_case("offset") =>
            {
                Self::with_offset(parse_duration(period)?, parse_duration(offset)?)
            }
            [every] if every.eq_ignore_ascii_case("every") => Err(invalid(
                "missing the period after \"every\" (e.g. every 5m)",
            )),
            [every, _, other, ..] if every.eq_ignore_ascii_case("every") => {
                if other.eq_ignore_ascii_case("offset") {
                    Err(invalid("expected exactly one duration after \"offset\""))
                } else {
                    Err(invalid(
                        "expected \"every <duration>\" optionally followed by \"offset <duration>\"",
                    ))
                }
            }
            _ => Err(invalid("an interval schedule starts with \"every\"")),
        }
    }

    /// The period between ticks.
    pub fn period(&self) -> Duration {
        Duration::from_millis(self.period_ms.unsigned_abs())
    }

    /// The offset of each tick after an aligned multiple of the period.
    pub fn offset(&self) -> Duration {
        Duration::from_millis(self.offset_ms.unsigned_abs())
    }

    /// The first tick strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let k = (after.timestamp_millis() - self.offset_ms).div_euclid(self.period_ms);
        self.tick(k.checked_add(1)?)
    }

    /// The last tick at or before `at`.
    pub fn latest_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let k = (at.timestamp_millis() - self.offset_ms).div_euclid(self.period_ms);
        self.tick(k)
    }

    /// How many ticks fall in `(after, until]`.
    pub(crate) fn count_between(&self, after: DateTime<Utc>, until: DateTime<Utc>) -> u32 {
        let index =
            |t: DateTime<Utc>| (t.timestamp_millis() - self.offset_ms).div_euclid(self.period_ms);
        let count = index(until).saturating_sub(index(after)).max(0);
        u32::try_from(count).unwrap_or(u32::MAX)
    }

    fn tick(&self, k: i64) -> Option<DateTime<Utc>> {
        let ms = k.checked_mul(self.period_ms)?.checked_add(self.offset_ms)?;
        Utc.timestamp_millis_opt(ms).single()
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "every {}", format_duration(self.period()))?;
        if self.offset_ms > 0 {
            write!(f, " offset {}", format_duration(self.offset()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn ticks_are_aligned_to_the_epoch() {
        let every5 = Interval::parse("every 5m").unwrap();
        assert_eq!(
            every5.next_after(at("2026-03-01T10:02:13Z")),
            Some(at("2026-03-01T10:05:00Z"))
        );
        // Strictly after: a tick instant moves on to the next one.
        assert_eq!(
            every5.next_after(at("2026-03-01T10:05:00Z")),
            Some(at("2026-03-01T10:10:00Z"))
        );
        assert_eq!(
            every5.latest_at_or_before(at("2026-03-01T10:05:00Z")),
            Some(at("2026-03-01T10:05:00Z"))
        );
        assert_eq!(
            every5.latest_at_or_before(at("2026-03-01T10:04:59.999Z")),
            Some(at("2026-03-01T10:00:00Z"))
        );
    }

    #[test]
    fn offset_shifts_every_tick() {
        let hourly = Interval::parse("every 1h offset 10m").unwrap();
        assert_eq!(
            hourly.next_after(at("2026-03-01T10:09:59Z")),
            Some(at("2026-03-01T10:10:00Z"))
        );
        assert_eq!(
            hourly.next_after(at("2026-03-01T10:10:00Z")),
            Some(at("2026-03-01T11:10:00Z"))
        );
        assert_eq!(hourly.to_string(), "every 1h offset 10m");
        // Before the epoch too (div_euclid, not truncating division).
        assert_eq!(
            hourly.next_after(at("1969-12-31T23:30:00Z")),
            Some(at("1970-01-01T00:10:00Z"))
        );
    }

    #[test]
    fn elapsed_time_ignores_daylight_saving() {
        // Europe/Berlin springs forward on 2026-03-29 at 01:00 UTC: still one tick an hour.
        let hourly = Interval::parse("every 1h").unwrap();
        let ticks: Vec<_> =
            std::iter::successors(Some(at("2026-03-28T23:00:00Z")), |t| hourly.next_after(*t))
                .take(4)
                .collect();
        assert_eq!(ticks[3] - ticks[0], chrono::Duration::hours(3));
    }

    #[test]
    fn parse_errors_say_what_is_wrong() {
        assert_eq!(
            Interval::parse("every 0s"),
            Err(ScheduleError::ZeroInterval)
        );
        assert_eq!(
            Interval::parse("every 5m offset 5m"),
            Err(ScheduleError::OffsetTooLarge {
                offset: Duration::from_secs(300),
                period: Duration::from_secs(300)
            })
        );
        assert!(matches!(
            Interval::parse("every"),
            Err(ScheduleError::InvalidInterval { reason, .. }) if reason.contains("missing the period")
        ));
        assert!(matches!(
            Interval::parse("every 5m at 1m"),
            Err(ScheduleError::InvalidInterval { reason, .. }) if reason.contains("optionally followed by")
        ));
        assert!(matches!(
            Interval::parse("every 5m offset"),
            Err(ScheduleError::InvalidInterval { reason, .. }) if reason.contains("after \"offset\"")
        ));
        assert!(matches!(
            Interval::parse("every 5q"),
            Err(ScheduleError::InvalidDuration { input, .. }) if input == "5q"
        ));
        let message = Interval::parse("every 1m offset 2m")
            .unwrap_err()
            .to_string();
        assert_eq!(message, "offset 2m must be shorter than the interval 1m");
    }
}
