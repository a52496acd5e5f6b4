//! `GET /v1/stream`: Server-Sent Events.
//!
//! Without a group it is a live tail after `after` / `Last-Event-ID` (default: the
//! current end). With a group, events come through the consumer group and each is
//! acknowledged once the next one is asked for, i.e. once hyper has taken the previous
//! ones for the socket (SSE has no client acks). The `id:` of each event is its offset;
//! memory events have none.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, Stream, StreamExt};
use pulse_core::{Event, EventLog, LogError};
use serde::Deserialize;

use super::{parse_pattern, ApiQuery};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::live::{Item, Tail};
use crate::metrics::{DeliveryMetrics, Transport};
use crate::state::AppState;
use crate::subscribe::{resolve, Target};

const BATCH: usize = 256;
const KEEP_ALIVE: Duration = Duration::from_secs(15);
const REDELIVERY_CHECK: Duration = Duration::from_millis(100);

/// Query of `GET /v1/stream`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StreamParams {
    #[serde(rename = "type")]
    ty: Option<String>,
    group: Option<String>,
    after: Option<u64>,
    start: Option<pulse_core::StartPosition>,
    api_key: Option<String>,
}

/// Opens an SSE stream.
pub(super) async fn sse(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiQuery(params): ApiQuery<StreamParams>,
) -> Result<Response, ApiError> {
    let _ = &params.api_key; // read by the auth extractor
    let pattern = params.ty.as_deref().map(parse_pattern).transpose()?;
    let last_event_id = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::InvalidParameter("Last-Event-ID must be an offset".into())
                })?,
        ),
    };
    let target = resolve(&state, &caller, pattern, params.group, params.start).await?;
    let shutdown = state.shutdown.clone().cancelled_owned();
    let body: std::pin::Pin<Box<dyn Stream<Item = Result<SseEvent, Infallible>> + Send>> =
        match target {
            Target::Group { name, pattern: _ } => {
                let metrics = DeliveryMetrics::new(Some(&name), Transport::Sse);
                Box::pin(group_stream(state.log.clone(), name, metrics))
            }
            Target::Tail { pattern } => {
                let after = match last_event_id.or(params.after) {
                    Some(a) => a,
                    None => state.log.last_offset().await?,
                };
                Box::pin(tail_stream(
                    Tail::new(state.log.clone(), &state.live, pattern, after),
                    DeliveryMetrics::new(None, Transport::Sse),
                ))
            }
        };
    let body = body.take_until(shutdown);
    Ok(Sse::new(body)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response())
}

fn frame(metrics: &DeliveryMetrics, offset: Option<u64>, event: &Event) -> SseEvent {
    metrics.observe_delay(event.time);
    let frame = SseEvent::default()
        .event("cloudevent")
        .data(event.to_json_string());
    match offset {
        Some(o) => frame.id(o.to_string()),
        None => frame,
    }
}

fn error_frame(err: &LogError) -> SseEvent {
    let api = ApiError::from(match err {
        LogError::UnknownGroup(g) => LogError::UnknownGroup(g.clone()),
        other => LogError::Unavailable(other.to_string()),
    });
    SseEvent::default()
        .event("error")
        .data(api.body().to_string())
}

fn tail_stream(
    tail: Tail,
    metrics: DeliveryMetrics,
) -> impl Stream<Item = Result<SseEvent, Infallible>> + Send {
    stream::unfold(Some((tail, metrics)), |state| async move {
        let (mut tail, metrics) = state?;
        match tail.next_batch(BATCH).await {
            Ok(items) => {
                let frames: Vec<_> = items
                    .iter()
                    .map(|item| match item {
                        Item::Stored(s) => Ok(frame(&metrics, Some(s.offset), &s.event)),
                        Item::Memory(e) => Ok(frame(&metrics, None, e)),
                    })
                    .collect();
                Some((stream::iter(frames), Some((tail, metrics))))
            }
            Err(err) => Some((stream::iter(vec![Ok(error_frame(&err))]), None)),
        }
    })
    .flatten()
}

struct GroupCursor {
    log: Arc<dyn EventLog>,
    group: String,
    to_ack: Vec<u64>,
    metrics: DeliveryMetrics,
}

fn group_stream(
    log: Arc<dyn EventLog>,
    group: String,
    metrics: DeliveryMetrics,
) -> impl Stream<Item = Result<SseEvent, Infallible>> + Send {
    let cursor = GroupCursor {
        log,
        group,
        to_ack: Vec::new(),
        metrics,
    };
    stream::unfold(Some(cursor), |cursor| async move {
        let mut c = cursor?;
        let mut appends = c.log.watch_appends();
        loop {
            if !c.to_ack.is_empty() {
                // The previous batch was taken by the connection: acknowledge it.
                if let Err(err) = c.log.ack(&c.group, &c.to_ack).await {
                    return Some((stream::iter(vec![Ok(error_frame(&err))]), None));
                }
                c.to_ack.clear();
            }
            appends.borrow_and_update();
            match c.log.fetch(&c.group, BATCH).await {
                Ok(batch) if !batch.is_empty() => {
                    let frames: Vec<_> = batch
                        .iter()
                        .map(|d| Ok(frame(&c.metrics, Some(d.event.offset), &d.event.event)))
                        .collect();
                    c.to_ack = batch.iter().map(|d| d.event.offset).collect();
                    return Some((stream::iter(frames), Some(c)));
                }
                Ok(_) => {
                    let _ = tokio::time::timeout(REDELIVERY_CHECK, appends.changed()).await;
                }
                Err(err) => return Some((stream::iter(vec![Ok(error_frame(&err))]), None)),
            }
        }
    })
    .flatten()
}
