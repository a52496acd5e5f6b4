//! Cron schedules in a time zone, with the daylight-saving rules spelled out.
//!
//! Parsing and matching are the `croner` crate's (POSIX/Vixie fields, names such as `MON` and
//! `JAN`, `L`/`W`/`#`, `@daily` aliases); this module adds the time zone, error messages that
//! name the faulty field, and a check that the expression fires at all.
//!
//! # Daylight saving
//!
//! Searches move along real (UTC) time and the wall clock is the zone's. Following Vixie cron
//! and croner, the rule depends on whether the second, minute and hour fields are each a single
//! fixed value (a *fixed-time* job such as `30 2 * * *`) or not (an *interval* job such as
//! `*/15 * * * *` or `0 * * * *`):
//!
//! - **Skipped times** (spring forward, e.g. 02:00 → 03:00): a fixed-time job whose time does
//!   not exist that day runs once, at the first wall-clock time after the gap (03:00); an
//!   interval job simply has no ticks inside the gap.
//! - **Repeated times** (fall back, e.g. 02:00 → 01:00): a fixed-time job runs once, at the
//!   first occurrence; an interval job keeps its real-time cadence, ticking on both passes
//!   (`0 * * * *` fires at 01:00 summer time and again an hour later at 01:00 winter time).

use std::fmt;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

use crate::error::ScheduleError;

/// The aliases croner expands, all of them fixed-time.
const ALIASES: [&str; 6] = [
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@hourly",
];

/// Field names and what each accepts, for error messages.
const FIVE_FIELDS: [(&str, &str); 5] = [
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31, L or nW"),
    ("month", "1-12 or JAN-DEC"),
    (
        "day-of-week",
        "0-7 or SUN-SAT (0 and 7 are Sunday), n#k or nL",
    ),
];
const SIX_FIELDS: [(&str, &str); 6] = [
    ("second", "0-59"),
    FIVE_FIELDS[0],
    FIVE_FIELDS[1],
    FIVE_FIELDS[2],
    FIVE_FIELDS[3],
    FIVE_FIELDS[4],
];

/// A cron expression evaluated on the wall clock of an IANA time zone.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    expr: String,
    // Boxed: croner's matcher is a few hundred bytes and `Schedule` is passed around by value.
    cron: Box<Cron>,
    tz: Tz,
}

impl CronSchedule {
    /// Parses a 5-field (`minute hour day-of-month month day-of-week`) or 6-field (seconds
    /// first) cron expression, or an alias (`@hourly`, `@daily`, `@weekly`, `@monthly`,
    /// `@yearly`), to be evaluated in `tz`.
    ///
    /// ```
    /// use pulse_scheduler::CronSchedule;
    /// let err = CronSchedule::new("61 * * * *", chrono_tz::UTC).unwrap_err();
    /// assert!(err.to_string().contains("invalid minute field \"61\""));
    /// ```
    pub fn new(expr: &str, tz: Tz) -> Result<Self, ScheduleError> {
        let expr = expr.trim();
        let fields: Vec<&str> = expr.split_whitespace().collect();
        let is_alias = expr.starts_with('@');
        if is_alias && !ALIASES.iter().any(|alias| alias.eq_ignore_ascii_case(expr)) {
            return Err(ScheduleError::InvalidCron {
                expr: expr.to_owned(),
                reason: format!("unknown alias (expected one of {})", ALIASES.join(", ")),
            });
        }
        if !(is_alias || fields.len() == 5 || fields.len() == 6) {
            return Err(ScheduleError::CronFieldCount {
                expr: expr.to_owned(),
                found: fields.len(),
            });
        }
        let cron = parser().parse(expr).map_err(|err| {
            if is_alias {
                ScheduleError::InvalidCron {
                    expr: expr.to_owned(),
                    reason: err.to_string(),
                }
            } else {
                locate_field_error(expr, &fields, err.to_string())
            }
        })?;
        let schedule = Self {
            expr: fields.join(" "),
            cron: Box::new(cron),
            tz,
        };
        // A pattern such as February 30 parses but never matches; say so now rather than
        // leaving a job that silently never runs. Leap days and rare weekday/date combinations
        // occur within a few years of any start.
        let probe = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).single();
        if probe.and_then(|start| schedule.next_after(start)).is_none() {
            return Err(ScheduleError::NeverFires {
                expr: expr.to_owned(),
            });
        }
        Ok(schedule)
    }

    /// The expression as given (fields separated by single spaces).
    pub fn expression(&self) -> &str {
        &self.expr
    }

    /// The time zone whose wall clock the expression follows.
    pub fn time_zone(&self) -> Tz {
        self.tz
    }

    /// The first tick strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.tz);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|tick| tick.with_timezone(&Utc))
    }

    /// The last tick at or before `at`.
    pub fn latest_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = at.with_timezone(&self.tz);
        self.cron
            .find_previous_occurrence(&local, true)
            .ok()
            .map(|tick| tick.with_timezone(&Utc))
    }
}

impl PartialEq for CronSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.expr == other.expr && self.tz == other.tz
    }
}

impl Eq for CronSchedule {}

impl fmt::Display for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.expr, self.tz.name())
    }
}

fn parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
}

/// Finds which field makes `expr` invalid by parsing each field alone (all others `*`); an
/// error that no single field explains is reported for the whole expression.
fn locate_field_error(expr: &str, fields: &[&str], whole_reason: String) -> ScheduleError {
    let names: &[(&'static str, &'static str)] = if fields.len() == 6 {
        &SIX_FIELDS
    } else {
        &FIVE_FIELDS
    };
    for (index, (value, (name, accepts))) in fields.iter().zip(names).enumerate() {
        let probe: Vec<&str> = (0..fields.len())
            .map(|i| if i == index { *value } else { "*" })
            .collect();
        if let Err(err) = parser().parse(&probe.join(" ")) {
            return ScheduleError::CronField {
                expr: expr.to_owned(),
                field: name,
                value: (*value).to_owned(),
                reason: format!("{err} (a {name} is {accepts}, with lists a,b ranges a-b and steps */n or a-b/n)"),
            };
        }
    }
    ScheduleError::InvalidCron {
        expr: expr.to_owned(),
        reason: whole_reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::{America, Asia, Europe};

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn upcoming(schedule: &CronSchedule, after: &str, count: usize) -> Vec<String> {
        let mut cursor = at(after);
        let mut out = Vec::new();
        for _ in 0..count {
            cursor = schedule.next_after(cursor).unwrap();
            out.push(cursor.format("%Y-%m-%dT%H:%M:%SZ").to_string());
        }
        out
    }

    #[test]
    fn evaluates_in_the_zone() {
        // 02:30 in Shanghai (UTC+8, no DST) is 18:30 UTC the day before.
        let nightly = CronSchedule::new("30 2 * * *", Asia::Shanghai).unwrap();
        assert_eq!(
            upcoming(&nightly, "2026-05-01T00:00:00Z", 2),
            ["2026-05-01T18:30:00Z", "2026-05-02T18:30:00Z"]
        );
        assert_eq!(nightly.to_string(), "30 2 * * * (Asia/Shanghai)");
    }

    #[test]
    fn spring_forward_runs_a_skipped_fixed_time_once_after_the_gap() {
        // New York, 2026-03-08: 02:00 EST jumps to 03:00 EDT; 02:30 does not exist.
        let nightly = CronSchedule::new("30 2 * * *", America::New_York).unwrap();
        assert_eq!(
            upcoming(&nightly, "2026-03-07T00:00:00Z", 3),
            [
                "2026-03-07T07:30:00Z", // 02:30 EST
                "2026-03-08T07:00:00Z", // 03:00 EDT, the first time after the gap
                "2026-03-09T06:30:00Z", // 02:30 EDT
            ]
        );
    }

    #[test]
    fn spring_forward_skips_interval_ticks_inside_the_gap() {
        let half_hourly = CronSchedule::new("*/30 * * * *", America::New_York).unwrap();
        assert_eq!(
            upcoming(&half_hourly, "2026-03-08T06:00:00Z", 3),
            [
                "2026-03-08T06:30:00Z", // 01:30 EST
                "2026-03-08T07:00:00Z", // 03:00 EDT (02:00 and 02:30 do not exist)
                "2026-03-08T07:30:00Z", // 03:30 EDT
            ]
        );
    }

    #[test]
    fn fall_back_runs_a_repeated_fixed_time_once() {
        // New York, 2026-11-01: 02:00 EDT goes back to 01:00 EST; 01:30 happens twice.
        let nightly = CronSchedule::new("30 1 * * *", America::New_York).unwrap();
        assert_eq!(
            upcoming(&nightly, "2026-10-31T12:00:00Z", 3),
            [
                "2026-11-01T05:30:00Z", // 01:30 EDT, the first pass only
                "2026-11-02T06:30:00Z", // 01:30 EST the next day
                "2026-11-03T06:30:00Z",
            ]
        );
        // Searching from inside the second pass does not go back to it either.
        assert_eq!(
            nightly.next_after(at("2026-11-01T06:10:00Z")),
            Some(at("2026-11-02T06:30:00Z"))
        );
    }

    #[test]
    fn fall_back_keeps_the_real_cadence_of_interval_jobs() {
        let hourly = CronSchedule::new("0 * * * *", America::New_York).unwrap();
        assert_eq!(
            upcoming(&hourly, "2026-11-01T03:30:00Z", 4),
            [
                "2026-11-01T04:00:00Z", // 00:00 EDT
                "2026-11-01T05:00:00Z", // 01:00 EDT
                "2026-11-01T06:00:00Z", // 01:00 EST
                "2026-11-01T07:00:00Z", // 02:00 EST
            ]
        );
    }

    #[test]
    fn berlin_daily_around_both_changes() {
        let early = CronSchedule::new("0 2 * * *", Europe::Berlin).unwrap();
        // 2026-03-29 02:00 CET does not exist: runs at 03:00 CEST = 01:00 UTC.
        assert_eq!(
            upcoming(&early, "2026-03-28T00:00:00Z", 2),
            ["2026-03-28T01:00:00Z", "2026-03-29T01:00:00Z"]
        );
        // 2026-10-25 02:00 happens twice (CEST then CET): once, on the first pass.
        assert_eq!(
            upcoming(&early, "2026-10-24T12:00:00Z", 2),
            ["2026-10-25T00:00:00Z", "2026-10-26T01:00:00Z"]
        );
    }

    #[test]
    fn latest_at_or_before_includes_the_instant() {
        let every15 = CronSchedule::new("*/15 * * * *", Tz::UTC).unwrap();
        assert_eq!(
            every15.latest_at_or_before(at("2026-01-01T10:15:00Z")),
            Some(at("2026-01-01T10:15:00Z"))
        );
        assert_eq!(
            every15.latest_at_or_before(at("2026-01-01T10:29:59Z")),
            Some(at("2026-01-01T10:15:00Z"))
        );
    }

    #[test]
    fn six_fields_and_aliases_and_names() {
        let seconds = CronSchedule::new("30 */5 * * * *", Tz::UTC).unwrap();
        assert_eq!(
            seconds.next_after(at("2026-01-01T10:00:00Z")),
            Some(at("2026-01-01T10:00:30Z"))
        );
        let daily = CronSchedule::new("@daily", Tz::UTC).unwrap();
        assert_eq!(
            daily.next_after(at("2026-01-01T10:00:00Z")),
            Some(at("2026-01-02T00:00:00Z"))
        );
        // 2026-01-05 is a Monday.
        let weekdays = CronSchedule::new("0 9 * JAN MON-FRI", Tz::UTC).unwrap();
        assert_eq!(
            weekdays.next_after(at("2026-01-03T00:00:00Z")),
            Some(at("2026-01-05T09:00:00Z"))
        );
    }

    #[test]
    fn errors_name_the_field() {
        let field = |expr: &str| match CronSchedule::new(expr, Tz::UTC) {
            Err(ScheduleError::CronField { field, value, .. }) => (field, value),
            other => panic!("expected a field error for {expr:?}, got {other:?}"),
        };
        assert_eq!(field("61 * * * *"), ("minute", "61".to_owned()));
        assert_eq!(field("0 24 * * *"), ("hour", "24".to_owned()));
        assert_eq!(field("0 0 32 * *"), ("day-of-month", "32".to_owned()));
        assert_eq!(field("0 0 * 13 *"), ("month", "13".to_owned()));
        assert_eq!(
            field("0 0 * * funday"),
            ("day-of-week", "funday".to_owned())
        );
        assert_eq!(field("70 0 0 * * *"), ("second", "70".to_owned()));
        assert_eq!(field("*/0 * * * *"), ("minute", "*/0".to_owned()));

        assert_eq!(
            CronSchedule::new("0 0 *", Tz::UTC),
            Err(ScheduleError::CronFieldCount {
                expr: "0 0 *".to_owned(),
                found: 3
            })
        );
        assert!(matches!(
            CronSchedule::new("0 0 * * * * 2030", Tz::UTC),
            Err(ScheduleError::CronFieldCount { found: 7, .. })
        ));
        assert!(matches!(
            CronSchedule::new("@fortnightly", Tz::UTC),
            Err(ScheduleError::InvalidCron { .. })
        ));
        assert!(matches!(
            CronSchedule::new("0 0 30 2 *", Tz::UTC),
            Err(ScheduleError::NeverFires { .. })
        ));
    }
}
