//! The attempt counts of failed deliveries, kept so that `max_deliver` counts across
//! restarts.
//!
//! Group bookkeeping lives in memory ([`GroupState`](pulse_core::group::GroupState));
//! what it would lose on a restart is how often a pending event already failed. A fetch
//! writes nothing (that would cost a write per delivery): only a failure, a nack or an
//! expired ack wait, stores the event's count, in the next group transaction. The rows of
//! events at or below a group's committed offset are deleted when that position is
//! written, so the table holds at most the failures of pending events. A delivery in
//! flight when the process dies is not counted.

use pulse_core::group::FailedAttempts;
use pulse_core::LogError;
use rusqlite::Connection;

use crate::codec::{nanos_to_time, time_to_nanos};
use crate::error::sqlite_error;

/// Stores the counts of `group`'s failed deliveries; returns how many.
pub(crate) fn store(
    conn: &Connection,
    group: &str,
    failures: &[FailedAttempts],
) -> Result<u64, LogError> {
    let mut upsert = conn
        .prepare_cached(
            "INSERT INTO delivery_attempts (grp, event_seq, attempts, first_failure) \
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT (grp, event_seq) DO UPDATE SET \
             attempts = max(attempts, excluded.attempts)",
        )
        .map_err(|e| sqlite_error("cannot prepare an attempt count", e))?;
    for f in failures {
        upsert
            .execute(rusqlite::params![
                group,
                i64::try_from(f.offset).unwrap_or(i64::MAX),
                f.attempts,
                time_to_nanos(f.first_failure).unwrap_or(0)
            ])
            .map_err(|e| sqlite_error("cannot store an attempt count", e))?;
    }
    Ok(failures.len() as u64)
}

/// Deletes the counts of `group`'s events at or below its committed offset.
pub(crate) fn settle(conn: &Connection, group: &str, committed: u64) -> Result<(), LogError> {
    conn.prepare_cached("DELETE FROM delivery_attempts WHERE grp = ?1 AND event_seq <= ?2")
        .and_then(|mut stmt| {
            stmt.execute(rusqlite::params![
                group,
                i64::try_from(committed).unwrap_or(i64::MAX)
            ])
        })
        .map(|_| ())
        .map_err(|e| sqlite_error("cannot remove settled attempt counts", e))
}

/// The stored counts of `group`'s events above `committed`.
pub(crate) fn restore(
    conn: &Connection,
    group: &str,
    committed: u64,
) -> Result<Vec<FailedAttempts>, LogError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT event_seq, attempts, first_failure FROM delivery_attempts \
             WHERE grp = ?1 AND event_seq > ?2 ORDER BY event_seq",
        )
        .map_err(|e| sqlite_error("cannot read attempt counts", e))?;
    let rows = stmt
        .query_map(
            rusqlite::params![group, i64::try_from(committed).unwrap_or(i64::MAX)],
            |row| {
                Ok(FailedAttempts {
                    offset: row.get::<_, i64>(0)?.max(0) as u64,
                    attempts: row.get(1)?,
                    first_failure: nanos_to_time(row.get(2)?),
                })
            },
        )
        .map_err(|e| sqlite_error("cannot read attempt counts", e))?;
    rows.collect::<Result<_, _>>()
        .map_err(|e| sqlite_error("cannot read an attempt count", e))
}
