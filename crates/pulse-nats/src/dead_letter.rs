//! Dead letters: a stream of their own (`<stream>_DLQ`), one record per failed event at
//! `<prefix>_dlq.dead.<group>`; the dead letter's id is its sequence there.
//!
//! Two paths write them. When a handler fails the `max_deliver`-th delivery, `nack`
//! writes the record itself (it has the error text, and the caller gets the id at once)
//! and terminates the message. When deliveries run out without a nack (the handler hung
//! or its instance died each time), JetStream stops redelivering and publishes the
//! `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.<consumer>` advisory (the
//! consumer of one of the group's partitions); every
//! instance listens in one queue group, and the one that gets it fetches the event by
//! its sequence and writes the record. Both use `Nats-Msg-Id`, so a retried write is
//! stored once.
//!
//! `redrive` publishes the dead letter's id at `<prefix>_dlq.redrive.<group>`; the
//! group's members pull those requests from a second durable consumer and hand the
//! event out again (outside the partitions' order: it is already behind the committed
//! offset; see [`crate::redriven`]). Once acknowledged, the record is deleted.

use std::sync::Arc;

use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::RawMessageErrorKind;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use pulse_core::{DeadLetter, LogError, StoredEvent};
use serde::Deserialize;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::warn;

use crate::codec::{decode_event, DeadRecord};
use crate::error::{classify, ensure_connected};
use crate::group;
use crate::metrics;
use crate::partition::Part;
use crate::read::scan;
use crate::shared::Shared;

/// Writes a dead letter; returns its id.
pub(crate) async fn store(
    shared: &Shared,
    group: &str,
    event: &StoredEvent,
    error: &str,
    attempts: u32,
    first_failure: DateTime<Utc>,
    msg_id: &str,
) -> Result<u64, LogError> {
    let record = DeadRecord::new(group, event, error, attempts, first_failure);
    let message = PublishMessage::build()
        .payload(record.encode()?)
        .message_id(msg_id);
    let ack = shared
        .js
        .send_publish(shared.names.dead_subject(group), message)
        .await
        .map_err(|e| classify(&shared.client, "cannot store a dead letter", e))?
        .await
        .map_err(|e| classify(&shared.client, "cannot store a dead letter", e))?;
    ::metrics::counter!(metrics::DEAD_LETTERED).increment(1);
    Ok(ack.sequence)
}

pub(crate) async fn load(shared: &Shared, id: u64) -> Result<Option<DeadRecord>, LogError> {
    match shared.dead.get_raw_message(id).await {
        Ok(message) => {
            let subject = message.subject.as_str();
            if !subject.starts_with(&format!("{}.dead.", shared.names.dead_prefix)) {
                return Ok(None);
            }
            DeadRecord::decode(id, &message.payload).map(Some)
        }
        Err(e) if matches!(e.kind(), RawMessageErrorKind::NoMessageFound) => Ok(None),
        Err(e) if matches!(e.kind(), RawMessageErrorKind::JetStream(ref j) if j.error_code() == async_nats::jetstream::ErrorCode::NO_MESSAGE_FOUND) => {
            Ok(None)
        }
        Err(e) => Err(classify(&shared.client, "cannot read a dead letter", e)),
    }
}

pub(crate) async fn dead_letters(
    shared: &Shared,
    group: Option<&str>,
    after_id: u64,
    limit: usize,
) -> Result<Vec<DeadLetter>, LogError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    if group.is_some_and(|g| pulse_core::log::validate_group_name(g).is_err()) {
        return Ok(Vec::new());
    }
    let filter = shared.names.dead_subject(group.unwrap_or("*"));
    scan(
        shared,
        &shared.dead,
        filter,
        after_id.saturating_add(1),
        limit,
        |id, message| {
            DeadRecord::decode(id, &message.payload)?
                .into_dead_letter(id)
                .map(Some)
        },
    )
    .await
}

pub(crate) async fn redrive(shared: &Shared, id: u64) -> Result<(), LogError> {
    ensure_connected(&shared.client)?;
    let record = load(shared, id)
        .await?
        .ok_or(LogError::UnknownDeadLetter(id))?;
    let handle = group::handle(shared, &record.group).await?;
    shared
        .js
        .publish(
            shared.names.redrive_subject(&record.group),
            id.to_string().into(),
        )
        .await
        .map_err(|e| classify(&shared.client, "cannot redrive", e))?
        .await
        .map_err(|e| classify(&shared.client, "cannot redrive", e))?;
    *handle.redrive_due.lock() = Instant::now();
    Ok(())
}

/// JetStream's max-deliveries advisory (the fields Pulse uses).
#[derive(Deserialize)]
struct MaxDeliveries {
    consumer: String,
    stream_seq: u64,
    deliveries: u32,
}

/// Listens for max-deliveries advisories of the log's stream, in a queue group shared by
/// every instance, and stores each as a dead letter.
pub(crate) async fn spawn_advisory_listener(
    shared: &Arc<Shared>,
) -> Result<JoinHandle<()>, LogError> {
    let subject = format!(
        "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}.*",
        shared.names.stream
    );
    let mut sub = shared
        .client
        .queue_subscribe(
            subject,
            format!("pulse-dead-letters-{}", shared.names.stream),
        )
        .await
        .map_err(|e| classify(&shared.client, "cannot listen for advisories", e))?;
    let weak = Arc::downgrade(shared);
    Ok(tokio::spawn(async move {
        while let Some(message) = sub.next().await {
            let Some(shared) = weak.upgrade() else {
                return;
            };
            if let Err(err) = on_max_deliveries(&shared, &message.payload).await {
                warn!(%err, "could not store a dead letter from a max-deliveries advisory");
            }
        }
    }))
}

async fn on_max_deliveries(shared: &Shared, payload: &[u8]) -> Result<(), LogError> {
    let advisory: MaxDeliveries = serde_json::from_slice(payload)
        .map_err(|e| LogError::Incompatible(format!("unreadable advisory: {e}")))?;
    let Some((group, _)) = Part::of_consumer(&advisory.consumer) else {
        return Ok(());
    };
    let message = shared
        .stream
        .get_raw_message(advisory.stream_seq)
        .await
        .map_err(|e| classify(&shared.client, "cannot read a dead event", e))?;
    let event = decode_event(advisory.stream_seq, &message.payload)?;
    let error = format!(
        "not acknowledged within the ack wait, {} deliveries",
        advisory.deliveries
    );
    store(
        shared,
        group,
        &event,
        &error,
        advisory.deliveries,
        Utc::now(),
        &format!("{group}.{}.{}", advisory.stream_seq, advisory.deliveries),
    )
    .await?;
    Ok(())
}
