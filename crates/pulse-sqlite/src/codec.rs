//! Events as rows of the `events` table, and back.
//!
//! Times are stored as UTC nanoseconds (an integer compares and indexes fast and keeps
//! the exact instant); extensions as a JSON object (NULL when empty); data as a blob, so
//! every payload round-trips byte for byte. The work that can fail (validation, encoding
//! extensions) happens in [`PendingEvent::prepare`] on the caller's side, before the
//! event reaches the writer thread.

use chrono::{DateTime, Utc};
use pulse_core::event::shared_text;
use pulse_core::{Event, EventError, StoredEvent};
use rusqlite::Row;

use crate::size::stored_size;

/// The columns read back, in [`decode`]'s order.
pub(crate) const COLUMNS: &str =
    "seq, id, type, source, subject, time, datacontenttype, dataschema, extensions, data";

/// [`COLUMNS`] of the table aliased `e`.
pub(crate) const COLUMNS_E: &str = "e.seq, e.id, e.type, e.source, e.subject, e.time, \
    e.datacontenttype, e.dataschema, e.extensions, e.data";

/// The insert statement for [`PendingEvent::insert`]; a stored id makes it a no-op.
pub(crate) const INSERT: &str = "INSERT INTO events \
    (seq, id, type, source, subject, time, datacontenttype, dataschema, extensions, data, size) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT (id) DO NOTHING";

/// An event checked and encoded for the writer.
#[derive(Debug)]
pub(crate) struct PendingEvent {
    /// The event, with `time` set.
    pub(crate) event: Event,
    pub(crate) time_ns: i64,
    pub(crate) extensions: Option<String>,
    /// Its stored size (see [`crate::size`]), computed here rather than on the writer.
    pub(crate) size: u64,
}

impl PendingEvent {
    /// Validates `event` and encodes what the row needs; `now` fills a missing time.
    pub(crate) fn prepare(mut event: Event, now: DateTime<Utc>) -> Result<Self, EventError> {
        event.validate()?;
        let time = *event.time.get_or_insert(now);
        let time_ns = time_to_nanos(time)?;
        let extensions = if event.extensions.is_empty() {
            None
        } else {
            Some(
                serde_json::to_string(&event.extensions)
                    .map_err(|e| EventError::Data(e.to_string()))?,
            )
        };
        let size = stored_size(&event, extensions.as_deref());
        Ok(Self {
            event,
            time_ns,
            extensions,
            size,
        })
    }

    /// Runs `stmt` (prepared from [`INSERT`]) for this event at `seq`; returns whether a
    /// row was inserted.
    pub(crate) fn insert(
        &self,
        stmt: &mut rusqlite::CachedStatement<'_>,
        seq: u64,
    ) -> rusqlite::Result<bool> {
        let e = &self.event;
        let changed = stmt.execute(rusqlite::params![
            seq as i64,
            e.id,
            e.ty,
            e.source,
            e.subject,
            self.time_ns,
            e.datacontenttype,
            e.dataschema,
            self.extensions,
            e.data.as_deref(),
            i64::try_from(self.size).unwrap_or(i64::MAX),
        ])?;
        Ok(changed == 1)
    }
}

/// An event time as nanoseconds, or why it cannot be stored.
pub(crate) fn time_to_nanos(time: DateTime<Utc>) -> Result<i64, EventError> {
    time.timestamp_nanos_opt()
        .ok_or_else(|| EventError::InvalidAttribute {
            name: "time".into(),
            reason: "must be between the years 1678 and 2261 to be stored".into(),
        })
}

/// Nanoseconds back to a time.
pub(crate) fn nanos_to_time(nanos: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(nanos)
}

/// Reads a row selected with [`COLUMNS`].
pub(crate) fn decode(row: &Row<'_>) -> rusqlite::Result<StoredEvent> {
    decode_at(row, 0)
}

/// Reads [`COLUMNS`] starting at column `at` of the row.
pub(crate) fn decode_at(row: &Row<'_>, at: usize) -> rusqlite::Result<StoredEvent> {
    let seq: i64 = row.get(at)?;
    let extensions = match row.get_ref(at + 8)?.as_str_or_null()? {
        None => Default::default(),
        Some(text) => serde_json::from_str(text).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(
                at + 8,
                rusqlite::types::Type::Text,
                Box::new(e),
            )
        })?,
    };
    let data = row
        .get_ref(at + 9)?
        .as_blob_or_null()?
        .map(bytes::Bytes::copy_from_slice);
    Ok(StoredEvent {
        offset: seq as u64,
        event: Event {
            id: row.get(at + 1)?,
            ty: row.get::<_, String>(at + 2)?.into(),
            source: shared_text(row.get(at + 3)?),
            subject: row.get(at + 4)?,
            time: Some(nanos_to_time(row.get(at + 5)?)),
            datacontenttype: row.get::<_, Option<String>>(at + 6)?.map(shared_text),
            dataschema: row.get(at + 7)?,
            data,
            extensions,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_round_trips_through_a_row() {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        crate::schema::migrate(&mut conn).unwrap();
        let event = Event::new("health.reading.heart_rate")
            .with_subject("user-1")
            .with_data("application/octet-stream", vec![0u8, 255, 7])
            .with_extension("priority", 3)
            .with_extension("traceparent", "00-abc");
        let pending = PendingEvent::prepare(event.clone(), Utc::now()).unwrap();
        let mut stmt = conn.prepare_cached(INSERT).unwrap();
        assert!(pending.insert(&mut stmt, 7).unwrap());
        assert!(!pending.insert(&mut stmt, 8).unwrap(), "same id is ignored");
        drop(stmt);
        let stored = conn
            .query_row(&format!("SELECT {COLUMNS} FROM events"), [], decode)
            .unwrap();
        assert_eq!(stored.offset, 7);
        assert_eq!(stored.event, pending.event);
        assert!(stored.event.time.is_some());
    }

    #[test]
    fn invalid_events_and_unstorable_times_are_rejected() {
        assert!(PendingEvent::prepare(Event::new("bad..type"), Utc::now()).is_err());
        let far = DateTime::parse_from_rfc3339("2500-01-01T00:00:00Z")
            .unwrap()
            .to_utc();
        let err = PendingEvent::prepare(Event::new("a.b").with_time(far), Utc::now()).unwrap_err();
        assert!(matches!(err, EventError::InvalidAttribute { ref name, .. } if name == "time"));
    }
}
