//! What happened to the events of one batch, counted by a lane worker or a group consumer
//! as it goes and recorded once per batch into the subscription's counters and metrics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::subscription::Counters;
use crate::metrics::SubscriptionMetrics;

/// Outcomes of one batch.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) delivered: u64,
    pub(crate) failures: u64,
    pub(crate) retries: u64,
    pub(crate) dead_lettered: u64,
    pub(crate) discarded: u64,
}

impl Tally {
    /// Adds the batch of `n` events, started at `started`, to the counters and metrics.
    pub(crate) fn record(&self, m: &SubscriptionMetrics, c: &Counters, n: usize, started: Instant) {
        let add = |counter: &metrics::Counter, atomic: &AtomicU64, v: u64| {
            if v > 0 {
                counter.increment(v);
                atomic.fetch_add(v, Ordering::Relaxed);
            }
        };
        add(&m.delivered, &c.delivered, self.delivered);
        add(&m.failures, &c.failures, self.failures);
        add(&m.retries, &c.retries, self.retries);
        add(&m.dead_lettered, &c.dead_lettered, self.dead_lettered);
        if self.discarded > 0 {
            c.discarded.fetch_add(self.discarded, Ordering::Relaxed);
        }
        let handled = (n as u64).saturating_sub(self.discarded);
        if handled > 0 {
            // Truncation is fine: a batch holds at most a few hundred events.
            m.handler_duration
                .record(started.elapsed().as_secs_f64() / handled as f64);
        }
    }
}
