//! The hook that lets several Pulse instances share one schedule: before a scheduled run the
//! scheduler asks a [`JobLease`] whether this instance may run that tick.
//!
//! Ticks are the same instants on every instance (intervals are anchored to the epoch, cron to
//! the zone's wall clock), so `(job, tick)` names one unit of work; a PostgreSQL backend can
//! insert that pair under a unique key, a NATS backend can use a KV create. Alone, Pulse uses
//! [`AlwaysAcquire`]. Manual runs do not ask: an operator asked this instance.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::LeaseError;

/// Decides which instance runs a tick.
#[async_trait]
pub trait JobLease: Send + Sync + 'static {
    /// `Ok(true)` when this instance should run `job` for `tick`, `Ok(false)` when another one
    /// does (the tick then leaves no record here). An error records the tick as failed.
    async fn try_acquire(&self, job: &str, tick: DateTime<Utc>) -> Result<bool, LeaseError>;

    /// Whether other instances share the schedule (the default). An instance still running
    /// a job when its next tick comes then leaves that tick to them for the job's misfire
    /// grace and records it missed only if none of them took it; alone, the tick is missed
    /// at once.
    fn is_shared(&self) -> bool {
        true
    }
}

/// The single-instance lease: every tick is ours.
#[derive(Debug, Clone, Copy, Default)]
pub struct AlwaysAcquire;

#[async_trait]
impl JobLease for AlwaysAcquire {
    async fn try_acquire(&self, _job: &str, _tick: DateTime<Utc>) -> Result<bool, LeaseError> {
        Ok(true)
    }

    fn is_shared(&self) -> bool {
        false
    }
}
