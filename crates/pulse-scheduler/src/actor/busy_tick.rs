//! A tick that arrives while this instance is still running the job, with a shared lease.
//!
//! Alone, such a tick is missed at once. When other instances share the schedule, one of
//! them usually runs it, so this instance leaves it to them for the job's misfire grace and
//! then asks the lease for it: if nobody took the tick, this instance gets it (and, being
//! busy, records it missed); if another instance took it, there is nothing to record here.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use pulse_core::error_chain;

use crate::lease::JobLease;

/// The tick a busy instance left to the others, and what the lease said of it afterwards.
pub(super) struct BusyTick {
    /// The job's index in the actor.
    pub(super) idx: usize,
    /// The tick.
    pub(super) tick: DateTime<Utc>,
    /// Earlier ticks folded into this one.
    pub(super) coalesced: u32,
    /// How long the others had to take it: the job's misfire grace.
    grace: Duration,
    /// `Ok(true)`: no instance took the tick; `Ok(false)`: another one did; `Err`: the
    /// lease could not be asked.
    pub(super) untaken: Result<bool, String>,
}

impl BusyTick {
    /// Waits out `grace`, then claims the tick, so that a claim only succeeds when no other
    /// instance started it in time.
    pub(super) async fn check(
        lease: Arc<dyn JobLease>,
        name: Arc<str>,
        idx: usize,
        tick: DateTime<Utc>,
        coalesced: u32,
        grace: Duration,
    ) -> Self {
        tokio::time::sleep(grace).await;
        let untaken = lease
            .try_acquire(&name, tick)
            .await
            .map_err(|err| error_chain(&err));
        Self {
            idx,
            tick,
            coalesced,
            grace,
            untaken,
        }
    }

    /// Why the tick is missed, or `None` when another instance ran it.
    pub(super) fn missed_because(&self) -> Option<String> {
        match &self.untaken {
            Ok(false) => None,
            Ok(true) => Some(format!(
                "previous run still running, and no other instance started the tick within \
                 the misfire grace of {}",
                crate::schedule::format_duration(self.grace)
            )),
            Err(err) => Some(format!(
                "previous run still running, and the job lease could not tell whether another \
                 instance started the tick: {err}"
            )),
        }
    }
}
