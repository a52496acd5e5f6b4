//! One job as the scheduler task holds it: its spec, planned tick, current run, pending tick,
//! counters and the `watch` sender its status goes out on.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{oneshot, watch};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::error::SchedulerError;
use crate::job::JobSpec;
use crate::record::{RunRecord, RunStatus, RunTrigger};
use crate::status::JobStatus;

/// A run in progress.
pub(super) struct Running {
    pub(super) run_id: u64,
    pub(super) trigger: RunTrigger,
    pub(super) scheduled_at: Option<DateTime<Utc>>,
    pub(super) started_at: DateTime<Utc>,
    pub(super) started: Instant,
    pub(super) coalesced: u32,
    /// Callers of `trigger` waiting for the record.
    pub(super) waiters: Vec<oneshot::Sender<Result<RunRecord, SchedulerError>>>,
    pub(super) abort: AbortHandle,
    pub(super) cancelled_by_shutdown: bool,
}

/// A tick waiting for the current run to end ([`OverlapPolicy::Coalesce`](crate::OverlapPolicy)).
pub(super) struct Pending {
    pub(super) tick: DateTime<Utc>,
    /// When it should have started (its jittered time); the misfire grace counts from here.
    pub(super) intended: DateTime<Utc>,
    pub(super) coalesced: u32,
}

/// A job and its scheduling state.
pub(super) struct JobEntry {
    pub(super) spec: JobSpec,
    pub(super) name: Arc<str>,
    /// The next tick of the schedule.
    pub(super) next_tick: Option<DateTime<Utc>>,
    /// `next_tick` plus this tick's jitter: when the actor acts on it.
    pub(super) next_fire: Option<DateTime<Utc>>,
    pub(super) running: Option<Running>,
    pub(super) pending: Option<Pending>,
    last_run: Option<RunRecord>,
    runs_ok: u64,
    runs_failed: u64,
    runs_missed: u64,
    runs_superseded: u64,
    status: watch::Sender<JobStatus>,
}

impl JobEntry {
    pub(super) fn new(spec: JobSpec) -> Self {
        let name: Arc<str> = Arc::from(spec.name.as_str());
        let status = watch::Sender::new(JobStatus {
            name: spec.name.clone(),
            schedule: spec.schedule.to_string(),
            overlap: spec.overlap,
            running: false,
            running_since: None,
            next_run: None,
            pending: false,
            last_run: None,
            runs_ok: 0,
            runs_failed: 0,
            runs_missed: 0,
            runs_superseded: 0,
        });
        Self {
            spec,
            name,
            next_tick: None,
            next_fire: None,
            running: None,
            pending: None,
            last_run: None,
            runs_ok: 0,
            runs_failed: 0,
            runs_missed: 0,
            runs_superseded: 0,
            status,
        }
    }

    /// Plans the first tick strictly after `now`, with a fresh jitter.
    pub(super) fn plan_after(&mut self, now: DateTime<Utc>, rng: &mut fastrand::Rng) {
        self.next_tick = self.spec.schedule.next_after(now);
        let jitter = jitter(self.spec.jitter, rng);
        self.next_fire = self
            .next_tick
            .map(|tick| tick.checked_add_signed(jitter).unwrap_or(tick));
    }

    /// Forgets the planned and pending ticks (the scheduler is shutting down).
    pub(super) fn stop_planning(&mut self) {
        self.next_tick = None;
        self.next_fire = None;
        self.pending = None;
    }

    /// Counts a history entry and remembers it as the last run.
    pub(super) fn count(&mut self, record: &RunRecord) {
        match record.status {
            RunStatus::Ok => self.runs_ok += 1,
            RunStatus::Failed => self.runs_failed += 1,
            RunStatus::Missed => self.runs_missed += 1,
            RunStatus::Superseded => self.runs_superseded += 1,
        }
        self.last_run = Some(record.clone());
    }

    pub(super) fn snapshot(&self) -> JobStatus {
        JobStatus {
            name: self.spec.name.clone(),
            schedule: self.spec.schedule.to_string(),
            overlap: self.spec.overlap,
            running: self.running.is_some(),
            running_since: self.running.as_ref().map(|run| run.started_at),
            next_run: self.next_fire,
            pending: self.pending.is_some(),
            last_run: self.last_run.clone(),
            runs_ok: self.runs_ok,
            runs_failed: self.runs_failed,
            runs_missed: self.runs_missed,
            runs_superseded: self.runs_superseded,
        }
    }

    /// Sends the current status to watchers (only when it changed).
    pub(super) fn publish(&self) {
        let snapshot = self.snapshot();
        self.status.send_if_modified(|current| {
            if *current == snapshot {
                false
            } else {
                *current = snapshot;
                true
            }
        });
    }

    pub(super) fn subscribe(&self) -> watch::Receiver<JobStatus> {
        self.status.subscribe()
    }
}

/// A random delay in `[0, max]`, in whole milliseconds.
fn jitter(max: Duration, rng: &mut fastrand::Rng) -> chrono::Duration {
    let max_ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
    if max_ms == 0 {
        return chrono::Duration::zero();
    }
    let ms = rng.u64(0..=max_ms);
    chrono::Duration::milliseconds(i64::try_from(ms).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_its_bound_and_follows_the_seed() {
        let max = Duration::from_secs(10);
        let mut a = fastrand::Rng::with_seed(7);
        let mut b = fastrand::Rng::with_seed(7);
        let draws: Vec<_> = (0..1000).map(|_| jitter(max, &mut a)).collect();
        assert!(draws
            .iter()
            .all(|d| *d >= chrono::Duration::zero() && *d <= chrono::Duration::seconds(10)));
        // Spread over the range, not stuck at one end.
        assert!(draws.iter().any(|d| *d < chrono::Duration::seconds(2)));
        assert!(draws.iter().any(|d| *d > chrono::Duration::seconds(8)));
        let again: Vec<_> = (0..1000).map(|_| jitter(max, &mut b)).collect();
        assert_eq!(draws, again);
        assert_eq!(jitter(Duration::ZERO, &mut a), chrono::Duration::zero());
    }
}
