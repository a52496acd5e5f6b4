//! Readings from the Pulse event log: events whose `data` is one reading object or an
//! array of them, selected by a type pattern such as `health.reading.>`.
//!
//! A reading without `user_id` takes the event's `subject`, one without `recorded_at`
//! the event's `time`. Paging through the log, checkpoints and commits are the runner's
//! ([`run_log`](crate::runner::run_log)); this module turns one event into readings.

use pulse_core::StoredEvent;

use crate::aggregator::Aggregator;
use crate::error::BatchError;
use crate::reading::{RejectReason, Rejection};
use crate::rejects::Position;
use crate::time::format_rfc3339;

use super::json::JsonReading;

/// Aggregates the readings of one stored event.
pub fn aggregate_event(agg: &mut Aggregator<'_>, stored: &StoredEvent) -> Result<(), BatchError> {
    let offset = stored.offset;
    let data: &[u8] = stored.event.data.as_deref().unwrap_or_default();
    let subject = stored.event.subject.as_deref();
    let time = stored
        .event
        .time
        .map(|t| format_rfc3339(t.timestamp_micros()));
    let record = || String::from_utf8_lossy(data).into_owned();
    let malformed = |e: String| {
        Rejection::new(
            RejectReason::MalformedRow,
            format!("event data is not a reading or an array of readings: {e}"),
        )
    };
    if data.trim_ascii_start().starts_with(b"[") {
        // Each element is parsed on its own, so one bad reading rejects only itself.
        match serde_json::from_slice::<Vec<serde_json::Value>>(data) {
            Ok(items) => {
                for (item, value) in items.iter().enumerate() {
                    let at = Position::Event { offset, item };
                    let text = value.to_string();
                    let item_record = || text.clone();
                    match JsonReading::parse(text.as_bytes()) {
                        Ok(reading) => reading.with_raw(subject, time.as_deref(), |raw| {
                            agg.push(raw, at, item_record)
                        })?,
                        Err(e) => agg.reject(at, malformed(e), item_record),
                    }
                }
            }
            Err(e) => agg.reject(
                Position::Event { offset, item: 0 },
                malformed(e.to_string()),
                record,
            ),
        }
        return Ok(());
    }
    let at = Position::Event { offset, item: 0 };
    match JsonReading::parse(data) {
        Ok(reading) => reading.with_raw(subject, time.as_deref(), |raw| agg.push(raw, at, record)),
        Err(e) => {
            agg.reject(at, malformed(e), record);
            Ok(())
        }
    }
}
