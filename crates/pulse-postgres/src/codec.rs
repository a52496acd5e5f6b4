//! Rows to events and back, and patterns to SQL regular expressions.
//!
//! Every CloudEvents attribute has its own column so that reads filter in SQL; `data` is
//! kept as bytes and extensions as JSONB, so any event round-trips. PostgreSQL stores
//! times with microsecond precision: finer fractions of a second are truncated.

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use pulse_core::event::shared_text;
use pulse_core::{Event, LogError, Pattern, StoredEvent};
use tokio_postgres::Row;

/// The event columns, in the order [`stored_event`] reads them.
pub(crate) const EVENT_COLUMNS: &str =
    "\"offset\", id, source, type, subject, time, datacontenttype, dataschema, data, extensions";

/// Same as [`EVENT_COLUMNS`], qualified with the table alias `e`.
pub(crate) const EVENT_COLUMNS_E: &str =
    "e.\"offset\", e.id, e.source, e.type, e.subject, e.time, \
     e.datacontenttype, e.dataschema, e.data, e.extensions";

/// Reads a stored event from the columns starting at index `at`, in
/// [`EVENT_COLUMNS`] order.
pub(crate) fn stored_event(row: &Row, at: usize) -> Result<StoredEvent, LogError> {
    let offset: i64 = row.try_get(at).map_err(decode)?;
    let time: DateTime<Utc> = row.try_get(at + 5).map_err(decode)?;
    let data: Option<Vec<u8>> = row.try_get(at + 8).map_err(decode)?;
    let extensions: Option<serde_json::Value> = row.try_get(at + 9).map_err(decode)?;
    let extensions = match extensions {
        Some(serde_json::Value::Object(map)) => map.into_iter().collect(),
        Some(other) => {
            return Err(LogError::Storage(format!(
                "extensions of offset {offset} are not a JSON object: {other}"
            )))
        }
        None => BTreeMap::new(),
    };
    let event = Event {
        id: row.try_get(at + 1).map_err(decode)?,
        source: shared_text(row.try_get(at + 2).map_err(decode)?),
        ty: row.try_get::<_, String>(at + 3).map_err(decode)?.into(),
        subject: row.try_get(at + 4).map_err(decode)?,
        time: Some(time),
        datacontenttype: row
            .try_get::<_, Option<String>>(at + 6)
            .map_err(decode)?
            .map(shared_text),
        dataschema: row.try_get(at + 7).map_err(decode)?,
        data: data.map(Bytes::from),
        extensions,
    };
    Ok(StoredEvent {
        offset: to_offset(offset),
        event,
    })
}

/// Extensions as stored: `None` when there are none.
pub(crate) fn extensions_json(event: &Event) -> Option<serde_json::Value> {
    (!event.extensions.is_empty()).then(|| {
        serde_json::Value::Object(
            event
                .extensions
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
    })
}

fn decode(err: tokio_postgres::Error) -> LogError {
    LogError::Storage(format!("unreadable event row: {err}"))
}

/// An offset column value as the log's `u64` (offsets are never negative).
pub(crate) fn to_offset(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// A log offset as a PostgreSQL `bigint`, saturating.
pub(crate) fn to_sql_offset(offset: u64) -> i64 {
    i64::try_from(offset).unwrap_or(i64::MAX)
}

/// A POSIX regular expression (for `~`) matching exactly the types `pattern` matches.
///
/// Segments are `[A-Za-z0-9_-]`, none of which is special in a regular expression, so
/// literals need no escaping; `*` is one segment and `>` one or more.
pub(crate) fn pattern_regex(pattern: &Pattern) -> String {
    let parts: Vec<&str> = pattern
        .as_str()
        .split('.')
        .map(|segment| match segment {
            "*" => "[^.]+",
            ">" => ".+",
            literal => literal,
        })
        .collect();
    format!("^{}$", parts.join("\\."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_become_anchored_regexes() {
        let regex = |p: &str| pattern_regex(&Pattern::parse(p).unwrap());
        assert_eq!(regex("health.>"), "^health\\..+$");
        assert_eq!(regex("a.*.c"), "^a\\.[^.]+\\.c$");
        assert_eq!(regex(">"), "^.+$");
        assert_eq!(regex("a-b.c_d"), "^a-b\\.c_d$");
    }
}
