//! Graceful shutdown: stop intake, let the workers drain, give up at the deadline.
//!
//! Live subscriptions handle what is queued (retries included); group subscriptions stop
//! fetching, finish the batch in hand and leave the rest to the log.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::handle::Bus;

/// What [`Bus::shutdown`] achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Events finished (handled or dead-lettered) during the shutdown.
    pub drained: u64,
    /// Events still queued or in progress at the deadline; they were abandoned.
    pub left: u64,
    /// Whether every worker finished before the deadline.
    pub completed: bool,
}

impl Bus {
    /// Stops intake and drains: from now on `publish` and `subscribe` fail with a
    /// `ShutDown` error, and the subscriptions handle what is queued and in progress
    /// (retries included) until `timeout` has passed; group subscriptions stop fetching
    /// and settle the deliveries in hand. Workers still busy then are
    /// stopped, and their events counted in [`ShutdownReport::left`].
    pub async fn shutdown(&self, timeout: Duration) -> ShutdownReport {
        let inner = &self.inner;
        inner.closed.store(true, Ordering::SeqCst);
        let subscriptions = inner.router.subscriptions();
        let before: u64 = subscriptions.iter().map(|s| s.finished()).sum();
        inner.draining.cancel();
        for sub in &subscriptions {
            for lane in sub.lanes.iter() {
                lane.close();
            }
        }
        inner.tracker.close();
        let completed = tokio::time::timeout(timeout, inner.tracker.wait())
            .await
            .is_ok();
        let left = subscriptions.iter().map(|s| s.unfinished()).sum();
        let after: u64 = subscriptions.iter().map(|s| s.finished()).sum();
        if !completed {
            inner.hard_stop.cancel();
            tracing::warn!(
                left,
                "bus shutdown deadline passed, abandoning queued events"
            );
        }
        ShutdownReport {
            drained: after - before,
            left,
            completed,
        }
    }

    /// Whether [`shutdown`](Self::shutdown) was called.
    pub fn is_shut_down(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst)
    }
}
