//! The task behind each lane of a subscription: take a batch, deliver each event in
//! order, record metrics once per batch.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;

use super::dead_letter::{DeadLetterRecord, DeadLetterSink};
use super::delivery::{deliver, Outcome, RetryPolicy};
use super::handler::Handler;
use super::lane::{Entry, MAX_BATCH};
use super::subscription::SubShared;
use crate::metrics::SubscriptionMetrics;
use crate::Event;

/// Everything one lane's worker needs.
pub(crate) struct Worker<H> {
    pub(crate) handler: Arc<H>,
    pub(crate) subscription: Arc<SubShared>,
    pub(crate) lane: usize,
    pub(crate) retry: RetryPolicy,
    pub(crate) dead_letters: Arc<dyn DeadLetterSink>,
    pub(crate) metrics: SubscriptionMetrics,
}

/// What happened to the events of one batch.
#[derive(Default)]
struct Tally {
    delivered: u64,
    failures: u64,
    retries: u64,
    dead_lettered: u64,
    discarded: u64,
}

impl<H: Handler> Worker<H> {
    /// Runs until the lane is closed and empty.
    pub(crate) async fn run(self) {
        let sub = Arc::clone(&self.subscription);
        let lane = &sub.lanes[self.lane];
        let mut batch: Vec<Entry> = Vec::new();
        while let Some(depth) = lane.pop_batch(&mut batch, MAX_BATCH).await {
            let started = Instant::now();
            self.metrics.queue_depth.set(depth as f64);
            if let Some(first) = batch.first() {
                self.metrics
                    .processing_delay
                    .record(started.saturating_duration_since(first.published));
            }
            let n = batch.len();
            let mut tally = Tally::default();
            // Finished events are reported once per batch (an atomic write per event
            // costs more than a no-op handler), or at once when a publisher waits for room.
            let mut unreported = 0;
            for entry in batch.drain(..) {
                if sub.stopped.load(Ordering::Relaxed) {
                    tally.discarded += 1;
                } else {
                    self.deliver(entry.event, &mut tally).await;
                }
                unreported += 1;
                if lane.has_waiting_producers() {
                    lane.add_finished(std::mem::take(&mut unreported));
                }
            }
            if unreported > 0 {
                lane.add_finished(unreported);
            }
            self.record(&tally, n, started);
            // A lane that never runs dry would otherwise never yield to the scheduler.
            tokio::task::coop::consume_budget().await;
        }
    }

    async fn deliver(&self, event: Arc<Event>, tally: &mut Tally) {
        let sub = &self.subscription;
        match deliver(&*self.handler, &event, &self.retry, &sub.cancel).await {
            Outcome::Handled { attempts } => {
                tally.delivered += 1;
                tally.failures += u64::from(attempts - 1);
                tally.retries += u64::from(attempts - 1);
            }
            Outcome::Cancelled { attempts } => {
                tally.failures += u64::from(attempts);
                tally.retries += u64::from(attempts - 1);
                tally.discarded += 1;
            }
            Outcome::Failed { attempts, error } => {
                tally.failures += u64::from(attempts);
                tally.retries += u64::from(attempts - 1);
                tally.dead_lettered += 1;
                tracing::warn!(
                    subscription = %sub.name,
                    ty = %event.ty,
                    id = %event.id,
                    attempts,
                    %error,
                    "event dead-lettered"
                );
                let record = DeadLetterRecord {
                    event,
                    subscription: sub.id,
                    subscription_name: sub.name.to_string(),
                    pattern: sub.pattern.clone(),
                    error,
                    attempts,
                    failed_at: Utc::now(),
                };
                if let Err(err) = self.dead_letters.dead_letter(record).await {
                    tracing::error!(subscription = %sub.name, %err, "dead-letter sink failed");
                }
            }
        }
    }

    fn record(&self, tally: &Tally, n: usize, started: Instant) {
        let m = &self.metrics;
        let c = &self.subscription.counters;
        let add = |counter: &metrics::Counter, atomic: &std::sync::atomic::AtomicU64, v: u64| {
            if v > 0 {
                counter.increment(v);
                atomic.fetch_add(v, Ordering::Relaxed);
            }
        };
        add(&m.delivered, &c.delivered, tally.delivered);
        add(&m.failures, &c.failures, tally.failures);
        add(&m.retries, &c.retries, tally.retries);
        add(&m.dead_lettered, &c.dead_lettered, tally.dead_lettered);
        if tally.discarded > 0 {
            c.discarded.fetch_add(tally.discarded, Ordering::Relaxed);
        }
        let handled = n as u64 - tally.discarded;
        if handled > 0 {
            // Truncation is fine: a batch holds at most MAX_BATCH events.
            m.handler_duration
                .record(started.elapsed().as_secs_f64() / handled as f64);
        }
    }
}
