//! `GET /v1/stream`: Server-Sent Events.
//!
//! Without a group it is a live tail after `after` / `Last-Event-ID` (default: the
//! current end), memory events included; a tail that fell behind them gets a `missed`
//! event whose data is `{"missed": N}`, the number of memory events it skipped.
//!
//! With a group, events come through the consumer group at least once: a delivery stays
//! unacknowledged until the client acknowledges it with `POST /v1/groups/{group}/ack`
//! (or fails it with `.../nack`), at most `max_unacked` of them outstanding on the
//! stream. Having been written to the socket proves nothing (the client may crash with
//! it unread), so nothing is acknowledged for the client. When the connection ends its
//! outstanding deliveries are handed back at once, so a client that resumes gets again
//! everything it did not acknowledge; `Last-Event-ID` plays no part for a group. The
//! acks are plain HTTP requests, which a browser `EventSource` page (`fetch`) and a
//! Python `httpx` consumer can both send. The `id:` of each event is its offset; memory
//! events have none.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::stream::{self, Stream, StreamExt};
use pulse_core::{Event, EventLog, LogError, NackOutcome};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

use super::{parse_pattern, ApiJson, ApiQuery};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::live::{Item, Settled, Tail};
use crate::metrics::{DeliveryMetrics, Transport, DEAD_LETTERS, GROUP_LABEL};
use crate::state::AppState;
use crate::subscribe::{resolve, Target};

const BATCH: usize = 256;
const DEFAULT_MAX_UNACKED: usize = 100;
const MAX_MAX_UNACKED: usize = 10_000;
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
    max_unacked: Option<usize>,
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
    let max_unacked = match params.max_unacked {
        None => DEFAULT_MAX_UNACKED,
        Some(n) if (1..=MAX_MAX_UNACKED).contains(&n) => n,
        Some(n) => {
            return Err(ApiError::InvalidParameter(format!(
                "max_unacked={n} must be from 1 to {MAX_MAX_UNACKED}"
            )))
        }
    };
    let target = resolve(&state, &caller, pattern, params.group, params.start).await?;
    let shutdown = state.shutdown.clone().cancelled_owned();
    let body: std::pin::Pin<Box<dyn Stream<Item = Result<SseEvent, Infallible>> + Send>> =
        match target {
            Target::Group { name, pattern: _ } => {
                let metrics = DeliveryMetrics::new(Some(&name), Transport::Sse);
                Box::pin(group_stream(&state, name, max_unacked, metrics))
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

fn missed_frame(missed: u64) -> SseEvent {
    SseEvent::default()
        .event("missed")
        .data(json!({ "missed": missed }).to_string())
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
                        Item::Missed(n) => Ok(missed_frame(*n)),
                    })
                    .collect();
                Some((stream::iter(frames), Some((tail, metrics))))
            }
            Err(err) => Some((stream::iter(vec![Ok(error_frame(&err))]), None)),
        }
    })
    .flatten()
}

/// What one SSE group stream holds: deliveries written and not yet settled by the client.
struct GroupCursor {
    log: Arc<dyn EventLog>,
    group: String,
    max_unacked: usize,
    ack_wait: Duration,
    appends: watch::Receiver<u64>,
    settlements: broadcast::Receiver<Arc<Settled>>,
    /// Offset → when it was written. An entry older than the ack wait is forgotten: the
    /// group has redelivered it (or its ack went to another instance).
    outstanding: HashMap<u64, Instant>,
    metrics: DeliveryMetrics,
}

impl GroupCursor {
    /// The next deliveries as frames, waiting while there is no room or nothing due.
    async fn next_frames(&mut self) -> Result<Vec<SseEvent>, LogError> {
        loop {
            self.forget_expired();
            self.appends.borrow_and_update();
            let room = self.max_unacked.saturating_sub(self.outstanding.len());
            if room > 0 {
                let batch = self.log.fetch(&self.group, room.min(BATCH)).await?;
                if !batch.is_empty() {
                    let now = Instant::now();
                    for d in &batch {
                        self.outstanding.insert(d.event.offset, now);
                    }
                    return Ok(batch
                        .iter()
                        .map(|d| frame(&self.metrics, Some(d.event.offset), &d.event.event))
                        .collect());
                }
            }
            tokio::select! {
                settled = self.settlements.recv() => match settled {
                    Ok(s) if s.group == self.group => {
                        for offset in &s.offsets {
                            self.outstanding.remove(offset);
                        }
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    // The sender lives in the server state; it outlives every stream.
                    Err(broadcast::error::RecvError::Closed) => {
                        tokio::time::sleep(REDELIVERY_CHECK).await;
                    }
                },
                _ = self.appends.changed(), if room > 0 => {}
                () = tokio::time::sleep(REDELIVERY_CHECK) => {}
            }
        }
    }

    fn forget_expired(&mut self) {
        let ack_wait = self.ack_wait;
        self.outstanding.retain(|_, at| at.elapsed() < ack_wait);
    }
}

impl Drop for GroupCursor {
    /// The connection is gone: hand back what the client did not acknowledge, so it is
    /// redelivered now (to the client resuming, or another member) rather than after the
    /// ack wait.
    fn drop(&mut self) {
        let offsets: Vec<u64> = self.outstanding.drain().map(|(o, _)| o).collect();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if offsets.is_empty() {
            return;
        }
        let (log, group, metrics) = (
            self.log.clone(),
            std::mem::take(&mut self.group),
            self.metrics.clone(),
        );
        runtime.spawn(async move {
            for offset in offsets {
                // Already settled (acked meanwhile) is an UnknownDelivery: nothing to do.
                match log
                    .nack(&group, offset, Duration::ZERO, "subscriber disconnected")
                    .await
                {
                    Ok(NackOutcome::DeadLettered(_)) => metrics.dead_lettered(),
                    Ok(NackOutcome::Redeliver) | Err(_) => {}
                }
            }
        });
    }
}

fn group_stream(
    state: &AppState,
    group: String,
    max_unacked: usize,
    metrics: DeliveryMetrics,
) -> impl Stream<Item = Result<SseEvent, Infallible>> + Send {
    let cursor = GroupCursor {
        log: state.log.clone(),
        group,
        max_unacked,
        ack_wait: state.groups.ack_wait,
        appends: state.log.watch_appends(),
        settlements: state.live.settlements(),
        outstanding: HashMap::new(),
        metrics,
    };
    stream::unfold(Some(cursor), |cursor| async move {
        let mut c = cursor?;
        match c.next_frames().await {
            Ok(frames) => Some((
                stream::iter(frames.into_iter().map(Ok).collect::<Vec<_>>()),
                Some(c),
            )),
            Err(err) => Some((stream::iter(vec![Ok(error_frame(&err))]), None)),
        }
    })
    .flatten()
}

/// Body of `POST /v1/groups/{group}/ack`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AckBody {
    offsets: Vec<u64>,
}

/// Body of `POST /v1/groups/{group}/nack`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NackBody {
    offset: u64,
    #[serde(default)]
    delay_ms: u64,
    #[serde(default)]
    error: Option<String>,
}

/// The most offsets one ack request may carry.
const MAX_ACK_OFFSETS: usize = 10_000;

/// Acknowledges deliveries of a group (those of an SSE stream): they are not delivered
/// again. Unknown or already settled offsets are ignored, as on WebSocket.
pub(super) async fn ack(
    State(state): State<AppState>,
    caller: Caller,
    Path(group): Path<String>,
    ApiJson(body): ApiJson<AckBody>,
) -> Result<StatusCode, ApiError> {
    if body.offsets.len() > MAX_ACK_OFFSETS {
        return Err(ApiError::InvalidParameter(format!(
            "acknowledge at most {MAX_ACK_OFFSETS} offsets per request"
        )));
    }
    resolve(&state, &caller, None, Some(group.clone()), None).await?;
    state.log.ack(&group, &body.offsets).await?;
    state.live.settle(&group, body.offsets);
    Ok(StatusCode::NO_CONTENT)
}

/// Reports a failed delivery of a group: redelivered after `delay_ms`, or dead-lettered
/// once `max_deliver` deliveries failed.
pub(super) async fn nack(
    State(state): State<AppState>,
    caller: Caller,
    Path(group): Path<String>,
    ApiJson(body): ApiJson<NackBody>,
) -> Result<Json<Value>, ApiError> {
    resolve(&state, &caller, None, Some(group.clone()), None).await?;
    let text = body.error.as_deref().unwrap_or("nacked by the subscriber");
    let outcome = state
        .log
        .nack(
            &group,
            body.offset,
            Duration::from_millis(body.delay_ms),
            text,
        )
        .await?;
    state.live.settle(&group, vec![body.offset]);
    Ok(Json(match outcome {
        NackOutcome::Redeliver => json!({"outcome": "redeliver"}),
        NackOutcome::DeadLettered(id) => {
            metrics::counter!(DEAD_LETTERS, GROUP_LABEL => group.clone()).increment(1);
            json!({"outcome": "dead_lettered", "dead_letter": id})
        }
    }))
}
