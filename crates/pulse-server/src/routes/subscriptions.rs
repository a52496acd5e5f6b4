//! `POST/GET /v1/subscriptions`, `DELETE /v1/subscriptions/{id}`: webhook subscriptions
//! (admin right).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{parse_pattern, ApiJson};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;
use crate::webhook::WebhookSpec;

/// Body of `POST /v1/subscriptions`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewSubscription {
    pattern: String,
    group: Option<String>,
    url: String,
    max_deliver: Option<u32>,
    backoff_ms: Option<Vec<u64>>,
}

fn view(spec: &WebhookSpec) -> Value {
    json!({
        "id": spec.id,
        "pattern": spec.pattern.as_str(),
        "group": spec.group,
        "url": spec.url,
        "max_deliver": spec.max_deliver,
        "backoff_ms": spec.backoff_ms,
        "from_config": spec.from_config,
    })
}

/// Creates a webhook subscription.
pub(super) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewSubscription>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require_admin()?;
    let pattern = parse_pattern(&body.pattern)?;
    let id = pulse_core::new_event_id();
    let group = body.group.unwrap_or_else(|| format!("webhook-{id}"));
    let spec = WebhookSpec::new(
        id,
        pattern,
        group,
        body.url,
        body.max_deliver.unwrap_or(state.groups.max_deliver),
        body.backoff_ms,
    )
    .map_err(|(field, reason)| ApiError::InvalidParameter(format!("{field}: {reason}")))?;
    let spec = state.webhooks.create(spec).await?;
    tracing::info!(subscription = %spec.id, group = %spec.group, "webhook subscription created");
    Ok((StatusCode::CREATED, Json(view(&spec))))
}

/// Lists webhook subscriptions.
pub(super) async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    let subs: Vec<Value> = state.webhooks.list().iter().map(view).collect();
    Ok(Json(json!({ "subscriptions": subs })))
}

/// Deletes a webhook subscription; its group stays, with its position.
pub(super) async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require_admin()?;
    state.webhooks.delete(&id).await?;
    tracing::info!(subscription = %id, "webhook subscription deleted");
    Ok(StatusCode::NO_CONTENT)
}
