//! Reads windowed aggregates for `GET /v1/aggregates` from the jobs' [`AggregateStore`]
//! — the same store the jobs commit to, so with a shared store every instance answers
//! alike. Rows of every job computing the window are merged by window start.

use pulse_batch::time::format_rfc3339;
use pulse_batch::{AggregateQuery, AggregateStore, StoredRow};
use serde_json::{json, Value};

use crate::error::ApiError;

/// Rows of every job in `jobs`, in window order, at most `q.limit`.
pub(crate) async fn query(
    store: &dyn AggregateStore,
    jobs: &[String],
    q: &AggregateQuery,
) -> Result<Vec<Value>, ApiError> {
    let mut rows: Vec<StoredRow> = Vec::new();
    for job in jobs {
        let found = store
            .query(job, q)
            .await
            .map_err(|e| ApiError::Internal(format!("aggregates of job {job}: {e}")))?;
        rows.extend(found);
    }
    rows.sort_by_key(|r| r.window_start);
    rows.truncate(q.limit);
    Ok(rows.iter().map(view).collect())
}

fn view(r: &StoredRow) -> Value {
    let s = &r.stats;
    json!({
        "user_id": r.user_id,
        "metric": r.metric.name(),
        "unit": r.metric.unit(),
        "window": r.window,
        "window_start": format_rfc3339(r.window_start),
        "window_end": format_rfc3339(r.window_end),
        "count": s.count,
        "sum": s.sum,
        "avg": s.avg,
        "min": s.min,
        "max": s.max,
        "stddev": s.stddev,
        "p50": s.p50,
        "p95": s.p95,
        "p99": s.p99,
    })
}
