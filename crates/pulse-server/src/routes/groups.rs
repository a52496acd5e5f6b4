//! `GET /v1/groups`: consumer groups with committed offset and lag (admin right).

use axum::extract::State;
use axum::Json;
use pulse_core::{group_lag, EventLog, LogError};
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::metrics::{CONSUMER_LAG_EVENTS, CONSUMER_LAG_SECONDS};
use crate::state::AppState;

/// Refreshes the lag gauges of every group (called by `GET /v1/groups` and periodically).
pub(crate) async fn refresh_lag(log: &dyn EventLog) -> Result<Vec<Value>, LogError> {
    let mut out = Vec::new();
    for g in log.groups().await? {
        let lag = group_lag(log, &g).await?;
        let (events, seconds) = (lag.events, lag.seconds_at(chrono::Utc::now()));
        metrics::gauge!(CONSUMER_LAG_EVENTS, "group" => g.name.clone()).set(events as f64);
        metrics::gauge!(CONSUMER_LAG_SECONDS, "group" => g.name.clone()).set(seconds);
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
