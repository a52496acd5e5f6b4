//! The stored size of an event, and the log's total of them, for retention by bytes.
//!
//! An event's stored size is the sum of the byte lengths of the variable-length columns
//! of its row, as stored: id, type, source, subject, datacontenttype, dataschema,
//! extensions (the JSON text) and data; an absent value counts 0. The fixed-size `seq`
//! and `time`, SQLite's record headers, free space in pages and the indexes are not
//! counted, so the file is always larger than the total.
//!
//! The size is computed once per event on the caller's side ([`stored_size`]) and kept
//! in the row's `size` column, so a delete knows what it frees without reading the
//! payload again. The total lives in `log_meta` under `stored_bytes` and moves in the
//! same transaction as every insert and delete ([`add_to_total`]): it is exact whatever
//! retention deleted (even rows out of offset order, as `max_age` can), survives a crash
//! or a rolled-back commit without a fix-up, and costs one row to read.

use pulse_core::Event;
use rusqlite::Connection;

/// Adds `delta` (negative after a delete) to the stored total; returns the new total.
const ADD_TO_TOTAL: &str = "INSERT INTO log_meta (key, value) VALUES ('stored_bytes', ?1) \
    ON CONFLICT (key) DO UPDATE SET value = value + excluded.value RETURNING value";

const TOTAL: &str = "SELECT coalesce((SELECT value FROM log_meta WHERE key = 'stored_bytes'), 0)";

/// The stored size of `event` whose extensions are stored as the JSON text `extensions`.
pub(crate) fn stored_size(event: &Event, extensions: Option<&str>) -> u64 {
    let text = |value: Option<&str>| value.map_or(0, str::len);
    let bytes = event.id.len()
        + event.ty.len()
        + event.source.len()
        + text(event.subject.as_deref())
        + text(event.datacontenttype.as_deref())
        + text(event.dataschema.as_deref())
        + text(extensions)
        + event.data.as_ref().map_or(0, |data| data.len());
    bytes as u64
}

/// Adds `delta` bytes to the stored total (negative to subtract); returns the new total.
pub(crate) fn add_to_total(conn: &Connection, delta: i64) -> rusqlite::Result<u64> {
    let total: i64 = conn
        .prepare_cached(ADD_TO_TOTAL)?
        .query_row([delta], |row| row.get(0))?;
    debug_assert!(total >= 0, "the stored total went negative: {total}");
    Ok(total.max(0) as u64)
}

/// The stored sizes of all stored events, added up.
pub(crate) fn total(conn: &Connection) -> rusqlite::Result<u64> {
    let total: i64 = conn
        .prepare_cached(TOTAL)?
        .query_row([], |row| row.get(0))?;
    Ok(total.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::codec::PendingEvent;
    use crate::schema::MIGRATIONS;

    /// Events whose sizes are easy to get wrong: multi-byte text, NUL bytes in data,
    /// empty data, extensions, absent attributes.
    fn tricky_events() -> Vec<PendingEvent> {
        let events = [
            Event::new("a.b"),
            Event::new("health.reading")
                .with_subject("usér-ü-😀")
                .with_data("application/json", b"{\"v\":1}".to_vec()),
            Event::new("a.b")
                .with_source("/äpp")
                .with_data("application/octet-stream", vec![0u8, 0, 255]),
            Event::new("a.b")
                .with_data("text/plain", Vec::new())
                .with_extension("traceparent", "00-ü")
                .with_extension("priority", 3),
            Event {
                dataschema: Some("https://schemas.example/ü".into()),
                ..Event::new("a.b")
            },
        ];
        events
            .into_iter()
            .map(|event| PendingEvent::prepare(event, Utc::now()).unwrap())
            .collect()
    }

    #[test]
    fn the_migration_computes_the_sizes_the_writer_computes() {
        let conn = Connection::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..2] {
            conn.execute_batch(sql).unwrap();
        }
        let pending = tricky_events();
        for (seq, p) in (1i64..).zip(&pending) {
            let e = &p.event;
            conn.execute(
                "INSERT INTO events (seq, id, type, source, subject, time, datacontenttype, \
                 dataschema, extensions, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                rusqlite::params![
                    seq,
                    e.id,
                    e.ty,
                    e.source,
                    e.subject,
                    p.time_ns,
                    e.datacontenttype,
                    e.dataschema,
                    p.extensions,
                    e.data.as_deref()
                ],
            )
            .unwrap();
        }
        conn.execute_batch(MIGRATIONS[2]).unwrap();
        let stored: Vec<u64> = conn
            .prepare("SELECT size FROM events ORDER BY seq")
            .unwrap()
            .query_map([], |row| row.get::<_, i64>(0))
            .unwrap()
            .map(|size| size.unwrap() as u64)
            .collect();
        let computed: Vec<u64> = pending.iter().map(|p| p.size).collect();
        assert_eq!(stored, computed);
        assert_eq!(total(&conn).unwrap(), computed.iter().sum::<u64>());
    }

    #[test]
    fn sizes_count_bytes_not_characters() {
        let event = Event::new("a.b").with_id("é").with_source("s");
        // id 2 bytes, type 3, source 1.
        assert_eq!(stored_size(&event, None), 6);
        assert_eq!(stored_size(&event, Some("{\"k\":\"ü\"}")), 6 + 10);
    }

    #[test]
    fn the_total_moves_with_every_delta() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        assert_eq!(total(&conn).unwrap(), 0);
        assert_eq!(add_to_total(&conn, 100).unwrap(), 100);
        assert_eq!(add_to_total(&conn, -40).unwrap(), 60);
        assert_eq!(total(&conn).unwrap(), 60);
    }
}
