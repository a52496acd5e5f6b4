//! The reading model and its validation.
//!
//! Sources hand over a [`RawReading`] that borrows its fields from the input buffer;
//! [`validate`] turns it into a [`Reading`] in the canonical unit or into a
//! [`RejectReason`] with a detail text. Nothing here allocates on the accepted path: that
//! is what lets a source feed a million rows a second per core.

use std::fmt;

use crate::catalog::Metric;
use crate::time::{parse_rfc3339, Micros, MAX_TIME, MIN_TIME};

/// Longest accepted user id, in bytes.
pub const MAX_USER_ID_LEN: usize = 128;

/// A reading's value as the source gave it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RawValue<'a> {
    /// Already a number (JSON, SQLite REAL/INTEGER).
    Number(f64),
    /// Text to parse as a decimal number (CSV, JSON strings, SQLite TEXT).
    Text(&'a [u8]),
}

/// One reading as read, before validation; every field is optional here so that a
/// missing one becomes a rejection, not a parse failure of the whole input.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RawReading<'a> {
    /// Who the reading belongs to.
    pub user_id: Option<&'a [u8]>,
    /// The metric name, e.g. `heart_rate`.
    pub metric: Option<&'a [u8]>,
    /// The value.
    pub value: Option<RawValue<'a>>,
    /// The unit spelling; absent or empty means the canonical unit.
    pub unit: Option<&'a [u8]>,
    /// When it was measured, RFC 3339.
    pub recorded_at: Option<&'a [u8]>,
    /// The device or app that sent it (kept for the record, not aggregated).
    pub source: Option<&'a [u8]>,
}

/// A valid reading, in the metric's canonical unit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reading<'a> {
    /// Who the reading belongs to (1 to 128 bytes of UTF-8 without control characters).
    pub user_id: &'a str,
    /// The metric.
    pub metric: Metric,
    /// The value, converted to [`Metric::unit`].
    pub value: f64,
    /// When it was measured.
    pub recorded_at: Micros,
}

/// Why a reading was rejected. Every rejected reading is counted under one reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum RejectReason {
    /// The row could not be read at all (bad JSON, a CSV row of the wrong shape).
    MalformedRow,
    /// A required field (`user_id`, `metric`, `value`, `recorded_at`) is absent or empty.
    MissingField,
    /// The user id is too long, not UTF-8 or contains control characters.
    BadUserId,
    /// The metric is not in the catalog.
    UnknownMetric,
    /// The unit is not a spelling of a unit the metric can be converted from.
    IncompatibleUnit,
    /// The value is not a number.
    InvalidValue,
    /// The value is NaN or infinite.
    NonFiniteValue,
    /// The value is outside the catalog's plausible range for the metric.
    ImplausibleValue,
    /// The time is not RFC 3339.
    UnparsableTime,
    /// The time is before 1970 or from 2100 on.
    TimeOutOfRange,
}

impl RejectReason {
    /// Every reason, in declaration order.
    pub const ALL: [RejectReason; 10] = [
        RejectReason::MalformedRow,
        RejectReason::MissingField,
        RejectReason::BadUserId,
        RejectReason::UnknownMetric,
        RejectReason::IncompatibleUnit,
        RejectReason::InvalidValue,
        RejectReason::NonFiniteValue,
        RejectReason::ImplausibleValue,
        RejectReason::UnparsableTime,
        RejectReason::TimeOutOfRange,
    ];

    /// A stable snake_case code, used in reject files and metrics labels.
    pub const fn code(self) -> &'static str {
        match self {
            RejectReason::MalformedRow => "malformed_row",
            RejectReason::MissingField => "missing_field",
            RejectReason::BadUserId => "bad_user_id",
            RejectReason::UnknownMetric => "unknown_metric",
            RejectReason::IncompatibleUnit => "incompatible_unit",
            RejectReason::InvalidValue => "invalid_value",
            RejectReason::NonFiniteValue => "non_finite_value",
            RejectReason::ImplausibleValue => "implausible_value",
            RejectReason::UnparsableTime => "unparsable_time",
            RejectReason::TimeOutOfRange => "time_out_of_range",
        }
    }

    /// Position in [`RejectReason::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A rejection: the reason and a short human detail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// Why.
    pub reason: RejectReason,
    /// What exactly, e.g. `unit "kg" is not a unit of heart_rate`.
    pub detail: String,
}

impl Rejection {
    /// A rejection with a detail text.
    pub fn new(reason: RejectReason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

fn lossy(bytes: &[u8]) -> String {
    const MAX: usize = 64;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX)]);
    if bytes.len() > MAX {
        format!("{text}...")
    } else {
        text.into_owned()
    }
}

fn required<'a>(field: Option<&'a [u8]>, name: &str) -> Result<&'a [u8], Rejection> {
    match field {
        Some(bytes) if !bytes.is_empty() => Ok(bytes),
        _ => Err(Rejection::new(
            RejectReason::MissingField,
            format!("missing {name}"),
        )),
    }
}

/// Checks a user id: 1 to [`MAX_USER_ID_LEN`] bytes of UTF-8 without control characters,
/// not only whitespace.
pub fn validate_user_id(bytes: &[u8]) -> Result<&str, Rejection> {
    let bad = |why: &str| Rejection::new(RejectReason::BadUserId, why.to_owned());
    if bytes.len() > MAX_USER_ID_LEN {
        return Err(bad("user_id longer than 128 bytes"));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| bad("user_id is not UTF-8"))?;
    if text.chars().any(char::is_control) {
        return Err(bad("user_id contains control characters"));
    }
    if text.trim().is_empty() {
        return Err(bad("user_id is blank"));
    }
    Ok(text)
}

fn parse_number(bytes: &[u8]) -> Option<f64> {
    // Rust's float parser accepts "inf" and "NaN", which is what lets those reach the
    // non-finite check and be reported as such.
    std::str::from_utf8(bytes).ok()?.trim().parse::<f64>().ok()
}

/// Validates a raw reading and converts its value to the canonical unit.
///
/// ```
/// use pulse_batch::{validate, RawReading, RawValue, RejectReason};
/// use pulse_batch::Metric;
/// let raw = RawReading {
///     user_id: Some(b"u1"),
///     metric: Some(b"blood_glucose"),
///     value: Some(RawValue::Text(b"90.08")),
///     unit: Some(b"mg/dL"),
///     recorded_at: Some(b"2025-11-24T16:00:00Z"),
///     source: None,
/// };
/// let reading = validate(&raw).unwrap();
/// assert_eq!(reading.metric, Metric::BloodGlucose);
/// assert!((reading.value - 5.0).abs() < 1e-12);
/// let mut bad = raw;
/// bad.unit = Some(b"kg");
/// assert_eq!(validate(&bad).unwrap_err().reason, RejectReason::IncompatibleUnit);
/// ```
#[inline]
pub fn validate<'a>(raw: &RawReading<'a>) -> Result<Reading<'a>, Rejection> {
    let user_bytes = required(raw.user_id, "user_id")?;
    let metric_bytes = required(raw.metric, "metric")?;
    let time_bytes = required(raw.recorded_at, "recorded_at")?;
    let value = match raw.value {
        None | Some(RawValue::Text(b"")) => {
            return Err(Rejection::new(RejectReason::MissingField, "missing value"))
        }
        Some(RawValue::Number(v)) => v,
        Some(RawValue::Text(text)) => parse_number(text).ok_or_else(|| {
            Rejection::new(
                RejectReason::InvalidValue,
                format!("value {:?} is not a number", lossy(text)),
            )
        })?,
    };
    let user_id = validate_user_id(user_bytes)?;
    let metric = Metric::from_name(metric_bytes).ok_or_else(|| {
        Rejection::new(
            RejectReason::UnknownMetric,
            format!("unknown metric {:?}", lossy(metric_bytes)),
        )
    })?;
    let unit = raw.unit.unwrap_or(b"");
    let conversion = metric.conversion(unit).ok_or_else(|| {
        Rejection::new(
            RejectReason::IncompatibleUnit,
            format!("unit {:?} is not a unit of {metric}", lossy(unit)),
        )
    })?;
    if !value.is_finite() {
        return Err(Rejection::new(
            RejectReason::NonFiniteValue,
            format!("value {value} is not finite"),
        ));
    }
    let value = conversion.apply(value);
    let (lo, hi) = metric.plausible();
    if !(lo..=hi).contains(&value) {
        return Err(Rejection::new(
            RejectReason::ImplausibleValue,
            format!("{metric} {value} {} is outside {lo}..{hi}", metric.unit()),
        ));
    }
    let recorded_at = parse_rfc3339(time_bytes).ok_or_else(|| {
        Rejection::new(
            RejectReason::UnparsableTime,
            format!("recorded_at {:?} is not RFC 3339", lossy(time_bytes)),
        )
    })?;
    if !(MIN_TIME..MAX_TIME).contains(&recorded_at) {
        return Err(Rejection::new(
            RejectReason::TimeOutOfRange,
            format!("recorded_at {:?} is outside 1970..2100", lossy(time_bytes)),
        ));
    }
    Ok(Reading {
        user_id,
        metric,
        value,
        recorded_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> RawReading<'static> {
        RawReading {
            user_id: Some(b"user-1"),
            metric: Some(b"heart_rate"),
            value: Some(RawValue::Text(b"72")),
            unit: Some(b"bpm"),
            recorded_at: Some(b"2025-11-24T16:00:00Z"),
            source: Some(b"watch"),
        }
    }

    fn reason(raw: RawReading<'_>) -> Option<RejectReason> {
        validate(&raw).err().map(|r| r.reason)
    }

    #[test]
    fn accepts_a_good_reading_and_defaults_the_unit() {
        let reading = validate(&good()).map_err(|r| r.detail);
        assert_eq!(reading.map(|r| r.value), Ok(72.0));
        let mut no_unit = good();
        no_unit.unit = None;
        assert_eq!(reason(no_unit), None);
        no_unit.unit = Some(b"");
        assert_eq!(reason(no_unit), None);
        let mut number = good();
        number.value = Some(RawValue::Number(72.0));
        assert_eq!(reason(number), None);
    }

    #[test]
    fn every_reason_is_reachable() {
        let mut seen = std::collections::BTreeSet::new();
        let cases: Vec<(RawReading<'static>, RejectReason)> = vec![
            (
                RawReading {
                    user_id: None,
                    ..good()
                },
                RejectReason::MissingField,
            ),
            (
                RawReading {
                    metric: Some(b""),
                    ..good()
                },
                RejectReason::MissingField,
            ),
            (
                RawReading {
                    value: None,
                    ..good()
                },
                RejectReason::MissingField,
            ),
            (
                RawReading {
                    value: Some(RawValue::Text(b"")),
                    ..good()
                },
                RejectReason::MissingField,
            ),
            (
                RawReading {
                    recorded_at: None,
                    ..good()
                },
                RejectReason::MissingField,
            ),
            (
                RawReading {
                    user_id: Some(b"\xff"),
                    ..good()
                },
                RejectReason::BadUserId,
            ),
            (
                RawReading {
                    user_id: Some(b"a\nb"),
                    ..good()
                },
                RejectReason::BadUserId,
            ),
            (
                RawReading {
                    user_id: Some(b"   "),
                    ..good()
                },
                RejectReason::BadUserId,
            ),
            (
                RawReading {
                    user_id: Some(&[b'x'; 129]),
                    ..good()
                },
                RejectReason::BadUserId,
            ),
            (
                RawReading {
                    metric: Some(b"mood"),
                    ..good()
                },
                RejectReason::UnknownMetric,
            ),
            (
                RawReading {
                    unit: Some(b"mmHg"),
                    ..good()
                },
                RejectReason::IncompatibleUnit,
            ),
            (
                RawReading {
                    value: Some(RawValue::Text(b"seventy")),
                    ..good()
                },
                RejectReason::InvalidValue,
            ),
            (
                RawReading {
                    value: Some(RawValue::Text(b"NaN")),
                    ..good()
                },
                RejectReason::NonFiniteValue,
            ),
            (
                RawReading {
                    value: Some(RawValue::Number(f64::INFINITY)),
                    ..good()
                },
                RejectReason::NonFiniteValue,
            ),
            (
                RawReading {
                    value: Some(RawValue::Text(b"-inf")),
                    ..good()
                },
                RejectReason::NonFiniteValue,
            ),
            (
                RawReading {
                    value: Some(RawValue::Text(b"400")),
                    ..good()
                },
                RejectReason::ImplausibleValue,
            ),
            (
                RawReading {
                    value: Some(RawValue::Text(b"-1")),
                    ..good()
                },
                RejectReason::ImplausibleValue,
            ),
            (
                RawReading {
                    recorded_at: Some(b"24/11/2025"),
                    ..good()
                },
                RejectReason::UnparsableTime,
            ),
            (
                RawReading {
                    recorded_at: Some(b"1969-12-31T23:59:59Z"),
                    ..good()
                },
                RejectReason::TimeOutOfRange,
            ),
            (
                RawReading {
                    recorded_at: Some(b"2100-01-01T00:00:00Z"),
                    ..good()
                },
                RejectReason::TimeOutOfRange,
            ),
        ];
        for (raw, expected) in cases {
            assert_eq!(reason(raw), Some(expected), "{raw:?}");
            seen.insert(expected);
        }
        // MalformedRow is decided by the sources (a row that is not a reading at all).
        seen.insert(RejectReason::MalformedRow);
        assert_eq!(seen.len(), RejectReason::ALL.len());
    }

    #[test]
    fn plausibility_is_checked_after_conversion() {
        // 600 mg/dL is 33.3 mmol/L: plausible. 600 mmol/L is not.
        let raw = RawReading {
            metric: Some(b"blood_glucose"),
            value: Some(RawValue::Text(b"600")),
            unit: Some(b"mg/dL"),
            ..good()
        };
        assert_eq!(reason(raw), None);
        assert_eq!(
            reason(RawReading { unit: None, ..raw }),
            Some(RejectReason::ImplausibleValue)
        );
    }

    #[test]
    fn codes_are_unique_and_indexes_dense() {
        let codes: std::collections::BTreeSet<_> =
            RejectReason::ALL.iter().map(|r| r.code()).collect();
        assert_eq!(codes.len(), RejectReason::ALL.len());
        for (i, r) in RejectReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }
}
