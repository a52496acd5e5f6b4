//! Deleting old events in small steps, between group commits.
//!
//! Each step deletes at most `prune_batch` rows in its own short transaction, so an
//! append waits at most one small delete. When a step deleted a full batch there is
//! more to do and the next idle turn continues; otherwise the pruner waits for
//! `prune_interval`. Events a dead letter points to are kept.

use std::time::{Duration, Instant};

use chrono::Utc;
use pulse_core::LogError;
use rusqlite::Connection;

use crate::codec::time_to_nanos;
use crate::error::sqlite_error;
use crate::metrics as m;
use crate::options::{Retention, SqliteOptions};

const PRUNE_BY_COUNT: &str = "DELETE FROM events WHERE seq IN (\
    SELECT seq FROM events WHERE seq <= ?1 \
    AND seq NOT IN (SELECT event_seq FROM dead_letters) ORDER BY seq LIMIT ?2)";

const PRUNE_BY_AGE: &str = "DELETE FROM events WHERE seq IN (\
    SELECT seq FROM events WHERE time < ?1 \
    AND seq NOT IN (SELECT event_seq FROM dead_letters) LIMIT ?2)";

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
        metrics::counter!(m::PRUNED_EVENTS).increment(deleted as u64);
        if deleted > 0 {
            tracing::debug!(deleted, "retention deleted old events");
        }
        // A full batch means more is waiting: continue at the next idle turn.
        self.next_run = if deleted >= self.batch {
            Instant::now()
        } else {
            Instant::now() + self.interval
        };
        Ok(deleted)
    }
}

/// Deletes up to `batch` events outside `retention`, in one transaction.
pub(crate) fn prune_step(
    conn: &mut Connection,
    retention: &Retention,
    batch: usize,
) -> Result<usize, LogError> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(|e| sqlite_error("cannot start a retention step", e))?;
    let mut deleted = 0;
    if let Some(max_events) = retention.max_events {
        let last: i64 = tx
            .query_row(
                "SELECT coalesce((SELECT value FROM log_meta WHERE key = 'last_seq'), 0)",
                [],
                |row| row.get(0),
            )
            .map_err(|e| sqlite_error("cannot read the last offset", e))?;
        let cutoff = last.saturating_sub(i64::try_from(max_events).unwrap_or(i64::MAX));
        if cutoff > 0 {
            deleted += tx
                .prepare_cached(PRUNE_BY_COUNT)
                .and_then(|mut s| s.execute(rusqlite::params![cutoff, batch as i64]))
                .map_err(|e| sqlite_error("cannot delete events over max_events", e))?;
        }
    }
    if let Some(max_age) = retention.max_age {
        let remaining = batch.saturating_sub(deleted);
        let cutoff = chrono::Duration::from_std(max_age)
            .ok()
            .and_then(|age| Utc::now().checked_sub_signed(age))
            .and_then(|t| time_to_nanos(t).ok());
        if let (Some(cutoff), true) = (cutoff, remaining > 0) {
            deleted += tx
                .prepare_cached(PRUNE_BY_AGE)
                .and_then(|mut s| s.execute(rusqlite::params![cutoff, remaining as i64]))
                .map_err(|e| sqlite_error("cannot delete events over max_age", e))?;
        }
    }
    tx.commit()
        .map_err(|e| sqlite_error("cannot commit a retention step", e))?;
    Ok(deleted)
}
