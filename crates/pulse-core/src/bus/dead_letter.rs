//! The dead letters of live subscriptions: [`MemoryDeadLetters`], the newest records kept
//! in memory, and the [`DeadLetterRecord`] each one is.
//!
//! Only deliveries that are at most once end here: a live subscription handles events
//! dispatched by `publish`, which a restart loses anyway, so their dead letters are kept
//! in memory for inspection. A group subscription's dead letters are the log's own
//! (`EventLog::dead_letters`), stored with the group, durable and redrivable like those
//! of every other consumer of the log.

use std::collections::VecDeque;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use parking_lot::Mutex;

use super::subscription::SubscriptionId;
use crate::event::Event;
use crate::pattern::Pattern;

/// An event a live subscription failed to handle `attempts` times.
#[derive(Clone, Debug)]
pub struct DeadLetterRecord {
    /// The event.
    pub event: Arc<Event>,
    /// The subscription that failed.
    pub subscription: SubscriptionId,
    /// Its name.
    pub subscription_name: String,
    /// Its pattern.
    pub pattern: Pattern,
    /// The text of the last error (or panic message).
    pub error: String,
    /// How many attempts failed.
    pub attempts: u32,
    /// When the last attempt failed.
    pub failed_at: DateTime<Utc>,
}

/// Dead letters kept in memory, the newest `capacity` of them.
///
/// ```
/// use pulse_core::bus::MemoryDeadLetters;
/// let sink = MemoryDeadLetters::new(1000);
/// assert!(sink.records().is_empty());
/// ```
#[derive(Debug)]
pub struct MemoryDeadLetters {
    state: Mutex<State>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct State {
    records: VecDeque<DeadLetterRecord>,
    evicted: u64,
}

impl MemoryDeadLetters {
    /// The capacity used by a bus that was given no sink.
    pub const DEFAULT_CAPACITY: usize = 10_000;

    /// An empty store keeping at most `capacity` records (the oldest go first).
    pub fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            capacity: capacity.max(1),
        }
    }

    /// The records kept, oldest first.
    pub fn records(&self) -> Vec<DeadLetterRecord> {
        self.state.lock().records.iter().cloned().collect()
    }

    /// Removes and returns the records kept, oldest first.
    pub fn take(&self) -> Vec<DeadLetterRecord> {
        self.state.lock().records.drain(..).collect()
    }

    /// Keeps one record, dropping the oldest when full.
    pub(crate) fn store(&self, record: DeadLetterRecord) {
        let mut state = self.state.lock();
        if state.records.len() == self.capacity {
            state.records.pop_front();
            state.evicted += 1;
        }
        state.records.push_back(record);
    }

    /// How many records were dropped because the store was full.
    pub fn evicted(&self) -> u64 {
        self.state.lock().evicted
    }
}

impl Default for MemoryDeadLetters {
    fn default() -> Self {
        Self::new(Self::DEFAULT_CAPACITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u32) -> DeadLetterRecord {
        DeadLetterRecord {
            event: Arc::new(Event::new("a.b")),
            subscription: SubscriptionId(1),
            subscription_name: "s".to_owned(),
            pattern: Pattern::parse("a.*").unwrap(),
            error: format!("error {n}"),
            attempts: n,
            failed_at: Utc::now(),
        }
    }

    #[test]
    fn keeps_the_newest_records() {
        let sink = MemoryDeadLetters::new(2);
        for n in 1..=3 {
            sink.store(record(n));
        }
        let kept: Vec<u32> = sink.records().iter().map(|r| r.attempts).collect();
        assert_eq!(kept, [2, 3]);
        assert_eq!(sink.evicted(), 1);
        assert_eq!(sink.take().len(), 2);
        assert!(sink.records().is_empty());
    }
}
