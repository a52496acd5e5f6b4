//! PostgreSQL as the [`AggregateStore`] of pulse-batch jobs, shared by every instance on
//! the schema: the `aggregates` table (one row per job, user, metric, window and start,
//! readable with plain SQL, plus the mergeable state) and the job's checkpoint in
//! `job_checkpoints`.
//!
//! [`PostgresLog::commit_aggregates`] is one transaction: it locks the job's checkpoint
//! row (`FOR UPDATE`) and compares it with the offset the run started from — another
//! instance's commit from the same offset waits for the lock, then finds the checkpoint
//! moved and rolls back, so no reading is counted twice — then merges the run's states
//! into the stored ones (only the keys the run touched: late data re-opens only its
//! windows) and moves the checkpoint. A crash leaves either the old aggregates and
//! checkpoint or the new ones.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pulse_batch::BatchError;
use pulse_batch::Merged;
use pulse_batch::Metric;
use pulse_batch::WindowSet;
use pulse_batch::{parse_offset, AggregateQuery, AggregateStore, Checkpoint, StoredRow};
use pulse_batch::{AggState, Stats};
use tokio_postgres::Transaction;

use crate::batch::db;
use crate::error::DbResult;
use crate::PostgresLog;

const LOCK_CHECKPOINT: &str = "SELECT checkpoint FROM job_checkpoints WHERE job = $1 FOR UPDATE";

const SELECT_STATES: &str = "SELECT a.user_id, a.metric, a.\"window\", a.window_start, a.state \
    FROM aggregates a JOIN unnest($2::text[], $3::text[], $4::text[], $5::timestamptz[]) \
    AS k(user_id, metric, \"window\", window_start) \
    ON a.job = $1 AND a.user_id = k.user_id AND a.metric = k.metric \
    AND a.\"window\" = k.\"window\" AND a.window_start = k.window_start \
    ORDER BY a.user_id, a.metric, a.\"window\", a.window_start FOR UPDATE OF a";

const UPSERT: &str = "INSERT INTO aggregates (job, user_id, metric, unit, \"window\", \
    window_start, window_end, count, sum, avg, min, max, stddev, p50, p95, p99, first_at, \
    last_at, state) \
    SELECT $1::text, * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], \
    $6::timestamptz[], $7::timestamptz[], $8::bigint[], $9::float8[], $10::float8[], \
    $11::float8[], $12::float8[], $13::float8[], $14::float8[], $15::float8[], \
    $16::float8[], $17::timestamptz[], $18::timestamptz[], $19::bytea[]) \
    ON CONFLICT (job, user_id, metric, \"window\", window_start) DO UPDATE SET \
    unit = excluded.unit, window_end = excluded.window_end, count = excluded.count, \
    sum = excluded.sum, avg = excluded.avg, min = excluded.min, max = excluded.max, \
    stddev = excluded.stddev, p50 = excluded.p50, p95 = excluded.p95, \
    p99 = excluded.p99, first_at = excluded.first_at, last_at = excluded.last_at, \
    state = excluded.state";

const SELECT_ROWS: &str = "SELECT user_id, metric, \"window\", window_start, window_end, \
    count, sum, avg, min, max, stddev, p50, p95, p99 FROM aggregates \
    WHERE job = $1 AND user_id = $2 AND metric = $3 AND \"window\" = $4 \
    AND ($5::timestamptz IS NULL OR window_start >= $5) \
    AND ($6::timestamptz IS NULL OR window_start < $6) \
    ORDER BY window_start LIMIT $7";

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn from_micros(t: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t).unwrap_or_default()
}

fn offset_of(job: &str, stored: Option<Vec<u8>>) -> Result<u64, BatchError> {
    match stored {
        None => Ok(0),
        Some(bytes) => parse_offset(job, &String::from_utf8_lossy(&bytes)),
    }
}

impl PostgresLog {
    /// In one transaction, if the checkpoint of `job` is still `from` (0: none stored):
    /// merges every state of `delta` into the stored state of its key and moves the
    /// checkpoint to `to` (read back with [`load_checkpoint`](Self::load_checkpoint), as
    /// decimal text). Otherwise fails with [`BatchError::CheckpointMoved`] and changes
    /// nothing. Returns the keys written.
    pub async fn commit_aggregates(
        &self,
        job: &str,
        delta: &Merged,
        from: u64,
        to: u64,
    ) -> Result<u64, BatchError> {
        let mut client = self.batch_client().await?;
        let tx = client.transaction().await.db().map_err(db)?;
        move_checkpoint(&tx, job, from, to).await?;
        let written = merge(&tx, job, delta).await?;
        tx.commit().await.db().map_err(db)?;
        Ok(written)
    }

    /// The rows of `job` that `q` selects, by window start.
    pub async fn query_aggregates(
        &self,
        job: &str,
        q: &AggregateQuery,
    ) -> Result<Vec<StoredRow>, BatchError> {
        let client = self.batch_client().await?;
        // Bounds beyond what PostgreSQL's timestamps hold mean "no bound".
        let from = DateTime::from_timestamp_micros(q.from_us);
        let to = DateTime::from_timestamp_micros(q.to_us);
        let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
        let rows = client
            .query(
                SELECT_ROWS,
                &[&job, &q.user_id, &q.metric, &q.window, &from, &to, &limit],
            )
            .await
            .db()
            .map_err(db)?;
        rows.iter()
            .map(|r| {
                let metric: String = r.get(1);
                let metric =
                    Metric::from_name(metric.as_bytes()).ok_or_else(|| BatchError::State {
                        path: format!("postgres aggregates of job {job}").into(),
                        reason: format!("unknown metric {metric:?}"),
                    })?;
                let count: i64 = r.get(5);
                Ok(StoredRow {
                    user_id: r.get(0),
                    metric,
                    window: r.get(2),
                    window_start: micros(r.get(3)),
                    window_end: micros(r.get(4)),
                    stats: Stats {
                        count: u64::try_from(count).unwrap_or_default(),
                        sum: r.get(6),
                        avg: r.get(7),
                        min: r.get(8),
                        max: r.get(9),
                        stddev: r.get(10),
                        p50: r.get(11),
                        p95: r.get(12),
                        p99: r.get(13),
                    },
                })
            })
            .collect()
    }
}

/// The compare-and-set: locks the checkpoint row, checks it is `from`, writes `to`.
async fn move_checkpoint(
    tx: &Transaction<'_>,
    job: &str,
    from: u64,
    to: u64,
) -> Result<(), BatchError> {
    let moved = |found| BatchError::CheckpointMoved {
        job: job.to_owned(),
        expected: from,
        found,
    };
    let to_text = to.to_string().into_bytes();
    let row = tx
        .query_opt(LOCK_CHECKPOINT, &[&job])
        .await
        .db()
        .map_err(db)?;
    let exists = row.is_some();
    let found = offset_of(job, row.map(|r| r.get(0)))?;
    if found != from {
        return Err(moved(found));
    }
    if exists {
        tx.execute(
            "UPDATE job_checkpoints SET checkpoint = $2, updated_at = now() WHERE job = $1",
            &[&job, &to_text],
        )
        .await
        .db()
        .map_err(db)?;
        return Ok(());
    }
    // No row to lock yet: a concurrent first commit's insert makes this one wait, then
    // insert nothing.
    let inserted = tx
        .execute(
            "INSERT INTO job_checkpoints (job, checkpoint, updated_at) VALUES ($1, $2, now()) \
             ON CONFLICT (job) DO NOTHING",
            &[&job, &to_text],
        )
        .await
        .db()
        .map_err(db)?;
    if inserted == 0 {
        let row = tx
            .query_opt(LOCK_CHECKPOINT, &[&job])
            .await
            .db()
            .map_err(db)?;
        return Err(moved(offset_of(job, row.map(|r| r.get(0)))?));
    }
    Ok(())
}

/// Merges `delta` into the stored states of `job`; returns the keys written.
async fn merge(tx: &Transaction<'_>, job: &str, delta: &Merged) -> Result<u64, BatchError> {
    let mut keys = Keys::default();
    let mut states: Vec<AggState> = Vec::new();
    let mut meta: Vec<(&'static str, i64)> = Vec::new();
    delta.for_each(|row, state| -> Result<(), BatchError> {
        keys.user_ids.push(row.user_id.to_owned());
        keys.metrics.push(row.metric.name().to_owned());
        keys.windows.push(row.window.to_owned());
        keys.starts.push(from_micros(row.window_start));
        meta.push((row.metric.unit(), row.window_end));
        states.push(state.clone());
        Ok(())
    })?;
    if states.is_empty() {
        return Ok(0);
    }
    let stored = tx
        .query(
            SELECT_STATES,
            &[
                &job,
                &keys.user_ids,
                &keys.metrics,
                &keys.windows,
                &keys.starts,
            ],
        )
        .await
        .db()
        .map_err(db)?;
    let mut existing: HashMap<(String, String, String, i64), Vec<u8>> = stored
        .iter()
        .map(|r| {
            let start: DateTime<Utc> = r.get(3);
            ((r.get(0), r.get(1), r.get(2), micros(start)), r.get(4))
        })
        .collect();
    let mut out = Upserts::default();
    for (i, mut state) in states.into_iter().enumerate() {
        let key = (
            keys.user_ids[i].clone(),
            keys.metrics[i].clone(),
            keys.windows[i].clone(),
            micros(keys.starts[i]),
        );
        if let Some(blob) = existing.remove(&key) {
            let mut merged = AggState::from_bytes(&blob).ok_or_else(|| BatchError::State {
                path: format!("postgres aggregates of job {job}").into(),
                reason: format!("damaged state for {} {} {}", key.0, key.1, key.2),
            })?;
            merged.merge(&state);
            state = merged;
        }
        let s = state.stats();
        out.units.push(meta[i].0.to_owned());
        out.ends.push(from_micros(meta[i].1));
        out.counts.push(i64::try_from(s.count).unwrap_or(i64::MAX));
        out.sums.push(s.sum);
        out.avgs.push(s.avg);
        out.mins.push(s.min);
        out.maxs.push(s.max);
        out.stddevs.push(s.stddev);
        out.p50s.push(s.p50);
        out.p95s.push(s.p95);
        out.p99s.push(s.p99);
        out.firsts.push(from_micros(state.first_at));
        out.lasts.push(from_micros(state.last_at));
        out.states.push(state.to_bytes());
    }
    tx.execute(
        UPSERT,
        &[
            &job,
            &keys.user_ids,
            &keys.metrics,
            &out.units,
            &keys.windows,
            &keys.starts,
            &out.ends,
            &out.counts,
            &out.sums,
            &out.avgs,
            &out.mins,
            &out.maxs,
            &out.stddevs,
            &out.p50s,
            &out.p95s,
            &out.p99s,
            &out.firsts,
            &out.lasts,
            &out.states,
        ],
    )
    .await
    .db()
    .map_err(db)
}

/// The keys of a commit, column by column.
#[derive(Default)]
struct Keys {
    user_ids: Vec<String>,
    metrics: Vec<String>,
    windows: Vec<String>,
    starts: Vec<DateTime<Utc>>,
}

/// The other columns of a commit, column by column.
#[derive(Default)]
struct Upserts {
    units: Vec<String>,
    ends: Vec<DateTime<Utc>>,
    counts: Vec<i64>,
    sums: Vec<f64>,
    avgs: Vec<f64>,
    mins: Vec<f64>,
    maxs: Vec<f64>,
    stddevs: Vec<Option<f64>>,
    p50s: Vec<f64>,
    p95s: Vec<f64>,
    p99s: Vec<f64>,
    firsts: Vec<DateTime<Utc>>,
    lasts: Vec<DateTime<Utc>>,
    states: Vec<Vec<u8>>,
}

/// Every instance on the schema shares one set of aggregates and checkpoints; a commit
/// is all or nothing, so there is never a pending commit to complete.
#[async_trait]
impl AggregateStore for PostgresLog {
    async fn checkpoint(&self, job: &str, _windows: &WindowSet) -> Result<Checkpoint, BatchError> {
        let stored = self.load_checkpoint(job).await.map_err(db)?;
        Ok(Checkpoint {
            done: offset_of(job, stored)?,
            pending: None,
        })
    }

    async fn commit(
        &self,
        job: &str,
        delta: Merged,
        from: u64,
        to: u64,
    ) -> Result<u64, BatchError> {
        self.commit_aggregates(job, &delta, from, to).await
    }

    async fn query(&self, job: &str, query: &AggregateQuery) -> Result<Vec<StoredRow>, BatchError> {
        self.query_aggregates(job, query).await
    }
}
