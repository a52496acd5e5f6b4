//! Operations endpoints that need no key: `/healthz`, `/readyz`, `/metrics`,
//! `/openapi.json`, and the JSON 404 for unknown routes.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::state::AppState;

const OPENAPI: &str = include_str!("../openapi.json");
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// 200 while the process lives.
pub(super) async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// 200 when the log answers in time and can take writes, else 503 (or 507 while its
/// storage is full).
pub(super) async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    if !state.storage.writable().await {
        return Err(ApiError::StorageFull);
    }
    match tokio::time::timeout(READY_TIMEOUT, state.log.last_offset()).await {
        Ok(Ok(_)) if !state.shutdown.is_cancelled() => Ok(Json(json!({"status": "ready"}))),
        Ok(Ok(_)) => Err(ApiError::Unavailable("the server is shutting down".into())),
        Ok(Err(err)) => Err(err.into()),
        Err(_) => Err(ApiError::Unavailable(
            "the event log did not answer in time".into(),
        )),
    }
}

/// Prometheus text format.
pub(super) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

/// The OpenAPI 3.1 description of the API.
pub(super) async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

/// Unknown routes.
pub(super) async fn not_found() -> (StatusCode, Json<Value>) {
    let err = ApiError::NotFound("no such route".into());
    (err.status(), Json(err.body()))
}
