//! `GET /v1/jobs`, `GET /v1/jobs/{name}/runs` and `POST /v1/jobs/{name}/run` (admin
//! right).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::ApiQuery;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// Every job with its schedule, state and last run.
pub(super) async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    Ok(Json(json!({ "jobs": state.jobs.list().await? })))
}

/// Query of `GET /v1/jobs/{name}/runs`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RunsParams {
    limit: Option<usize>,
}

/// The job's recent runs on this instance, newest first: the ticks it ran (with several
/// instances, the others ran the rest), manual runs and missed ticks.
pub(super) async fn runs(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiQuery(p): ApiQuery<RunsParams>,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    let limit = match p.limit {
        Some(0) => {
            return Err(ApiError::InvalidParameter(
                "limit must be at least 1".into(),
            ))
        }
        Some(n) => n.min(crate::jobs::MAX_RUNS),
        None => crate::jobs::MAX_RUNS,
    };
    Ok(Json(
        json!({ "runs": state.jobs.runs(&name, limit).await? }),
    ))
}

/// Runs a job now; answers when the run is over.
pub(super) async fn run(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require_admin()?;
    let run = state.jobs.run(&name).await?;
    tracing::info!(job = %name, status = %run["status"], "job run on request");
    Ok((StatusCode::ACCEPTED, Json(json!({ "run": run }))))
}
