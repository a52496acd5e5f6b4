//! When a job runs: a fixed [`Interval`] of elapsed time or a [`CronSchedule`] of wall-clock
//! times in a time zone, behind one [`Schedule`] type the scheduler asks for tick times.
//!
//! The two kinds answer different needs and so keep different clocks: an interval counts
//! elapsed time on the UTC time line (anchored to the Unix epoch, so every instance of Pulse
//! computes the same ticks and a lease can name a tick), while a cron schedule follows a wall
//! clock in a zone, which is where daylight-saving rules come in (see [`CronSchedule`]).

mod cron;
mod interval;

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

pub use self::cron::CronSchedule;
pub use self::interval::Interval;
use crate::error::ScheduleError;
pub use pulse_core::duration::{format_duration, parse_duration};

/// A job's schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Schedule {
    /// Every fixed period of elapsed time.
    Interval(Interval),
    /// At wall-clock times given by a cron expression in a time zone.
    Cron(CronSchedule),
}

impl Schedule {
    /// Reads a schedule: `every <duration> [offset <duration>]` (for example `every 5m`,
    /// `every 1h offset 10m`) or a cron expression (`*/5 * * * *`, `30 2 * * *`, six fields with
    /// seconds first, or `@hourly`/`@daily`/`@weekly`/`@monthly`/`@yearly`) evaluated in `tz`.
    /// Intervals ignore `tz`.
    ///
    /// ```
    /// use pulse_scheduler::Schedule;
    /// let every = Schedule::parse("every 5m", chrono_tz::UTC).unwrap();
    /// assert_eq!(every.to_string(), "every 5m");
    /// let nightly = Schedule::parse("30 2 * * *", chrono_tz::Europe::Berlin).unwrap();
    /// assert_eq!(nightly.to_string(), "30 2 * * * (Europe/Berlin)");
    /// assert!(Schedule::parse("every 5 minutes", chrono_tz::UTC).is_err());
    /// ```
    pub fn parse(text: &str, tz: Tz) -> Result<Self, ScheduleError> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(ScheduleError::Empty);
        }
        let mut words = trimmed.split_whitespace();
        if words
            .next()
            .is_some_and(|first| first.eq_ignore_ascii_case("every"))
        {
            return Interval::parse(trimmed).map(Self::Interval);
        }
        CronSchedule::new(trimmed, tz).map(Self::Cron)
    }

    /// Reads a time zone name from the IANA database (`Europe/Berlin`, `Asia/Shanghai`, `UTC`).
    pub fn parse_time_zone(name: &str) -> Result<Tz, ScheduleError> {
        name.trim()
            .parse::<Tz>()
            .map_err(|_| ScheduleError::UnknownTimeZone(name.to_owned()))
    }

    /// The first tick strictly after `after`, or `None` when there is none.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Self::Interval(interval) => interval.next_after(after),
            Self::Cron(cron) => cron.next_after(after),
        }
    }

    /// The last tick at or before `at`, or `None` when there is none.
    pub fn latest_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Self::Interval(interval) => interval.latest_at_or_before(at),
            Self::Cron(cron) => cron.latest_at_or_before(at),
        }
    }

    /// How many ticks fall in `(after, until]`, counting at most `cap` (intervals answer by
    /// arithmetic; cron schedules step through their ticks, hence the cap).
    pub fn count_between(&self, after: DateTime<Utc>, until: DateTime<Utc>, cap: u32) -> u32 {
        if until <= after {
            return 0;
        }
        if let Self::Interval(interval) = self {
            return interval.count_between(after, until).min(cap);
        }
        let mut count = 0;
        let mut cursor = after;
        while count < cap {
            match self.next_after(cursor) {
                Some(tick) if tick <= until => {
                    count += 1;
                    cursor = tick;
                }
                _ => break,
            }
        }
        count
    }

    /// The next `count` ticks strictly after `after` (fewer when the schedule ends).
    pub fn upcoming(&self, after: DateTime<Utc>, count: usize) -> Vec<DateTime<Utc>> {
        let mut ticks = Vec::with_capacity(count);
        let mut cursor = after;
        while ticks.len() < count {
            let Some(tick) = self.next_after(cursor) else {
                break;
            };
            ticks.push(tick);
            cursor = tick;
        }
        ticks
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Interval(interval) => interval.fmt(f),
            Self::Cron(cron) => cron.fmt(f),
        }
    }
}

/// Reads a schedule with cron expressions in UTC (see [`Schedule::parse`]).
impl FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text, Tz::UTC)
    }
}

impl From<Interval> for Schedule {
    fn from(interval: Interval) -> Self {
        Self::Interval(interval)
    }
}

impl From<CronSchedule> for Schedule {
    fn from(cron: CronSchedule) -> Self {
        Self::Cron(cron)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispatches_on_the_first_word() {
        assert!(matches!(
            Schedule::parse("every 5m", Tz::UTC),
            Ok(Schedule::Interval(_))
        ));
        assert!(matches!(
            Schedule::parse("EVERY 5m", Tz::UTC),
            Ok(Schedule::Interval(_))
        ));
        assert!(matches!(
            Schedule::parse("*/5 * * * *", Tz::UTC),
            Ok(Schedule::Cron(_))
        ));
        assert_eq!(Schedule::parse("  ", Tz::UTC), Err(ScheduleError::Empty));
    }

    #[test]
    fn time_zone_names_are_checked() {
        assert_eq!(
            Schedule::parse_time_zone("Asia/Shanghai").unwrap(),
            chrono_tz::Asia::Shanghai
        );
        assert_eq!(
            Schedule::parse_time_zone("Mars/Olympus"),
            Err(ScheduleError::UnknownTimeZone("Mars/Olympus".to_owned()))
        );
    }

    #[test]
    fn counts_ticks_in_a_range() {
        let start: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let end: DateTime<Utc> = "2026-01-01T01:00:00Z".parse().unwrap();
        for text in ["every 5m", "*/5 * * * *"] {
            let schedule: Schedule = text.parse().unwrap();
            // (00:00, 01:00] holds 00:05 .. 01:00.
            assert_eq!(schedule.count_between(start, end, 1000), 12, "{text}");
            assert_eq!(schedule.count_between(start, end, 5), 5, "{text}");
            assert_eq!(schedule.count_between(end, start, 1000), 0, "{text}");
            let just_before = end - chrono::Duration::milliseconds(1);
            assert_eq!(
                schedule.count_between(start, just_before, 1000),
                11,
                "{text}"
            );
        }
    }

    #[test]
    fn upcoming_lists_consecutive_ticks() {
        let schedule: Schedule = "every 1h offset 15m".parse().unwrap();
        let start = "2026-01-01T00:20:00Z".parse().unwrap();
        let ticks = schedule.upcoming(start, 3);
        let expected: Vec<DateTime<Utc>> = [
            "2026-01-01T01:15:00Z",
            "2026-01-01T02:15:00Z",
            "2026-01-01T03:15:00Z",
        ]
        .iter()
        .map(|t| t.parse().unwrap())
        .collect();
        assert_eq!(ticks, expected);
    }
}
