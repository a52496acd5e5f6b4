//! Retention: deleting events past `max_events`, older than `max_age` or beyond
//! `max_bytes`, in small steps, by one instance at a time.
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
//!   (not including) the first one that is within every limit: an event goes when any
//!   limit says so. `max_events` keeps the newest `max_events` offsets; `max_age` is
//!   measured from the *stored* time (`events.stored_at`, set by the append function
//!   under the append lock, so it grows with the offset), not from the event's own
//!   `time`, which the publisher chooses; `max_bytes` keeps the newest events whose
//!   stored sizes sum to at most `max_bytes` (see below).
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
//! # Retention by size
//!
//! An event's *stored size* is defined once, by the SQL function `pulse_stored_size` of
//! migration 0008: the octets of its id, source, type, subject, datacontenttype,
//! dataschema and data, plus the octets of its extensions as jsonb prints them; absent
//! attributes count 0, fixed-size columns and PostgreSQL's own overhead not at all.
//!
//! Summing sizes at every pass would read the whole log, so two totals are kept instead,
//! each written by one side only:
//!
//! - `appended.bytes` (`A`): the stored size of every event appended. The append
//!   function adds its events' sizes (from the rows it inserted) in the transaction
//!   storing them, under the append lock: one expression per event and one single-row
//!   update per transaction, nothing that grows with the log. Retention never touches
//!   it, so pruning the newest events does not restart it, as with offsets. (Events
//!   stored by the function of a Pulse from before migration 0008, already running when
//!   it was applied, are counted by the next append: `appended.counted_through` tells.)
//! - `retention.pruned_bytes` (`P`): the stored size of every event at or below
//!   `pruned_through`, deleted or held. Each step adds the sizes of the events it moves
//!   the pruned range over, in the update raising `pruned_through`.
//!
//! Both count from the events stored when migration 0008 ran. The events above the
//! pruned range, all stored, hold `A - P` bytes. Events held by a dead letter are kept
//! and not counted: with `D` the size of the held events above the pruned range, and
//! `before(o)` and `held_before(o)` the sizes of the step's window rows below `o`, all
//! and held, the non-held events from `o` on hold `A - P - before(o) - D +
//! held_before(o)` bytes, and `o` goes when that exceeds `max_bytes`. This only grows
//! as `o` goes down, so what goes is a prefix, found from the window's rows (sizes
//! computed there, by the step), the held events (through `dead_letters`' offset index;
//! few, as dead letters are) and the two totals: no pass reads more than its window.
//!
//! A step reads `A` in an earlier statement than its window; appends meanwhile only
//! raise it, so a step may keep a little more than the limit allows, never less, and the
//! next pass catches up. A step of a Pulse from before migration 0008, still running
//! during a rolling upgrade, would raise `pruned_through` without `pruned_bytes`: a check
//! on the retention row makes it fail and roll back instead.
//!
//! # Pruning and fetching do not interleave
//!
//! A fetch admits events into `deliveries` in several statements. Were a step to commit
//! between them, the fetch could admit an event the step just deleted, leaving a delivery
//! without an event. So a fetch holds the schema's retention key in shared mode for each
//! of its two transactions (admission, hand-out), and a step takes it exclusively after
//! winning the pass key: a step waits for running fetches (each a few milliseconds),
//! fetches arriving meanwhile wait for the step, and each sees all or nothing of the
//! other. Acks, nacks and appends do not take
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

/// The pruned range and its stored size, the last offset, the stored size of every event
/// appended and the time, locking the retention row.
const STATE: &str = "SELECT pruned_through, pruned_bytes, \
    greatest((SELECT coalesce(max(\"offset\"), 0) FROM events), pruned_through), \
    (SELECT bytes FROM appended), clock_timestamp() FROM retention FOR UPDATE";

/// The step's boundary: below the first event of the window ($4 oldest above $1) that is
/// within every limit ($2: offsets above it are kept by count; $3: events stored since
/// then are kept by age; $5: the size of the events above the pruned range minus
/// `max_bytes`, see the module docs; NULL for no limit). Also the window's size and the
/// size of its events up to the boundary.
///
/// Held events are sized through a scalar subquery each, so that each is one primary-key
/// lookup whatever the planner thinks of their number, and only with a byte limit.
const BOUNDARY: &str = "WITH window_rows AS ( \
        SELECT \"offset\", stored_at, pulse_stored_size(id, source, type, subject, \
                   datacontenttype, dataschema, data, extensions) AS size \
        FROM events WHERE \"offset\" > $1 ORDER BY \"offset\" LIMIT $4), \
    held AS ( \
        SELECT d.\"offset\", (SELECT pulse_stored_size(e.id, e.source, e.type, e.subject, \
                   e.datacontenttype, e.dataschema, e.data, e.extensions) \
               FROM events e WHERE e.\"offset\" = d.\"offset\") AS size \
        FROM (SELECT DISTINCT \"offset\" FROM dead_letters \
              WHERE \"offset\" > $1 AND $5::bigint IS NOT NULL) d), \
    running AS ( \
        SELECT w.\"offset\", w.stored_at, \
               sum(w.size) OVER through_row AS window_bytes, \
               sum(w.size) OVER through_row - w.size \
                   - coalesce(sum(h.size) OVER before_row, 0) AS counted_before \
        FROM window_rows w LEFT JOIN held h ON h.\"offset\" = w.\"offset\" \
        WINDOW through_row AS (ORDER BY w.\"offset\" ROWS UNBOUNDED PRECEDING), \
               before_row AS (ORDER BY w.\"offset\" \
                              ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)), \
    judged AS ( \
        SELECT \"offset\", window_bytes, coalesce( \
            \"offset\" <= $2::bigint \
            OR stored_at < $3::timestamptz \
            OR counted_before < $5::bigint - (SELECT coalesce(sum(size), 0) FROM held), \
            false) AS expired \
        FROM running), \
    bound AS MATERIALIZED ( \
        SELECT coalesce((SELECT min(\"offset\") - 1 FROM judged WHERE NOT expired), \
                        (SELECT max(\"offset\") FROM judged), $1::bigint) AS through) \
    SELECT b.through, (SELECT count(*) FROM judged), \
           coalesce((SELECT j.window_bytes FROM judged j WHERE j.\"offset\" = b.through), 0)::bigint \
    FROM bound b";

const MOVE_GROUPS: &str = "UPDATE consumer_groups SET scanned = $1 WHERE scanned < $1";

const DROP_DELIVERIES: &str =
    "DELETE FROM deliveries WHERE \"offset\" <= $1 AND dead_letter_id IS NULL";

/// Also takes events below the pruned range whose dead letter is gone since: the only
/// rows left there are the few dead letters held, so the index range stays short.
const DELETE_EVENTS: &str = "DELETE FROM events e WHERE e.\"offset\" <= $1 \
    AND NOT EXISTS (SELECT 1 FROM dead_letters d WHERE d.\"offset\" = e.\"offset\")";

/// Raises the pruned range to $1 and its stored size by $2, the size of the events
/// moved below it.
const RAISE_FLOOR: &str = "UPDATE retention \
    SET pruned_through = $1, pruned_bytes_through = $1, pruned_bytes = pruned_bytes + $2";

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
    max_bytes: Option<u64>,
    batch: i64,
    pass_key: i64,
    retention_key: i64,
}

/// What a step reads first, with the retention row locked.
struct State {
    /// `retention.pruned_through`.
    floor: i64,
    /// The log's last offset.
    last: i64,
    /// The stored size of the events above `floor` (see the module docs).
    bytes_above: i64,
    now: DateTime<Utc>,
}

/// Where a step stops.
struct Boundary {
    /// The highest offset the step prunes through (`floor` when nothing expired).
    through: i64,
    /// How many events the step looked at.
    window: i64,
    /// The stored size of the events from the floor up to `through`.
    bytes: i64,
}

impl Pruner {
    pub(crate) fn new(pool: Pool, options: &PostgresOptions) -> Self {
        Self {
            pool,
            max_age: options.retention.max_age,
            max_events: options.retention.max_events,
            max_bytes: options.retention.max_bytes,
            batch: i64::try_from(options.prune_batch.max(1)).unwrap_or(i64::MAX),
            pass_key: pass_key(&options.schema),
            retention_key: retention_key(&options.schema),
        }
    }

    /// Whether any limit is set.
    pub(crate) fn is_limited(&self) -> bool {
        self.max_age.is_some() || self.max_events.is_some() || self.max_bytes.is_some()
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
        let state = state(&tx).await?;
        let floor = state.floor;
        let bound = self.boundary(&tx, &state).await?;
        if bound.through <= floor {
            return Ok(Step::Pruned {
                deleted: 0,
                more: false,
            });
        }
        // Groups, then deliveries, then events: a nack locks its delivery before its
        // dead letter locks the event, so a step and a nack may wait for each other but
        // never in a cycle (fetches are kept out by the retention key).
        tx.execute(MOVE_GROUPS, &[&bound.through]).await.db()?;
        tx.execute(DROP_DELIVERIES, &[&bound.through]).await.db()?;
        let deleted = tx.execute(DELETE_EVENTS, &[&bound.through]).await.db()?;
        tx.execute(RAISE_FLOOR, &[&bound.through, &bound.bytes])
            .await
            .db()?;
        tx.commit().await.db()?;
        metrics::counter!(crate::metrics::PRUNED_EVENTS_TOTAL).increment(deleted);
        metrics::counter!(crate::metrics::PRUNED_BYTES_TOTAL)
            .increment(u64::try_from(bound.bytes).unwrap_or(0));
        Ok(Step::Pruned {
            deleted,
            more: bound.window == self.batch && bound.through - floor >= bound.window,
        })
    }

    /// Where this step stops: the oldest events of the window past any limit.
    async fn boundary(&self, tx: &Transaction<'_>, state: &State) -> Result<Boundary, LogError> {
        let by_count = self
            .max_events
            .map(|keep| state.last.saturating_sub(saturating_i64(keep)));
        // An age too large to subtract from now is no limit at all.
        let by_age = self
            .max_age
            .and_then(|age| chrono::Duration::from_std(age).ok())
            .and_then(|age| state.now.checked_sub_signed(age));
        let by_bytes = self
            .max_bytes
            .map(|keep| state.bytes_above.saturating_sub(saturating_i64(keep)));
        let row = tx
            .query_one(
                BOUNDARY,
                &[&state.floor, &by_count, &by_age, &self.batch, &by_bytes],
            )
            .await
            .db()?;
        Ok(Boundary {
            through: row.get(0),
            window: row.get(1),
            bytes: row.get(2),
        })
    }
}

/// Reads the step's [`State`], locking the retention row.
async fn state(tx: &Transaction<'_>) -> Result<State, LogError> {
    let row = tx.query_one(STATE, &[]).await.db()?;
    let pruned_bytes: i64 = row.get(1);
    let appended_bytes: i64 = row.get(3);
    Ok(State {
        floor: row.get(0),
        last: row.get(2),
        bytes_above: appended_bytes.saturating_sub(pruned_bytes),
        now: row.get(4),
    })
}

/// A limit as a PostgreSQL `bigint`; one beyond its range is as good as none.
fn saturating_i64(limit: u64) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
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
