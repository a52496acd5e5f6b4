//! `GET /v1/groups`: consumer groups with committed offset and lag (admin right).

use axum::extract::State;
use axum::Json;
use pulse_core::{EventLog, GroupInfo, LogError, ReadQuery};
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::metrics::record_lag;
use crate::state::AppState;

/// Lag is counted exactly up to this many events, then reported as at least this.
const LAG_SCAN: usize = 10_000;

/// A group's lag: matching events after the committed offset, and the age of the first.
pub(super) async fn lag(log: &dyn EventLog, group: &GroupInfo) -> Result<(u64, f64), LogError> {
    let pending = log
        .read(ReadQuery {
            after: group.committed,
            limit: LAG_SCAN,
            pattern: Some(group.pattern.clone()),
            since: None,
        })
        .await?;
    let seconds = pending.first().and_then(|e| e.event.time).map_or(0.0, |t| {
        ((chrono::Utc::now() - t).num_milliseconds().max(0) as f64) / 1e3
    });
    Ok((pending.len() as u64, seconds))
}

/// Refreshes the lag gauges of every group (called by `GET /v1/groups` and periodically).
pub(crate) async fn refresh_lag(log: &dyn EventLog) -> Result<Vec<Value>, LogError> {
    let mut out = Vec::new();
    for g in log.groups().await? {
        let (events, seconds) = lag(log, &g).await?;
        record_lag(&g.name, events, seconds);
        out.push(json!({
            "name": g.name,
            "pattern": g.pattern.as_str(),
            "committed": g.committed,
            "pending": g.pending,
            "lag_events": events,
            "lag_seconds": seconds,
        }));
    }
    Ok(out)
}

/// Lists every consumer group.
pub(super) async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    let groups = refresh_lag(state.log.as_ref()).await?;
    Ok(Json(json!({ "groups": groups })))
}
