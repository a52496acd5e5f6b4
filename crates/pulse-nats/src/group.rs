//! Consumer groups: per group, one durable pull consumer per partition and one for
//! events without a subject (see [`partition`](crate::partition)), filtered by the
//! group's pattern, with explicit acks, `ack_wait`, `max_deliver`, optional backoff; naks
//! carry the delay. A partition's consumer has `max_ack_pending = 1`: JetStream hands out
//! its next event only once the previous one is acknowledged or terminated, whichever
//! instance holds it — that is Pulse's order per subject, across instances, kept by the
//! server. What this module keeps per instance is only what an ack or nack needs: the
//! reply subject of every event it handed out.
//!
//! Acks and naks are sent as requests (JetStream's "double ack"): when `ack` returns, the
//! server has recorded it, so an acknowledged event is never redelivered and a lost
//! connection shows as `Unavailable` instead of a silently dropped ack.
//!
//! The committed offset of a group is the offset before the first event of any of its
//! consumers that is not acknowledged yet (from each consumer's ack floor); pending is
//! the sum of their unacknowledged deliveries.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{self, pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::context::ConsumerInfoErrorKind;
use async_nats::Subject;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use parking_lot::Mutex;
use pulse_core::log::{check_group_pattern, validate_group_name};
use pulse_core::{Delivery, GroupConfig, GroupInfo, LogError, NackOutcome, Pattern, StoredEvent};
use tokio::time::Instant;

use crate::dead_letter;
use crate::error::{classify, ensure_connected};
use crate::feed::{Ask, Feed};
use crate::partition::Part;
use crate::redriven::{self, Redriven};
use crate::shared::Shared;

/// The longest `fetch` waits for the answers of consumers asked for what they have now,
/// when nothing is held yet. Only a partition whose previous event another instance
/// still holds answers later (when that event is acknowledged); its event is then held
/// for the next fetch.
const ROUND_WAIT: Duration = Duration::from_millis(100);

/// Once something is held and only contended consumers (see `Feed::answered`) have not
/// answered, how long `fetch` still waits for the next answer before handing out what
/// it has.
const ROUND_QUIET: Duration = Duration::from_millis(10);

/// The longest a single waiting request lasts, so that timers of this instance
/// (deliveries that ran out of their ack wait) are looked at regularly.
const MAX_PULL_WAIT: Duration = Duration::from_millis(500);

/// The shortest standing request worth opening after an ack (see `Feed::rearm`).
const MIN_STANDING: Duration = Duration::from_millis(10);

/// An event handed out by this instance, until it is acknowledged or forgotten.
#[derive(Clone, Debug)]
pub(crate) struct Delivered {
    pub(crate) reply: Subject,
    pub(crate) event: StoredEvent,
    pub(crate) attempt: u32,
    part: Part,
    /// In flight: due back by then. Away (nacked or expired; the server redelivers it):
    /// forgotten then.
    deadline: Instant,
    away: bool,
    /// When a delivery of it first failed here.
    first_failure: Option<DateTime<Utc>>,
}

/// This instance's view of one group.
#[derive(Debug)]
pub(crate) struct GroupHandle {
    pub(crate) name: String,
    pub(crate) config: Mutex<GroupConfig>,
    feed: Feed,
    delivered: Mutex<HashMap<u64, Delivered>>,
    pub(crate) redriven: Mutex<HashMap<u64, Redriven>>,
    /// When to look for redrive requests next.
    pub(crate) redrive_due: Mutex<Instant>,
    /// When this instance last fetched for the group.
    last_fetch: Mutex<Instant>,
    /// One fetch at a time per group and instance.
    fetch_lock: tokio::sync::Mutex<()>,
}

impl GroupHandle {
    async fn new(shared: &Shared, name: &str, config: GroupConfig) -> Result<Self, LogError> {
        let feed = Feed::start(
            &shared.client,
            &shared.names.stream,
            name,
            shared.names.partitions,
        )
        .await?;
        Ok(Self {
            name: name.to_owned(),
            config: Mutex::new(config),
            feed,
            delivered: Mutex::new(HashMap::new()),
            redriven: Mutex::new(HashMap::new()),
            redrive_due: Mutex::new(Instant::now()),
            last_fetch: Mutex::new(Instant::now()),
            fetch_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// Forgets an event handed out here (its redriven dead letter is handed out instead).
    pub(crate) fn forget(&self, offset: u64) {
        self.delivered.lock().remove(&offset);
    }

    /// Partitions with an event in flight here or held: JetStream will not hand out
    /// their next event, so asking them is useless.
    fn busy(&self, now: Instant) -> Vec<Part> {
        let mut busy: Vec<Part> = self
            .delivered
            .lock()
            .values()
            .filter(|d| !d.away && d.deadline > now && matches!(d.part, Part::Partition(_)))
            .map(|d| d.part)
            .collect();
        busy.extend(
            self.feed
                .held_parts()
                .into_iter()
                .filter(|p| matches!(p, Part::Partition(_))),
        );
        busy
    }

    /// In-flight deliveries past their deadline are away (the server redelivers them);
    /// away ones not back in time are forgotten.
    fn expire(&self, now: Instant, ack_wait: Duration) {
        self.delivered.lock().retain(|_, d| {
            if !d.away && d.deadline <= now {
                d.away = true;
                d.deadline += ack_wait;
            }
            !(d.away && d.deadline <= now)
        });
    }
}

fn consumer_config(
    shared: &Shared,
    name: &str,
    config: &GroupConfig,
    deliver: DeliverPolicy,
    part: Part,
) -> pull::Config {
    let max_deliver = config.max_deliver.max(1);
    let backoff = if shared.options.backoff.len() < max_deliver as usize {
        shared.options.backoff.clone()
    } else {
        Vec::new()
    };
    pull::Config {
        durable_name: Some(part.consumer(name)),
        description: Some(format!(
            "pulse consumer group {name}; {ACK_WAIT_TAG}{}",
            config.ack_wait.as_millis()
        )),
        deliver_policy: deliver,
        ack_policy: AckPolicy::Explicit,
        ack_wait: config.ack_wait.min(shared.options.liveness),
        max_deliver: i64::from(max_deliver),
        filter_subject: shared.names.part_filter(part, config.pattern.as_str()),
        max_ack_pending: match part {
            Part::Partition(_) => 1,
            Part::Unordered => shared.options.max_ack_pending,
        },
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

/// The group `name` made of the consumers `infos` (all of its parts), given the stream's
/// last offset read before them.
async fn info_of(
    shared: &Shared,
    name: &str,
    infos: &[consumer::Info],
    last: u64,
) -> Result<GroupInfo, LogError> {
    let unordered = infos
        .iter()
        .find(|i| Part::of_consumer(&i.name) == Some((name, Part::Unordered)))
        .ok_or_else(|| LogError::UnknownGroup(name.to_owned()))?;
    let mut committed = last;
    for info in infos {
        // A group started at `latest` has acknowledged nothing yet, but everything
        // before its start counts as handled.
        let floor = match info.config.deliver_policy {
            DeliverPolicy::ByStartSequence { start_sequence } => info
                .ack_floor
                .stream_sequence
                .max(start_sequence.saturating_sub(1)),
            _ => info.ack_floor.stream_sequence,
        };
        if info.num_ack_pending == 0 && info.num_pending == 0 {
            // Everything of this consumer's up to `last` is acknowledged.
            continue;
        }
        // The consumer's first event not acknowledged yet is its first after the floor.
        let next = shared
            .stream
            .direct_get_next_for_subject(&info.config.filter_subject, Some(floor + 1))
            .await;
        let bound = match next {
            Ok(message) => message.sequence.saturating_sub(1).max(floor),
            Err(e) if e.to_string().contains("not found") => last,
            Err(e) => {
                return Err(classify(
                    &shared.client,
                    "cannot read a group's position",
                    e,
                ))
            }
        };
        committed = committed.min(bound);
    }
    Ok(GroupInfo {
        name: name.to_owned(),
        pattern: pattern_of(shared, &unordered.config)?,
        committed,
        pending: infos.iter().map(|i| i.num_ack_pending).sum(),
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

async fn last_offset(shared: &Shared) -> Result<u64, LogError> {
    Ok(shared
        .stream
        .get_info()
        .await
        .map_err(|e| classify(&shared.client, "cannot read the stream state", e))?
        .state
        .last_sequence)
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
    let last = last_offset(shared).await?;
    let existing = consumer_info(shared, &Part::Unordered.consumer(name)).await?;
    let deliver = match &existing {
        // JetStream cannot change where a consumer started; the position is kept anyway.
        Some(info) => info.config.deliver_policy,
        None => match config.start {
            pulse_core::StartPosition::Earliest => DeliverPolicy::All,
            pulse_core::StartPosition::Latest => DeliverPolicy::ByStartSequence {
                start_sequence: last + 1,
            },
        },
    };
    if let Some(info) = &existing {
        let wanted = shared
            .names
            .part_filter(Part::Unordered, config.pattern.as_str());
        if info.config.filter_subject != wanted {
            let existing = pattern_of(shared, &info.config)?;
            check_group_pattern(name, &existing, &config.pattern)?;
        }
    }
    // The unordered consumer last: it is what makes the group exist for `handle`.
    let mut infos = Vec::new();
    let parts: Vec<Part> = Part::all(shared.names.partitions).collect();
    for chunk in parts.chunks(32) {
        let creates = chunk.iter().map(|&part| {
            shared
                .stream
                .create_consumer(consumer_config(shared, name, &config, deliver, part))
        });
        for created in futures::future::join_all(creates).await {
            let consumer = created
                .map_err(|e| classify(&shared.client, "cannot create the consumer group", e))?;
            infos.push(consumer.cached_info().clone());
        }
    }
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
    let info = info_of(shared, name, &infos, last).await?;
    let existing = shared.groups.lock().get(name).cloned();
    match existing {
        Some(handle) => *handle.config.lock() = config,
        None => {
            let handle = Arc::new(GroupHandle::new(shared, name, config).await?);
            shared
                .groups
                .lock()
                .entry(name.to_owned())
                .or_insert(handle);
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
    let info = consumer_info(shared, &Part::Unordered.consumer(name))
        .await?
        .ok_or_else(|| LogError::UnknownGroup(name.to_owned()))?;
    let mut config = GroupConfig::new(pattern_of(shared, &info.config)?);
    config.ack_wait = ack_wait_of(&info.config);
    config.max_deliver = u32::try_from(info.config.max_deliver.max(1)).unwrap_or(u32::MAX);
    let handle = Arc::new(GroupHandle::new(shared, name, config).await?);
    Ok(shared
        .groups
        .lock()
        .entry(name.to_owned())
        .or_insert(handle)
        .clone())
}

pub(crate) async fn groups(shared: &Shared) -> Result<Vec<GroupInfo>, LogError> {
    ensure_connected(&shared.client)?;
    let last = last_offset(shared).await?;
    let infos: Vec<consumer::Info> = shared
        .stream
        .consumers()
        .try_collect()
        .await
        .map_err(|e| classify(&shared.client, "cannot list consumer groups", e))?;
    let mut by_group: BTreeMap<&str, Vec<consumer::Info>> = BTreeMap::new();
    for info in &infos {
        if info.config.durable_name.is_none() {
            continue;
        }
        if let Some((group, _)) = Part::of_consumer(&info.name) {
            by_group.entry(group).or_default().push(info.clone());
        }
    }
    let mut groups = Vec::new();
    for (name, infos) in by_group {
        match info_of(shared, name, &infos, last).await {
            Ok(info) => groups.push(info),
            // Consumers of a group being created or deleted right now.
            Err(LogError::UnknownGroup(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(groups)
}

/// Hands out up to `max` events: redriven dead letters, then events the group's
/// consumers sent (waiting up to `wait` for one when given).
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
    let start = Instant::now();
    *handle.last_fetch.lock() = start;
    let deadline = wait.map(|w| start + w);
    let ack_wait = handle.config.lock().ack_wait;
    handle.expire(start, ack_wait);
    let mut out = redriven::take_redriven(shared, &handle, max).await?;
    let feed = &handle.feed;
    let held_before = feed.held();
    let asked = feed
        .request(&shared.client, Ask::Now, max, &handle.busy(start))
        .await?;
    if held_before == 0 && out.is_empty() && !asked.is_empty() {
        feed.answered(&asked, Instant::now() + ROUND_WAIT, ROUND_QUIET)
            .await;
    }
    loop {
        if feed.missing() {
            shared.groups.lock().remove(name);
            return Err(LogError::UnknownGroup(name.to_owned()));
        }
        let now = Instant::now();
        let taken = feed.take(max - out.len());
        {
            let mut delivered = handle.delivered.lock();
            for pending in taken {
                let first_failure = delivered
                    .get(&pending.event.offset)
                    .and_then(|d| d.first_failure);
                out.push(Delivery {
                    event: pending.event.clone(),
                    attempt: pending.attempt,
                });
                delivered.insert(
                    pending.event.offset,
                    Delivered {
                        reply: pending.reply,
                        event: pending.event,
                        attempt: pending.attempt,
                        part: pending.part,
                        deadline: now + ack_wait,
                        away: false,
                        first_failure,
                    },
                );
            }
        }
        let Some(deadline) = deadline else {
            break;
        };
        if !out.is_empty() || now >= deadline {
            break;
        }
        let step = (deadline - now).min(MAX_PULL_WAIT);
        handle.expire(now, ack_wait);
        feed.request(&shared.client, Ask::Wait(step), max, &handle.busy(now))
            .await?;
        feed.arrival(now + step).await;
    }
    out.sort_by_key(|d| d.event.offset);
    Ok(out)
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
    let mut handed = Vec::new();
    let mut redriven = Vec::new();
    {
        let delivered = handle.delivered.lock();
        let redrives = handle.redriven.lock();
        let unique: std::collections::BTreeSet<u64> = offsets.iter().copied().collect();
        for offset in unique {
            if let Some(r) = redrives.get(&offset) {
                redriven.push((offset, r.clone()));
            } else if let Some(d) = delivered.get(&offset) {
                handed.push((offset, d.reply.clone(), d.part));
            }
        }
    }
    let handle_ref = &handle;
    let acks = handed.iter().map(|(offset, reply, part)| async move {
        settle(shared, reply, Bytes::from_static(b"+ACK")).await?;
        handle_ref.forget(*offset);
        // The standing request ends half a liveness window after the last fetch, so it
        // is over before `keep_alive` hands back what an instance that stopped fetching
        // holds (else that would come right back to it, one delivery more each time).
        let until = *handle_ref.last_fetch.lock() + shared.options.liveness / 2;
        let wait = until.saturating_duration_since(Instant::now());
        if matches!(part, Part::Partition(_)) && wait >= MIN_STANDING {
            // Best effort: a request not sent now is sent by the next fetch.
            let _ = handle_ref
                .feed
                .rearm(&shared.client, std::slice::from_ref(part), wait)
                .await;
        }
        Ok::<(), LogError>(())
    });
    let results = futures::future::join_all(acks).await;
    for (offset, r) in redriven {
        redriven::resolve(shared, &handle, offset, &r).await?;
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
        return redriven::nack_redriven(shared, &handle, offset, r, delay, error, max_deliver)
            .await;
    }
    let first_failure = {
        let mut delivered = handle.delivered.lock();
        let Some(d) = delivered.get_mut(&offset) else {
            return Err(LogError::UnknownDelivery {
                group: name.to_owned(),
                offset,
            });
        };
        *d.first_failure.get_or_insert_with(Utc::now)
    };
    let Some(pending) = handle.delivered.lock().get(&offset).cloned() else {
        return Err(LogError::UnknownDelivery {
            group: name.to_owned(),
            offset,
        });
    };
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
        handle.forget(offset);
        return Ok(NackOutcome::DeadLettered(id));
    }
    let body: Bytes = async_nats::jetstream::AckKind::Nak(Some(delay)).into();
    settle(shared, &pending.reply, body).await?;
    if let Some(d) = handle.delivered.lock().get_mut(&offset) {
        d.away = true;
        d.deadline = Instant::now() + delay + ack_wait;
    }
    Ok(NackOutcome::Redeliver)
}

/// Keeps this instance's held and in-flight messages alive on the server (progress acks)
/// every third of the liveness window, until the log is dropped. If the instance dies,
/// the server redelivers its messages to others one liveness window later. Held messages
/// of a group this instance stopped fetching are handed back instead.
pub(crate) async fn keep_alive(shared: std::sync::Weak<Shared>) {
    loop {
        let Some(strong) = shared.upgrade() else {
            return;
        };
        let liveness = strong.options.liveness;
        let every = (liveness / 3).max(Duration::from_millis(50));
        let handles: Vec<Arc<GroupHandle>> = strong.groups.lock().values().cloned().collect();
        let now = Instant::now();
        for handle in handles {
            let mut replies: Vec<Subject> = handle
                .delivered
                .lock()
                .values()
                .filter(|d| !d.away && d.deadline > now)
                .map(|d| d.reply.clone())
                .collect();
            replies.extend(redriven::alive(&handle, now));
            let fetching = now.duration_since(*handle.last_fetch.lock()) < liveness;
            if fetching {
                replies.extend(handle.feed.held_replies());
            } else {
                let idle = handle.feed.take(usize::MAX);
                for pending in idle {
                    let _ = strong
                        .client
                        .publish(pending.reply, Bytes::from_static(b"-NAK"))
                        .await;
                }
            }
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
            .delivered
            .lock()
            .drain()
            .filter(|(_, d)| !d.away)
            .map(|(_, d)| d.reply)
            .collect();
        replies.extend(handle.feed.take(usize::MAX).into_iter().map(|p| p.reply));
        replies.extend(redriven::drain(&handle));
        for reply in replies {
            let _ = shared
                .client
                .publish(reply, Bytes::from_static(b"-NAK"))
                .await;
        }
    }
    let _ = shared.client.flush().await;
}
