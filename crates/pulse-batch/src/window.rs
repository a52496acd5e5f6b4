//! Tumbling windows: fixed durations aligned to the Unix epoch (`1m`, `5m`, `1h`, ...)
//! and calendar days (`1d`) aligned to midnight in an IANA time zone.
//!
//! A window is identified by a 32-bit index: the number of whole windows since the epoch
//! for fixed windows, and the local day number (plus one, so that the day containing the
//! epoch in zones west of UTC stays non-negative) for calendar days. Readings are limited
//! to 1970..2100, so every index fits even for `1s` windows. A calendar day's bounds are
//! computed from the zone's rules, so a day across a DST change lasts 23 or 25 hours.

use std::fmt;
use std::str::FromStr;

use chrono::{LocalResult, NaiveDate, Offset, TimeZone};
use chrono_tz::Tz;

use crate::error::BatchError;
use crate::time::{civil_from_days, Micros, MICROS_PER_SEC};

/// At most this many windows per run (the window number is stored in 4 bits).
pub const MAX_WINDOWS: usize = 16;

/// The shape of a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowKind {
    /// A fixed number of seconds, aligned to the epoch.
    Fixed {
        /// Length in seconds (at least 1).
        seconds: i64,
    },
    /// A calendar day in the run's time zone.
    Day,
}

/// One window of a run: its label as given (`"5m"`) and its shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    label: String,
    kind: WindowKind,
}

impl Window {
    /// Parses `<n>s`, `<n>m`, `<n>h` or `1d`.
    ///
    /// ```
    /// use pulse_batch::{Window, WindowKind};
    /// assert_eq!(Window::parse("5m").unwrap().kind(), WindowKind::Fixed { seconds: 300 });
    /// assert_eq!(Window::parse("1d").unwrap().kind(), WindowKind::Day);
    /// assert!(Window::parse("0m").is_err());
    /// assert!(Window::parse("2d").is_err());
    /// ```
    pub fn parse(label: &str) -> Result<Window, BatchError> {
        let invalid = |why: &str| BatchError::InvalidWindow(format!("{label:?}: {why}"));
        let label = label.trim();
        let split = label
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| invalid("expected a number and a unit (s, m, h or d), e.g. 5m"))?;
        let (digits, unit) = label.split_at(split);
        let n: i64 = digits
            .parse()
            .map_err(|_| invalid("expected a number and a unit (s, m, h or d), e.g. 5m"))?;
        if n == 0 {
            return Err(invalid("a window lasts at least one unit"));
        }
        let seconds = match unit {
            "s" => n,
            "m" => n.checked_mul(60).ok_or_else(|| invalid("too long"))?,
            "h" => n.checked_mul(3600).ok_or_else(|| invalid("too long"))?,
            "d" if n == 1 => {
                return Ok(Window {
                    label: label.to_owned(),
                    kind: WindowKind::Day,
                })
            }
            "d" => return Err(invalid("calendar windows are one day (1d)")),
            _ => return Err(invalid("the unit must be s, m, h or d")),
        };
        if seconds > 366 * 86_400 {
            return Err(invalid("fixed windows last at most 366 days"));
        }
        Ok(Window {
            label: label.to_owned(),
            kind: WindowKind::Fixed { seconds },
        })
    }

    /// The label as given, e.g. `"5m"`.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The shape.
    pub fn kind(&self) -> WindowKind {
        self.kind
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label)
    }
}

/// The windows of a run and the time zone that calendar days follow.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowSet {
    windows: Vec<Window>,
    tz: Tz,
}

impl WindowSet {
    /// Parses a comma-separated list of windows (`"5m,1h,1d"`) and an IANA zone name.
    ///
    /// ```
    /// use pulse_batch::WindowSet;
    /// let set = WindowSet::parse("5m,1h,1d", "Asia/Shanghai").unwrap();
    /// assert_eq!(set.len(), 3);
    /// assert!(WindowSet::parse("5m,5m", "UTC").is_err());
    /// assert!(WindowSet::parse("5m", "Mars/Olympus").is_err());
    /// ```
    pub fn parse(list: &str, tz: &str) -> Result<WindowSet, BatchError> {
        let tz = Tz::from_str(tz.trim())
            .map_err(|_| BatchError::InvalidWindow(format!("unknown time zone {tz:?}")))?;
        let mut windows = Vec::new();
        for label in list.split(',') {
            let window = Window::parse(label)?;
            if windows.iter().any(|w: &Window| w.label == window.label) {
                return Err(BatchError::InvalidWindow(format!(
                    "window {:?} is listed twice",
                    window.label
                )));
            }
            windows.push(window);
        }
        WindowSet::new(windows, tz)
    }

    /// A set of windows; at least one and at most [`MAX_WINDOWS`].
    pub fn new(windows: Vec<Window>, tz: Tz) -> Result<WindowSet, BatchError> {
        if windows.is_empty() || windows.len() > MAX_WINDOWS {
            return Err(BatchError::InvalidWindow(format!(
                "give 1 to {MAX_WINDOWS} windows, got {}",
                windows.len()
            )));
        }
        Ok(WindowSet { windows, tz })
    }

    /// The windows, in the order given.
    pub fn windows(&self) -> &[Window] {
        &self.windows
    }

    /// How many windows.
    pub fn len(&self) -> usize {
        self.windows.len()
    }

    /// Always false: a set has at least one window.
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    /// The time zone of calendar days.
    pub fn tz(&self) -> Tz {
        self.tz
    }

    /// A canonical description (`"5m,1h,1d@Asia/Shanghai"`), stored with incremental state
    /// so that a later run with other windows is refused instead of mixing results.
    pub fn describe(&self) -> String {
        let labels: Vec<&str> = self.windows.iter().map(Window::label).collect();
        format!("{}@{}", labels.join(","), self.tz.name())
    }

    /// The index of the window `w` containing `t`, using `cache` for calendar days.
    #[inline]
    pub fn index(&self, w: usize, t: Micros, cache: &mut DayCache) -> u32 {
        match self.windows[w].kind {
            WindowKind::Fixed { seconds } => (t.div_euclid(seconds * MICROS_PER_SEC)) as u32,
            WindowKind::Day => cache.day_index(self.tz, t),
        }
    }

    /// The `[start, end)` bounds of window `w`'s window number `index`, as UTC instants.
    pub fn bounds(&self, w: usize, index: u32) -> (Micros, Micros) {
        match self.windows[w].kind {
            WindowKind::Fixed { seconds } => {
                let len = seconds * MICROS_PER_SEC;
                let start = i64::from(index) * len;
                (start, start + len)
            }
            WindowKind::Day => {
                let day = i64::from(index) - 1;
                (day_start(self.tz, day), day_start(self.tz, day + 1))
            }
        }
    }
}

/// The start of local day `day` (days since 1970-01-01 in the zone) as a UTC instant:
/// local midnight, or the first local time that exists when midnight falls in a DST gap.
pub(crate) fn day_start(tz: Tz, day: i64) -> Micros {
    let (y, m, d) = civil_from_days(day);
    let date = NaiveDate::from_ymd_opt(y as i32, m, d);
    // A gap is at most a few hours; walking minute by minute finds its end.
    if let Some(midnight) = date.and_then(|d| d.and_hms_opt(0, 0, 0)) {
        for minute in 0..(24 * 60) {
            let local = midnight + chrono::Duration::minutes(minute);
            match tz.from_local_datetime(&local) {
                LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => {
                    return t.timestamp_micros()
                }
                LocalResult::None => continue,
            }
        }
    }
    // Unreachable for the zones and dates Pulse accepts; UTC midnight is the sane fallback.
    day * 86_400 * MICROS_PER_SEC
}

/// The local day number (days since 1970-01-01 in the zone) of instant `t`.
pub(crate) fn local_day(tz: Tz, t: Micros) -> i64 {
    let secs = t.div_euclid(MICROS_PER_SEC);
    let offset = chrono::DateTime::from_timestamp(secs, 0)
        .map(|utc| {
            tz.offset_from_utc_datetime(&utc.naive_utc())
                .fix()
                .local_minus_utc()
        })
        .unwrap_or(0);
    (secs + i64::from(offset)).div_euclid(86_400)
}

/// Remembers the bounds of the last calendar day looked up: readings come mostly in time
/// order, so most lookups are a range check instead of a time-zone computation.
#[derive(Clone, Debug, Default)]
pub struct DayCache {
    start: Micros,
    end: Micros,
    index: u32,
}

impl DayCache {
    #[inline]
    fn day_index(&mut self, tz: Tz, t: Micros) -> u32 {
        if t >= self.start && t < self.end {
            return self.index;
        }
        let day = local_day(tz, t);
        self.start = day_start(tz, day);
        self.end = day_start(tz, day + 1);
        self.index = (day + 1) as u32;
        debug_assert!(t >= self.start && t < self.end);
        self.index
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{format_rfc3339, parse_rfc3339};

    fn t(s: &str) -> Micros {
        parse_rfc3339(s.as_bytes()).unwrap_or(i64::MIN)
    }

    fn day_bounds(set: &WindowSet, at: &str) -> (String, String) {
        let mut cache = DayCache::default();
        let w = set.len() - 1;
        let index = set.index(w, t(at), &mut cache);
        let (start, end) = set.bounds(w, index);
        (format_rfc3339(start), format_rfc3339(end))
    }

    #[test]
    fn fixed_windows_align_to_the_epoch() {
        let set = WindowSet::parse("5m,1h,90s", "UTC").map_err(|e| e.to_string());
        let set = set.unwrap_or_else(|e| panic!("{e}"));
        let mut cache = DayCache::default();
        let at = t("2025-11-24T16:07:31.250Z");
        let (s, e) = set.bounds(0, set.index(0, at, &mut cache));
        assert_eq!(format_rfc3339(s), "2025-11-24T16:05:00Z");
        assert_eq!(format_rfc3339(e), "2025-11-24T16:10:00Z");
        let (s, _) = set.bounds(1, set.index(1, at, &mut cache));
        assert_eq!(format_rfc3339(s), "2025-11-24T16:00:00Z");
        let (s, e) = set.bounds(2, set.index(2, at, &mut cache));
        assert_eq!((e - s) / MICROS_PER_SEC, 90);
        assert!(s <= at && at < e);
    }

    #[test]
    fn shanghai_days_start_at_16_utc() {
        let set = WindowSet::parse("1d", "Asia/Shanghai").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            day_bounds(&set, "2025-11-24T15:59:59Z"),
            ("2025-11-23T16:00:00Z".into(), "2025-11-24T16:00:00Z".into())
        );
        assert_eq!(
            day_bounds(&set, "2025-11-24T16:00:00Z"),
            ("2025-11-24T16:00:00Z".into(), "2025-11-25T16:00:00Z".into())
        );
    }

    #[test]
    fn dst_days_last_23_and_25_hours() {
        let ny = WindowSet::parse("1d", "America/New_York").unwrap_or_else(|e| panic!("{e}"));
        // 2025-03-09: clocks jump from 02:00 to 03:00 EST -> EDT.
        let (s, e) = day_bounds(&ny, "2025-03-09T12:00:00Z");
        assert_eq!(
            (s.as_str(), e.as_str()),
            ("2025-03-09T05:00:00Z", "2025-03-10T04:00:00Z")
        );
        assert_eq!((t(&e) - t(&s)) / MICROS_PER_SEC, 23 * 3600);
        // 2025-11-02: clocks fall back from 02:00 EDT to 01:00 EST.
        let (s, e) = day_bounds(&ny, "2025-11-02T12:00:00Z");
        assert_eq!(
            (s.as_str(), e.as_str()),
            ("2025-11-02T04:00:00Z", "2025-11-03T05:00:00Z")
        );
        assert_eq!((t(&e) - t(&s)) / MICROS_PER_SEC, 25 * 3600);
        let berlin = WindowSet::parse("1d", "Europe/Berlin").unwrap_or_else(|e| panic!("{e}"));
        let (s, e) = day_bounds(&berlin, "2025-03-30T10:00:00Z");
        assert_eq!((t(&e) - t(&s)) / MICROS_PER_SEC, 23 * 3600);
        let (s, e) = day_bounds(&berlin, "2025-10-26T10:00:00Z");
        assert_eq!((t(&e) - t(&s)) / MICROS_PER_SEC, 25 * 3600);
    }

    #[test]
    fn midnight_in_a_dst_gap_starts_the_day_at_the_gap_end() {
        // Santiago moved clocks from 2022-09-11T00:00 to 01:00 local.
        let set = WindowSet::parse("1d", "America/Santiago").unwrap_or_else(|e| panic!("{e}"));
        let (s, e) = day_bounds(&set, "2022-09-11T12:00:00Z");
        assert_eq!(s, "2022-09-11T04:00:00Z");
        assert_eq!((t(&e) - t(&s)) / MICROS_PER_SEC, 23 * 3600);
    }

    #[test]
    fn epoch_day_west_of_utc_has_a_valid_index() {
        let set = WindowSet::parse("1d", "America/Los_Angeles").unwrap_or_else(|e| panic!("{e}"));
        let mut cache = DayCache::default();
        assert_eq!(set.index(0, 0, &mut cache), 0);
        let (s, e) = set.bounds(0, 0);
        assert!(s <= 0 && 0 < e);
    }

    #[test]
    fn bad_windows_are_refused() {
        for bad in [
            "",
            "m",
            "5",
            "5x",
            "-5m",
            "2d",
            "0h",
            "99999999999999999h",
            "400d",
            "9000h",
        ] {
            assert!(WindowSet::parse(bad, "UTC").is_err(), "{bad}");
        }
        let many = (1..=17)
            .map(|i| format!("{i}m"))
            .collect::<Vec<_>>()
            .join(",");
        assert!(WindowSet::parse(&many, "UTC").is_err());
        assert_eq!(
            WindowSet::parse("5m,1d", "Europe/Berlin")
                .map(|s| s.describe())
                .ok(),
            Some("5m,1d@Europe/Berlin".to_owned())
        );
    }
}
