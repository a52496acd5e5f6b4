//! Consumer-group bookkeeping shared by the single-node logs (memory, SQLite).
//!
//! [`GroupState`] is pure logic with no I/O: the backend reads events after
//! [`GroupState::admit_window`] and hands them to [`GroupState::admit`]; fetch, ack and nack
//! then only move entries between small ordered sets. Keeping it apart from storage means
//! every backend gets the same delivery semantics, tested once:
//!
//! - at most [`MAX_PENDING`] events are held per group, so memory stays bounded however far
//!   the log runs ahead;
//! - an event whose `subject` has an earlier unacknowledged event waits (`Blocked`) until
//!   that one is acknowledged or dead-lettered: ordering per subject, concurrency across;
//! - the committed offset is the highest offset below which nothing is pending, and only
//!   grows; a redriven dead letter is tracked apart, since it lies below the committed
//!   offset and is kept in the dead-letter store until it is acknowledged;
//! - a durable backend keeps attempt counts across restarts with
//!   [`GroupState::track_failures`]: every failed delivery that is redelivered (nack or
//!   ack-wait expiry) is reported once by [`GroupState::take_failures`] for the backend to
//!   store, and [`GroupState::restore_failures`] seeds the counts after a restart, so
//!   `max_deliver` counts deliveries, not deliveries since the process started. Only
//!   failures are stored, never fetches: a delivery in flight when the process stops is
//!   not counted.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::log::{Delivery, GroupConfig, GroupInfo, LogError, StoredEvent};

/// The most events one group holds in flight, waiting or blocked.
pub const MAX_PENDING: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Behind an earlier event of the same subject.
    Blocked,
    /// Due now.
    Ready,
    /// Due at this instant (after a nack).
    Delayed(Instant),
    /// Handed out; redelivered if not settled by this instant.
    InFlight(Instant),
}

#[derive(Debug)]
struct Entry {
    event: StoredEvent,
    attempts: u32,
    state: State,
    first_failure: Option<DateTime<Utc>>,
    last_error: Option<String>,
    /// Set for a redriven dead letter: its id in the dead-letter store.
    dead_letter: Option<u64>,
}

/// A failed event to be written to the dead-letter store.
#[derive(Clone, Debug, PartialEq)]
pub struct DeadLetterDraft {
    /// The group that gave up.
    pub group: String,
    /// The event.
    pub event: StoredEvent,
    /// The last error text.
    pub error: String,
    /// Failed deliveries.
    pub attempts: u32,
    /// When the first delivery failed.
    pub first_failure: DateTime<Utc>,
    /// When the last delivery failed.
    pub last_failure: DateTime<Utc>,
    /// For a redriven dead letter that failed again: the existing id to update.
    pub existing_id: Option<u64>,
}

/// The failed deliveries of one event so far, as a durable backend stores them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailedAttempts {
    /// The event's offset.
    pub offset: u64,
    /// Deliveries made and failed (nacked or expired).
    pub attempts: u32,
    /// When the first delivery failed.
    pub first_failure: DateTime<Utc>,
}

/// What an ack settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckEffect {
    /// Nothing was pending at that offset (already acknowledged, or never delivered).
    Ignored,
    /// A pending event was acknowledged.
    Acked,
    /// A redriven dead letter was handled: remove it from the store.
    ResolvedDeadLetter(u64),
}

/// What a nack decided.
#[derive(Clone, Debug, PartialEq)]
pub enum NackEffect {
    /// Redelivered after the delay.
    Redeliver,
    /// `max_deliver` reached: store this dead letter.
    DeadLetter(Box<DeadLetterDraft>),
}

/// The delivery state of one consumer group.
#[derive(Debug)]
pub struct GroupState {
    name: String,
    config: GroupConfig,
    committed: u64,
    /// Highest offset handed to `admit` (matching or not).
    scanned: u64,
    entries: BTreeMap<u64, Entry>,
    ready: BTreeSet<u64>,
    delayed: BTreeSet<(Instant, u64)>,
    in_flight: BTreeSet<(Instant, u64)>,
    subjects: HashMap<String, VecDeque<u64>>,
    redriven: usize,
    /// Attempt counts stored before a restart, taken when their event is admitted again.
    restored: HashMap<u64, FailedAttempts>,
    /// Failures not yet handed to the backend; `None` unless it tracks them.
    failures: Option<Vec<FailedAttempts>>,
}

impl GroupState {
    /// A group that has handled everything up to `committed`.
    pub fn new(name: impl Into<String>, config: GroupConfig, committed: u64) -> Self {
        Self {
            name: name.into(),
            config,
            committed,
            scanned: committed,
            entries: BTreeMap::new(),
            ready: BTreeSet::new(),
            delayed: BTreeSet::new(),
            in_flight: BTreeSet::new(),
            subjects: HashMap::new(),
            redriven: 0,
            restored: HashMap::new(),
            failures: None,
        }
    }

    /// Starts reporting failed deliveries through [`take_failures`](Self::take_failures),
    /// for a backend that stores attempt counts.
    pub fn track_failures(&mut self) {
        self.failures.get_or_insert_with(Vec::new);
    }

    /// The failed deliveries since the last call, each with the event's count so far;
    /// empty unless [`track_failures`](Self::track_failures) was called.
    pub fn take_failures(&mut self) -> Vec<FailedAttempts> {
        self.failures
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Seeds the attempt counts stored before a restart: an event admitted again starts
    /// from its stored count instead of 0. Counts at or below the committed offset are
    /// settled and ignored.
    pub fn restore_failures(&mut self, stored: impl IntoIterator<Item = FailedAttempts>) {
        let committed = self.committed;
        self.restored.extend(
            stored
                .into_iter()
                .filter(|f| f.offset > committed)
                .map(|f| (f.offset, f)),
        );
    }

    /// The group's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The group's configuration.
    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    /// Replaces the configuration; the position and pending events stay.
    pub fn set_config(&mut self, config: GroupConfig) {
        self.config = config;
    }

    /// Every event at or below this offset is acknowledged or dead-lettered.
    pub fn committed(&self) -> u64 {
        self.committed
    }

    /// The group as reported to operators.
    pub fn info(&self) -> GroupInfo {
        GroupInfo {
            name: self.name.clone(),
            pattern: self.config.pattern.clone(),
            committed: self.committed,
            pending: self.entries.len(),
        }
    }

    /// `Some((after, limit))` when the group can take up to `limit` more events read
    /// after offset `after`; `None` while it holds [`MAX_PENDING`] events.
    pub fn admit_window(&self) -> Option<(u64, usize)> {
        let held = self.entries.len() - self.redriven;
        (held < MAX_PENDING).then(|| (self.scanned, MAX_PENDING - held))
    }

    /// Takes events read after the admit window's offset, in offset order. Events whose
    /// type does not match the group's pattern are skipped (and so count as handled).
    /// `scanned_to` is the highest offset the read looked at, which may lie beyond the
    /// last event when the backend filtered by pattern itself.
    pub fn admit(&mut self, events: impl IntoIterator<Item = StoredEvent>, scanned_to: u64) {
        for event in events {
            if event.offset <= self.scanned {
                continue;
            }
            self.scanned = event.offset;
            if !self.config.pattern.matches(&event.event.ty) {
                continue;
            }
            let offset = event.offset;
            let state = match &event.event.subject {
                Some(subject) => {
                    let queue = self.subjects.entry(subject.clone()).or_default();
                    queue.push_back(offset);
                    if queue.len() == 1 {
                        State::Ready
                    } else {
                        State::Blocked
                    }
                }
                None => State::Ready,
            };
            let prior = self.restored.remove(&offset);
            self.insert(Entry {
                event,
                attempts: prior.as_ref().map_or(0, |p| p.attempts),
                state,
                first_failure: prior.map(|p| p.first_failure),
                last_error: None,
                dead_letter: None,
            });
        }
        self.scanned = self.scanned.max(scanned_to);
        if !self.restored.is_empty() {
            let scanned = self.scanned;
            self.restored.retain(|&offset, _| offset > scanned);
        }
        self.advance_committed();
    }

    /// Hands out up to `max` due events, oldest first. Deliveries whose ack wait ran out
    /// are failed first: redelivered, or returned as dead letters when out of attempts.
    pub fn take_due(&mut self, now: Instant, max: usize) -> (Vec<Delivery>, Vec<DeadLetterDraft>) {
        let mut dead = Vec::new();
        while let Some(&(deadline, offset)) = self.in_flight.first() {
            if deadline > now {
                break;
            }
            self.in_flight.pop_first();
            let error = format!(
                "not acknowledged within the ack wait of {:?}",
                self.config.ack_wait
            );
            if let NackEffect::DeadLetter(draft) = self.fail(offset, Duration::ZERO, &error, now) {
                dead.push(*draft);
            }
        }
        while let Some(&(due, offset)) = self.delayed.first() {
            if due > now {
                break;
            }
            self.delayed.pop_first();
            self.set_state(offset, State::Ready);
        }
        let mut deliveries = Vec::new();
        while deliveries.len() < max {
            let Some(offset) = self.ready.pop_first() else {
                break;
            };
            let deadline = now + self.config.ack_wait;
            let Some(entry) = self.entries.get_mut(&offset) else {
                continue;
            };
            entry.attempts += 1;
            entry.state = State::InFlight(deadline);
            self.in_flight.insert((deadline, offset));
            deliveries.push(Delivery {
                event: entry.event.clone(),
                attempt: entry.attempts,
            });
        }
        (deliveries, dead)
    }

    /// The earliest instant at which something becomes due without new events, if any.
    pub fn next_due(&self) -> Option<Instant> {
        let delayed = self.delayed.first().map(|&(t, _)| t);
        let expiry = self.in_flight.first().map(|&(t, _)| t);
        match (delayed, expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Acknowledges a delivered event.
    pub fn ack(&mut self, offset: u64) -> AckEffect {
        match self.entries.get(&offset) {
            None => AckEffect::Ignored,
            Some(entry) if entry.state == State::Blocked => AckEffect::Ignored,
            Some(_) => {
                let entry = self.settle(offset);
                match entry.and_then(|e| e.dead_letter) {
                    Some(id) => AckEffect::ResolvedDeadLetter(id),
                    None => AckEffect::Acked,
                }
            }
        }
    }

    /// Reports a failed delivery of `offset`.
    pub fn nack(
        &mut self,
        offset: u64,
        delay: Duration,
        error: &str,
        now: Instant,
    ) -> Result<NackEffect, LogError> {
        match self.entries.get(&offset) {
            Some(entry) if entry.state != State::Blocked => {
                Ok(self.fail(offset, delay, error, now))
            }
            _ => Err(LogError::UnknownDelivery {
                group: self.name.clone(),
                offset,
            }),
        }
    }

    /// Hands a dead letter back for delivery; `event` lies at or below the committed offset.
    pub fn redrive(&mut self, dead_letter_id: u64, event: StoredEvent) {
        if self.entries.contains_key(&event.offset) {
            return;
        }
        self.redriven += 1;
        self.insert(Entry {
            event,
            attempts: 0,
            state: State::Ready,
            first_failure: None,
            last_error: None,
            dead_letter: Some(dead_letter_id),
        });
    }

    fn fail(&mut self, offset: u64, delay: Duration, error: &str, now: Instant) -> NackEffect {
        let wall = Utc::now();
        let max_deliver = self.config.max_deliver.max(1);
        let Some(entry) = self.entries.get_mut(&offset) else {
            return NackEffect::Redeliver;
        };
        let first_failure = *entry.first_failure.get_or_insert(wall);
        entry.last_error = Some(error.to_owned());
        if entry.attempts < max_deliver {
            // A redriven dead letter lies below the committed offset: its count lives in
            // the dead-letter store, not among the group's attempts.
            if let (Some(failures), None) = (&mut self.failures, entry.dead_letter) {
                failures.push(FailedAttempts {
                    offset,
                    attempts: entry.attempts,
                    first_failure,
                });
            }
            let state = if delay.is_zero() {
                State::Ready
            } else {
                State::Delayed(now + delay)
            };
            self.set_state(offset, state);
            return NackEffect::Redeliver;
        }
        let attempts = entry.attempts;
        let Some(entry) = self.settle(offset) else {
            return NackEffect::Redeliver;
        };
        NackEffect::DeadLetter(Box::new(DeadLetterDraft {
            group: self.name.clone(),
            event: entry.event,
            error: error.to_owned(),
            attempts,
            first_failure,
            last_failure: wall,
            existing_id: entry.dead_letter,
        }))
    }

    fn insert(&mut self, entry: Entry) {
        let offset = entry.event.offset;
        if entry.state == State::Ready {
            self.ready.insert(offset);
        }
        debug_assert!(matches!(entry.state, State::Ready | State::Blocked));
        self.entries.insert(offset, entry);
    }

    fn set_state(&mut self, offset: u64, state: State) {
        let Some(entry) = self.entries.get_mut(&offset) else {
            return;
        };
        match entry.state {
            State::Blocked => {}
            State::Ready => {
                self.ready.remove(&offset);
            }
            State::Delayed(t) => {
                self.delayed.remove(&(t, offset));
            }
            State::InFlight(t) => {
                self.in_flight.remove(&(t, offset));
            }
        }
        entry.state = state;
        match state {
            State::Blocked => {}
            State::Ready => {
                self.ready.insert(offset);
            }
            State::Delayed(t) => {
                self.delayed.insert((t, offset));
            }
            State::InFlight(t) => {
                self.in_flight.insert((t, offset));
            }
        }
    }

    /// Removes a settled entry, unblocks the next event of its subject and advances the
    /// committed offset.
    fn settle(&mut self, offset: u64) -> Option<Entry> {
        self.set_state(offset, State::Blocked);
        let entry = self.entries.remove(&offset)?;
        if entry.dead_letter.is_some() {
            self.redriven -= 1;
            return Some(entry);
        }
        if let Some(subject) = &entry.event.event.subject {
            if let Some(queue) = self.subjects.get_mut(subject) {
                debug_assert_eq!(queue.front(), Some(&offset));
                queue.retain(|&o| o != offset);
                match queue.front() {
                    Some(&next) => self.set_state(next, State::Ready),
                    None => {
                        self.subjects.remove(subject);
                    }
                }
            }
        }
        self.advance_committed();
        Some(entry)
    }

    fn advance_committed(&mut self) {
        let lowest_pending = self
            .entries
            .iter()
            .find(|(_, e)| e.dead_letter.is_none())
            .map(|(&offset, _)| offset - 1);
        let committed = lowest_pending.unwrap_or(self.scanned);
        debug_assert!(committed >= self.committed || lowest_pending.is_some());
        self.committed = self.committed.max(committed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Event, Pattern};

    fn stored(offset: u64, ty: &str, subject: Option<&str>) -> StoredEvent {
        let mut event = Event::new(ty.to_owned());
        event.subject = subject.map(str::to_owned);
        StoredEvent { offset, event }
    }

    fn group(max_deliver: u32) -> GroupState {
        let mut config = GroupConfig::new(Pattern::parse("a.>").unwrap());
        config.max_deliver = max_deliver;
        config.ack_wait = Duration::from_secs(10);
        GroupState::new("g", config, 0)
    }

    fn offsets(deliveries: &[Delivery]) -> Vec<u64> {
        deliveries.iter().map(|d| d.event.offset).collect()
    }

    #[test]
    fn same_subject_waits_other_subjects_do_not() {
        let mut g = group(3);
        g.admit(
            vec![
                stored(1, "a.x", Some("u1")),
                stored(2, "a.x", Some("u1")),
                stored(3, "a.x", Some("u2")),
            ],
            3,
        );
        let now = Instant::now();
        let (d, _) = g.take_due(now, 10);
        assert_eq!(offsets(&d), vec![1, 3]);
        assert_eq!(
            g.ack(2),
            AckEffect::Ignored,
            "a blocked event cannot be acked"
        );
        assert_eq!(g.ack(1), AckEffect::Acked);
        assert_eq!(g.committed(), 1);
        let (d, _) = g.take_due(now, 10);
        assert_eq!(offsets(&d), vec![2]);
        g.ack(3);
        g.ack(2);
        assert_eq!(g.committed(), 3);
        assert_eq!(g.info().pending, 0);
    }

    #[test]
    fn non_matching_events_are_skipped_and_committed() {
        let mut g = group(3);
        g.admit(vec![stored(1, "b.x", None), stored(2, "a.x", None)], 5);
        assert_eq!(g.committed(), 1);
        let (d, _) = g.take_due(Instant::now(), 10);
        g.ack(d[0].event.offset);
        assert_eq!(g.committed(), 5);
        assert_eq!(g.admit_window(), Some((5, MAX_PENDING)));
    }

    #[test]
    fn nack_delays_then_dead_letters() {
        let mut g = group(2);
        g.admit(
            vec![stored(1, "a.x", Some("u")), stored(2, "a.x", Some("u"))],
            2,
        );
        let t0 = Instant::now();
        g.take_due(t0, 10);
        assert_eq!(
            g.nack(1, Duration::from_secs(5), "boom", t0).unwrap(),
            NackEffect::Redeliver
        );
        assert!(g.take_due(t0 + Duration::from_secs(4), 10).0.is_empty());
        assert_eq!(g.next_due(), Some(t0 + Duration::from_secs(5)));
        let (d, _) = g.take_due(t0 + Duration::from_secs(5), 10);
        assert_eq!((offsets(&d), d[0].attempt), (vec![1], 2));
        let NackEffect::DeadLetter(draft) = g.nack(1, Duration::ZERO, "boom again", t0).unwrap()
        else {
            panic!("expected a dead letter");
        };
        assert_eq!(
            (draft.attempts, draft.error.as_str(), draft.existing_id),
            (2, "boom again", None)
        );
        assert_eq!(g.committed(), 1);
        let (d, _) = g.take_due(t0, 10);
        assert_eq!(
            offsets(&d),
            vec![2],
            "the next event of the subject is released"
        );
        assert!(matches!(
            g.nack(7, Duration::ZERO, "x", t0),
            Err(LogError::UnknownDelivery { offset: 7, .. })
        ));
    }

    #[test]
    fn ack_wait_expiry_redelivers_then_dead_letters() {
        let mut g = group(2);
        g.admit(vec![stored(1, "a.x", None)], 1);
        let t0 = Instant::now();
        assert_eq!(g.take_due(t0, 1).0.len(), 1);
        let later = t0 + Duration::from_secs(10);
        let (d, dead) = g.take_due(later, 1);
        assert_eq!((d[0].attempt, dead.len()), (2, 0));
        let (d, dead) = g.take_due(later + Duration::from_secs(10), 1);
        assert!(d.is_empty());
        assert!(dead[0].error.contains("ack wait"), "{}", dead[0].error);
        assert_eq!(g.committed(), 1);
    }

    #[test]
    fn redriven_dead_letters_do_not_move_the_committed_offset() {
        let mut g = group(1);
        g.admit(vec![stored(1, "a.x", None), stored(2, "a.x", None)], 2);
        let now = Instant::now();
        g.take_due(now, 10);
        g.ack(2);
        g.redrive(9, stored(1, "a.x", None));
        assert_eq!(g.committed(), 0, "offset 1 is still in flight");
        assert!(matches!(
            g.nack(1, Duration::ZERO, "x", now).unwrap(),
            NackEffect::DeadLetter(_)
        ));
        assert_eq!(g.committed(), 2);
        g.redrive(9, stored(1, "a.x", None));
        assert_eq!(g.committed(), 2);
        let (d, _) = g.take_due(now, 10);
        assert_eq!(offsets(&d), vec![1]);
        assert_eq!(g.ack(1), AckEffect::ResolvedDeadLetter(9));
        assert_eq!(g.info().pending, 0);
    }

    #[test]
    fn tracked_failures_are_reported_and_restored_counts_continue() {
        let mut g = group(3);
        g.track_failures();
        g.admit(vec![stored(1, "a.x", None), stored(2, "a.x", None)], 2);
        let t0 = Instant::now();
        g.take_due(t0, 10);
        assert!(g.take_failures().is_empty(), "a fetch is not a failure");
        g.nack(1, Duration::ZERO, "boom", t0).unwrap();
        let failures = g.take_failures();
        assert_eq!(
            failures
                .iter()
                .map(|f| (f.offset, f.attempts))
                .collect::<Vec<_>>(),
            vec![(1, 1)]
        );
        assert!(g.take_failures().is_empty(), "reported once");

        // After a restart: the stored count continues, and max_deliver counts it.
        let mut config = g.config().clone();
        config.ack_wait = Duration::from_secs(10);
        let mut again = GroupState::new("g", config, 0);
        let mut stored_count = failures[0].clone();
        stored_count.attempts = 2;
        again.restore_failures(vec![stored_count]);
        again.admit(vec![stored(1, "a.x", None), stored(2, "a.x", None)], 2);
        let (d, _) = again.take_due(t0, 10);
        assert_eq!(
            d.iter()
                .map(|d| (d.event.offset, d.attempt))
                .collect::<Vec<_>>(),
            vec![(1, 3), (2, 1)]
        );
        let NackEffect::DeadLetter(draft) = again.nack(1, Duration::ZERO, "x", t0).unwrap() else {
            panic!("the third attempt of three dead-letters");
        };
        assert_eq!(
            (draft.attempts, draft.first_failure),
            (3, failures[0].first_failure)
        );
        assert!(again.take_failures().is_empty(), "untracked");
    }

    #[test]
    fn the_window_bounds_what_is_held() {
        let mut g = group(1);
        let events: Vec<_> = (1..=MAX_PENDING as u64)
            .map(|o| stored(o, "a.x", Some("same")))
            .collect();
        g.admit(events, MAX_PENDING as u64);
        assert_eq!(g.admit_window(), None);
        let (d, _) = g.take_due(Instant::now(), 10);
        g.ack(d[0].event.offset);
        assert_eq!(g.admit_window(), Some((MAX_PENDING as u64, 1)));
    }
}
