//! `POST /v1/events` (publish, all three CloudEvents modes) and `GET /v1/events` (paged
//! replay).

use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use bytes::Bytes;
use pulse_core::{LogError, ReadQuery};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{page_limit, parse_pattern, parse_time, ApiQuery};
use crate::auth::Caller;
use crate::codec;
use crate::config::{durability_of, Durability};
use crate::error::ApiError;
use crate::metrics::EVENTS_PUBLISHED;
use crate::state::AppState;

/// Publishes events: persistent ones are committed to the log (all or nothing) before
/// the answer, memory ones are handed to live subscribers.
pub(super) async fn publish(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(state.limits.max_body_bytes)
        } else {
            ApiError::MalformedJson(e.body_text())
        }
    })?;
    let events = codec::decode(&headers, body)?;
    for event in &events {
        caller.require_publish(&event.ty)?;
    }
    // Over the whole request, memory events included: a batch may not repeat an id.
    pulse_core::log::refuse_repeated_ids(&events)?;
    let mut persistent_at = Vec::with_capacity(events.len());
    let mut persistent = Vec::with_capacity(events.len());
    let mut memory = Vec::new();
    let mut results: Vec<Value> = Vec::with_capacity(events.len());
    for (i, event) in events.into_iter().enumerate() {
        results.push(json!({"id": event.id, "offset": null, "duplicate": false}));
        match durability_of(&state.durability, &event.ty) {
            Durability::Persistent => {
                persistent_at.push(i);
                persistent.push(event);
            }
            Durability::Memory => memory.push(event),
        }
    }
    let mut stored = 0u64;
    if !persistent.is_empty() {
        let appended = state
            .log
            .append(persistent)
            .await
            .map_err(|err| match err {
                // Report the index in the request, not in the persistent part of it.
                LogError::InvalidEvent { index, source } => ApiError::invalid_event(
                    Some(persistent_at.get(index).copied().unwrap_or(index)),
                    &source,
                ),
                other => other.into(),
            })?;
        for (at, a) in persistent_at.into_iter().zip(appended) {
            results[at]["offset"] = a.offset.into();
            results[at]["duplicate"] = a.duplicate.into();
            stored += u64::from(!a.duplicate);
        }
    }
    let memory_count = memory.len() as u64;
    let now = chrono::Utc::now();
    for mut event in memory {
        event.time.get_or_insert(now);
        state.live.send(event);
    }
    metrics::counter!(EVENTS_PUBLISHED).increment(stored + memory_count);
    tracing::debug!(caller = ?caller, stored, memory = memory_count, "events published");
    Ok((StatusCode::ACCEPTED, Json(json!({ "events": results }))))
}

/// Query of `GET /v1/events`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReadParams {
    #[serde(rename = "type")]
    ty: Option<String>,
    after: Option<u64>,
    since: Option<String>,
    limit: Option<usize>,
}

/// Replays stored events by offset, time and pattern, one page at a time.
pub(super) async fn read(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<ReadParams>,
) -> Result<Json<Value>, ApiError> {
    let pattern = parse_pattern(params.ty.as_deref().unwrap_or(">"))?;
    caller.require_subscribe(&pattern)?;
    let limit = page_limit(params.limit)?;
    let after = params.after.unwrap_or(0);
    let since = params
        .since
        .as_deref()
        .map(|s| parse_time("since", s))
        .transpose()?;
    let page = state
        .log
        .read(ReadQuery {
            after,
            limit,
            pattern: Some(pattern),
            since,
        })
        .await?;
    let next_after = page.last().map_or(after, |e| e.offset);
    let events: Vec<Value> = page
        .into_iter()
        .map(|e| json!({"offset": e.offset, "event": e.event.to_json_value()}))
        .collect();
    Ok(Json(json!({"events": events, "next_after": next_after})))
}
