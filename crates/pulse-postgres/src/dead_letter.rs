//! The dead-letter store: events a group gave up on, with the last error, and redrive.
//!
//! A dead letter points at its event by offset (the event stays in the log: retention
//! keeps it while the dead letter exists). Redriving inserts a delivery row marked with
//! the dead letter's id below the group's committed offset; it neither blocks its
//! subject nor holds the committed offset back, and its acknowledgement removes the dead
//! letter (see [`crate::group`]).

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use pulse_core::{DeadLetter, LogError};

use crate::codec::{stored_event, to_offset, EVENT_COLUMNS_E};
use crate::error::{self, DbResult};
use crate::shared::Shared;

/// A dead letter about to be written.
pub(crate) struct Draft<'a> {
    pub(crate) group: &'a str,
    pub(crate) offset: i64,
    pub(crate) attempts: i32,
    pub(crate) first_failure: DateTime<Utc>,
    pub(crate) last_failure: DateTime<Utc>,
    /// For a redriven dead letter that failed again: the id to update.
    pub(crate) existing: Option<i64>,
    pub(crate) error: String,
}

impl Draft<'_> {
    /// Writes (or rewrites) the dead letter; returns its id.
    pub(crate) async fn store(&self, client: &impl GenericClient) -> Result<u64, LogError> {
        metrics::counter!(crate::metrics::DEAD_LETTERS_TOTAL).increment(1);
        tracing::warn!(group = self.group, offset = self.offset, attempts = self.attempts, error = %self.error, "event dead-lettered");
        if let Some(id) = self.existing {
            let updated = client
                .execute(
                    "UPDATE dead_letters SET error = $2, attempts = $3, first_failure = $4, \
                     last_failure = $5 WHERE id = $1",
                    &[
                        &id,
                        &self.error,
                        &self.attempts,
                        &self.first_failure,
                        &self.last_failure,
                    ],
                )
                .await
                .db()?;
            if updated == 1 {
                return Ok(to_offset(id));
            }
        }
        let row = client
            .query_one(
                "INSERT INTO dead_letters (group_name, \"offset\", error, attempts, first_failure, last_failure) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                &[
                    &self.group,
                    &self.offset,
                    &self.error,
                    &self.attempts,
                    &self.first_failure,
                    &self.last_failure,
                ],
            )
            .await
            .db()?;
        Ok(to_offset(row.get(0)))
    }
}

impl Shared {
    pub(crate) async fn dead_letters(
        &self,
        group: Option<&str>,
        after_id: u64,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, LogError> {
        let client = self.pool.get().await.map_err(error::pool)?;
        let after = crate::codec::to_sql_offset(after_id);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = client
            .query(
                &format!(
                    "SELECT dl.id, dl.group_name, dl.error, dl.attempts, dl.first_failure, \
                     dl.last_failure, {EVENT_COLUMNS_E} \
                     FROM dead_letters dl JOIN events e ON e.\"offset\" = dl.\"offset\" \
                     WHERE dl.id > $1 AND ($2::text IS NULL OR dl.group_name = $2) \
                     ORDER BY dl.id LIMIT $3"
                ),
                &[&after, &group, &limit],
            )
            .await
            .db()?;
        rows.iter()
            .map(|row| {
                let id: i64 = row.get(0);
                let attempts: i32 = row.get(3);
                Ok(DeadLetter {
                    id: to_offset(id),
                    group: row.get(1),
                    error: row.get(2),
                    attempts: u32::try_from(attempts).unwrap_or(0),
                    first_failure: row.get(4),
                    last_failure: row.get(5),
                    event: stored_event(row, 6)?,
                })
            })
            .collect()
    }

    pub(crate) async fn redrive(&self, id: u64) -> Result<(), LogError> {
        let client = self.pool.get().await.map_err(error::pool)?;
        let sql_id = crate::codec::to_sql_offset(id);
        let row = client
            .query_opt(
                "SELECT dl.group_name, EXISTS (SELECT 1 FROM consumer_groups g WHERE g.name = dl.group_name) \
                 FROM dead_letters dl WHERE dl.id = $1",
                &[&sql_id],
            )
            .await
            .db()?
            .ok_or(LogError::UnknownDeadLetter(id))?;
        let group: String = row.get(0);
        if !row.get::<_, bool>(1) {
            return Err(LogError::UnknownGroup(group));
        }
        // A redrive of a letter already handed back (its offset is still unsettled in
        // the group) changes nothing.
        client
            .execute(
                "INSERT INTO deliveries (group_name, \"offset\", subject, due_at, dead_letter_id) \
                 SELECT dl.group_name, dl.\"offset\", e.subject, now(), dl.id \
                 FROM dead_letters dl JOIN events e ON e.\"offset\" = dl.\"offset\" \
                 WHERE dl.id = $1 ON CONFLICT DO NOTHING",
                &[&sql_id],
            )
            .await
            .db()?;
        Ok(())
    }
}
