//! The durable log every persistent backend implements.
//!
//! The shape follows what SQLite, PostgreSQL and NATS JetStream can all provide: an
//! append-only sequence of events numbered by `offset` (1, 2, ... strictly increasing;
//! "after 0" means from the beginning), idempotent by event id, and consumer groups that
//! fetch, ack and nack like a JetStream pull consumer. A group's bookkeeping (which
//! events are in flight, which wait for redelivery, ordering per subject) is the same
//! logic for every single-node backend and lives in [`crate::group::GroupState`].
//!
//! Semantics every implementation must keep (checked by the `contract` suite):
//! - `append` validates every event first: one invalid event, or two events of the batch
//!   with the same `id`, rejects the whole batch and stores nothing. Events without `time`
//!   get the append time. An event whose `id` is already stored is not stored again; its
//!   original offset is returned.
//! - When `append` returns, the events are as durable as the backend's policy promises.
//! - A group hands each matching event to one fetcher at a time; an event is not handed
//!   out while an earlier event with the same `subject` is unacknowledged in that group.
//! - An event fetched and neither acked nor nacked within `ack_wait` is redelivered.
//! - `nack` redelivers after the delay; the `max_deliver`-th failure moves the event to
//!   the dead-letter store with the error text instead.
//! - A group has one pattern, fixed when it is made: joining it with another pattern is
//!   [`LogError::GroupPatternConflict`], and only
//!   [`set_group_pattern`](EventLog::set_group_pattern) (an operator's action) changes it.
//! - The committed offset of a group only grows, and after a restart the group resumes
//!   after it: every acknowledged event stays acknowledged or is redelivered, never skipped.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::{Event, EventError, Pattern};

/// An event as stored in a log.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEvent {
    /// Position in the log, from 1.
    pub offset: u64,
    /// The event, with `time` set.
    pub event: Event,
}

/// The result of appending one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// The event's offset (the original one for a duplicate).
    pub offset: u64,
    /// Whether the id was already stored, so nothing was written.
    pub duplicate: bool,
}

/// Which events a read returns.
#[derive(Clone, Debug, PartialEq)]
pub struct ReadQuery {
    /// Only events with an offset greater than this.
    pub after: u64,
    /// At most this many events.
    pub limit: usize,
    /// Only events whose type matches.
    pub pattern: Option<Pattern>,
    /// Only events whose `time` is at or after this.
    pub since: Option<DateTime<Utc>>,
}

impl ReadQuery {
    /// Up to `limit` events after `after`, unfiltered.
    pub fn after(after: u64, limit: usize) -> Self {
        Self {
            after,
            limit,
            pattern: None,
            since: None,
        }
    }

    /// Whether `stored` passes the pattern and time filters.
    pub fn accepts(&self, stored: &StoredEvent) -> bool {
        self.pattern
            .as_ref()
            .is_none_or(|p| p.matches(&stored.event.ty))
            && self
                .since
                .is_none_or(|since| stored.event.time.is_some_and(|t| t >= since))
    }
}

/// Where a new consumer group starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartPosition {
    /// From the first event in the log.
    #[default]
    Earliest,
    /// After the last event in the log when the group is created.
    Latest,
}

/// How a consumer group reads.
///
/// [`EventLog::ensure_group`] on an existing group is a join: `pattern` must be the
/// group's own (it is part of the group, and what rights are checked against), `start` is
/// ignored (the group keeps its position), and `max_deliver` and `ack_wait` replace the
/// stored ones. Those two are delivery settings the program picks (the server takes them
/// from its configuration or from a webhook subscription), never a subscriber, so the
/// latest join applies its own without widening what anyone receives.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupConfig {
    /// The event types the group receives; others are skipped. Fixed when the group is made.
    pub pattern: Pattern,
    /// Where a new group starts; ignored when the group exists.
    pub start: StartPosition,
    /// Deliveries before an event is dead-lettered (at least 1).
    pub max_deliver: u32,
    /// How long a fetched event may stay unacknowledged before it is redelivered.
    pub ack_wait: Duration,
}

impl GroupConfig {
    /// Defaults: from the earliest event, 5 deliveries, 30 s ack wait.
    pub fn new(pattern: Pattern) -> Self {
        Self {
            pattern,
            start: StartPosition::Earliest,
            max_deliver: 5,
            ack_wait: Duration::from_secs(30),
        }
    }
}

/// One event handed to a group member.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    /// The event.
    pub event: StoredEvent,
    /// 1 for the first delivery, 2 for the first redelivery, ...
    pub attempt: u32,
}

/// What a `nack` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NackOutcome {
    /// The event will be delivered again after the delay.
    Redeliver,
    /// `max_deliver` was reached: the event is in the dead-letter store under this id.
    DeadLettered(u64),
}

/// The state of one consumer group.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupInfo {
    /// The group's name.
    pub name: String,
    /// The event types it receives.
    pub pattern: Pattern,
    /// Every event at or below this offset is acknowledged or dead-lettered.
    pub committed: u64,
    /// Events fetched or waiting for redelivery.
    pub pending: usize,
}

/// An event that failed `max_deliver` times in a group.
#[derive(Clone, Debug, PartialEq)]
pub struct DeadLetter {
    /// Id in the dead-letter store.
    pub id: u64,
    /// The group that failed to handle it.
    pub group: String,
    /// The event.
    pub event: StoredEvent,
    /// The last error text.
    pub error: String,
    /// How many deliveries failed.
    pub attempts: u32,
    /// When the first delivery failed.
    pub first_failure: DateTime<Utc>,
    /// When the last delivery failed.
    pub last_failure: DateTime<Utc>,
}

/// Why a log operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// An event of the batch is invalid; nothing was stored.
    #[error("event {index} of the batch is invalid: {source}")]
    InvalidEvent {
        /// Its position in the batch.
        index: usize,
        /// What is wrong with it.
        source: EventError,
    },
    /// Two events of the batch have the same id; nothing was stored.
    #[error("events {first} and {second} of the batch have the same id")]
    RepeatedId {
        /// The position of the first event with the id.
        first: usize,
        /// The position of the event repeating it.
        second: usize,
    },
    /// The group does not exist.
    #[error("unknown consumer group {0:?}")]
    UnknownGroup(String),
    /// The group exists with another pattern: a join cannot change it (an operator does,
    /// with [`EventLog::set_group_pattern`]).
    #[error(
        "consumer group {group:?} receives \"{existing}\", not \"{requested}\"; \
         its pattern is changed by an administrator"
    )]
    GroupPatternConflict {
        /// The group.
        group: String,
        /// Its pattern.
        existing: Pattern,
        /// The pattern asked for.
        requested: Pattern,
    },
    /// The backend cannot do this operation.
    #[error("not supported by this event log: {0}")]
    Unsupported(String),
    /// The group name or configuration is not allowed.
    #[error("invalid consumer group: {0}")]
    InvalidGroup(String),
    /// The offset is not a delivery of the group waiting to be settled.
    #[error("offset {offset} is not an unsettled delivery of group {group:?}")]
    UnknownDelivery {
        /// The group.
        group: String,
        /// The offset.
        offset: u64,
    },
    /// No dead letter has this id.
    #[error("unknown dead letter {0}")]
    UnknownDeadLetter(u64),
    /// The backend cannot be reached right now; retrying may succeed.
    #[error("event log unavailable: {0}")]
    Unavailable(String),
    /// Storage failed (I/O error, read-only, corruption).
    #[error("event log storage failed: {0}")]
    Storage(String),
    /// The storage has no space left: nothing of the write was stored. Reads still work,
    /// and writes succeed again once space is freed, without a restart.
    #[error("event log storage is full: {0}")]
    StorageFull(String),
    /// The store was written by something else or by a newer Pulse; it was not modified.
    #[error("incompatible event log: {0}")]
    Incompatible(String),
    /// The log was closed.
    #[error("event log is closed")]
    Closed,
}

/// Checks a consumer group name: 1 to 64 characters of `[A-Za-z0-9_-]`.
pub fn validate_group_name(name: &str) -> Result<(), LogError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(LogError::InvalidGroup(format!(
            "group names are 1 to 64 characters of [A-Za-z0-9_-], got {name:?}"
        )))
    }
}

/// Validates every event of a batch before anything is stored, naming the first invalid
/// one by its index, then [`refuse_repeated_ids`]: what every backend's `append` does first.
pub fn validate_batch(events: &[Event]) -> Result<(), LogError> {
    for (index, event) in events.iter().enumerate() {
        event
            .validate()
            .map_err(|source| LogError::InvalidEvent { index, source })?;
    }
    refuse_repeated_ids(events)
}

/// Refuses a batch in which two events have the same id, naming both positions.
///
/// Deduplication by id answers a retry with the original offset; within one batch a
/// repeated id can only be a mistake, and storing the first event while answering the
/// second as its duplicate would silently drop the second one's data.
pub fn refuse_repeated_ids(events: &[Event]) -> Result<(), LogError> {
    if events.len() < 2 {
        return Ok(());
    }
    let mut seen: std::collections::HashMap<&str, usize> =
        std::collections::HashMap::with_capacity(events.len());
    for (second, event) in events.iter().enumerate() {
        if let Some(&first) = seen.get(event.id.as_str()) {
            return Err(LogError::RepeatedId { first, second });
        }
        seen.insert(&event.id, second);
    }
    Ok(())
}

/// The conflict of joining a group that has `existing` with `requested`, if they differ.
pub fn check_group_pattern(
    group: &str,
    existing: &Pattern,
    requested: &Pattern,
) -> Result<(), LogError> {
    if existing.as_str() == requested.as_str() {
        Ok(())
    } else {
        Err(LogError::GroupPatternConflict {
            group: group.to_owned(),
            existing: existing.clone(),
            requested: requested.clone(),
        })
    }
}

/// A durable, append-only event log with consumer groups.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Validates and appends events in order, all or nothing; returns one result each.
    async fn append(&self, events: Vec<Event>) -> Result<Vec<Appended>, LogError>;

    /// Reads up to `query.limit` events after `query.after` that pass its filters, in
    /// offset order. Page with `after` = the last offset returned.
    async fn read(&self, query: ReadQuery) -> Result<Vec<StoredEvent>, LogError>;

    /// The highest offset stored (0 when empty).
    async fn last_offset(&self) -> Result<u64, LogError>;

    /// The highest offset stored, updated after every append.
    fn watch_appends(&self) -> watch::Receiver<u64>;

    /// Creates the group if needed, or joins it: see [`GroupConfig`] for what a join keeps
    /// and applies. Joining with another pattern than the group's is
    /// [`LogError::GroupPatternConflict`], and changes nothing.
    async fn ensure_group(&self, name: &str, config: GroupConfig) -> Result<GroupInfo, LogError>;

    /// Changes the pattern of an existing group: an operator's action, never a join. The
    /// group keeps its position; events already handed out or waiting for redelivery stay
    /// pending and are delivered, later events are filtered by the new pattern.
    ///
    /// The default says the backend cannot (`Unsupported`).
    async fn set_group_pattern(&self, name: &str, pattern: Pattern) -> Result<GroupInfo, LogError> {
        let _ = pattern;
        Err(LogError::Unsupported(format!(
            "the pattern of consumer group {name:?} cannot be changed on this backend; \
             use a new group"
        )))
    }

    /// Hands out up to `max` due events of the group without waiting.
    async fn fetch(&self, group: &str, max: usize) -> Result<Vec<Delivery>, LogError>;

    /// Acknowledges handled events; unknown or already acknowledged offsets are ignored.
    async fn ack(&self, group: &str, offsets: &[u64]) -> Result<(), LogError>;

    /// Reports a failed delivery: redelivered after `delay`, or dead-lettered.
    async fn nack(
        &self,
        group: &str,
        offset: u64,
        delay: Duration,
        error: &str,
    ) -> Result<NackOutcome, LogError>;

    /// Every consumer group.
    async fn groups(&self) -> Result<Vec<GroupInfo>, LogError>;

    /// Dead letters with an id greater than `after_id`, oldest first, optionally of one group.
    async fn dead_letters(
        &self,
        group: Option<&str>,
        after_id: u64,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, LogError>;

    /// Hands a dead letter back to its group; it leaves the store once acknowledged.
    async fn redrive(&self, id: u64) -> Result<(), LogError>;

    /// Makes group positions durable now (they are otherwise committed in batches).
    async fn flush(&self) -> Result<(), LogError>;

    /// Like [`fetch`](Self::fetch), but waits up to `timeout` for something to be due.
    async fn fetch_wait(
        &self,
        group: &str,
        max: usize,
        timeout: Duration,
    ) -> Result<Vec<Delivery>, LogError> {
        // Redeliveries become due with time, not with appends, so wake up regularly too.
        const RECHECK: Duration = Duration::from_millis(50);
        let deadline = tokio::time::Instant::now() + timeout;
        let mut appends = self.watch_appends();
        loop {
            appends.borrow_and_update();
            let batch = self.fetch(group, max).await?;
            let now = tokio::time::Instant::now();
            if !batch.is_empty() || now >= deadline {
                return Ok(batch);
            }
            let wait = (deadline - now).min(RECHECK);
            let _ = tokio::time::timeout(wait, appends.changed()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_valid_only_when_every_event_is() {
        validate_batch(&[]).unwrap();
        validate_batch(&[Event::new("a.b"), Event::new("a.c")]).unwrap();
        let batch = [Event::new("a.b"), Event::new("a.c"), Event::new("a..d")];
        assert!(matches!(
            validate_batch(&batch),
            Err(LogError::InvalidEvent { index: 2, .. })
        ));
    }

    #[test]
    fn a_batch_that_repeats_an_id_names_both_events() {
        let batch = [
            Event::new("a.b").with_id("x"),
            Event::new("a.b").with_id("y"),
            Event::new("a.b").with_id("z"),
            Event::new("a.c").with_id("y"),
        ];
        assert!(matches!(
            validate_batch(&batch),
            Err(LogError::RepeatedId {
                first: 1,
                second: 3
            })
        ));
        validate_batch(&batch[..3]).unwrap();
    }

    #[test]
    fn only_another_pattern_conflicts() {
        let p = |s: &str| Pattern::parse(s).unwrap();
        check_group_pattern("g", &p("a.>"), &p("a.>")).unwrap();
        assert!(matches!(
            check_group_pattern("g", &p("a.>"), &p("a.*")),
            Err(LogError::GroupPatternConflict { existing, requested, .. })
                if existing.as_str() == "a.>" && requested.as_str() == "a.*"
        ));
    }
}
