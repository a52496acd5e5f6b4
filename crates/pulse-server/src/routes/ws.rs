//! `GET /v1/ws`: WebSocket subscriptions.
//!
//! With a group, deliveries come from the consumer group, at most `max_unacked` of them
//! outstanding on the connection; the client acks or nacks (with a delay) by offset.
//! When the connection ends, its outstanding deliveries are nacked without delay so
//! another member (or the same client, reconnected) gets them at once instead of after
//! the group's ack wait. Without a group it is a live tail; acks are accepted and ignored.
//! Memory events reach every matching connection, group or not, with `"offset":null`; a
//! connection that fell behind them gets `{"kind":"missed","missed":N}` with the number
//! of memory events it skipped (see [`crate::live`]).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use pulse_core::{Event, EventLog, LogError, NackOutcome, Pattern, StartPosition};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{parse_pattern, ApiQuery};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::live::{Item, Received, Tail};
use crate::metrics::{DeliveryMetrics, Transport};
use crate::state::AppState;
use crate::subscribe::{resolve, Target};

const DEFAULT_MAX_UNACKED: usize = 100;
const MAX_MAX_UNACKED: usize = 10_000;
const REDELIVERY_CHECK: Duration = Duration::from_millis(100);
const TAIL_BATCH: usize = 256;

/// Query of `GET /v1/ws`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WsParams {
    #[serde(rename = "type")]
    ty: Option<String>,
    group: Option<String>,
    after: Option<u64>,
    max_unacked: Option<usize>,
    start: Option<StartPosition>,
    api_key: Option<String>,
}

/// What a client sends.
#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
enum ClientMessage {
    Ack {
        offsets: Vec<u64>,
    },
    Nack {
        offset: u64,
        #[serde(default)]
        delay_ms: u64,
        #[serde(default)]
        error: Option<String>,
    },
}

/// Checks the request, then upgrades to a WebSocket session.
pub(super) async fn upgrade(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<WsParams>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let upgrade = upgrade.map_err(|e| {
        ApiError::WebSocketRequired(format!(
            "this route takes a websocket upgrade: {}",
            e.body_text()
        ))
    })?;
    let _ = &params.api_key; // read by the auth extractor
    let pattern = params.ty.as_deref().map(parse_pattern).transpose()?;
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
    let after = match (&target, params.after) {
        (Target::Tail { .. }, None) => state.log.last_offset().await?,
        (_, after) => after.unwrap_or(0),
    };
    let tasks = state.tasks.clone();
    Ok(upgrade.on_upgrade(move |socket| {
        tasks.track_future(async move {
            let result = match target {
                Target::Group { name, pattern } => {
                    GroupSession::new(state, name, pattern, max_unacked)
                        .run(socket)
                        .await
                }
                Target::Tail { pattern } => run_tail(state, pattern, after, socket).await,
            };
            if let Err(err) = result {
                tracing::debug!(%err, "websocket session ended");
            }
        })
    }))
}

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("socket: {0}")]
    Socket(#[from] axum::Error),
    #[error(transparent)]
    Log(#[from] LogError),
}

fn event_frame(
    metrics: &DeliveryMetrics,
    offset: Option<u64>,
    attempt: u32,
    event: &Event,
) -> Message {
    metrics.observe_delay(event.time);
    let frame = json!({"kind": "event", "offset": offset, "attempt": attempt, "event": event.to_json_value()});
    Message::Text(frame.to_string().into())
}

fn missed_frame(missed: u64) -> Message {
    Message::Text(
        json!({"kind": "missed", "missed": missed})
            .to_string()
            .into(),
    )
}

fn error_frame(err: &ApiError) -> Message {
    let mut body = err.body();
    if let Value::Object(map) = &mut body {
        map.insert("kind".into(), "error".into());
    }
    Message::Text(body.to_string().into())
}

/// One frame from the client, read.
enum Incoming {
    /// The connection is over.
    Closed,
    /// An ack or nack.
    Op(ClientMessage),
    /// A frame that is not a client message.
    Bad(ApiError),
    /// A control frame the socket answers itself.
    Ignore,
}

fn parse_incoming(msg: Option<Result<Message, axum::Error>>) -> Incoming {
    let parsed = match msg {
        None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return Incoming::Closed,
        Some(Ok(Message::Text(text))) => serde_json::from_str(text.as_str()),
        Some(Ok(Message::Binary(bytes))) => serde_json::from_slice(&bytes),
        Some(Ok(_)) => return Incoming::Ignore,
    };
    match parsed {
        Ok(op) => Incoming::Op(op),
        Err(e) => Incoming::Bad(ApiError::MalformedJson(format!(
            "not a client message: {e}"
        ))),
    }
}

async fn run_tail(
    state: AppState,
    pattern: Pattern,
    after: u64,
    socket: WebSocket,
) -> Result<(), SessionError> {
    let (mut tx, mut rx) = socket.split();
    let mut tail = Tail::new(state.log.clone(), &state.live, pattern, after);
    let metrics = DeliveryMetrics::new(None, Transport::WebSocket);
    loop {
        tokio::select! {
            biased;
            () = state.shutdown.cancelled() => break,
            msg = rx.next() => match parse_incoming(msg) {
                Incoming::Closed => return Ok(()),
                Incoming::Op(_) | Incoming::Ignore => {}
                Incoming::Bad(err) => tx.send(error_frame(&err)).await?,
            },
            items = tail.next_batch(TAIL_BATCH) => {
                for item in items? {
                    let frame = match &item {
                        Item::Stored(s) => event_frame(&metrics, Some(s.offset), 1, &s.event),
                        Item::Memory(e) => event_frame(&metrics, None, 1, e),
                        Item::Missed(n) => missed_frame(*n),
                    };
                    tx.feed(frame).await?;
                }
                tx.flush().await?;
            }
        }
    }
    let _ = tx.send(Message::Close(None)).await;
    Ok(())
}

struct GroupSession {
    state: AppState,
    log: Arc<dyn EventLog>,
    group: String,
    pattern: Pattern,
    max_unacked: usize,
    outstanding: HashSet<u64>,
    metrics: DeliveryMetrics,
}

impl GroupSession {
    fn new(state: AppState, group: String, pattern: Pattern, max_unacked: usize) -> Self {
        Self {
            log: state.log.clone(),
            state,
            metrics: DeliveryMetrics::new(Some(&group), Transport::WebSocket),
            group,
            pattern,
            max_unacked,
            outstanding: HashSet::new(),
        }
    }

    async fn run(mut self, socket: WebSocket) -> Result<(), SessionError> {
        let (mut tx, mut rx) = socket.split();
        let result = self.pump(&mut tx, &mut rx).await;
        // Hand back what this connection still holds, so it is redelivered now.
        for offset in std::mem::take(&mut self.outstanding) {
            if let Ok(NackOutcome::DeadLettered(_)) = self
                .log
                .nack(
                    &self.group,
                    offset,
                    Duration::ZERO,
                    "subscriber disconnected",
                )
                .await
            {
                self.metrics.dead_lettered();
            }
        }
        let _ = tx.send(Message::Close(None)).await;
        result
    }

    async fn pump(
        &mut self,
        tx: &mut futures::stream::SplitSink<WebSocket, Message>,
        rx: &mut futures::stream::SplitStream<WebSocket>,
    ) -> Result<(), SessionError> {
        let mut appends = self.log.watch_appends();
        let mut memory = self.state.live.subscribe();
        let shutdown = self.state.shutdown.clone();
        loop {
            appends.borrow_and_update();
            let room = self.max_unacked.saturating_sub(self.outstanding.len());
            if room > 0 {
                let batch = self.log.fetch(&self.group, room).await?;
                if !batch.is_empty() {
                    for d in &batch {
                        self.outstanding.insert(d.event.offset);
                        tx.feed(event_frame(
                            &self.metrics,
                            Some(d.event.offset),
                            d.attempt,
                            &d.event.event,
                        ))
                        .await?;
                    }
                    tx.flush().await?;
                    // Read what the client sent meanwhile before fetching again.
                    while let Some(msg) = futures::FutureExt::now_or_never(rx.next()) {
                        if !self.handle(parse_incoming(msg), tx).await? {
                            return Ok(());
                        }
                    }
                    continue;
                }
            }
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return Ok(()),
                msg = rx.next() => {
                    if !self.handle(parse_incoming(msg), tx).await? {
                        return Ok(());
                    }
                }
                _ = appends.changed(), if room > 0 => {}
                received = memory.recv(&self.pattern) => tx.send(match received {
                    Received::Event(event) => event_frame(&self.metrics, None, 1, &event),
                    Received::Missed(n) => missed_frame(n),
                }).await?,
                () = tokio::time::sleep(REDELIVERY_CHECK), if room > 0 => {}
            }
        }
    }

    /// Applies one client message; `false` when the connection is over.
    async fn handle(
        &mut self,
        msg: Incoming,
        tx: &mut futures::stream::SplitSink<WebSocket, Message>,
    ) -> Result<bool, SessionError> {
        match msg {
            Incoming::Closed => Ok(false),
            Incoming::Ignore => Ok(true),
            Incoming::Op(ClientMessage::Ack { offsets }) => {
                self.log.ack(&self.group, &offsets).await?;
                for o in &offsets {
                    self.outstanding.remove(o);
                }
                Ok(true)
            }
            Incoming::Op(ClientMessage::Nack {
                offset,
                delay_ms,
                error,
            }) => {
                let text = error.as_deref().unwrap_or("nacked by the subscriber");
                let outcome = self
                    .log
                    .nack(&self.group, offset, Duration::from_millis(delay_ms), text)
                    .await?;
                if let NackOutcome::DeadLettered(_) = outcome {
                    self.metrics.dead_lettered();
                }
                self.outstanding.remove(&offset);
                Ok(true)
            }
            Incoming::Bad(err) => {
                tx.send(error_frame(&err)).await?;
                Ok(true)
            }
        }
    }
}
