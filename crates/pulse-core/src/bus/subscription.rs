//! A subscription: its shared state (lanes, counters), read by publishers through the
//! router and by its workers, and the [`Subscription`] handle the subscriber keeps.
//!
//! A live subscription has one lane per unit of concurrency and is in the router; a group
//! subscription has no lane and is not routed (its consumer fetches from the log) and
//! counts what it holds in [`Fetched`]. Dropping the handle unsubscribes, so a forgotten
//! subscription cannot keep receiving (and queueing) events forever.
//!
//! This file and `router.rs` import each other: the router is the registry of
//! subscriptions, and the handle removes itself from the registry when dropped.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::lane::{Lane, LaneSnapshot};
use super::options::OverflowPolicy;
use super::router::Router;
use crate::event::Event;
use crate::pattern::Pattern;

/// Identifies a subscription within its bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionId(pub u64);

impl fmt::Display for SubscriptionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Counters of one subscription.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubscriptionStats {
    /// Events held now: queued, or taken by a worker and not finished.
    pub queued: u64,
    /// The most events held at once so far (never above the capacity).
    pub high_water: u64,
    /// Events ever queued.
    pub accepted: u64,
    /// Events handled successfully.
    pub delivered: u64,
    /// Failed attempts (errors and panics).
    pub failures: u64,
    /// Retries after a failed attempt.
    pub retries: u64,
    /// Events dead-lettered (into the bus's dead letters, or the log's for a group).
    pub dead_lettered: u64,
    /// Events dropped unhandled because the subscription ended.
    pub discarded: u64,
}

/// What publishers, workers and the handle share.
#[derive(Debug)]
pub(crate) struct SubShared {
    pub(crate) id: SubscriptionId,
    pub(crate) name: Box<str>,
    pub(crate) pattern: Pattern,
    pub(crate) lanes: Box<[Lane]>,
    pub(crate) overflow: OverflowPolicy,
    next_lane: AtomicUsize,
    /// Set on unsubscribe: workers drop the rest of their batch.
    pub(crate) stopped: AtomicBool,
    /// Cancelled on unsubscribe, to cut retry backoffs short.
    pub(crate) cancel: CancellationToken,
    pub(crate) counters: Counters,
    /// What a group subscription holds (live subscriptions count in their lanes).
    pub(crate) fetched: Fetched,
}

/// The deliveries a group subscription has fetched and not yet settled.
#[derive(Debug, Default)]
pub(crate) struct Fetched {
    accepted: AtomicU64,
    finished: AtomicU64,
    high_water: AtomicU64,
}

impl Fetched {
    /// `n` more deliveries are held.
    pub(crate) fn accept(&self, n: u64) {
        let accepted = self.accepted.fetch_add(n, Ordering::Relaxed) + n;
        let held = accepted.saturating_sub(self.finished.load(Ordering::Relaxed));
        self.high_water.fetch_max(held, Ordering::Relaxed);
    }

    /// `n` held deliveries are settled (acked, nacked or released).
    pub(crate) fn finish(&self, n: u64) {
        self.finished.fetch_add(n, Ordering::Relaxed);
    }
}

/// Counters updated by the workers, once per batch.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) delivered: AtomicU64,
    pub(crate) failures: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) dead_lettered: AtomicU64,
    pub(crate) discarded: AtomicU64,
}

impl SubShared {
    pub(crate) fn new(
        id: SubscriptionId,
        name: Box<str>,
        pattern: Pattern,
        capacity: usize,
        concurrency: usize,
        overflow: OverflowPolicy,
        cancel: CancellationToken,
    ) -> Self {
        let lane_capacity = capacity / concurrency.max(1);
        Self {
            id,
            name,
            pattern,
            lanes: (0..concurrency.max(1))
                .map(|_| Lane::new(lane_capacity))
                .collect(),
            overflow,
            next_lane: AtomicUsize::new(0),
            stopped: AtomicBool::new(false),
            cancel,
            counters: Counters::default(),
            fetched: Fetched::default(),
        }
    }

    /// The shared state of a group subscription: no lane, since it is never routed.
    pub(crate) fn for_group(
        id: SubscriptionId,
        name: Box<str>,
        pattern: Pattern,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            lanes: Box::default(),
            ..Self::new(id, name, pattern, 1, 1, OverflowPolicy::Wait, cancel)
        }
    }

    /// Whether `publish` feeds it (a group subscription reads the log instead).
    pub(crate) fn is_live(&self) -> bool {
        !self.lanes.is_empty()
    }

    /// The lane of `event`: one per subject, so a subject's events stay in order.
    pub(crate) fn lane_for(&self, event: &Event) -> usize {
        let n = self.lanes.len();
        debug_assert!(n > 0, "only live subscriptions are routed");
        if n == 1 {
            return 0;
        }
        match &event.subject {
            // Truncation is fine: only the remainder matters.
            Some(subject) => (fnv1a(subject.as_bytes()) % n as u64) as usize,
            None => self.next_lane.fetch_add(1, Ordering::Relaxed) % n,
        }
    }

    /// Stops the workers after their current event and drops what is queued.
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        self.cancel.cancel();
        let dropped: usize = self.lanes.iter().map(Lane::close_and_clear).sum();
        self.counters
            .discarded
            .fetch_add(dropped as u64, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> SubscriptionStats {
        let mut stats = SubscriptionStats::default();
        for lane in self.lanes.iter() {
            let snapshot = lane.snapshot();
            stats.queued += snapshot.held();
            stats.high_water += snapshot.high_water;
            stats.accepted += snapshot.accepted;
        }
        let fetched = self.fetched_snapshot();
        stats.queued += fetched.held();
        stats.high_water += fetched.high_water;
        stats.accepted += fetched.accepted;
        let c = &self.counters;
        stats.delivered = c.delivered.load(Ordering::Relaxed);
        stats.failures = c.failures.load(Ordering::Relaxed);
        stats.retries = c.retries.load(Ordering::Relaxed);
        stats.dead_lettered = c.dead_lettered.load(Ordering::Relaxed);
        stats.discarded = c.discarded.load(Ordering::Relaxed);
        stats
    }

    /// Events accepted and not finished yet (queued or in a worker's hands).
    pub(crate) fn unfinished(&self) -> u64 {
        let lanes: u64 = self.lanes.iter().map(|lane| lane.snapshot().held()).sum();
        lanes + self.fetched_snapshot().held()
    }

    /// Events finished with so far (handled, dead-lettered or discarded).
    pub(crate) fn finished(&self) -> u64 {
        let lanes: u64 = self.lanes.iter().map(|lane| lane.snapshot().finished).sum();
        lanes + self.fetched_snapshot().finished
    }

    fn fetched_snapshot(&self) -> LaneSnapshot {
        let f = &self.fetched;
        LaneSnapshot {
            finished: f.finished.load(Ordering::Relaxed),
            accepted: f.accepted.load(Ordering::Relaxed),
            high_water: f.high_water.load(Ordering::Relaxed),
        }
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A live subscription. Dropping it unsubscribes; [`unsubscribe`](Self::unsubscribe)
/// does the same and also waits for the event in progress.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::sync::Arc;
/// use pulse_core::bus::{Bus, HandlerResult, SubscribeOptions};
/// use pulse_core::Event;
///
/// let bus = Bus::new();
/// let subscription = bus
///     .subscribe("health.>", |_event: Arc<Event>| async { HandlerResult::Ok(()) }, SubscribeOptions::new())
///     .unwrap();
/// assert_eq!(subscription.pattern().as_str(), "health.>");
/// let stats = subscription.unsubscribe().await;
/// assert_eq!(stats.discarded, 0);
/// # }
/// ```
pub struct Subscription {
    shared: Arc<SubShared>,
    router: Arc<Router>,
    workers: Vec<JoinHandle<()>>,
    active: bool,
}

impl Subscription {
    pub(crate) fn new(
        shared: Arc<SubShared>,
        router: Arc<Router>,
        workers: Vec<JoinHandle<()>>,
    ) -> Self {
        Self {
            shared,
            router,
            workers,
            active: true,
        }
    }

    /// The subscription's id.
    pub fn id(&self) -> SubscriptionId {
        self.shared.id
    }

    /// Its name (the pattern unless named in the options).
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The event types it receives.
    pub fn pattern(&self) -> &Pattern {
        &self.shared.pattern
    }

    /// Its counters now.
    pub fn stats(&self) -> SubscriptionStats {
        self.shared.stats()
    }

    /// Stops deliveries: no event published from now on reaches the handler, queued
    /// events are dropped (counted in `discarded`), and this waits for the event in
    /// progress, if any, to finish. Returns the final counters.
    pub async fn unsubscribe(mut self) -> SubscriptionStats {
        self.detach();
        for worker in std::mem::take(&mut self.workers) {
            // A worker only ends by returning or by the bus's hard stop (an abort); both
            // mean it is done, which is all this waits for.
            let _ = worker.await;
        }
        self.shared.stats()
    }

    fn detach(&mut self) {
        if std::mem::take(&mut self.active) {
            self.router.remove(self.shared.id);
            self.shared.stop();
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.detach();
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.shared.id)
            .field("name", &self.shared.name)
            .field("pattern", &self.shared.pattern.as_str())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(concurrency: usize) -> SubShared {
        SubShared::new(
            SubscriptionId(1),
            "s".into(),
            Pattern::parse("a.>").unwrap(),
            64,
            concurrency,
            OverflowPolicy::Wait,
            CancellationToken::new(),
        )
    }

    #[test]
    fn a_subject_always_maps_to_the_same_lane() {
        let sub = shared(4);
        for user in 0..50 {
            let event = Event::new("a.b").with_subject(format!("user-{user}"));
            let lane = sub.lane_for(&event);
            assert!(lane < 4);
            assert_eq!(sub.lane_for(&event), lane);
        }
        let lanes: std::collections::HashSet<usize> =
            (0..8).map(|_| sub.lane_for(&Event::new("a.b"))).collect();
        assert_eq!(lanes.len(), 4, "events without subject are spread");
        assert_eq!(shared(1).lane_for(&Event::new("a.b")), 0);
    }

    #[test]
    fn capacity_is_split_between_lanes() {
        let sub = shared(4);
        assert_eq!(sub.lanes.len(), 4);
        assert!(sub.lanes.iter().all(|lane| lane.capacity() == 16));
    }
}
