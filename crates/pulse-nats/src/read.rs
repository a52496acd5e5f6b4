//! Reading ranges of a stream: an ephemeral pull consumer filtered by subject, starting
//! at the wanted sequence, drained with no-wait pulls and deleted afterwards (it also
//! expires by itself if this process dies first).
//!
//! A consumer costs two requests more than a direct get per message, and pays for
//! itself from a few messages on; the pattern filter runs on the server (Pulse's
//! patterns are NATS subject filters), the time filter here (`time` is the event's,
//! not the server's).

use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::stream;
use async_nats::Message;
use pulse_core::{LogError, ReadQuery, StoredEvent};

use crate::codec::decode_event;
use crate::error::{classify, ensure_connected};
use crate::pull::{ack_info, pull, PullError};
use crate::shared::Shared;

/// The most messages asked for in one pull.
const PULL_BATCH: usize = 2048;

pub(crate) async fn read(shared: &Shared, query: ReadQuery) -> Result<Vec<StoredEvent>, LogError> {
    if query.limit == 0 {
        return Ok(Vec::new());
    }
    let filter = shared
        .names
        .event_filter(query.pattern.as_ref().map(|p| p.as_str()));
    scan(
        shared,
        &shared.stream,
        filter,
        query.after.saturating_add(1),
        query.limit,
        |seq, message| {
            let stored = decode_event(seq, &message.payload)?;
            Ok(query.accepts(&stored).then_some(stored))
        },
    )
    .await
}

/// Up to `limit` items made by `keep` from the messages of `stream` matching `filter`,
/// from sequence `start` on, in order.
pub(crate) async fn scan<T>(
    shared: &Shared,
    stream: &stream::Stream,
    filter: String,
    start: u64,
    limit: usize,
    mut keep: impl FnMut(u64, &Message) -> Result<Option<T>, LogError>,
) -> Result<Vec<T>, LogError> {
    ensure_connected(&shared.client)?;
    let config = pull::Config {
        deliver_policy: DeliverPolicy::ByStartSequence {
            start_sequence: start.max(1),
        },
        ack_policy: AckPolicy::None,
        filter_subject: filter,
        inactive_threshold: Duration::from_secs(30),
        memory_storage: true,
        ..Default::default()
    };
    let consumer = stream
        .create_consumer(config)
        .await
        .map_err(|e| classify(&shared.client, "cannot start a read", e))?;
    let info = consumer.cached_info();
    let (stream_name, name) = (info.stream_name.clone(), info.name.clone());
    let mut pending = info.num_pending;
    let result = async {
        let mut out = Vec::new();
        while out.len() < limit && pending > 0 {
            let batch = usize::try_from(pending)
                .unwrap_or(PULL_BATCH)
                .clamp(1, PULL_BATCH);
            let messages = match pull(shared, &stream_name, &name, batch, None).await {
                Ok(messages) => messages,
                Err(PullError::Log(e)) => return Err(e),
                Err(PullError::NoConsumer) => {
                    return Err(LogError::Unavailable("the read consumer vanished".into()))
                }
            };
            if messages.is_empty() {
                break;
            }
            for message in &messages {
                let Some((_, seq, left)) = message.reply.as_deref().and_then(ack_info) else {
                    return Err(LogError::Storage(
                        "a read returned a message without its sequence".into(),
                    ));
                };
                pending = left;
                if let Some(item) = keep(seq, message)? {
                    out.push(item);
                    if out.len() >= limit {
                        break;
                    }
                }
            }
        }
        Ok(out)
    }
    .await;
    let stream = stream.clone();
    tokio::spawn(async move {
        let _ = stream.delete_consumer(&name).await;
    });
    result
}
