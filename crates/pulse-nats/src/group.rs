//! Consumer groups: one durable pull consumer per group on the event stream, filtered by
//! the group's pattern, with explicit acks, `ack_wait`, `max_deliver`, optional backoff
//! and `max_ack_pending`; naks carry the delay. What JetStream does not know — Pulse's
//! ordering per subject — is the [`Gate`](crate::gate) in front of it.
//!
//! Acks and naks are sent as requests (JetStream's "double ack"): when `ack` returns, the
//! server has recorded it, so an acknowledged event is never redelivered and a lost
//! connection shows as `Unavailable` instead of a silently dropped ack.
//!
//! The committed offset of a group is the consumer's ack floor (every event at or below
//! it is acknowledged or terminated); pending is its count of unacknowledged deliveries.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{self, pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::context::ConsumerInfoErrorKind;
use async_nats::Subject;
use bytes::Bytes;
use chrono::Utc;
use futures::TryStreamExt;
use parking_lot::Mutex;
use pulse_core::log::validate_group_name;
use pulse_core::{Delivery, GroupConfig, GroupInfo, LogError, NackOutcome, Pattern, StoredEvent};
use tokio::time::Instant;
use tracing::warn;

use crate::codec::decode_event;
use crate::dead_letter::{self, Redriven};
use crate::error::{classify, ensure_connected};
use crate::gate::Gate;
use crate::log::Shared;
use crate::pull::{ack_info, pull, PullError};

/// A pulled message waiting in the gate or handed out.
#[derive(Clone, Debug)]
pub(crate) struct Pending {
    pub(crate) reply: Subject,
    pub(crate) event: StoredEvent,
    pub(crate) attempt: u32,
}

/// This instance's view of one group.
#[derive(Debug)]
pub(crate) struct GroupHandle {
    pub(crate) name: String,
    pub(crate) config: Mutex<GroupConfig>,
    pub(crate) gate: Mutex<Gate<Pending>>,
    pub(crate) redriven: Mutex<HashMap<u64, Redriven>>,
    /// When to look for redrive requests next.
    pub(crate) redrive_due: Mutex<Instant>,
    /// One pull at a time per group and instance, so the gate sees messages in order.
    fetch_lock: tokio::sync::Mutex<()>,
}

impl GroupHandle {
    fn new(name: &str, config: GroupConfig) -> Self {
        Self {
            name: name.to_owned(),
            config: Mutex::new(config),
            gate: Mutex::new(Gate::default()),
            redriven: Mutex::new(HashMap::new()),
            redrive_due: Mutex::new(Instant::now()),
            fetch_lock: tokio::sync::Mutex::new(()),
        }
    }
}

fn consumer_config(
    shared: &Shared,
    name: &str,
    config: &GroupConfig,
    deliver: DeliverPolicy,
) -> pull::Config {
    let max_deliver = config.max_deliver.max(1);
    let backoff = if shared.options.backoff.len() < max_deliver as usize {
        shared.options.backoff.clone()
    } else {
        Vec::new()
    };
    pull::Config {
        durable_name: Some(name.to_owned()),
        description: Some(format!(
            "pulse consumer group; {ACK_WAIT_TAG}{}",
            config.ack_wait.as_millis()
        )),
        deliver_policy: deliver,
        ack_policy: AckPolicy::Explicit,
        ack_wait: config.ack_wait.min(shared.options.liveness),
        max_deliver: i64::from(max_deliver),
        filter_subject: shared.names.event_filter(Some(config.pattern.as_str())),
        max_ack_pending: shared.options.max_ack_pending,
        backoff,
        ..Default::default()
    }
}

/// Where the group's own ack wait is kept: the consumer's is the liveness window.
const ACK_WAIT_TAG: &str = "ack_wait_ms=";

fn ack_wait_of(config: &consumer::Config) -> Duration {
    config
        .description
        .as_deref()
        .and_then(|d| d.split(ACK_WAIT_TAG).nth(1))
        .and_then(|ms| ms.trim().parse().ok())
        .map_or(config.ack_wait, Duration::from_millis)
}

fn info_of(shared: &Shared, info: &consumer::Info) -> Result<GroupInfo, LogError> {
    Ok(GroupInfo {
        name: info.name.clone(),
        pattern: pattern_of(shared, &info.config)?,
        // A group started at `latest` has acknowledged nothing yet, but everything before
        // its start counts as handled.
        committed: match info.config.deliver_policy {
            DeliverPolicy::ByStartSequence { start_sequence } => info
                .ack_floor
                .stream_sequence
                .max(start_sequence.saturating_sub(1)),
            _ => info.ack_floor.stream_sequence,
        },
        pending: info.num_ack_pending,
    })
}

fn pattern_of(shared: &Shared, config: &consumer::Config) -> Result<Pattern, LogError> {
    shared
        .names
        .event_type(&config.filter_subject)
        .and_then(|p| Pattern::parse(p).ok())
        .ok_or_else(|| {
            LogError::Incompatible(format!(
                "consumer {:?} filters {:?}, which is not a Pulse pattern",
                config.durable_name, config.filter_subject
            ))
        })
}

async fn consumer_info(shared: &Shared, name: &str) -> Result<Option<consumer::Info>, LogError> {
    match shared.stream.consumer_info(name).await {
        Ok(info) => Ok(Some(info)),
        Err(e) if matches!(e.kind(), ConsumerInfoErrorKind::NotFound) => Ok(None),
        Err(e) if matches!(e.kind(), ConsumerInfoErrorKind::JetStream(ref j) if j.error_code() == async_nats::jetstream::ErrorCode::CONSUMER_NOT_FOUND) => {
            Ok(None)
        }
        Err(e) => Err(classify(
            &shared.client,
            "cannot read the consumer group",
            e,
        )),
    }
}

pub(crate) async fn ensure_group(
    shared: &Shared,
    name: &str,
    config: GroupConfig,
) -> Result<GroupInfo, LogError> {
    validate_group_name(name)?;
    if config.ack_wait < Duration::from_millis(1) {
        return Err(LogError::InvalidGroup(
            "ack_wait must be at least 1ms".into(),
        ));
    }
    ensure_connected(&shared.client)?;
    let existing = consumer_info(shared, name).await?;
    let deliver = match &existing {
        // JetStream cannot change where a consumer started; the position is kept anyway.
        Some(info) => info.config.deliver_policy,
        None => match config.start {
            pulse_core::StartPosition::Earliest => DeliverPolicy::All,
            pulse_core::StartPosition::Latest => {
                let info = shared
                    .stream
                    .get_info()
                    .await
                    .map_err(|e| classify(&shared.client, "cannot read the stream state", e))?;
                DeliverPolicy::ByStartSequence {
                    start_sequence: info.state.last_sequence + 1,
                }
            }
        },
    };
    let wanted = consumer_config(shared, name, &config, deliver);
    if let Some(info) = &existing {
        if info.config.filter_subject != wanted.filter_subject {
            return Err(LogError::InvalidGroup(format!(
                "group {name:?} receives {:?}; JetStream cannot change a consumer's filter, use another group name",
                pattern_of(shared, &info.config).map(|p| p.as_str().to_owned()).unwrap_or_default()
            )));
        }
    }
    let consumer = shared
        .stream
        .create_consumer(wanted)
        .await
        .map_err(|e| classify(&shared.client, "cannot create the consumer group", e))?;
    let redrive = pull::Config {
        durable_name: Some(name.to_owned()),
        description: Some("pulse redrive requests".into()),
        ack_policy: AckPolicy::Explicit,
        ack_wait: config.ack_wait.min(shared.options.liveness),
        filter_subject: shared.names.redrive_subject(name),
        ..Default::default()
    };
    shared
        .dead
        .create_consumer(redrive)
        .await
        .map_err(|e| classify(&shared.client, "cannot create the redrive consumer", e))?;
    let info = info_of(shared, consumer.cached_info())?;
    let mut groups = shared.groups.lock();
    match groups.get(name) {
        Some(handle) => *handle.config.lock() = config,
        None => {
            groups.insert(name.to_owned(), Arc::new(GroupHandle::new(name, config)));
        }
    }
    Ok(info)
}

/// This instance's handle of `name`, loaded from the server the first time.
pub(crate) async fn handle(shared: &Shared, name: &str) -> Result<Arc<GroupHandle>, LogError> {
    if let Some(handle) = shared.groups.lock().get(name) {
        return Ok(handle.clone());
    }
    if validate_group_name(name).is_err() {
        return Err(LogError::UnknownGroup(name.to_owned()));
    }
    ensure_connected(&shared.client)?;
    let info = consumer_info(shared, name)
        .await?
        .ok_or_else(|| LogError::UnknownGroup(name.to_owned()))?;
    let mut config = GroupConfig::new(pattern_of(shared, &info.config)?);
    config.ack_wait = ack_wait_of(&info.config);
    config.max_deliver = u32::try_from(info.config.max_deliver.max(1)).unwrap_or(u32::MAX);
    let handle = Arc::new(GroupHandle::new(name, config));
    Ok(shared
        .groups
        .lock()
        .entry(name.to_owned())
        .or_insert(handle)
        .clone())
}

pub(crate) async fn groups(shared: &Shared) -> Result<Vec<GroupInfo>, LogError> {
    ensure_connected(&shared.client)?;
    let infos: Vec<consumer::Info> = shared
        .stream
        .consumers()
        .try_collect()
        .await
        .map_err(|e| classify(&shared.client, "cannot list consumer groups", e))?;
    let mut groups = Vec::new();
    for info in infos.iter().filter(|i| i.config.durable_name.is_some()) {
        groups.push(info_of(shared, info)?);
    }
    groups.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(groups)
}

/// Hands out up to `max` events: redriven dead letters, events released by the gate,
/// and fresh ones pulled from the consumer (waiting up to `wait` for one when given).
pub(crate) async fn fetch(
    shared: &Shared,
    name: &str,
    max: usize,
    wait: Option<Duration>,
) -> Result<Vec<Delivery>, LogError> {
    let handle = handle(shared, name).await?;
    ensure_connected(&shared.client)?;
    if max == 0 {
        return Ok(Vec::new());
    }
    let _turn = handle.fetch_lock.lock().await;
    let ack_wait = handle.config.lock().ack_wait;
    let now = Instant::now();
    let mut out = dead_letter::take_redriven(shared, &handle, max).await?;
    let ready = handle
        .gate
        .lock()
        .take_ready(now, max - out.len(), ack_wait);
    out.extend(ready.into_iter().map(|(_, p)| delivery(p)));
    if out.len() >= max {
        return Ok(out);
    }
    let batch = if wait.is_some() { 1 } else { max - out.len() };
    let messages = match pull(shared, &shared.names.stream, name, batch, wait).await {
        Ok(messages) => messages,
        Err(PullError::NoConsumer) => {
            shared.groups.lock().remove(name);
            return Err(LogError::UnknownGroup(name.to_owned()));
        }
        Err(PullError::Log(e)) => return Err(e),
    };
    let now = Instant::now();
    for message in messages {
        let Some(reply) = message.reply.clone() else {
            continue;
        };
        let Some((attempt, seq, _)) = ack_info(&reply) else {
            continue;
        };
        match decode_event(seq, &message.payload) {
            Ok(event) => {
                let subject = event.event.subject.clone();
                let pending = Pending {
                    reply,
                    event,
                    attempt,
                };
                handle.gate.lock().admit(seq, subject, pending);
            }
            Err(err) => {
                // Not a Pulse event: it can never be handled, so it is not handed out.
                warn!(group = %name, offset = seq, %err, "terminating a message that is not a Pulse event");
                let _ = settle(shared, &reply, Bytes::from_static(b"+TERM")).await;
            }
        }
    }
    let ready = handle
        .gate
        .lock()
        .take_ready(now, max - out.len(), ack_wait);
    out.extend(ready.into_iter().map(|(_, p)| delivery(p)));
    Ok(out)
}

fn delivery(pending: Pending) -> Delivery {
    Delivery {
        event: pending.event,
        attempt: pending.attempt,
    }
}

/// Sends an ack of kind `body` to `reply` and waits until the server has recorded it.
pub(crate) async fn settle(shared: &Shared, reply: &Subject, body: Bytes) -> Result<(), LogError> {
    shared
        .client
        .request(reply.clone(), body)
        .await
        .map(|_| ())
        .map_err(|e| classify(&shared.client, "acknowledgement not confirmed", e))
}

pub(crate) async fn ack(shared: &Shared, name: &str, offsets: &[u64]) -> Result<(), LogError> {
    let handle = handle(shared, name).await?;
    let mut gated = Vec::new();
    let mut redriven = Vec::new();
    {
        let gate = handle.gate.lock();
        let redrives = handle.redriven.lock();
        let unique: std::collections::BTreeSet<u64> = offsets.iter().copied().collect();
        for offset in unique {
            if let Some(r) = redrives.get(&offset) {
                redriven.push((offset, r.clone()));
            } else if let Some(pending) = gate.delivered(offset) {
                gated.push((offset, pending.reply.clone()));
            }
        }
    }
    let gate = &handle.gate;
    let acks = gated.iter().map(|(offset, reply)| async move {
        settle(shared, reply, Bytes::from_static(b"+ACK")).await?;
        gate.lock().remove(*offset);
        Ok::<(), LogError>(())
    });
    let results = futures::future::join_all(acks).await;
    for (offset, r) in redriven {
        dead_letter::resolve(shared, &handle, offset, &r).await?;
    }
    results.into_iter().collect()
}

pub(crate) async fn nack(
    shared: &Shared,
    name: &str,
    offset: u64,
    delay: Duration,
    error: &str,
) -> Result<NackOutcome, LogError> {
    let handle = handle(shared, name).await?;
    let (ack_wait, max_deliver) = {
        let config = handle.config.lock();
        (config.ack_wait, config.max_deliver.max(1))
    };
    let redriven = handle.redriven.lock().get(&offset).cloned();
    if let Some(r) = redriven {
        return dead_letter::nack_redriven(shared, &handle, offset, r, delay, error, max_deliver)
            .await;
    }
    let pending = handle.gate.lock().delivered(offset).cloned();
    let Some(pending) = pending else {
        return Err(LogError::UnknownDelivery {
            group: name.to_owned(),
            offset,
        });
    };
    let first_failure = handle.gate.lock().failed(offset, Utc::now());
    if pending.attempt >= max_deliver {
        // The handler's error text is here and nowhere else: write the dead letter now
        // and terminate the message, rather than wait for JetStream's advisory.
        let id = dead_letter::store(
            shared,
            name,
            &pending.event,
            error,
            pending.attempt,
            first_failure,
            &format!("{name}.{offset}.{}", pending.attempt),
        )
        .await?;
        settle(shared, &pending.reply, Bytes::from_static(b"+TERM")).await?;
        handle.gate.lock().remove(offset);
        return Ok(NackOutcome::DeadLettered(id));
    }
    let body: Bytes = async_nats::jetstream::AckKind::Nak(Some(delay)).into();
    settle(shared, &pending.reply, body).await?;
    handle
        .gate
        .lock()
        .nacked(offset, Instant::now(), delay, ack_wait);
    Ok(NackOutcome::Redeliver)
}

/// Keeps this instance's held and in-flight messages alive on the server (progress acks)
/// every third of the liveness window, until the log is dropped. If the instance dies,
/// the server redelivers its messages to others one liveness window later.
pub(crate) async fn keep_alive(shared: std::sync::Weak<Shared>) {
    loop {
        let Some(strong) = shared.upgrade() else {
            return;
        };
        let every = (strong.options.liveness / 3).max(Duration::from_millis(50));
        let handles: Vec<Arc<GroupHandle>> = strong.groups.lock().values().cloned().collect();
        let now = Instant::now();
        for handle in handles {
            let mut replies: Vec<Subject> = handle
                .gate
                .lock()
                .alive(now)
                .into_iter()
                .map(|p| p.reply)
                .collect();
            replies.extend(dead_letter::alive(&handle, now));
            for reply in replies {
                // Best effort: a lost progress report only means an early redelivery.
                let _ = strong
                    .client
                    .publish(reply, Bytes::from_static(b"+WPI"))
                    .await;
            }
        }
        drop(strong);
        tokio::time::sleep(every).await;
    }
}

/// Hands every held and in-flight message of this instance back to the server for
/// immediate redelivery to the other members (when the log closes).
pub(crate) async fn release_all(shared: &Shared) {
    let handles: Vec<Arc<GroupHandle>> = shared.groups.lock().drain().map(|(_, h)| h).collect();
    for handle in handles {
        let mut replies: Vec<Subject> = handle
            .gate
            .lock()
            .drain()
            .into_iter()
            .map(|p| p.reply)
            .collect();
        replies.extend(dead_letter::drain(&handle));
        for reply in replies {
            let _ = shared
                .client
                .publish(reply, Bytes::from_static(b"-NAK"))
                .await;
        }
    }
    let _ = shared.client.flush().await;
}
