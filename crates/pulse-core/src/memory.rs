//! [`MemoryLog`]: the in-memory [`EventLog`], the reference the contract suite is written
//! against and a durable-looking log for tests. Nothing survives the process.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::group::{AckEffect, DeadLetterDraft, GroupState, NackEffect};
use crate::log::{
    check_group_pattern, validate_batch, validate_group_name, Appended, DeadLetter, Delivery,
    EventLog, GroupConfig, GroupInfo, LogError, NackOutcome, ReadQuery, StartPosition, StoredEvent,
};
use crate::{Event, Pattern};

/// An [`EventLog`] held in memory.
///
/// ```
/// # tokio_test_block_on(async {
/// use pulse_core::{memory::MemoryLog, Event, EventLog, ReadQuery};
/// let log = MemoryLog::new();
/// let appended = log.append(vec![Event::new("health.reading")]).await.unwrap();
/// assert_eq!(appended[0].offset, 1);
/// assert_eq!(log.read(ReadQuery::after(0, 10)).await.unwrap().len(), 1);
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Debug)]
pub struct MemoryLog {
    inner: Mutex<Inner>,
    tail: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct Inner {
    /// `events[i]` has offset `i + 1`.
    events: Vec<StoredEvent>,
    ids: HashMap<String, u64>,
    groups: HashMap<String, GroupState>,
    dead_letters: BTreeMap<u64, DeadLetter>,
    next_dead_letter: u64,
}

impl Default for MemoryLog {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryLog {
    /// An empty log.
    pub fn new() -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            tail: watch::Sender::new(0),
        }
    }
}

impl Inner {
    fn group(&mut self, name: &str) -> Result<&mut GroupState, LogError> {
        self.groups
            .get_mut(name)
            .ok_or_else(|| LogError::UnknownGroup(name.to_owned()))
    }

    fn store_dead_letter(&mut self, draft: DeadLetterDraft) -> u64 {
        let id = draft.existing_id.unwrap_or_else(|| {
            self.next_dead_letter += 1;
            self.next_dead_letter
        });
        let letter = DeadLetter {
            id,
            group: draft.group,
            event: draft.event,
            error: draft.error,
            attempts: draft.attempts,
            first_failure: draft.first_failure,
            last_failure: draft.last_failure,
        };
        self.dead_letters.insert(id, letter);
        id
    }
}

#[async_trait]
impl EventLog for MemoryLog {
    async fn append(&self, events: Vec<Event>) -> Result<Vec<Appended>, LogError> {
        validate_batch(&events)?;
        let now = Utc::now();
        let mut inner = self.inner.lock();
        let mut results = Vec::with_capacity(events.len());
        for mut event in events {
            if let Some(&offset) = inner.ids.get(&event.id) {
                results.push(Appended {
                    offset,
                    duplicate: true,
                });
                continue;
            }
            event.time.get_or_insert(now);
            let offset = inner.events.len() as u64 + 1;
            inner.ids.insert(event.id.clone(), offset);
            inner.events.push(StoredEvent { offset, event });
            results.push(Appended {
                offset,
                duplicate: false,
            });
        }
        let last = inner.events.len() as u64;
        drop(inner);
        self.tail.send_replace(last);
        Ok(results)
    }

    async fn read(&self, query: ReadQuery) -> Result<Vec<StoredEvent>, LogError> {
        let inner = self.inner.lock();
        let start = usize::try_from(query.after)
            .unwrap_or(usize::MAX)
            .min(inner.events.len());
        Ok(inner.events[start..]
            .iter()
            .filter(|stored| query.accepts(stored))
            .take(query.limit)
            .cloned()
            .collect())
    }

    async fn last_offset(&self) -> Result<u64, LogError> {
        Ok(self.inner.lock().events.len() as u64)
    }

    fn watch_appends(&self) -> watch::Receiver<u64> {
        self.tail.subscribe()
    }

    async fn ensure_group(&self, name: &str, config: GroupConfig) -> Result<GroupInfo, LogError> {
        validate_group_name(name)?;
        let mut inner = self.inner.lock();
        let start = match config.start {
            StartPosition::Earliest => 0,
            StartPosition::Latest => inner.events.len() as u64,
        };
        let group = inner
            .groups
            .entry(name.to_owned())
            .or_insert_with(|| GroupState::new(name, config.clone(), start));
        check_group_pattern(name, &group.config().pattern, &config.pattern)?;
        group.set_config(config);
        Ok(group.info())
    }

    async fn set_group_pattern(&self, name: &str, pattern: Pattern) -> Result<GroupInfo, LogError> {
        let mut inner = self.inner.lock();
        let group = inner
            .groups
            .get_mut(name)
            .ok_or_else(|| LogError::UnknownGroup(name.to_owned()))?;
        let mut config = group.config().clone();
        config.pattern = pattern;
        group.set_config(config);
        Ok(group.info())
    }

    async fn fetch(&self, group: &str, max: usize) -> Result<Vec<Delivery>, LogError> {
        let mut inner = self.inner.lock();
        let Inner { events, groups, .. } = &mut *inner;
        let state = groups
            .get_mut(group)
            .ok_or_else(|| LogError::UnknownGroup(group.to_owned()))?;
        if let Some((after, limit)) = state.admit_window() {
            let start = usize::try_from(after)
                .unwrap_or(usize::MAX)
                .min(events.len());
            let end = start.saturating_add(limit).min(events.len());
            state.admit(events[start..end].iter().cloned(), end as u64);
        }
        let (deliveries, dead) = state.take_due(Instant::now(), max);
        for draft in dead {
            inner.store_dead_letter(draft);
        }
        Ok(deliveries)
    }

    async fn ack(&self, group: &str, offsets: &[u64]) -> Result<(), LogError> {
        let mut inner = self.inner.lock();
        for &offset in offsets {
            if let AckEffect::ResolvedDeadLetter(id) = inner.group(group)?.ack(offset) {
                inner.dead_letters.remove(&id);
            }
        }
        Ok(())
    }

    async fn nack(
        &self,
        group: &str,
        offset: u64,
        delay: Duration,
        error: &str,
    ) -> Result<NackOutcome, LogError> {
        let mut inner = self.inner.lock();
        match inner
            .group(group)?
            .nack(offset, delay, error, Instant::now())?
        {
            NackEffect::Redeliver => Ok(NackOutcome::Redeliver),
            NackEffect::DeadLetter(draft) => {
                Ok(NackOutcome::DeadLettered(inner.store_dead_letter(*draft)))
            }
        }
    }

    async fn groups(&self) -> Result<Vec<GroupInfo>, LogError> {
        let inner = self.inner.lock();
        let mut groups: Vec<GroupInfo> = inner.groups.values().map(GroupState::info).collect();
        groups.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(groups)
    }

    async fn dead_letters(
        &self,
        group: Option<&str>,
        after_id: u64,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, LogError> {
        let inner = self.inner.lock();
        Ok(inner
            .dead_letters
            .range(after_id.saturating_add(1)..)
            .map(|(_, letter)| letter)
            .filter(|letter| group.is_none_or(|g| letter.group == g))
            .take(limit)
            .cloned()
            .collect())
    }

    async fn redrive(&self, id: u64) -> Result<(), LogError> {
        let mut inner = self.inner.lock();
        let letter = inner
            .dead_letters
            .get(&id)
            .cloned()
            .ok_or(LogError::UnknownDeadLetter(id))?;
        inner.group(&letter.group)?.redrive(id, letter.event);
        Ok(())
    }

    async fn flush(&self) -> Result<(), LogError> {
        Ok(())
    }
}
