//! The task behind each lane of a live subscription: take a batch, deliver each event in
//! order (retrying in place), record metrics once per batch.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;

use super::dead_letter::{DeadLetterRecord, MemoryDeadLetters};
use super::delivery::{deliver, Outcome};
use super::handler::Handler;
use super::lane::{Entry, MAX_BATCH};
use super::retry::RetryPolicy;
use super::subscription::SubShared;
use super::tally::Tally;
use crate::event::Event;
use crate::metrics::SubscriptionMetrics;

/// Everything one lane's worker needs.
pub(crate) struct Worker<H> {
    pub(crate) handler: Arc<H>,
    pub(crate) subscription: Arc<SubShared>,
    pub(crate) lane: usize,
    pub(crate) retry: RetryPolicy,
    pub(crate) dead_letters: Arc<MemoryDeadLetters>,
    pub(crate) metrics: SubscriptionMetrics,
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
            tally.record(&self.metrics, &sub.counters, n, started);
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
                self.dead_letters.store(record);
            }
        }
    }
}
