//! `GET /v1/dlq` and `POST /v1/dlq/{id}/redrive`: the dead-letter store (admin right).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{page_limit, ApiQuery};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// Query of `GET /v1/dlq`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DlqParams {
    group: Option<String>,
    after: Option<u64>,
    limit: Option<usize>,
}

/// Lists dead letters, oldest first.
pub(super) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<DlqParams>,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    if let Some(group) = &params.group {
        if !state.log.groups().await?.iter().any(|g| &g.name == group) {
            return Err(ApiError::UnknownGroup(group.clone()));
        }
    }
    let limit = page_limit(params.limit)?;
    let after = params.after.unwrap_or(0);
    let letters = state
        .log
        .dead_letters(params.group.as_deref(), after, limit)
        .await?;
    let next_after = letters.last().map_or(after, |d| d.id);
    let rfc3339 =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let items: Vec<Value> = letters
        .into_iter()
        .map(|d| {
            json!({
                "id": d.id,
                "group": d.group,
                "offset": d.event.offset,
                "event": d.event.event.to_json_value(),
                "error": d.error,
                "attempts": d.attempts,
                "first_failure": rfc3339(d.first_failure),
                "last_failure": rfc3339(d.last_failure),
            })
        })
        .collect();
    Ok(Json(
        json!({"dead_letters": items, "next_after": next_after}),
    ))
}

/// Hands a dead letter back to its group.
pub(super) async fn redrive(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require_admin()?;
    let id: u64 = id.parse().map_err(|_| {
        ApiError::InvalidParameter(format!("dead letter id {id:?} is not a number"))
    })?;
    state.log.redrive(id).await?;
    tracing::info!(dead_letter = id, "dead letter redriven");
    Ok((StatusCode::ACCEPTED, Json(json!({ "redriven": id }))))
}
