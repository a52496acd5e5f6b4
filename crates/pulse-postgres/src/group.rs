//! Consumer groups shared by several instances, with all their state in the database.
//!
//! `consumer_groups` holds each group's configuration and `scanned` position;
//! `deliveries` holds one row per admitted, unsettled event (the same bookkeeping as
//! `pulse_core::group::GroupState`, as rows):
//!
//! - **fetch** first admits new matching events (at most [`MAX_PENDING`] held) in a short
//!   transaction holding the group's row (`FOR UPDATE`), so admissions from any number of
//!   instances take turns. Then, in a second transaction that takes no group lock, it
//!   hands back expired leases and hands out due rows, oldest first, skipping any row
//!   whose subject has an earlier unsettled row: one event per subject at a time across
//!   every instance. Hand-outs of several instances run at once: each locks the rows it
//!   hands back or hands out with `SKIP LOCKED` and re-checks them once locked, so no row
//!   goes to two of them and none waits for another's row (no deadlock with an ack
//!   either); a row whose subject's earlier row was settled after the fetch began merely
//!   waits for the next fetch. A handed-out row records its owner and a lease
//!   deadline (`due_at` = now + ack wait).
//! - **ack** deletes rows and **nack** reschedules or dead-letters one; neither takes the
//!   group lock (row locks suffice), so acking never waits for another instance's fetch.
//! - **A dead instance**: an in-flight row is handed back when its lease runs out, or as
//!   soon as its owner's heartbeat in `instances` is older than the instance timeout, so
//!   a crashed instance's work moves on in seconds even with a long ack wait.
//! - The committed offset is derived, never stored: one below the lowest unsettled
//!   (non-redriven) row, or `scanned` when nothing is unsettled. Rows are only added above
//!   `scanned` and `scanned` only grows, so it only grows.
//! - **Retention** moves a group whose position is below the pruned range up to it and
//!   drops its deliveries of pruned events; a fetch holds the retention key shared so
//!   the two never interleave (see the `retention` module).

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use pulse_core::log::{check_group_pattern, validate_group_name};
use pulse_core::{Delivery, GroupConfig, GroupInfo, LogError, NackOutcome, Pattern, StartPosition};

use crate::codec::{pattern_regex, stored_event, to_offset, to_sql_offset, EVENT_COLUMNS};
use crate::error::{self, DbResult};
use crate::shared::Shared;

/// The most events one group holds unsettled, as in the single-node logs.
pub const MAX_PENDING: i64 = pulse_core::group::MAX_PENDING as i64;

const UPSERT_GROUP: &str = "INSERT INTO consumer_groups (name, pattern, max_deliver, ack_wait_ms, scanned) \
    VALUES ($1, $2, $3, $4, CASE WHEN $5 \
        THEN (SELECT greatest(coalesce(max(\"offset\"), 0), (SELECT pruned_through FROM retention)) FROM events) \
        ELSE (SELECT pruned_through FROM retention) END) \
    ON CONFLICT (name) DO UPDATE SET \
    max_deliver = excluded.max_deliver, ack_wait_ms = excluded.ack_wait_ms \
    WHERE consumer_groups.pattern = excluded.pattern";

/// The stored pattern of a group, when a join updated nothing.
const GROUP_PATTERN: &str = "SELECT pattern FROM consumer_groups WHERE name = $1";

/// An operator's change of a group's pattern.
const SET_PATTERN: &str = "UPDATE consumer_groups SET pattern = $2 WHERE name = $1";

const GROUP_INFO: &str = "SELECT g.name, g.pattern, greatest(g.scanned, (SELECT pruned_through FROM retention)), \
    (SELECT min(d.\"offset\") FROM deliveries d WHERE d.group_name = g.name AND d.dead_letter_id IS NULL), \
    (SELECT count(*) FROM deliveries d WHERE d.group_name = g.name) \
    FROM consumer_groups g WHERE ($1::text IS NULL OR g.name = $1) ORDER BY g.name";

/// The group's row, locked; its position is never below what retention pruned.
const LOCK_GROUP: &str = "SELECT g.pattern, g.max_deliver, g.ack_wait_ms, \
    greatest(g.scanned, r.pruned_through), clock_timestamp() \
    FROM consumer_groups g, retention r WHERE g.name = $1 FOR UPDATE OF g";

const ADMIT: &str = "INSERT INTO deliveries (group_name, \"offset\", subject, due_at) \
    SELECT $1, \"offset\", subject, $5 FROM events \
    WHERE \"offset\" > $2 AND \"offset\" <= $3 AND type ~ $4 \
    ON CONFLICT DO NOTHING";

/// The in-flight rows (`x`) whose lease ran out ($2 = now) or whose owner is not among
/// the live instances ($3), locked without waiting: a row another transaction holds (an
/// ack, another instance expiring it) is left to it, so expiring never waits for a row
/// and can never deadlock with an ack or with another instance's fetch.
const EXPIRED: &str = "SELECT x.\"offset\" FROM deliveries x \
    WHERE x.group_name = $1 AND x.in_flight AND (x.due_at <= $2 OR x.owner <> ALL($3))";

const EXPIRY_ERROR: &str = "CASE WHEN d.due_at <= $2 THEN $4 \
    ELSE 'instance ' || d.owner || ' stopped before acknowledging' END";

const DUE: &str = "SELECT d.\"offset\" FROM deliveries d \
    WHERE d.group_name = $1 AND NOT d.in_flight AND d.due_at <= $2 \
    AND (d.dead_letter_id IS NOT NULL OR d.subject IS NULL OR NOT EXISTS ( \
        SELECT 1 FROM deliveries e WHERE e.group_name = $1 AND e.subject = d.subject \
        AND e.\"offset\" < d.\"offset\" AND e.dead_letter_id IS NULL)) \
    ORDER BY d.\"offset\" LIMIT $3 FOR UPDATE OF d SKIP LOCKED";

const HAND_OUT: &str = "UPDATE deliveries SET in_flight = true, attempts = attempts + 1, \
    due_at = $3::timestamptz + $4::bigint * interval '1 millisecond', owner = $5 \
    WHERE group_name = $1 AND \"offset\" = ANY($2) AND NOT in_flight AND due_at <= $3 \
    RETURNING \"offset\", attempts";

const NEXT_DUE: &str = "SELECT min(due_at) FROM deliveries WHERE group_name = $1 AND due_at > $2";

const ACK: &str = "WITH acked AS ( \
        DELETE FROM deliveries WHERE group_name = $1 AND \"offset\" = ANY($2) AND attempts > 0 \
        RETURNING dead_letter_id), \
    resolved AS ( \
        DELETE FROM dead_letters WHERE id IN (SELECT dead_letter_id FROM acked) RETURNING id) \
    SELECT EXISTS (SELECT 1 FROM consumer_groups WHERE name = $1), \
        (SELECT count(*) FROM acked), (SELECT count(*) FROM resolved)";

/// What a fetch learned of its group while admitting.
struct Admitted {
    max_deliver: i32,
    ack_wait_ms: i64,
    /// The database's clock when the group was locked: the fetch's "now".
    now: DateTime<Utc>,
}

impl Shared {
    pub(crate) async fn ensure_group(
        &self,
        name: &str,
        config: GroupConfig,
    ) -> Result<GroupInfo, LogError> {
        validate_group_name(name)?;
        let max_deliver = i32::try_from(config.max_deliver.max(1)).unwrap_or(i32::MAX);
        let ack_wait = i64::try_from(config.ack_wait.as_millis()).unwrap_or(i64::MAX);
        let latest = config.start == StartPosition::Latest;
        let client = self.pool.get().await.map_err(error::pool)?;
        let written = client
            .execute(
                UPSERT_GROUP,
                &[
                    &name,
                    &config.pattern.as_str(),
                    &max_deliver,
                    &ack_wait,
                    &latest,
                ],
            )
            .await
            .db()?;
        if written == 0 {
            // The group exists with another pattern: the upsert's condition kept the row.
            let stored: Option<String> = client
                .query_opt(GROUP_PATTERN, &[&name])
                .await
                .db()?
                .map(|row| row.get(0));
            if let Some(stored) = stored {
                let existing = Pattern::parse(&stored).map_err(|e| {
                    LogError::Storage(format!("group {name:?} has an unreadable pattern: {e}"))
                })?;
                check_group_pattern(name, &existing, &config.pattern)?;
            }
        }
        drop(client);
        self.group_infos(Some(name))
            .await?
            .pop()
            .ok_or_else(|| LogError::UnknownGroup(name.to_owned()))
    }

    pub(crate) async fn set_group_pattern(
        &self,
        name: &str,
        pattern: &Pattern,
    ) -> Result<GroupInfo, LogError> {
        let client = self.pool.get().await.map_err(error::pool)?;
        let changed = client
            .execute(SET_PATTERN, &[&name, &pattern.as_str()])
            .await
            .db()?;
        drop(client);
        if changed == 0 {
            return Err(LogError::UnknownGroup(name.to_owned()));
        }
        self.group_infos(Some(name))
            .await?
            .pop()
            .ok_or_else(|| LogError::UnknownGroup(name.to_owned()))
    }

    pub(crate) async fn group_infos(&self, name: Option<&str>) -> Result<Vec<GroupInfo>, LogError> {
        let client = self.pool.get().await.map_err(error::pool)?;
        let statement = client.prepare_cached(GROUP_INFO).await.db()?;
        let rows = client.query(&statement, &[&name]).await.db()?;
        rows.iter()
            .map(|row| {
                let name: String = row.get(0);
                let pattern: String = row.get(1);
                let scanned: i64 = row.get(2);
                let lowest: Option<i64> = row.get(3);
                let pending: i64 = row.get(4);
                let pattern = Pattern::parse(&pattern).map_err(|e| {
                    LogError::Storage(format!("group {name:?} has an unreadable pattern: {e}"))
                })?;
                Ok(GroupInfo {
                    name,
                    pattern,
                    committed: to_offset(lowest.map_or(scanned, |l| l - 1)),
                    pending: usize::try_from(pending).unwrap_or(usize::MAX),
                })
            })
            .collect()
    }

    /// Hands out up to `max` due deliveries; when there are none, also says how long
    /// until the next row of the group falls due by time alone (a nack delay or a lease
    /// running out), if any.
    pub(crate) async fn fetch(
        &self,
        group: &str,
        max: usize,
    ) -> Result<(Vec<Delivery>, Option<Duration>), LogError> {
        let mut client = self.pool.get().await.map_err(error::pool)?;
        let Admitted {
            max_deliver,
            ack_wait_ms,
            now,
        } = self.admit(&mut client, group).await?;
        let tx = client.transaction().await.db()?;
        self.share_retention(&tx).await?;
        self.expire(&tx, group, now, max_deliver, ack_wait_ms)
            .await?;

        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        let due = tx.prepare_cached(DUE).await.db()?;
        let offsets: Vec<i64> = tx
            .query(&due, &[&group, &now, &limit])
            .await
            .db()?
            .iter()
            .map(|row| row.get(0))
            .collect();
        if offsets.is_empty() {
            let next = tx.prepare_cached(NEXT_DUE).await.db()?;
            let next_due: Option<DateTime<Utc>> =
                tx.query_one(&next, &[&group, &now]).await.db()?.get(0);
            tx.commit().await.db()?;
            let wait = next_due.map(|t| (t - now).to_std().unwrap_or_default());
            return Ok((Vec::new(), wait));
        }
        let hand_out = tx.prepare_cached(HAND_OUT).await.db()?;
        let attempts: HashMap<i64, i32> = tx
            .query(
                &hand_out,
                &[&group, &offsets, &now, &ack_wait_ms, &self.instance],
            )
            .await
            .db()?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        let events = tx
            .prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE \"offset\" = ANY($1) ORDER BY \"offset\""
            ))
            .await
            .db()?;
        let rows = tx.query(&events, &[&offsets]).await.db()?;
        tx.commit().await.db()?;
        let mut deliveries = Vec::with_capacity(rows.len());
        for row in &rows {
            let event = stored_event(row, 0)?;
            if let Some(&attempt) = attempts.get(&to_sql_offset(event.offset)) {
                deliveries.push(Delivery {
                    event,
                    attempt: u32::try_from(attempt).unwrap_or(0),
                });
            }
        }
        Ok((deliveries, None))
    }

    /// Admits the group's new matching events, in a transaction of its own holding the
    /// group's row: admissions take turns, hand-outs do not.
    async fn admit(
        &self,
        client: &mut deadpool_postgres::Client,
        group: &str,
    ) -> Result<Admitted, LogError> {
        let tx = client.transaction().await.db()?;
        self.share_retention(&tx).await?;
        let lock = tx.prepare_cached(LOCK_GROUP).await.db()?;
        let Some(row) = tx.query_opt(&lock, &[&group]).await.db()? else {
            return Err(LogError::UnknownGroup(group.to_owned()));
        };
        let pattern: String = row.get(0);
        let admitted = Admitted {
            max_deliver: row.get(1),
            ack_wait_ms: row.get(2),
            now: row.get(4),
        };
        let scanned: i64 = row.get(3);
        let pattern = Pattern::parse(&pattern).map_err(|e| {
            LogError::Storage(format!("group {group:?} has an unreadable pattern: {e}"))
        })?;

        // Admit events after `scanned`: offsets above it are dense (retention deletes only
        // at or below it), so a window of `room` offsets admits at most `room` events.
        let held_statement = tx
            .prepare_cached(
                "SELECT count(*) FROM deliveries WHERE group_name = $1 AND dead_letter_id IS NULL",
            )
            .await
            .db()?;
        let held: i64 = tx.query_one(&held_statement, &[&group]).await.db()?.get(0);
        if held < MAX_PENDING {
            let last_statement = tx
                .prepare_cached(crate::retention::LAST_OFFSET)
                .await
                .db()?;
            let last: i64 = tx.query_one(&last_statement, &[]).await.db()?.get(0);
            let upto = last.min(scanned.saturating_add(MAX_PENDING - held));
            if upto > scanned {
                let admit = tx.prepare_cached(ADMIT).await.db()?;
                tx.execute(
                    &admit,
                    &[
                        &group,
                        &scanned,
                        &upto,
                        &pattern_regex(&pattern),
                        &admitted.now,
                    ],
                )
                .await
                .db()?;
                let advance = tx
                    .prepare_cached("UPDATE consumer_groups SET scanned = $2 WHERE name = $1")
                    .await
                    .db()?;
                tx.execute(&advance, &[&group, &upto]).await.db()?;
            }
        }
        tx.commit().await.db()?;
        Ok(admitted)
    }

    /// Keeps retention steps out until the transaction ends (see the `retention` module).
    async fn share_retention(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
    ) -> Result<(), LogError> {
        let share = tx
            .prepare_cached(crate::retention::SHARE_RETENTION_KEY)
            .await
            .db()?;
        tx.execute(&share, &[&self.retention_key]).await.db()?;
        Ok(())
    }

    /// Hands back in-flight rows whose lease ran out or whose owner died: dead-lettered
    /// when out of attempts, due again otherwise.
    async fn expire(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        group: &str,
        now: DateTime<Utc>,
        max_deliver: i32,
        ack_wait_ms: i64,
    ) -> Result<(), LogError> {
        let live_statement = tx
            .prepare_cached(
                "SELECT coalesce(array_agg(id), '{}') FROM instances \
                 WHERE heartbeat > $1::timestamptz - $2::bigint * interval '1 millisecond'",
            )
            .await
            .db()?;
        let timeout_ms =
            i64::try_from(self.options.instance_timeout.as_millis()).unwrap_or(i64::MAX);
        let mut live: Vec<String> = tx
            .query_one(&live_statement, &[&now, &timeout_ms])
            .await
            .db()?
            .get(0);
        // This instance is alive whatever its last heartbeat says (a stalled heartbeat
        // must not make it redeliver its own work to itself).
        live.push(self.instance.clone());
        let wait_error = format!(
            "not acknowledged within the ack wait of {:?}",
            Duration::from_millis(u64::try_from(ack_wait_ms).unwrap_or(0))
        );
        let out_of_attempts = tx
            .prepare_cached(&format!(
                "DELETE FROM deliveries d WHERE d.group_name = $1 AND d.\"offset\" IN ( \
                 {EXPIRED} AND x.attempts >= $5 FOR UPDATE SKIP LOCKED) \
                 RETURNING d.\"offset\", d.attempts, coalesce(d.first_failure, $2), d.dead_letter_id, {EXPIRY_ERROR}"
            ))
            .await
            .db()?;
        let dead = tx
            .query(
                &out_of_attempts,
                &[&group, &now, &live, &wait_error, &max_deliver],
            )
            .await
            .db()?;
        for row in &dead {
            let letter = crate::dead_letter::Draft {
                group,
                offset: row.get(0),
                attempts: row.get(1),
                first_failure: row.get(2),
                last_failure: now,
                existing: row.get(3),
                error: row.get(4),
            };
            letter.store(tx).await?;
        }
        let retry = tx
            .prepare_cached(&format!(
                "UPDATE deliveries d SET in_flight = false, owner = NULL, due_at = $2, \
                 first_failure = coalesce(d.first_failure, $2), last_error = {EXPIRY_ERROR} \
                 WHERE d.group_name = $1 AND d.\"offset\" IN ({EXPIRED} FOR UPDATE SKIP LOCKED)"
            ))
            .await
            .db()?;
        let retried = tx
            .execute(&retry, &[&group, &now, &live, &wait_error])
            .await
            .db()?;
        let expired = retried + dead.len() as u64;
        if expired > 0 {
            metrics::counter!(crate::metrics::EXPIRED_DELIVERIES_TOTAL).increment(expired);
            tracing::debug!(group, expired, "handed back expired deliveries");
        }
        Ok(())
    }

    pub(crate) async fn ack(&self, group: &str, offsets: &[u64]) -> Result<(), LogError> {
        let offsets: Vec<i64> = offsets.iter().map(|&o| to_sql_offset(o)).collect();
        let client = self.pool.get().await.map_err(error::pool)?;
        let statement = client.prepare_cached(ACK).await.db()?;
        let row = client
            .query_one(&statement, &[&group, &offsets])
            .await
            .db()?;
        if !row.get::<_, bool>(0) {
            return Err(LogError::UnknownGroup(group.to_owned()));
        }
        Ok(())
    }

    pub(crate) async fn nack(
        &self,
        group: &str,
        offset: u64,
        delay: Duration,
        error: &str,
    ) -> Result<NackOutcome, LogError> {
        let sql_offset = to_sql_offset(offset);
        let mut client = self.pool.get().await.map_err(error::pool)?;
        let tx = client.transaction().await.db()?;
        let Some(group_row) = tx
            .query_opt(
                "SELECT max_deliver, clock_timestamp() FROM consumer_groups WHERE name = $1",
                &[&group],
            )
            .await
            .db()?
        else {
            return Err(LogError::UnknownGroup(group.to_owned()));
        };
        let max_deliver: i32 = group_row.get(0);
        let now: DateTime<Utc> = group_row.get(1);
        let Some(row) = tx
            .query_opt(
                "SELECT attempts, first_failure, dead_letter_id FROM deliveries \
                 WHERE group_name = $1 AND \"offset\" = $2 AND attempts > 0 FOR UPDATE",
                &[&group, &sql_offset],
            )
            .await
            .db()?
        else {
            return Err(LogError::UnknownDelivery {
                group: group.to_owned(),
                offset,
            });
        };
        let attempts: i32 = row.get(0);
        let first_failure: Option<DateTime<Utc>> = row.get(1);
        let existing: Option<i64> = row.get(2);
        if attempts < max_deliver.max(1) {
            let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
            tx.execute(
                "UPDATE deliveries SET in_flight = false, owner = NULL, \
                 due_at = $3::timestamptz + $4::bigint * interval '1 millisecond', \
                 first_failure = coalesce(first_failure, $3), last_error = $5 \
                 WHERE group_name = $1 AND \"offset\" = $2",
                &[&group, &sql_offset, &now, &delay_ms, &error],
            )
            .await
            .db()?;
            tx.commit().await.db()?;
            return Ok(NackOutcome::Redeliver);
        }
        tx.execute(
            "DELETE FROM deliveries WHERE group_name = $1 AND \"offset\" = $2",
            &[&group, &sql_offset],
        )
        .await
        .db()?;
        let letter = crate::dead_letter::Draft {
            group,
            offset: sql_offset,
            attempts,
            first_failure: first_failure.unwrap_or(now),
            last_failure: now,
            existing,
            error: error.to_owned(),
        };
        let id = letter.store(&tx).await?;
        tx.commit().await.db()?;
        Ok(NackOutcome::DeadLettered(id))
    }
}
