//! PostgreSQL as a source and a sink of pulse-batch aggregation jobs.
//!
//! - **Source**: [`PostgresLog::aggregate_table`] streams readings from a table with
//!   columns `id` (increasing, e.g. `bigserial`), `user_id`, `metric`, `value`,
//!   `recorded_at` and optionally `unit` through binary `COPY ... TO STDOUT`, feeding an
//!   [`Aggregator`]; the position is the largest `id` read, so an incremental run reads
//!   only rows added since.
//! - **Sink**: [`PostgresLog::commit_aggregates`] merges a run's states into the
//!   `aggregates` table and records the source's checkpoint in the same transaction, the
//!   shape of pulse-batch's SQLite store: a crash leaves either the old aggregates and
//!   checkpoint or the new ones, so no reading is counted twice, and only the keys the run
//!   touched are rewritten (late data re-opens only its windows). Several instances may
//!   commit at once: stored states are read `FOR UPDATE`, so merges never overwrite each
//!   other.

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, Utc};
use futures::{pin_mut, TryStreamExt};
use pulse_batch::aggregator::Aggregator;
use pulse_batch::reading::{RawReading, RawValue};
use pulse_batch::rejects::Position;
use pulse_batch::state::AggState;
use pulse_batch::table::Merged;
use pulse_batch::BatchError;
use pulse_core::LogError;
use tokio_postgres::binary_copy::BinaryCopyOutStream;
use tokio_postgres::types::Type;

use crate::error::{self, DbResult};
use crate::PostgresLog;

/// Checks a table name spliced into SQL: `[a-z_][a-z0-9_]*`, at most 63 characters.
fn validate_table(name: &str) -> Result<(), BatchError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(BatchError::InvalidSpec(format!(
            "table name {name:?}: expected lowercase letters, digits and _"
        )))
    }
}

fn db(err: LogError) -> BatchError {
    BatchError::Log(err)
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn from_micros(t: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t).unwrap_or_default()
}

impl PostgresLog {
    /// Aggregates the rows of `table` (in the log's schema) with an `id`
    /// above `after`; returns the largest `id` read (`after` when there was none).
    pub async fn aggregate_table(
        &self,
        table: &str,
        after: i64,
        agg: &mut Aggregator<'_>,
    ) -> Result<i64, BatchError> {
        validate_table(table)?;
        let client = self
            .shared
            .pool
            .get()
            .await
            .map_err(error::pool)
            .map_err(db)?;
        let columns: Vec<String> = client
            .query(
                "SELECT column_name::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1",
                &[&table],
            )
            .await
            .db()
            .map_err(db)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let invalid = |reason: String| BatchError::InvalidInput {
            path: format!("postgres table {table}"),
            reason,
        };
        if columns.is_empty() {
            return Err(invalid("no such table".into()));
        }
        for needed in ["id", "user_id", "metric", "value", "recorded_at"] {
            if !columns.iter().any(|c| c == needed) {
                return Err(invalid(format!("the table has no `{needed}` column")));
            }
        }
        let unit = if columns.iter().any(|c| c == "unit") {
            "unit::text"
        } else {
            "NULL::text"
        };
        // COPY takes no parameters: `after` is an integer and `table` was checked.
        let copy = format!(
            "COPY (SELECT id::bigint, user_id::text, metric::text, value::float8, {unit}, \
             recorded_at::timestamptz FROM \"{table}\" WHERE id > {after} ORDER BY id) \
             TO STDOUT (FORMAT binary)"
        );
        let stream = client.copy_out(&copy).await.db().map_err(db)?;
        let rows = BinaryCopyOutStream::new(
            stream,
            &[
                Type::INT8,
                Type::TEXT,
                Type::TEXT,
                Type::FLOAT8,
                Type::TEXT,
                Type::TIMESTAMPTZ,
            ],
        );
        pin_mut!(rows);
        let mut last = after;
        while let Some(row) = rows.try_next().await.map_err(error::db).map_err(db)? {
            let decode = |e: tokio_postgres::Error| invalid(format!("unreadable row: {e}"));
            let id: i64 = row.try_get(0).map_err(decode)?;
            let user_id: Option<&str> = row.try_get(1).map_err(decode)?;
            let metric: Option<&str> = row.try_get(2).map_err(decode)?;
            let value: Option<f64> = row.try_get(3).map_err(decode)?;
            let unit: Option<&str> = row.try_get(4).map_err(decode)?;
            let at: Option<DateTime<Utc>> = row.try_get(5).map_err(decode)?;
            let at = at.map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true));
            last = id;
            let raw = RawReading {
                user_id: user_id.map(str::as_bytes),
                metric: metric.map(str::as_bytes),
                value: value.map(RawValue::Number),
                unit: unit.map(str::as_bytes),
                recorded_at: at.as_deref().map(str::as_bytes),
                source: None,
            };
            let record = || {
                format!(
                    "{} {} {:?} {} {}",
                    user_id.unwrap_or_default(),
                    metric.unwrap_or_default(),
                    value,
                    unit.unwrap_or_default(),
                    at.as_deref().unwrap_or_default()
                )
            };
            agg.push(&raw, Position::Row(id), record)?;
        }
        Ok(last)
    }

    /// In one transaction: merges every state of `delta` into the stored state of its
    /// key in `aggregates` and records `position` as the checkpoint of `source` (read back
    /// with [`load_checkpoint`](Self::load_checkpoint)). Returns the keys written.
    pub async fn commit_aggregates(
        &self,
        delta: &Merged,
        source: &str,
        position: &[u8],
    ) -> Result<u64, BatchError> {
        let mut keys = Keys::default();
        let mut states: Vec<AggState> = Vec::new();
        let mut meta: Vec<(String, i64)> = Vec::new();
        delta.for_each(|row, state| -> Result<(), BatchError> {
            keys.user_ids.push(row.user_id.to_owned());
            keys.metrics.push(row.metric.name().to_owned());
            keys.windows.push(row.window.to_owned());
            keys.starts.push(from_micros(row.window_start));
            meta.push((row.metric.unit().to_owned(), row.window_end));
            states.push(state.clone());
            Ok(())
        })?;
        let mut client = self
            .shared
            .pool
            .get()
            .await
            .map_err(error::pool)
            .map_err(db)?;
        let tx = client.transaction().await.db().map_err(db)?;
        let stored = tx
            .query(
                "SELECT a.user_id, a.metric, a.\"window\", a.window_start, a.state \
                 FROM aggregates a JOIN unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[]) \
                 AS k(user_id, metric, \"window\", window_start) \
                 ON a.user_id = k.user_id AND a.metric = k.metric AND a.\"window\" = k.\"window\" \
                 AND a.window_start = k.window_start \
                 ORDER BY a.user_id, a.metric, a.\"window\", a.window_start FOR UPDATE OF a",
                &[&keys.user_ids, &keys.metrics, &keys.windows, &keys.starts],
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
                    path: format!("postgres aggregates of {source}").into(),
                    reason: format!("damaged state for {} {} {}", key.0, key.1, key.2),
                })?;
                merged.merge(&state);
                state = merged;
            }
            let s = state.stats();
            out.units.push(meta[i].0.clone());
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
        let written = tx
            .execute(
                "INSERT INTO aggregates (user_id, metric, unit, \"window\", window_start, window_end, \
                 count, sum, avg, min, max, stddev, p50, p95, p99, first_at, last_at, state) \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], \
                 $5::timestamptz[], $6::timestamptz[], $7::bigint[], $8::float8[], $9::float8[], \
                 $10::float8[], $11::float8[], $12::float8[], $13::float8[], $14::float8[], \
                 $15::float8[], $16::timestamptz[], $17::timestamptz[], $18::bytea[]) \
                 ON CONFLICT (user_id, metric, \"window\", window_start) DO UPDATE SET \
                 unit = excluded.unit, window_end = excluded.window_end, count = excluded.count, \
                 sum = excluded.sum, avg = excluded.avg, min = excluded.min, max = excluded.max, \
                 stddev = excluded.stddev, p50 = excluded.p50, p95 = excluded.p95, \
                 p99 = excluded.p99, first_at = excluded.first_at, last_at = excluded.last_at, \
                 state = excluded.state",
                &[
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
            .map_err(db)?;
        tx.execute(
            "INSERT INTO job_checkpoints (job, checkpoint, updated_at) VALUES ($1, $2, now()) \
             ON CONFLICT (job) DO UPDATE SET checkpoint = excluded.checkpoint, updated_at = now()",
            &[&source, &position],
        )
        .await
        .db()
        .map_err(db)?;
        tx.commit().await.db().map_err(db)?;
        Ok(written)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_checked() {
        assert!(validate_table("readings_2026").is_ok());
        for bad in ["", "Readings", "r;drop", "1r", "a.b"] {
            assert!(validate_table(bad).is_err(), "{bad}");
        }
    }
}
