//! The task behind a group subscription: a member of one of the log's consumer groups,
//! with the semantics every other consumer of the log gets (WebSocket and SSE clients,
//! webhooks, other Pulse instances).
//!
//! It fetches a batch of due deliveries, runs the handler on them (up to the
//! subscription's concurrency at once), acks the handled ones in one call and nacks each
//! failure with the [`RetryPolicy`] delay of its attempt. Everything else is the log's:
//! it hands a subject's next event out only once the previous one is settled (order per
//! subject, whatever the concurrency), redelivers what is nacked or not settled within
//! `ack_wait`, dead-letters after `max_deliver` (the policy's `max_attempts`) and keeps
//! the group's position across restarts, so a handler sees each persistent event at
//! least once.
//!
//! Fetching stops when the subscription ends or the bus shuts down; the batch in hand is
//! finished, and deliveries not started yet are handed back at once (nacked without delay)
//! rather than left to the ack wait.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::delivery::attempt;
use super::handler::Handler;
use super::retry::RetryPolicy;
use super::subscription::SubShared;
use super::tally::Tally;
use crate::log::{Delivery, EventLog, LogError, NackOutcome};
use crate::metrics::SubscriptionMetrics;

/// How long one fetch waits for a due delivery before asking again.
const POLL: Duration = Duration::from_secs(1);
/// The pause after a failed fetch, doubled up to [`MAX_PAUSE`] while fetches keep failing.
const FIRST_PAUSE: Duration = Duration::from_millis(50);
const MAX_PAUSE: Duration = Duration::from_secs(2);
/// The text a released delivery is nacked with.
const RELEASED: &str = "released by a subscription that ended";

/// Everything a group subscription's consumer needs.
pub(crate) struct GroupConsumer<H> {
    pub(crate) handler: Arc<H>,
    pub(crate) subscription: Arc<SubShared>,
    pub(crate) log: Arc<dyn EventLog>,
    pub(crate) group: Box<str>,
    pub(crate) retry: RetryPolicy,
    /// Most deliveries fetched at once.
    pub(crate) batch: usize,
    pub(crate) concurrency: usize,
    /// Cancelled when the bus starts shutting down.
    pub(crate) draining: CancellationToken,
    pub(crate) metrics: SubscriptionMetrics,
}

/// How one delivery was settled.
enum Settled {
    Handled(u64),
    Failed,
    DeadLettered,
    Released,
}

impl<H: Handler> GroupConsumer<H> {
    /// Runs until the subscription ends, the bus shuts down or the log is closed.
    pub(crate) async fn run(self) {
        let sub = Arc::clone(&self.subscription);
        let mut pause = FIRST_PAUSE;
        loop {
            let fetched = tokio::select! {
                biased;
                () = sub.cancel.cancelled() => return,
                () = self.draining.cancelled() => return,
                fetched = self.log.fetch_wait(&self.group, self.batch, POLL) => fetched,
            };
            match fetched {
                Ok(batch) => {
                    pause = FIRST_PAUSE;
                    if !batch.is_empty() {
                        self.handle_batch(batch).await;
                    }
                }
                Err(LogError::Closed) => return,
                Err(err) => {
                    tracing::warn!(subscription = %sub.name, group = %self.group, %err, "group fetch failed");
                    tokio::select! {
                        () = sub.cancel.cancelled() => return,
                        () = self.draining.cancelled() => return,
                        () = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(MAX_PAUSE);
                }
            }
            // A group that is never empty would otherwise never yield to the scheduler.
            tokio::task::coop::consume_budget().await;
        }
    }

    async fn handle_batch(&self, batch: Vec<Delivery>) {
        let sub = &self.subscription;
        let n = batch.len();
        let started = Instant::now();
        sub.fetched.accept(n as u64);
        self.metrics.queue_depth.set(n as f64);
        if let Some(time) = batch.first().and_then(|d| d.event.event.time) {
            if let Ok(delay) = (Utc::now() - time).to_std() {
                self.metrics.processing_delay.record(delay);
            }
        }
        let settled: Vec<Settled> = futures::stream::iter(batch)
            .map(|delivery| self.settle(delivery))
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        let mut tally = Tally::default();
        let mut handled = Vec::with_capacity(n);
        for outcome in settled {
            match outcome {
                Settled::Handled(offset) => {
                    tally.delivered += 1;
                    handled.push(offset);
                }
                Settled::Failed => {
                    tally.failures += 1;
                    tally.retries += 1;
                }
                Settled::DeadLettered => {
                    tally.failures += 1;
                    tally.dead_lettered += 1;
                }
                Settled::Released => tally.discarded += 1,
            }
        }
        if !handled.is_empty() {
            if let Err(err) = self.log.ack(&self.group, &handled).await {
                // Not acknowledged: the log hands them out again after the ack wait.
                tracing::warn!(subscription = %sub.name, group = %self.group, %err, "group ack failed");
            }
        }
        sub.fetched.finish(n as u64);
        tally.record(&self.metrics, &sub.counters, n, started);
    }

    /// Handles one delivery and nacks it if it fails; a handled one is acked by the caller
    /// with the rest of the batch.
    async fn settle(&self, delivery: Delivery) -> Settled {
        let sub = &self.subscription;
        let offset = delivery.event.offset;
        if sub.stopped.load(Ordering::Relaxed) {
            self.nack(offset, Duration::ZERO, RELEASED).await;
            return Settled::Released;
        }
        let event = Arc::new(delivery.event.event);
        let Err(error) = attempt(&*self.handler, &event).await else {
            return Settled::Handled(offset);
        };
        let delay = self.retry.backoff_with_jitter(delivery.attempt);
        tracing::debug!(subscription = %sub.name, group = %self.group, offset, attempt = delivery.attempt, %error, "handler failed");
        match self.nack(offset, delay, &error).await {
            Some(NackOutcome::DeadLettered(id)) => {
                tracing::warn!(
                    subscription = %sub.name,
                    group = %self.group,
                    offset,
                    ty = %event.ty,
                    id = %event.id,
                    attempts = delivery.attempt,
                    dead_letter = id,
                    %error,
                    "event dead-lettered"
                );
                Settled::DeadLettered
            }
            // Redelivered after the delay, or, if the nack itself failed, after the ack wait.
            Some(NackOutcome::Redeliver) | None => Settled::Failed,
        }
    }

    async fn nack(&self, offset: u64, delay: Duration, error: &str) -> Option<NackOutcome> {
        match self.log.nack(&self.group, offset, delay, error).await {
            Ok(outcome) => Some(outcome),
            Err(err) => {
                tracing::warn!(subscription = %self.subscription.name, group = %self.group, offset, %err, "group nack failed");
                None
            }
        }
    }
}
