//! Appending: validate everything, then publish in order with the event id as
//! `Nats-Msg-Id`, pipelined (every publish of a chunk is sent before the first ack is
//! awaited).
//!
//! Dedup is JetStream's: within the stream's duplicate window (`duplicate_window`,
//! two minutes unless configured) the server answers a repeated id with the original
//! sequence and stores nothing. Beyond the window the server has forgotten the id; with
//! `id_index` set, the log also keeps id → offset in a KV bucket, checked before
//! publishing and written after, so an id stays deduplicated for as long as the bucket
//! keeps it. Two appends of one id racing past the index check still meet in the
//! server's window, which is far longer than the gap between check and publish.
//!
//! A batch is all or nothing for validation only: if the connection drops mid-batch,
//! the error is `Unavailable` and some events may be stored; appending the same batch
//! again stores each id once (the window or the index recognises the stored ones).

use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use base64::Engine;
use chrono::Utc;
use pulse_core::{Appended, Event, LogError};

use crate::codec::encode_event;
use crate::error::{classify, ensure_connected};
use crate::metrics;
use crate::shared::Shared;

/// Publishes handed to the client before their acks are awaited.
const CHUNK: usize = 4096;

/// The KV key of an event id (ids may hold any character; keys may not).
pub(crate) fn id_key(id: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id)
}

pub(crate) async fn append(shared: &Shared, events: Vec<Event>) -> Result<Vec<Appended>, LogError> {
    pulse_core::log::validate_batch(&events)?;
    if events.is_empty() {
        return Ok(Vec::new());
    }
    ensure_connected(&shared.client).inspect_err(|_| count_unavailable())?;
    let result = publish_all(shared, events).await;
    if let Err(LogError::Unavailable(_)) = &result {
        count_unavailable();
    }
    let appended = result?;
    let stored = appended.iter().filter(|a| !a.duplicate).count() as u64;
    ::metrics::counter!(metrics::APPENDED).increment(stored);
    ::metrics::counter!(metrics::DUPLICATES).increment(appended.len() as u64 - stored);
    if let Some(last) = appended.iter().map(|a| a.offset).max() {
        shared.tail.send_if_modified(|current| {
            let newer = last > *current;
            if newer {
                *current = last;
            }
            newer
        });
    }
    Ok(appended)
}

fn count_unavailable() {
    ::metrics::counter!(metrics::UNAVAILABLE).increment(1);
}

async fn publish_all(shared: &Shared, mut events: Vec<Event>) -> Result<Vec<Appended>, LogError> {
    let now = Utc::now();
    for event in &mut events {
        event.time.get_or_insert(now);
    }
    let mut results: Vec<Option<Appended>> = vec![None; events.len()];
    if let Some(ids) = &shared.ids {
        let lookups = events.iter().map(|e| ids.get(id_key(&e.id)));
        for (slot, found) in results
            .iter_mut()
            .zip(futures::future::join_all(lookups).await)
        {
            let found =
                found.map_err(|e| classify(&shared.client, "cannot check the id index", e))?;
            if let Some(offset) = found.and_then(|v| std::str::from_utf8(&v).ok()?.parse().ok()) {
                *slot = Some(Appended {
                    offset,
                    duplicate: true,
                });
            }
        }
    }
    let todo: Vec<usize> = (0..events.len())
        .filter(|&i| results[i].is_none())
        .collect();
    for chunk in todo.chunks(CHUNK) {
        // Encoded before taking the lock, so concurrent appends encode in parallel.
        let messages: Vec<(usize, String, PublishMessage)> = chunk
            .iter()
            .map(|&i| {
                let event = &events[i];
                let message = PublishMessage::build()
                    .payload(encode_event(event))
                    .message_id(&event.id);
                let subject = shared
                    .names
                    .event_subject(&event.ty, event.subject.as_deref());
                (i, subject, message)
            })
            .collect();
        let mut acks: Vec<(usize, PublishAckFuture)> = Vec::with_capacity(chunk.len());
        {
            let _order = shared.send_lock.lock().await;
            for (i, subject, message) in messages {
                let ack = shared
                    .js
                    .send_publish(subject, message)
                    .await
                    .map_err(|e| publish_error(shared, e))?;
                acks.push((i, ack));
            }
        }
        for (i, ack) in acks {
            let ack = ack.await.map_err(|e| publish_error(shared, e))?;
            results[i] = Some(Appended {
                offset: ack.sequence,
                duplicate: ack.duplicate,
            });
        }
    }
    if let Some(ids) = &shared.ids {
        let puts = todo.iter().filter_map(|&i| {
            let appended = results[i]?;
            Some(ids.put(id_key(&events[i].id), appended.offset.to_string().into()))
        });
        for put in futures::future::join_all(puts).await {
            put.map_err(|e| classify(&shared.client, "cannot update the id index", e))?;
        }
    }
    results
        .into_iter()
        .map(|r| r.ok_or_else(|| LogError::Storage("a publish went unanswered".into())))
        .collect()
}

fn publish_error(shared: &Shared, err: async_nats::jetstream::context::PublishError) -> LogError {
    match err.kind() {
        PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe => {
            LogError::Unavailable(format!("publish not acknowledged by NATS: {err}"))
        }
        PublishErrorKind::StreamNotFound => LogError::Unavailable(format!(
            "no JetStream stream answers for {}: {err}",
            shared.names.stream
        )),
        _ => classify(&shared.client, "publish failed", err),
    }
}
