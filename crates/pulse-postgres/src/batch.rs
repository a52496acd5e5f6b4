//! PostgreSQL as a source of pulse-batch aggregation jobs: [`PostgresLog::aggregate_table`]
//! streams readings from a table with columns `id` (increasing, e.g. `bigserial`),
//! `user_id`, `metric`, `value`, `recorded_at` and optionally `unit` through binary
//! `COPY ... TO STDOUT`, feeding an [`Aggregator`]; the position is the largest `id`
//! read, so an incremental run reads only rows added since. The sink is
//! [`aggregates`](crate::aggregates).

use chrono::{DateTime, SecondsFormat, Utc};
use futures::{pin_mut, TryStreamExt};
use pulse_batch::aggregator::Aggregator;
use pulse_batch::reading::{RawReading, RawValue};
use pulse_batch::rejects::Position;
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

pub(crate) fn db(err: LogError) -> BatchError {
    BatchError::Log(err)
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
