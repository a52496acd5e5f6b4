//! A job's current state as the scheduler publishes it on a `watch` channel: running or not,
//! the next tick, the last run and counters — what `GET /v1/jobs` shows.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::job::OverlapPolicy;
use crate::record::RunRecord;

/// A snapshot of one job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobStatus {
    /// The job's name.
    pub name: String,
    /// The schedule as text (`every 5m`, `30 2 * * * (Europe/Berlin)`).
    pub schedule: String,
    /// What a tick arriving during a run does.
    pub overlap: OverlapPolicy,
    /// Whether a run is in progress.
    pub running: bool,
    /// When the current run started.
    pub running_since: Option<DateTime<Utc>>,
    /// The next tick, jitter included (`None` once the scheduler stops, or if the schedule has
    /// no more ticks).
    pub next_run: Option<DateTime<Utc>>,
    /// Whether a tick is waiting for the current run to end ([`OverlapPolicy::Coalesce`]).
    pub pending: bool,
    /// The most recent history entry.
    pub last_run: Option<RunRecord>,
    /// Runs that ended `ok`.
    pub runs_ok: u64,
    /// Runs that ended `failed`.
    pub runs_failed: u64,
    /// Ticks recorded `missed`.
    pub runs_missed: u64,
    /// Runs recorded `superseded`: another run did their work first.
    pub runs_superseded: u64,
}
