//! `GET /v1/groups`: consumer groups with committed offset and lag; `PUT
//! /v1/groups/{group}`: change a group's pattern (both admin right).
//!
//! A group's pattern is part of the group: subscribers join with it or get a 409, so that
//! no subscribe key can re-point a group at other types. Changing it is this explicit
//! administrator's action, which keeps the group's position.

use axum::extract::{Path, State};
use axum::Json;
use pulse_core::{group_lag, EventLog, LogError};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{parse_pattern, ApiJson};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::metrics::record_lag;
use crate::state::AppState;

/// Refreshes the lag gauges of every group (called by `GET /v1/groups` and periodically).
pub(crate) async fn refresh_lag(log: &dyn EventLog) -> Result<Vec<Value>, LogError> {
    let mut out = Vec::new();
    for g in log.groups().await? {
        let lag = group_lag(log, &g).await?;
        let (events, seconds) = (lag.events, lag.seconds_at(chrono::Utc::now()));
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

/// Body of `PUT /v1/groups/{group}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GroupUpdate {
    pattern: String,
}

/// Changes the pattern of an existing group, keeping its position.
pub(super) async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<GroupUpdate>,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    pulse_core::log::validate_group_name(&name)?;
    let pattern = parse_pattern(&body.pattern)?;
    let info = state.webhooks.set_group_pattern(&name, pattern).await?;
    tracing::info!(caller = ?caller, group = %info.name, pattern = %info.pattern, "consumer group pattern changed");
    Ok(Json(json!({
        "name": info.name,
        "pattern": info.pattern.as_str(),
        "committed": info.committed,
        "pending": info.pending,
    })))
}
