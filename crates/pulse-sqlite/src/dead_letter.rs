//! The dead-letter table: events a group gave up on, with the error and the attempts.
//!
//! A dead letter points at its event by offset (retention keeps such events). Redrive
//! sets `redriven`, so that after a restart the event is handed back to its group again
//! until it is acknowledged, which deletes the row.

use pulse_core::group::DeadLetterDraft;
use pulse_core::{DeadLetter, LogError};
use rusqlite::Connection;

use crate::codec::{decode_at, nanos_to_time, time_to_nanos, COLUMNS_E};
use crate::error::sqlite_error;

/// Stores a draft (a new row, or an update of a redriven one that failed again); returns its id.
pub(crate) fn store(conn: &Connection, draft: &DeadLetterDraft) -> Result<u64, LogError> {
    let first = time_to_nanos(draft.first_failure).unwrap_or(0);
    let last = time_to_nanos(draft.last_failure).unwrap_or(0);
    let result = match draft.existing_id {
        Some(id) => conn
            .execute(
                "UPDATE dead_letters SET error = ?2, attempts = attempts + ?3, \
                 last_failure = ?4, redriven = 0 WHERE id = ?1",
                rusqlite::params![id as i64, draft.error, draft.attempts, last],
            )
            .map(|_| id),
        None => conn
            .execute(
                "INSERT INTO dead_letters \
                 (grp, event_seq, error, attempts, first_failure, last_failure) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                rusqlite::params![
                    draft.group,
                    draft.event.offset as i64,
                    draft.error,
                    draft.attempts,
                    first,
                    last
                ],
            )
            .map(|_| conn.last_insert_rowid() as u64),
    };
    result.map_err(|e| sqlite_error("cannot store a dead letter", e))
}

/// Removes a dead letter whose redriven event was acknowledged.
pub(crate) fn resolve(conn: &Connection, id: u64) -> Result<u64, LogError> {
    conn.execute("DELETE FROM dead_letters WHERE id = ?1", [id as i64])
        .map(|n| n as u64)
        .map_err(|e| sqlite_error("cannot remove a dead letter", e))
}

/// Marks a dead letter as handed back to its group.
pub(crate) fn mark_redriven(conn: &Connection, id: u64) -> Result<u64, LogError> {
    let changed = conn
        .execute(
            "UPDATE dead_letters SET redriven = 1 WHERE id = ?1",
            [id as i64],
        )
        .map_err(|e| sqlite_error("cannot redrive a dead letter", e))?;
    if changed == 0 {
        return Err(LogError::UnknownDeadLetter(id));
    }
    Ok(id)
}

const SELECT: &str = "SELECT d.id, d.grp, d.error, d.attempts, d.first_failure, d.last_failure";

/// Dead letters with an id above `after_id`, oldest first.
pub(crate) fn list(
    conn: &Connection,
    group: Option<&str>,
    after_id: u64,
    limit: usize,
) -> Result<Vec<DeadLetter>, LogError> {
    let sql = format!(
        "{SELECT}, {COLUMNS_E} FROM dead_letters d JOIN events e ON e.seq = d.event_seq \
         WHERE d.id > ?1 AND (?2 IS NULL OR d.grp = ?2) ORDER BY d.id LIMIT ?3"
    );
    let mut stmt = conn
        .prepare_cached(&sql)
        .map_err(|e| sqlite_error("cannot list dead letters", e))?;
    let rows = stmt
        .query_map(
            rusqlite::params![
                i64::try_from(after_id).unwrap_or(i64::MAX),
                group,
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
            decode,
        )
        .map_err(|e| sqlite_error("cannot list dead letters", e))?;
    rows.collect::<Result<_, _>>()
        .map_err(|e| sqlite_error("cannot read a dead letter", e))
}

/// One dead letter by id.
pub(crate) fn get(conn: &Connection, id: u64) -> Result<DeadLetter, LogError> {
    let sql = format!(
        "{SELECT}, {COLUMNS_E} FROM dead_letters d JOIN events e ON e.seq = d.event_seq \
         WHERE d.id = ?1"
    );
    match conn.query_row(&sql, [i64::try_from(id).unwrap_or(i64::MAX)], decode) {
        Ok(letter) => Ok(letter),
        Err(rusqlite::Error::QueryReturnedNoRows) => Err(LogError::UnknownDeadLetter(id)),
        Err(e) => Err(sqlite_error("cannot read a dead letter", e)),
    }
}

/// Ids and events of dead letters handed back to their group and not yet acknowledged.
pub(crate) fn redriven(conn: &Connection) -> Result<Vec<DeadLetter>, LogError> {
    let sql = format!(
        "{SELECT}, {COLUMNS_E} FROM dead_letters d JOIN events e ON e.seq = d.event_seq \
         WHERE d.redriven = 1 ORDER BY d.id"
    );
    let mut stmt = conn
        .prepare(&sql)
        .map_err(|e| sqlite_error("cannot read redriven dead letters", e))?;
    let rows = stmt
        .query_map([], decode)
        .map_err(|e| sqlite_error("cannot read redriven dead letters", e))?;
    rows.collect::<Result<_, _>>()
        .map_err(|e| sqlite_error("cannot read a dead letter", e))
}

/// How many dead letters are stored.
pub(crate) fn count(conn: &Connection) -> Result<u64, LogError> {
    conn.query_row("SELECT count(*) FROM dead_letters", [], |r| {
        r.get::<_, i64>(0)
    })
    .map(|n| n as u64)
    .map_err(|e| sqlite_error("cannot count dead letters", e))
}

fn decode(row: &rusqlite::Row<'_>) -> rusqlite::Result<DeadLetter> {
    Ok(DeadLetter {
        id: row.get::<_, i64>(0)? as u64,
        group: row.get(1)?,
        error: row.get(2)?,
        attempts: row.get(3)?,
        first_failure: nanos_to_time(row.get(4)?),
        last_failure: nanos_to_time(row.get(5)?),
        event: decode_at(row, 6)?,
    })
}
