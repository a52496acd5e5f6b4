//! Reads windowed aggregates from the jobs' state stores for `GET /v1/aggregates`.
//!
//! The `aggregates` table is keyed by (user, metric, window, window start), so a query
//! for one user's metric and window is a primary-key range scan. Stores are opened
//! read-only on the blocking pool; a store that does not exist yet (no run so far) has
//! no rows, nor does one whose first run has not created its tables yet.

use std::path::PathBuf;

use rusqlite::{params, Connection, OpenFlags};
use serde_json::{json, Value};

use crate::error::ApiError;

const SELECT: &str = r#"SELECT user_id, metric, unit, "window", window_start, window_end, count, sum, avg,
    min, max, stddev, p50, p95, p99 FROM aggregates
    WHERE user_id = ?1 AND metric = ?2 AND "window" = ?3 AND start_us >= ?4 AND start_us < ?5
    ORDER BY window_start LIMIT ?6"#;

/// One aggregate query.
#[derive(Clone, Debug)]
pub struct AggregateQuery {
    /// The user.
    pub user_id: String,
    /// The metric.
    pub metric: String,
    /// The window label.
    pub window: String,
    /// Windows starting at or after this (µs since the epoch).
    pub from_us: i64,
    /// Windows starting before this (µs since the epoch).
    pub to_us: i64,
    /// At most this many rows.
    pub limit: usize,
}

/// Rows from every store, in window order.
pub async fn query(stores: Vec<PathBuf>, q: AggregateQuery) -> Result<Vec<Value>, ApiError> {
    tokio::task::spawn_blocking(move || {
        let mut rows = Vec::new();
        for store in stores.iter().filter(|p| p.exists()) {
            read_store(store, &q, &mut rows).map_err(|e| {
                ApiError::Internal(format!("aggregates in {}: {e}", store.display()))
            })?;
        }
        rows.sort_by(|a: &Value, b: &Value| {
            a["window_start"].as_str().cmp(&b["window_start"].as_str())
        });
        rows.truncate(q.limit);
        Ok(rows)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
}

fn read_store(
    path: &std::path::Path,
    q: &AggregateQuery,
    out: &mut Vec<Value>,
) -> rusqlite::Result<()> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // The first run creates the file before its tables: nothing to read yet.
    let has_table: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'aggregates')",
        [],
        |r| r.get(0),
    )?;
    if !has_table {
        return Ok(());
    }
    let mut stmt = conn.prepare(SELECT)?;
    let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
    let mut rows = stmt.query(params![
        q.user_id, q.metric, q.window, q.from_us, q.to_us, limit
    ])?;
    while let Some(r) = rows.next()? {
        out.push(json!({
            "user_id": r.get::<_, String>(0)?,
            "metric": r.get::<_, String>(1)?,
            "unit": r.get::<_, String>(2)?,
            "window": r.get::<_, String>(3)?,
            "window_start": r.get::<_, String>(4)?,
            "window_end": r.get::<_, String>(5)?,
            "count": r.get::<_, i64>(6)?,
            "sum": r.get::<_, f64>(7)?,
            "avg": r.get::<_, f64>(8)?,
            "min": r.get::<_, f64>(9)?,
            "max": r.get::<_, f64>(10)?,
            "stddev": r.get::<_, Option<f64>>(11)?,
            "p50": r.get::<_, f64>(12)?,
            "p95": r.get::<_, f64>(13)?,
            "p99": r.get::<_, f64>(14)?,
        }));
    }
    Ok(())
}
