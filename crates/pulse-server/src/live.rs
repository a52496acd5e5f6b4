//! Live delivery: memory-durability events, and the tail of the log for subscribers
//! without a consumer group.
//!
//! Memory events never touch the log: they go through one bounded broadcast channel to
//! every live subscriber whose pattern matches (at most once — a subscriber that falls
//! more than the channel's capacity behind misses events, counted in
//! `pulse_live_events_dropped_total`). A [`Tail`] merges them with persistent events read
//! from the log after an offset, so SSE and WebSocket streams see both.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use pulse_core::{Event, EventLog, LogError, Pattern, ReadQuery, StoredEvent};
use tokio::sync::{broadcast, watch};

use crate::metrics::LIVE_DROPPED;

const CAPACITY: usize = 8192;

/// The sending side of the memory channel.
#[derive(Clone)]
pub struct Live {
    tx: broadcast::Sender<Arc<Event>>,
}

impl Default for Live {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(CAPACITY).0,
        }
    }
}

impl Live {
    /// Hands memory events to the live subscribers present now.
    pub fn send(&self, event: Event) {
        // No receiver is not an error: memory events are at most once.
        let _ = self.tx.send(Arc::new(event));
    }

    /// A new receiver of memory events.
    pub fn subscribe(&self) -> LiveReceiver {
        LiveReceiver {
            rx: self.tx.subscribe(),
        }
    }
}

/// Receives memory events, counting what it missed.
pub struct LiveReceiver {
    rx: broadcast::Receiver<Arc<Event>>,
}

impl LiveReceiver {
    /// The next memory event matching `pattern`; pends while there is none.
    pub async fn recv(&mut self, pattern: &Pattern) -> Arc<Event> {
        loop {
            match self.rx.recv().await {
                Ok(e) if pattern.matches(&e.ty) => return e,
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    metrics::counter!(LIVE_DROPPED).increment(n);
                }
                // The sender lives in the server state; pend rather than spin if it is gone.
                Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
            }
        }
    }
}

/// One item of a live stream.
// Most items are stored events moved once from a read page into a short queue; boxing
// them would add an allocation per event to save space in a queue of a few hundred.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Item {
    /// A persistent event, with its offset.
    Stored(StoredEvent),
    /// A memory event (no offset).
    Memory(Arc<Event>),
}

/// Persistent events after an offset, then live ones, plus memory events, for one pattern.
pub struct Tail {
    log: Arc<dyn EventLog>,
    pattern: Pattern,
    after: u64,
    appends: watch::Receiver<u64>,
    memory: LiveReceiver,
    ready: VecDeque<Item>,
}

impl Tail {
    /// A tail of events matching `pattern` after `after`.
    pub fn new(log: Arc<dyn EventLog>, live: &Live, pattern: Pattern, after: u64) -> Self {
        let appends = log.watch_appends();
        Self {
            log,
            pattern,
            after,
            appends,
            memory: live.subscribe(),
            ready: VecDeque::new(),
        }
    }

    /// The last persistent offset handed out (or scanned past).
    pub fn after(&self) -> u64 {
        self.after
    }

    /// Up to `max` items, waiting until there is at least one.
    ///
    /// Cancel-safe: items already taken from a channel are kept for the next call, and a
    /// read cancelled midway is repeated.
    pub async fn next_batch(&mut self, max: usize) -> Result<Vec<Item>, LogError> {
        loop {
            if !self.ready.is_empty() {
                let n = self.ready.len().min(max);
                return Ok(self.ready.drain(..n).collect());
            }
            let seen = *self.appends.borrow_and_update();
            if seen > self.after {
                let page = self
                    .log
                    .read(ReadQuery {
                        after: self.after,
                        limit: max,
                        pattern: Some(self.pattern.clone()),
                        since: None,
                    })
                    .await?;
                let full = page.len() == max;
                if let Some(last) = page.last() {
                    self.after = last.offset;
                }
                if !full {
                    // Everything up to `seen` has been scanned: skip non-matching events.
                    self.after = self.after.max(seen);
                }
                self.ready.extend(page.into_iter().map(Item::Stored));
                if !self.ready.is_empty() {
                    continue;
                }
            }
            tokio::select! {
                changed = self.appends.changed() => {
                    if changed.is_err() {
                        // The log is gone; poll slowly rather than spin.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                event = self.memory.recv(&self.pattern) => self.ready.push_back(Item::Memory(event)),
            }
        }
    }
}
