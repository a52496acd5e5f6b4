//! What the scheduler runs: the [`Job`] trait (or a closure through [`job_fn`]), what a run
//! reports ([`JobOutcome`]), what it is told ([`JobContext`]) and how it is scheduled
//! ([`JobSpec`]).
//!
//! The scheduler is generic: it knows rows read, rejected and windows written because every
//! Pulse job reports them, but nothing of what the job reads or writes.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use crate::error::BoxError;
use crate::record::RunTrigger;
use crate::schedule::Schedule;

/// What a successful run reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct JobOutcome {
    /// Input rows (readings, events) read.
    pub rows_read: u64,
    /// Rows rejected as invalid.
    pub rejected: u64,
    /// Aggregate windows written.
    pub windows_written: u64,
}

/// What a run is told about itself.
#[derive(Debug, Clone)]
pub struct JobContext {
    pub(crate) job: Arc<str>,
    pub(crate) run_id: u64,
    pub(crate) trigger: RunTrigger,
    pub(crate) scheduled_at: Option<DateTime<Utc>>,
    pub(crate) cancel: CancellationToken,
}

impl JobContext {
    /// The job's name.
    pub fn job(&self) -> &str {
        &self.job
    }

    /// This run's id (unique within the scheduler, increasing).
    pub fn run_id(&self) -> u64 {
        self.run_id
    }

    /// Whether a schedule tick or a manual trigger started the run.
    pub fn trigger(&self) -> RunTrigger {
        self.trigger
    }

    /// The tick the run serves (`None` for a manual run).
    pub fn scheduled_at(&self) -> Option<DateTime<Utc>> {
        self.scheduled_at
    }

    /// Completes when the scheduler cancels the run (shutdown deadline reached). A job may stop
    /// early on it; if it does not, its future is dropped at its next `.await` anyway.
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.cancel.cancelled()
    }

    /// Whether the run has been cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }
}

/// A unit of scheduled work.
///
/// The future may be dropped at any `.await` when the scheduler shuts down past its deadline,
/// so a job must leave its data consistent at every await point (Pulse's batch runs commit the
/// checkpoint with the aggregates in one transaction, which gives exactly that).
#[async_trait]
pub trait Job: Send + Sync + 'static {
    /// Runs once; the error's text (with its sources) goes into the run history.
    async fn run(&self, ctx: JobContext) -> Result<JobOutcome, BoxError>;
}

/// A [`Job`] made from a closure; see [`job_fn`].
#[derive(Debug, Clone)]
pub struct FnJob<F>(F);

/// Wraps a closure returning a future as a [`Job`].
///
/// ```
/// use pulse_scheduler::{job_fn, JobOutcome};
/// let job = job_fn(|_ctx| async { Ok(JobOutcome { rows_read: 3, ..JobOutcome::default() }) });
/// # let _ = job;
/// ```
pub fn job_fn<F, Fut>(f: F) -> FnJob<F>
where
    F: Fn(JobContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<JobOutcome, BoxError>> + Send + 'static,
{
    FnJob(f)
}

#[async_trait]
impl<F, Fut> Job for FnJob<F>
where
    F: Fn(JobContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<JobOutcome, BoxError>> + Send + 'static,
{
    async fn run(&self, ctx: JobContext) -> Result<JobOutcome, BoxError> {
        (self.0)(ctx).await
    }
}

/// What happens to a tick that arrives while the job's previous run is still going (runs of
/// one job never overlap).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OverlapPolicy {
    /// The tick is recorded as missed ("previous run still running"); with a shared lease,
    /// only if no other instance started it within the misfire grace
    /// ([`JobLease::is_shared`](crate::JobLease::is_shared)).
    #[default]
    Skip,
    /// The tick is kept and runs as soon as the current run ends (still subject to the misfire
    /// grace); further ticks meanwhile fold into that one pending run.
    Coalesce,
}

/// The default misfire grace: a tick whose run cannot start within a minute is missed.
pub const DEFAULT_MISFIRE_GRACE: Duration = Duration::from_secs(60);

/// A job with its name, schedule and policies, ready to be added to a
/// [`Scheduler`](crate::Scheduler).
#[derive(Clone)]
pub struct JobSpec {
    pub(crate) name: String,
    pub(crate) schedule: Schedule,
    pub(crate) job: Arc<dyn Job>,
    pub(crate) misfire_grace: Duration,
    pub(crate) overlap: OverlapPolicy,
    pub(crate) jitter: Duration,
}

impl JobSpec {
    /// A job named `name` (letters, digits, `_`, `-`, `.`; at most 64 characters: it is a metric
    /// label) run on `schedule`, with a misfire grace of [`DEFAULT_MISFIRE_GRACE`],
    /// [`OverlapPolicy::Skip`] and no jitter.
    pub fn new(name: impl Into<String>, schedule: Schedule, job: impl Job) -> Self {
        Self::from_arc(name, schedule, Arc::new(job))
    }

    /// Like [`JobSpec::new`] with a shared job.
    pub fn from_arc(name: impl Into<String>, schedule: Schedule, job: Arc<dyn Job>) -> Self {
        Self {
            name: name.into(),
            schedule,
            job,
            misfire_grace: DEFAULT_MISFIRE_GRACE,
            overlap: OverlapPolicy::default(),
            jitter: Duration::ZERO,
        }
    }

    /// A tick whose run cannot start within `grace` of its (jittered) time is recorded as missed
    /// instead of running late.
    pub fn misfire_grace(mut self, grace: Duration) -> Self {
        self.misfire_grace = grace;
        self
    }

    /// What to do with a tick that arrives while the job runs.
    pub fn overlap(mut self, policy: OverlapPolicy) -> Self {
        self.overlap = policy;
        self
    }

    /// Delays each scheduled run by a random duration in `[0, max]` (whole milliseconds), so
    /// jobs on the same schedule — or the same job on several instances — do not start together.
    /// The misfire grace counts from the delayed time.
    pub fn jitter(mut self, max: Duration) -> Self {
        self.jitter = max;
        self
    }

    /// The job's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The job's schedule.
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }
}

impl std::fmt::Debug for JobSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobSpec")
            .field("name", &self.name)
            .field("schedule", &self.schedule.to_string())
            .field("misfire_grace", &self.misfire_grace)
            .field("overlap", &self.overlap)
            .field("jitter", &self.jitter)
            .finish_non_exhaustive()
    }
}

/// Checks a job name: it is an operator-chosen metric label and a URL path segment.
pub(crate) fn validate_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("it is empty");
    }
    if name.len() > 64 {
        return Err("it is longer than 64 characters");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err("only letters, digits, '_', '-' and '.' are allowed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(validate_name("health-5m.agg_1").is_ok());
        assert_eq!(validate_name(""), Err("it is empty"));
        assert!(validate_name("has space").is_err());
        assert!(validate_name("a/b").is_err());
        assert!(validate_name(&"x".repeat(65)).is_err());
    }
}
