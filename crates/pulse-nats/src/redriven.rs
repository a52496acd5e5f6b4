//! A group's deliveries of redriven dead letters: [`take_redriven`] pulls the redrive
//! requests of the group's second durable consumer and hands the events out again,
//! [`Redriven`] is what the group's handle keeps of each until it is settled ([`resolve`],
//! [`nack_redriven`]) or handed back ([`alive`], [`drain`]). The dead letters themselves
//! (storing, listing, asking for a redrive) are in [`crate::dead_letter`].

use std::time::Duration;

use async_nats::Subject;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use pulse_core::{Delivery, LogError, NackOutcome, StoredEvent};
use tokio::time::Instant;

use crate::dead_letter::{load, store};
use crate::error::classify;
use crate::group::{settle, GroupHandle};
use crate::pull::{ack_info, pull, PullError};
use crate::shared::Shared;

/// How often a member looks for redrive requests it did not make itself.
const REDRIVE_POLL: Duration = Duration::from_secs(1);

/// A redriven dead letter handed out to this instance.
#[derive(Clone, Debug)]
pub(crate) struct Redriven {
    reply: Subject,
    deadline: Instant,
    dead_id: u64,
    event: StoredEvent,
    attempt: u32,
    first_failure: DateTime<Utc>,
}

/// Redriven dead letters for `handle`, when it is time to look.
pub(crate) async fn take_redriven(
    shared: &Shared,
    handle: &GroupHandle,
    max: usize,
) -> Result<Vec<Delivery>, LogError> {
    let now = Instant::now();
    {
        let mut due = handle.redrive_due.lock();
        if *due > now {
            return Ok(Vec::new());
        }
        *due = now + REDRIVE_POLL;
    }
    let requests = match pull(shared, &shared.names.dead_stream, &handle.name, max, None).await {
        Ok(requests) => requests,
        Err(PullError::NoConsumer) => return Ok(Vec::new()),
        Err(PullError::Log(e)) => return Err(e),
    };
    let mut out = Vec::new();
    for request in requests {
        let Some(reply) = request.reply.clone() else {
            continue;
        };
        let attempt = ack_info(&reply).map_or(1, |(delivered, _, _)| delivered);
        let record = match std::str::from_utf8(&request.payload)
            .ok()
            .and_then(|s| s.parse().ok())
        {
            Some(id) => load(shared, id).await?.map(|r| (id, r)),
            None => None,
        };
        let Some((dead_id, record)) = record else {
            // Resolved meanwhile, or not a request: nothing to hand out.
            settle(shared, &reply, Bytes::from_static(b"+TERM")).await?;
            continue;
        };
        let first_failure = record.first_failure;
        let letter = record.into_dead_letter(dead_id)?;
        let offset = letter.event.offset;
        // The consumer will not deliver it again: what this instance remembers is stale.
        handle.forget(offset);
        handle.redriven.lock().insert(
            offset,
            Redriven {
                reply,
                deadline: now + handle.config.lock().ack_wait,
                dead_id,
                event: letter.event.clone(),
                attempt,
                first_failure,
            },
        );
        out.push(Delivery {
            event: letter.event,
            attempt,
        });
    }
    Ok(out)
}

/// Reply subjects of redriven dead letters still within their ack wait.
pub(crate) fn alive(handle: &GroupHandle, now: Instant) -> Vec<Subject> {
    handle
        .redriven
        .lock()
        .values()
        .filter(|r| r.deadline > now)
        .map(|r| r.reply.clone())
        .collect()
}

/// Forgets every redriven dead letter handed out here; returns their reply subjects.
pub(crate) fn drain(handle: &GroupHandle) -> Vec<Subject> {
    handle
        .redriven
        .lock()
        .drain()
        .map(|(_, r)| r.reply)
        .collect()
}

/// A redriven dead letter was handled: it leaves the store.
pub(crate) async fn resolve(
    shared: &Shared,
    handle: &GroupHandle,
    offset: u64,
    redriven: &Redriven,
) -> Result<(), LogError> {
    settle(shared, &redriven.reply, Bytes::from_static(b"+ACK")).await?;
    shared
        .dead
        .delete_message(redriven.dead_id)
        .await
        .map_err(|e| classify(&shared.client, "cannot remove a resolved dead letter", e))?;
    handle.redriven.lock().remove(&offset);
    Ok(())
}

/// A redriven dead letter failed again: redelivered, or stored anew once out of attempts.
pub(crate) async fn nack_redriven(
    shared: &Shared,
    handle: &GroupHandle,
    offset: u64,
    redriven: Redriven,
    delay: Duration,
    error: &str,
    max_deliver: u32,
) -> Result<NackOutcome, LogError> {
    if redriven.attempt < max_deliver {
        let body: Bytes = async_nats::jetstream::AckKind::Nak(Some(delay)).into();
        settle(shared, &redriven.reply, body).await?;
        handle.redriven.lock().remove(&offset);
        return Ok(NackOutcome::Redeliver);
    }
    let id = store(
        shared,
        &handle.name,
        &redriven.event,
        error,
        redriven.attempt,
        redriven.first_failure,
        &format!("{}.{offset}.r{}", handle.name, redriven.dead_id),
    )
    .await?;
    settle(shared, &redriven.reply, Bytes::from_static(b"+TERM")).await?;
    let _ = shared.dead.delete_message(redriven.dead_id).await;
    handle.redriven.lock().remove(&offset);
    Ok(NackOutcome::DeadLettered(id))
}
