//! A lane: the bounded queue between publishers and one worker task of a subscription.
//!
//! It is a mutex-protected `VecDeque` rather than a channel because both ends work in
//! batches: a `publish_batch` pushes a whole run of events under one lock, and the worker
//! takes up to [`MAX_BATCH`] events under one lock. The capacity bounds the events the
//! lane holds, queued or in the worker's hands (`accepted - finished`), so a batch taken
//! by the worker does not make room for more: the room appears as each event finishes.
//! A publisher that does not fit either waits for room or gets the number of events that
//! did not fit, by the subscription's overflow policy. The queue storage grows on demand,
//! so an idle subscription costs a few hundred bytes.
//!
//! Wake-ups are only sent when someone sleeps (`worker_idle`, `producers_waiting`), so a
//! busy lane costs one uncontended lock per batch and no notification.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::event::Event;

/// Most events a worker takes from its lane at once.
pub(crate) const MAX_BATCH: usize = 256;

/// One queued event.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub(crate) event: Arc<Event>,
    /// When `publish` accepted it.
    pub(crate) published: Instant,
}

/// Why a push did not queue everything.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PushError {
    /// The lane is closed (shutdown or unsubscribe); `rejected` events were not queued.
    Closed { rejected: usize },
    /// The lane is full and the policy is to fail fast; `rejected` events were not queued.
    Full { rejected: usize },
}

/// The bounded queue of one lane.
#[derive(Debug)]
pub(crate) struct Lane {
    state: Mutex<State>,
    not_empty: Notify,
    not_full: Notify,
    capacity: usize,
    /// Events finished with (handled, dead-lettered or discarded), so that
    /// `accepted - finished` is what the lane holds.
    finished: AtomicU64,
    /// A publisher waits for room. Outside the mutex because the worker checks it after
    /// every event; set before `finished` is read, checked after it is written, so one
    /// of the two sides always sees the other (the worker writes `finished` at the end of
    /// each batch, and at once after an event when it sees a publisher waiting).
    producers_waiting: AtomicBool,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Entry>,
    /// Events ever queued.
    accepted: u64,
    /// The most events held at once.
    high_water: u64,
    closed: bool,
    worker_idle: bool,
}

impl Lane {
    /// An empty lane holding at most `capacity` events (at least 1).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            not_empty: Notify::new(),
            not_full: Notify::new(),
            capacity: capacity.max(1),
            finished: AtomicU64::new(0),
            producers_waiting: AtomicBool::new(false),
        }
    }

    /// Queues every item, in order. With `wait`, waits for room as often as needed;
    /// otherwise queues what fits and reports the rest as [`PushError::Full`].
    pub(crate) async fn push<I>(&self, mut items: I, wait: bool) -> Result<(), PushError>
    where
        I: ExactSizeIterator<Item = Entry>,
    {
        // Fast path: everything fits, no notification object needed.
        if self.push_some(&mut items, false)? {
            return Ok(());
        }
        if !wait {
            return Err(PushError::Full {
                rejected: items.len(),
            });
        }
        loop {
            let notified = self.not_full.notified();
            tokio::pin!(notified);
            // Registered before looking, so a wake-up between the look and the await
            // is not lost.
            notified.as_mut().enable();
            if self.push_some(&mut items, true)? {
                return Ok(());
            }
            notified.await;
        }
    }

    /// Queues what fits; returns whether everything did. With `register`, a publisher
    /// left waiting is recorded so that the worker wakes it.
    fn push_some<I>(&self, items: &mut I, register: bool) -> Result<bool, PushError>
    where
        I: ExactSizeIterator<Item = Entry>,
    {
        if register {
            self.producers_waiting.store(true, Ordering::SeqCst);
        }
        let mut state = self.state.lock();
        if state.closed {
            return Err(PushError::Closed {
                rejected: items.len(),
            });
        }
        let held = state.accepted - self.finished.load(Ordering::SeqCst);
        // `held` never exceeds the capacity, which is a usize.
        let room = self.capacity - held as usize;
        let n = room.min(items.len());
        if n > 0 {
            state.queue.extend(items.by_ref().take(n));
            state.accepted += n as u64;
            state.high_water = state.high_water.max(held + n as u64);
        }
        let done = items.len() == 0;
        let wake = n > 0 && std::mem::take(&mut state.worker_idle);
        drop(state);
        if wake {
            self.not_empty.notify_one();
        }
        Ok(done)
    }

    /// Moves up to `max` queued events into `out`, waiting while the lane is empty, and
    /// returns how many stay queued. Returns `None` once the lane is closed and empty.
    pub(crate) async fn pop_batch(&self, out: &mut Vec<Entry>, max: usize) -> Option<usize> {
        loop {
            {
                let mut state = self.state.lock();
                if !state.queue.is_empty() {
                    let n = state.queue.len().min(max);
                    out.extend(state.queue.drain(..n));
                    return Some(state.queue.len());
                }
                if state.closed {
                    return None;
                }
                state.worker_idle = true;
            }
            // A push after the flag was set stores a permit, so this cannot miss it.
            self.not_empty.notified().await;
        }
    }

    /// Stops intake; the worker drains what is queued. Waiting publishers get `Closed`.
    pub(crate) fn close(&self) {
        self.state.lock().closed = true;
        self.not_empty.notify_one();
        self.not_full.notify_waiters();
    }

    /// Stops intake and drops what is queued; returns how many events were dropped.
    pub(crate) fn close_and_clear(&self) -> usize {
        let dropped = {
            let mut state = self.state.lock();
            state.closed = true;
            let dropped: Vec<Entry> = state.queue.drain(..).collect();
            dropped.len()
        };
        self.add_finished(dropped as u64);
        self.not_empty.notify_one();
        self.not_full.notify_waiters();
        dropped
    }

    /// The most events this lane holds.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Records that `n` more events are finished, making room for as many.
    /// Whether a publisher waits for room (the worker then reports finished events at once).
    pub(crate) fn has_waiting_producers(&self) -> bool {
        self.producers_waiting.load(Ordering::SeqCst)
    }

    pub(crate) fn add_finished(&self, n: u64) {
        self.finished.fetch_add(n, Ordering::SeqCst);
        if self.producers_waiting.load(Ordering::SeqCst)
            && self.producers_waiting.swap(false, Ordering::SeqCst)
        {
            self.not_full.notify_waiters();
        }
    }

    /// A consistent-enough view for statistics.
    pub(crate) fn snapshot(&self) -> LaneSnapshot {
        let state = self.state.lock();
        LaneSnapshot {
            accepted: state.accepted,
            high_water: state.high_water,
            finished: self.finished.load(Ordering::Relaxed),
        }
    }
}

/// Counters of one lane at one moment.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct LaneSnapshot {
    pub(crate) accepted: u64,
    pub(crate) high_water: u64,
    pub(crate) finished: u64,
}

impl LaneSnapshot {
    /// Events queued or in progress.
    pub(crate) fn held(&self) -> u64 {
        self.accepted.saturating_sub(self.finished)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(n: usize) -> Vec<Entry> {
        (0..n)
            .map(|i| Entry {
                event: Arc::new(Event::new(format!("t.e{i}"))),
                published: Instant::now(),
            })
            .collect()
    }

    #[tokio::test]
    async fn fail_fast_queues_what_fits() {
        let lane = Lane::new(3);
        let err = lane.push(entries(5).into_iter(), false).await.unwrap_err();
        assert_eq!(err, PushError::Full { rejected: 2 });
        let mut out = Vec::new();
        assert_eq!(lane.pop_batch(&mut out, 10).await, Some(0));
        let types: Vec<&str> = out.iter().map(|e| e.event.ty.as_ref()).collect();
        assert_eq!(types, ["t.e0", "t.e1", "t.e2"]);
    }

    #[tokio::test]
    async fn a_waiting_push_completes_as_the_worker_drains() {
        let lane = Arc::new(Lane::new(2));
        let pusher = {
            let lane = Arc::clone(&lane);
            tokio::spawn(async move { lane.push(entries(7).into_iter(), true).await })
        };
        let mut seen = Vec::new();
        while seen.len() < 7 {
            let mut out = Vec::new();
            assert!(lane.pop_batch(&mut out, 2).await.is_some());
            assert!(lane.snapshot().high_water <= 2);
            lane.add_finished(out.len() as u64);
            seen.extend(out.into_iter().map(|e| e.event.ty.clone()));
        }
        pusher.await.unwrap().unwrap();
        let expected: Vec<String> = (0..7).map(|i| format!("t.e{i}")).collect();
        assert_eq!(seen, expected);
    }

    #[tokio::test]
    async fn closing_drains_then_ends_and_rejects_pushes() {
        let lane = Lane::new(4);
        lane.push(entries(2).into_iter(), true).await.unwrap();
        lane.close();
        assert_eq!(
            lane.push(entries(1).into_iter(), true).await,
            Err(PushError::Closed { rejected: 1 })
        );
        let mut out = Vec::new();
        assert_eq!(lane.pop_batch(&mut out, 10).await, Some(0));
        assert_eq!(out.len(), 2);
        assert_eq!(lane.pop_batch(&mut out, 10).await, None);
        let cleared = Lane::new(4);
        cleared.push(entries(3).into_iter(), true).await.unwrap();
        assert_eq!(cleared.close_and_clear(), 3);
        assert_eq!(cleared.snapshot().finished, 3);
    }
}
