//! `GET /v1/jobs` and `POST /v1/jobs/{name}/run` (admin right).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

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
