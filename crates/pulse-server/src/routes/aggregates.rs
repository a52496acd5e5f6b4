//! `GET /v1/aggregates`: windowed aggregates of one user's metric.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{parse_time, ApiQuery};
use pulse_batch::AggregateQuery;

use crate::aggregates::query as read_aggregates;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

const MAX_ROWS: usize = 10_000;

/// Query of `GET /v1/aggregates`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AggregateParams {
    user_id: String,
    metric: String,
    window: String,
    from: Option<String>,
    to: Option<String>,
    limit: Option<usize>,
}

/// Reads aggregates: admin, or a subscribe right on the source pattern of a job that
/// computes the window.
pub(super) async fn query(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(p): ApiQuery<AggregateParams>,
) -> Result<Json<Value>, ApiError> {
    if p.user_id.is_empty() || p.metric.is_empty() {
        return Err(ApiError::InvalidParameter(
            "user_id and metric must not be empty".into(),
        ));
    }
    let jobs = state.jobs.jobs_for(&p.window);
    if caller.require_admin().is_err() {
        let allowed = jobs
            .iter()
            .any(|(_, pattern)| caller.require_subscribe(pattern).is_ok());
        if !allowed {
            return Err(ApiError::Forbidden(format!(
                "key {caller:?} lacks the subscribe right on the source pattern of a job computing window {:?}",
                p.window
            )));
        }
    }
    if jobs.is_empty() && !state.jobs.specs().is_empty() {
        return Err(ApiError::InvalidParameter(format!(
            "no job computes window {:?}",
            p.window
        )));
    }
    let from_us = match &p.from {
        Some(t) => parse_time("from", t)?.timestamp_micros(),
        None => i64::MIN,
    };
    let to_us = match &p.to {
        Some(t) => parse_time("to", t)?.timestamp_micros(),
        None => i64::MAX,
    };
    let limit = match p.limit {
        Some(0) => {
            return Err(ApiError::InvalidParameter(
                "limit must be at least 1".into(),
            ))
        }
        Some(n) => n.min(MAX_ROWS),
        None => MAX_ROWS,
    };
    let Some(store) = state.jobs.store() else {
        return Ok(Json(json!({ "aggregates": [] })));
    };
    let names: Vec<String> = jobs.into_iter().map(|(name, _)| name).collect();
    let query = AggregateQuery {
        user_id: p.user_id,
        metric: p.metric,
        window: p.window,
        from_us,
        to_us,
        limit,
    };
    let rows = read_aggregates(store.as_ref(), &names, &query).await?;
    Ok(Json(json!({ "aggregates": rows })))
}
