//! Live delivery: memory-durability events, and the tail of the log for subscribers
//! without a consumer group.
//!
//! Memory events never touch the log: they go through one bounded broadcast channel to
//! every live subscriber whose pattern matches (at most once). A subscriber that falls
//! more than the channel's capacity behind misses events; it is told, as NATS tells a
//! slow consumer: its stream gets an [`Item::Missed`] with the number skipped, which SSE
//! and WebSocket write as a `missed` frame (and `pulse_live_events_dropped_total` counts
//! them). The channel cannot tell which skipped events matched the subscriber's pattern,
//! so the number counts memory events of every type. A [`Tail`] merges memory events
//! with persistent events read from the log after an offset (those are never skipped), so
//! SSE and WebSocket streams see both.
//!
//! [`Live`] also carries settlements: an ack or nack made over HTTP for a consumer group
//! reaches the SSE stream that holds the delivery, so the stream makes room for more.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use pulse_core::{Event, EventLog, LogError, Pattern, ReadQuery, StoredEvent};
use tokio::sync::{broadcast, watch};

use crate::metrics::LIVE_DROPPED;

const CAPACITY: usize = 8192;
/// Settlements waiting for slow streams; a stream that misses some frees the room when
/// the deliveries' ack wait runs out instead.
const SETTLED_CAPACITY: usize = 1024;

/// The sending side of the memory channel, and of group settlements.
#[derive(Clone)]
pub struct Live {
    tx: broadcast::Sender<Arc<Event>>,
    settled: broadcast::Sender<Arc<Settled>>,
}

impl Default for Live {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(CAPACITY).0,
            settled: broadcast::channel(SETTLED_CAPACITY).0,
        }
    }
}

/// Deliveries of a group acknowledged or nacked by a client, outside the stream that
/// delivered them.
#[derive(Debug)]
pub struct Settled {
    /// The group.
    pub group: String,
    /// The settled offsets.
    pub offsets: Vec<u64>,
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

    /// Tells the streams of `group` that these deliveries are settled.
    pub fn settle(&self, group: &str, offsets: Vec<u64>) {
        // No stream listening is not an error.
        let _ = self.settled.send(Arc::new(Settled {
            group: group.to_owned(),
            offsets,
        }));
    }

    /// A new receiver of settlements.
    pub fn settlements(&self) -> broadcast::Receiver<Arc<Settled>> {
        self.settled.subscribe()
    }
}

/// What a [`LiveReceiver`] hands out.
#[derive(Clone, Debug)]
pub enum Received {
    /// A memory event matching the pattern.
    Event(Arc<Event>),
    /// The receiver fell behind: this many memory events (of any type) were skipped.
    Missed(u64),
}

/// Receives memory events, counting what it missed.
pub struct LiveReceiver {
    rx: broadcast::Receiver<Arc<Event>>,
}

impl LiveReceiver {
    /// The next memory event matching `pattern`, or how many were skipped because this
    /// receiver fell behind; pends while there is neither. Cancel-safe.
    pub async fn recv(&mut self, pattern: &Pattern) -> Received {
        loop {
            match self.rx.recv().await {
                Ok(e) if pattern.matches(&e.ty) => return Received::Event(e),
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    metrics::counter!(LIVE_DROPPED).increment(n);
                    return Received::Missed(n);
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
pub(crate) enum Item {
    /// A persistent event, with its offset.
    Stored(StoredEvent),
    /// A memory event (no offset).
    Memory(Arc<Event>),
    /// The subscriber fell behind the memory channel: this many memory events (of any
    /// type) were skipped.
    Missed(u64),
}

impl From<Received> for Item {
    fn from(received: Received) -> Self {
        match received {
            Received::Event(e) => Item::Memory(e),
            Received::Missed(n) => Item::Missed(n),
        }
    }
}

/// Persistent events after an offset, then live ones, plus memory events, for one pattern.
pub(crate) struct Tail {
    log: Arc<dyn EventLog>,
    pattern: Pattern,
    after: u64,
    appends: watch::Receiver<u64>,
    memory: LiveReceiver,
    ready: VecDeque<Item>,
}

impl Tail {
    /// A tail of events matching `pattern` after `after`.
    pub(crate) fn new(log: Arc<dyn EventLog>, live: &Live, pattern: Pattern, after: u64) -> Self {
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

    /// Up to `max` items, waiting until there is at least one.
    ///
    /// Cancel-safe: items already taken from a channel are kept for the next call, and a
    /// read cancelled midway is repeated.
    pub(crate) async fn next_batch(&mut self, max: usize) -> Result<Vec<Item>, LogError> {
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
                received = self.memory.recv(&self.pattern) => self.ready.push_back(received.into()),
            }
        }
    }
}
