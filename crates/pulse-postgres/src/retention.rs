//! Retention: deleting events past `max_events` or older than `max_age`, in small steps,
//! by one instance at a time.
//!
//! # Shape
//!
//! Every [`PostgresLog`](crate::PostgresLog) whose options set a limit runs one pruner
//! task, stopped by `close()` (or when the last handle is dropped). Every
//! `prune_interval` it makes a *pass*: steps until a step finds less than a full batch to
//! delete. Each step is one short transaction that deletes at most `prune_batch` events,
//! so no step holds locks for long or builds a large transaction.
//!
//! - **One instance per step.** A step first takes `pg_try_advisory_xact_lock` on the
//!   schema's pass key; an instance that does not get it ends its pass, since another
//!   one is pruning. Instances sharing a schema never repeat each other's work.
//! - **What is deleted is a prefix.** Events are pruned in offset order: a step looks at
//!   the `prune_batch` oldest events above `retention.pruned_through` and deletes up to
//!   (not including) the first one that is within both limits. `max_events` keeps the
//!   newest `max_events` offsets; `max_age` is measured from the *stored* time
//!   (`events.stored_at`, set by the append function under the append lock, so it grows
//!   with the offset), not from the event's own `time`, which the publisher chooses.
//! - **Offsets are never reused.** The step raises `retention.pruned_through` in the same
//!   transaction, and the log's last offset is `greatest(max(offset), pruned_through)`
//!   ([`LAST_OFFSET`], also read by the append function): pruning every event leaves
//!   `last_offset()` where it was, and the next append continues after it.
//! - **Groups continue from the oldest kept event.** A group whose position is below the
//!   pruned range is moved up to it; its admitted but unsettled deliveries of pruned
//!   events are dropped with them, in flight or not: retention wins over a slow or
//!   stuck consumer, as with JetStream's limits. A handler still working on such an
//!   event finds its ack a no-op and its nack answered with `UnknownDelivery`.
//! - **Dead letters keep their event.** An event a dead letter points to is not deleted
//!   until the dead letter is gone (acknowledged after a redrive); redriven deliveries
//!   stay too. Such events stay readable by `read`, below the pruned range, and are
//!   deleted by the first step after their dead letter is gone.
//! - **Dedup covers stored events only**: an id whose event was pruned can be appended
//!   again, as a new event with a new offset.
//!
//! # Pruning and fetching do not interleave
//!
//! A fetch admits events into `deliveries` in several statements. Were a step to commit
//! between them, the fetch could admit an event the step just deleted, leaving a delivery
//! without an event. So a fetch holds the schema's retention key in shared mode for its
//! transaction, and a step takes it exclusively after winning the pass key: a step waits
//! for running fetches (each a few milliseconds), fetches arriving meanwhile wait for the
//! step, and each sees all or nothing of the other. Acks, nacks and appends do not take
//! the key: none of them can refer to a pruned event once its deliveries are gone (a nack
//! that locked its delivery first makes the step wait, and its dead letter then keeps the
//! event).

use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::{Pool, Transaction};
use pulse_core::LogError;
use tokio_util::sync::CancellationToken;

use crate::codec::to_offset;
use crate::error::{self, DbResult};
use crate::{schema, PostgresOptions};

/// The log's last offset: the highest stored, or the highest pruned when retention has
/// deleted the newest events.
pub(crate) const LAST_OFFSET: &str = "SELECT greatest(coalesce(max(\"offset\"), 0), \
    (SELECT pruned_through FROM retention)) FROM events";

/// Taken by a fetch for its transaction (see the module docs).
pub(crate) const SHARE_RETENTION_KEY: &str = "SELECT pg_advisory_xact_lock_shared($1)";

/// The longest a step waits for a lock (running fetches, a group row) before giving up
/// until the next pass, so that a stalled transaction elsewhere cannot hold it forever.
const STEP_LOCK_TIMEOUT: &str = "SET LOCAL lock_timeout = '10s'";

const STATE: &str = "SELECT pruned_through, \
    greatest((SELECT coalesce(max(\"offset\"), 0) FROM events), pruned_through), \
    clock_timestamp() FROM retention FOR UPDATE";

/// The step's boundary: below the first event of the window ($4 oldest above $1) that is
/// within both limits ($2: offsets above it are kept by count; $3: events stored since
/// then are kept by age; NULL for no limit). Also the window's size.
const BOUNDARY: &str = "WITH window_rows AS ( \
        SELECT \"offset\", coalesce(\"offset\" <= $2::bigint OR stored_at < $3::timestamptz, false) AS expired \
        FROM events WHERE \"offset\" > $1 ORDER BY \"offset\" LIMIT $4) \
    SELECT coalesce((SELECT min(\"offset\") - 1 FROM window_rows WHERE NOT expired), \
                    (SELECT max(\"offset\") FROM window_rows), $1::bigint), \
           (SELECT count(*) FROM window_rows)";

const MOVE_GROUPS: &str = "UPDATE consumer_groups SET scanned = $1 WHERE scanned < $1";

const DROP_DELIVERIES: &str =
    "DELETE FROM deliveries WHERE \"offset\" <= $1 AND dead_letter_id IS NULL";

/// Also takes events below the pruned range whose dead letter is gone since: the only
/// rows left there are the few dead letters held, so the index range stays short.
const DELETE_EVENTS: &str = "DELETE FROM events e WHERE e.\"offset\" <= $1 \
    AND NOT EXISTS (SELECT 1 FROM dead_letters d WHERE d.\"offset\" = e.\"offset\")";

const RAISE_FLOOR: &str = "UPDATE retention SET pruned_through = $1";

/// What one step did.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Another instance holds the pass key.
    Skipped,
    /// Deleted this many events; `more` when the whole window was expired, so the next
    /// step may find more.
    Pruned { deleted: u64, more: bool },
}

/// The retention limits and the keys of one schema.
#[derive(Clone, Debug)]
pub(crate) struct Pruner {
    pool: Pool,
    max_age: Option<Duration>,
    max_events: Option<u64>,
    batch: i64,
    pass_key: i64,
    retention_key: i64,
}

impl Pruner {
    pub(crate) fn new(pool: Pool, options: &PostgresOptions) -> Self {
        Self {
            pool,
            max_age: options.max_age,
            max_events: options.max_events,
            batch: i64::try_from(options.prune_batch.max(1)).unwrap_or(i64::MAX),
            pass_key: pass_key(&options.schema),
            retention_key: retention_key(&options.schema),
        }
    }

    /// Whether any limit is set.
    pub(crate) fn is_limited(&self) -> bool {
        self.max_age.is_some() || self.max_events.is_some()
    }

    /// Makes a pass every `every` until `stop`; the first one after `every`, not at once,
    /// so that many instances starting together do not all begin with a pass.
    pub(crate) async fn run(self, every: Duration, stop: CancellationToken) {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let pass = tokio::select! {
                () = stop.cancelled() => return,
                pass = self.pass() => pass,
            };
            if let Err(err) = pass {
                tracing::warn!(%err, "postgres retention pass failed");
            }
        }
    }

    /// Steps until nothing is left to delete or another instance is pruning; returns
    /// how many events this instance deleted.
    pub(crate) async fn pass(&self) -> Result<u64, LogError> {
        let mut total = 0;
        if !self.is_limited() {
            return Ok(total);
        }
        loop {
            match self.step().await? {
                Step::Skipped => break,
                Step::Pruned { deleted, more } => {
                    total += deleted;
                    if !more {
                        break;
                    }
                }
            }
        }
        if total > 0 {
            tracing::debug!(deleted = total, "retention deleted old events");
        }
        Ok(total)
    }

    /// One transaction deleting at most `batch` events.
    async fn step(&self) -> Result<Step, LogError> {
        let mut client = self.pool.get().await.map_err(error::pool)?;
        let tx = client.transaction().await.db()?;
        let won: bool = tx
            .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&self.pass_key])
            .await
            .db()?
            .get(0);
        if !won {
            return Ok(Step::Skipped);
        }
        tx.batch_execute(STEP_LOCK_TIMEOUT).await.db()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&self.retention_key])
            .await
            .db()?;
        let state = tx.query_one(STATE, &[]).await.db()?;
        let floor: i64 = state.get(0);
        let last: i64 = state.get(1);
        let now: DateTime<Utc> = state.get(2);
        let (bound, window) = self.boundary(&tx, floor, last, now).await?;
        if bound <= floor {
            return Ok(Step::Pruned {
                deleted: 0,
                more: false,
            });
        }
        // Groups, then deliveries, then events: a nack locks its delivery before its
        // dead letter locks the event, so a step and a nack may wait for each other but
        // never in a cycle (fetches are kept out by the retention key).
        tx.execute(MOVE_GROUPS, &[&bound]).await.db()?;
        tx.execute(DROP_DELIVERIES, &[&bound]).await.db()?;
        let deleted = tx.execute(DELETE_EVENTS, &[&bound]).await.db()?;
        tx.execute(RAISE_FLOOR, &[&bound]).await.db()?;
        tx.commit().await.db()?;
        metrics::counter!(crate::metrics::PRUNED_EVENTS_TOTAL).increment(deleted);
        Ok(Step::Pruned {
            deleted,
            more: window == self.batch && bound - floor >= window,
        })
    }

    /// The highest offset this step prunes through, and the window's size.
    async fn boundary(
        &self,
        tx: &Transaction<'_>,
        floor: i64,
        last: i64,
        now: DateTime<Utc>,
    ) -> Result<(i64, i64), LogError> {
        let by_count = self
            .max_events
            .map(|keep| last.saturating_sub(i64::try_from(keep).unwrap_or(i64::MAX)));
        // An age too large to subtract from now is no limit at all.
        let by_age = self
            .max_age
            .and_then(|age| chrono::Duration::from_std(age).ok())
            .and_then(|age| now.checked_sub_signed(age));
        let row = tx
            .query_one(BOUNDARY, &[&floor, &by_count, &by_age, &self.batch])
            .await
            .db()?;
        Ok((row.get(0), row.get(1)))
    }
}

/// The key whose holder makes the current step; instances that do not get it skip.
fn pass_key(schema: &str) -> i64 {
    schema::lock_key("retention-pass", schema)
}

/// The key a step holds exclusively and fetches hold shared.
pub(crate) fn retention_key(schema: &str) -> i64 {
    schema::lock_key("retention", schema)
}

/// `last_offset()` of the log, through `client`.
pub(crate) async fn last_offset(
    client: &impl deadpool_postgres::GenericClient,
) -> Result<u64, LogError> {
    let statement = client.prepare_cached(LAST_OFFSET).await.db()?;
    Ok(to_offset(
        client.query_one(&statement, &[]).await.db()?.get(0),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keys_differ_from_each_other_and_by_schema() {
        assert_ne!(pass_key("a"), retention_key("a"));
        assert_ne!(retention_key("a"), retention_key("b"));
        assert_ne!(retention_key("a"), schema::lock_key("append", "a"));
    }
}
