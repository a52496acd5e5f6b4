//! Deleting old events in small steps, between group commits.
//!
//! Each step deletes at most `prune_batch` rows in its own short transaction, so an
//! append waits at most one small delete. When a step deleted a full batch there is
//! more to do and the next idle turn continues; otherwise the pruner waits for
//! `prune_interval`. Events a dead letter points to are kept.
//!
//! Every delete returns the sizes of the rows it removed and takes them off the stored
//! total (see [`crate::size`]) in the same transaction. Retention by bytes reads that
//! total, and when it is over the budget walks the oldest rows that are not dead
//! lettered until they cover the excess: a step reads only the rows it deletes, never
//! the whole table.

use std::time::{Duration, Instant};

use chrono::Utc;
use pulse_core::LogError;
use rusqlite::{Connection, Params, Transaction};

use crate::codec::time_to_nanos;
use crate::error::sqlite_error;
use crate::metrics as m;
use crate::options::{Retention, SqliteOptions};
use crate::size;

const PRUNE_BY_COUNT: &str = "DELETE FROM events WHERE seq IN (\
    SELECT seq FROM events WHERE seq <= ?1 \
    AND seq NOT IN (SELECT event_seq FROM dead_letters) ORDER BY seq LIMIT ?2) \
    RETURNING size";

const PRUNE_BY_AGE: &str = "DELETE FROM events WHERE seq IN (\
    SELECT seq FROM events WHERE time < ?1 \
    AND seq NOT IN (SELECT event_seq FROM dead_letters) LIMIT ?2) \
    RETURNING size";

/// The oldest events retention may delete, with their sizes.
const OLDEST_UNHELD: &str = "SELECT seq, size FROM events \
    WHERE seq NOT IN (SELECT event_seq FROM dead_letters) ORDER BY seq LIMIT ?1";

/// Deletes what [`OLDEST_UNHELD`] listed up to an offset.
const PRUNE_THROUGH: &str = "DELETE FROM events WHERE seq <= ?1 \
    AND seq NOT IN (SELECT event_seq FROM dead_letters) RETURNING size";

/// The bytes of events held by a dead letter (each counted once, however many groups
/// dead-lettered it): a read of the few rows dead letters point to.
const HELD_BYTES: &str = "SELECT coalesce(sum(size), 0) FROM events \
    WHERE seq IN (SELECT event_seq FROM dead_letters)";

/// What one retention step removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Deleted {
    /// Events deleted.
    pub(crate) events: usize,
    /// Their stored sizes, added up.
    pub(crate) bytes: u64,
}

impl std::ops::AddAssign for Deleted {
    fn add_assign(&mut self, other: Self) {
        self.events += other.events;
        self.bytes += other.bytes;
    }
}

/// Retention state kept by the writer.
pub(crate) struct Pruner {
    retention: Retention,
    interval: Duration,
    batch: usize,
    next_run: Instant,
    last_step: Instant,
}

/// While appends are waiting, retention steps are at least this far apart, so that a
/// backlog of old events costs appends a bounded share of the writer.
pub(crate) const BUSY_PRUNE_GAP: Duration = Duration::from_millis(50);

impl Pruner {
    pub(crate) fn new(options: &SqliteOptions) -> Self {
        Self {
            retention: options.retention,
            interval: options.prune_interval,
            batch: options.prune_batch.max(1),
            next_run: Instant::now(),
            last_step: Instant::now()
                .checked_sub(BUSY_PRUNE_GAP)
                .unwrap_or_else(Instant::now),
        }
    }

    /// Runs one step if one is due; returns how many events it deleted.
    pub(crate) fn step(&mut self, conn: &mut Connection, busy: bool) -> Result<usize, LogError> {
        if !self.retention.is_limited() || Instant::now() < self.next_run {
            return Ok(0);
        }
        if busy && self.last_step.elapsed() < BUSY_PRUNE_GAP {
            return Ok(0);
        }
        self.last_step = Instant::now();
        let deleted = prune_step(conn, &self.retention, self.batch)?;
        metrics::counter!(m::PRUNED_EVENTS).increment(deleted.events as u64);
        if deleted.events > 0 {
            tracing::debug!(
                deleted = deleted.events,
                bytes = deleted.bytes,
                "retention deleted old events"
            );
            if let Ok(total) = size::total(conn) {
                metrics::gauge!(m::STORED_BYTES).set(total as f64);
            }
        }
        // A full batch means more is waiting: continue at the next idle turn.
        self.next_run = if deleted.events >= self.batch {
            Instant::now()
        } else {
            Instant::now() + self.interval
        };
        Ok(deleted.events)
    }
}

/// Deletes up to `batch` events outside `retention`, in one transaction.
pub(crate) fn prune_step(
    conn: &mut Connection,
    retention: &Retention,
    batch: usize,
) -> Result<Deleted, LogError> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(|e| sqlite_error("cannot start a retention step", e))?;
    let mut deleted = Deleted::default();
    if let Some(max_events) = retention.max_events {
        deleted += prune_by_count(&tx, max_events, batch)?;
    }
    if let Some(max_age) = retention.max_age {
        deleted += prune_by_age(&tx, max_age, batch.saturating_sub(deleted.events))?;
    }
    // Last, so that it counts what the other limits left.
    if let Some(max_bytes) = retention.max_bytes {
        deleted += prune_by_bytes(&tx, max_bytes, batch.saturating_sub(deleted.events))?;
    }
    tx.commit()
        .map_err(|e| sqlite_error("cannot commit a retention step", e))?;
    Ok(deleted)
}

/// Deletes up to `batch` of the events older than the newest `max_events` offsets.
fn prune_by_count(
    tx: &Transaction<'_>,
    max_events: u64,
    batch: usize,
) -> Result<Deleted, LogError> {
    let last: i64 = tx
        .query_row(
            "SELECT coalesce((SELECT value FROM log_meta WHERE key = 'last_seq'), 0)",
            [],
            |row| row.get(0),
        )
        .map_err(|e| sqlite_error("cannot read the last offset", e))?;
    let cutoff = last.saturating_sub(i64::try_from(max_events).unwrap_or(i64::MAX));
    if cutoff <= 0 || batch == 0 {
        return Ok(Deleted::default());
    }
    delete(tx, PRUNE_BY_COUNT, rusqlite::params![cutoff, batch as i64])
        .map_err(|e| sqlite_error("cannot delete events over max_events", e))
}

/// Deletes up to `batch` of the events whose time is older than `max_age`.
fn prune_by_age(
    tx: &Transaction<'_>,
    max_age: Duration,
    batch: usize,
) -> Result<Deleted, LogError> {
    let cutoff = chrono::Duration::from_std(max_age)
        .ok()
        .and_then(|age| Utc::now().checked_sub_signed(age))
        .and_then(|t| time_to_nanos(t).ok());
    let Some(cutoff) = cutoff.filter(|_| batch > 0) else {
        return Ok(Deleted::default());
    };
    delete(tx, PRUNE_BY_AGE, rusqlite::params![cutoff, batch as i64])
        .map_err(|e| sqlite_error("cannot delete events over max_age", e))
}

/// Deletes up to `batch` of the oldest events not held by a dead letter, as many as it
/// takes (within the batch) for the others to fit in `max_bytes`.
fn prune_by_bytes(tx: &Transaction<'_>, max_bytes: u64, batch: usize) -> Result<Deleted, LogError> {
    let fail = |e| sqlite_error("cannot delete events over max_bytes", e);
    let total = size::total(tx).map_err(fail)?;
    // The total includes the held events: under the budget, nothing to do (the usual
    // case, answered without looking at dead letters).
    if total <= max_bytes || batch == 0 {
        return Ok(Deleted::default());
    }
    let held: i64 = tx
        .prepare_cached(HELD_BYTES)
        .and_then(|mut s| s.query_row([], |row| row.get(0)))
        .map_err(fail)?;
    let excess = total
        .saturating_sub(held.max(0) as u64)
        .saturating_sub(max_bytes);
    if excess == 0 {
        return Ok(Deleted::default());
    }
    match bytes_cutoff(tx, excess, batch).map_err(fail)? {
        Some(cutoff) => delete(tx, PRUNE_THROUGH, [cutoff]).map_err(fail),
        None => Ok(Deleted::default()),
    }
}

/// The offset through which the oldest events not held by a dead letter cover `excess`
/// bytes, looking at `batch` of them at most (then the last of those).
fn bytes_cutoff(tx: &Transaction<'_>, excess: u64, batch: usize) -> rusqlite::Result<Option<i64>> {
    let mut oldest = tx.prepare_cached(OLDEST_UNHELD)?;
    let mut rows = oldest.query([batch as i64])?;
    let mut covered = 0u64;
    let mut cutoff = None;
    while let Some(row) = rows.next()? {
        cutoff = Some(row.get::<_, i64>(0)?);
        covered += row.get::<_, i64>(1)?.max(0) as u64;
        if covered >= excess {
            break;
        }
    }
    Ok(cutoff)
}

/// Runs a `DELETE ... RETURNING size` and takes what it freed off the stored total.
fn delete(tx: &Transaction<'_>, sql: &str, params: impl Params) -> rusqlite::Result<Deleted> {
    let mut deleted = Deleted::default();
    {
        let mut stmt = tx.prepare_cached(sql)?;
        let mut rows = stmt.query(params)?;
        while let Some(row) = rows.next()? {
            deleted.events += 1;
            deleted.bytes += row.get::<_, i64>(0)?.max(0) as u64;
        }
    }
    if deleted.bytes > 0 {
        size::add_to_total(tx, -i64::try_from(deleted.bytes).unwrap_or(i64::MAX))?;
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log whose events `1..` have these stored sizes, and dead letters on `held`.
    fn log_with_sizes(sizes: &[u64], held: &[i64]) -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::schema::migrate(&mut conn).unwrap();
        for (seq, size) in (1i64..).zip(sizes) {
            conn.execute(
                "INSERT INTO events (seq, id, type, source, time, size) \
                 VALUES (?1, ?1, 'a.b', 's', 0, ?2)",
                [seq, *size as i64],
            )
            .unwrap();
        }
        size::add_to_total(&conn, sizes.iter().sum::<u64>() as i64).unwrap();
        conn.execute(
            "INSERT INTO log_meta (key, value) VALUES ('last_seq', ?1)",
            [sizes.len() as i64],
        )
        .unwrap();
        for seq in held {
            conn.execute(
                "INSERT INTO dead_letters (grp, event_seq, error, attempts, first_failure, \
                 last_failure) VALUES ('g', ?1, 'x', 1, 0, 0)",
                [seq],
            )
            .unwrap();
        }
        conn
    }

    fn stored(conn: &Connection) -> Vec<i64> {
        let mut stmt = conn.prepare("SELECT seq FROM events ORDER BY seq").unwrap();
        let seqs = stmt.query_map([], |row| row.get(0)).unwrap();
        seqs.map(Result::unwrap).collect()
    }

    /// Runs steps of `batch` until one deletes nothing; checks each stays in its batch.
    fn prune_by_bytes_fully(conn: &mut Connection, max_bytes: u64, batch: usize) {
        let retention = Retention {
            max_bytes: Some(max_bytes),
            ..Retention::default()
        };
        loop {
            let deleted = prune_step(conn, &retention, batch).unwrap();
            assert!(deleted.events <= batch);
            if deleted.events == 0 {
                return;
            }
        }
    }

    #[test]
    fn max_bytes_keeps_the_newest_events_that_fit_at_most() {
        let cases: [(u64, &[i64]); 5] = [
            (60, &[1, 2, 3]),
            (50, &[2, 3]),
            (49, &[3]),
            (30, &[3]),
            (29, &[]),
        ];
        for batch in [1, 2, 100] {
            for (max_bytes, kept) in cases {
                let mut conn = log_with_sizes(&[10, 20, 30], &[]);
                prune_by_bytes_fully(&mut conn, max_bytes, batch);
                assert_eq!(stored(&conn), kept, "max_bytes {max_bytes}, batch {batch}");
                let left: u64 = kept.iter().map(|&seq| seq as u64 * 10).sum();
                assert_eq!(size::total(&conn).unwrap(), left);
            }
        }
    }

    #[test]
    fn held_events_are_kept_and_not_counted() {
        let mut conn = log_with_sizes(&[100, 10, 20, 30, 5], &[1, 4]);
        prune_by_bytes_fully(&mut conn, 25, 2);
        // Not counting 1 and 4: 5 + 20 fits, 10 does not.
        assert_eq!(stored(&conn), [1, 3, 4, 5]);
        assert_eq!(size::total(&conn).unwrap(), 155);
    }

    #[test]
    fn every_limit_takes_its_sizes_off_the_total() {
        let mut conn = log_with_sizes(&[10, 20, 30, 40], &[]);
        let retention = Retention {
            max_events: Some(3),
            max_bytes: Some(70),
            ..Retention::default()
        };
        // max_events deletes 1; max_bytes must then see 90 stored, not 100, and delete 2.
        let deleted = prune_step(&mut conn, &retention, 100).unwrap();
        assert_eq!(
            deleted,
            Deleted {
                events: 2,
                bytes: 30
            }
        );
        assert_eq!(stored(&conn), [3, 4]);
        assert_eq!(size::total(&conn).unwrap(), 70);
    }
}
