//! Aggregation jobs: the configured `[[jobs]]` run on pulse-scheduler, each reading
//! readings from the event log (`pulse_batch::run_log`, the runner `pulse aggregate` uses
//! too) into an
//! [`AggregateStore`], where the aggregates and the checkpoint commit together;
//! `GET /v1/aggregates` reads the same store.
//!
//! Alone, the store is [`LocalStore`] (`aggregates-<job>.db` in the data directory) and
//! every tick runs here. Several instances sharing a log get [`SharedJobs`] from the CLI:
//! the backend's lease lets one instance run each tick, and its store keeps one set of
//! aggregates and one checkpoint per job for all of them, so whichever instance runs a
//! tick continues where the last one stopped and every instance serves the same
//! aggregates. Commits are compare-and-set on the checkpoint, so two overlapping runs (a
//! long run and the next tick on another instance, or a manual run) never count a reading
//! twice: the later commit fails and its run is recorded as failed.
//!
//! Rejected readings of a run are counted in its record and written, with their reason,
//! to `rejects-<job>.jsonl` in the data directory (replaced by each run), never logged.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pulse_batch::AggregateStore;
use pulse_batch::RejectLog;
use pulse_batch::{run_log, BatchError, LogJob};
use pulse_core::EventLog;
use pulse_scheduler::{
    BoxError, Job, JobContext, JobLease, JobOutcome, JobStatus, RunRecord, Scheduler,
    SchedulerError, Superseded,
};
use pulse_sqlite::LocalStore;
use serde_json::{json, Value};

use crate::error::ApiError;

/// One aggregation job.
#[derive(Clone, Debug)]
pub struct JobSpec {
    /// Unique name.
    pub name: String,
    /// When it runs (`every 5m` or a cron expression in the job's time zone).
    pub schedule: pulse_scheduler::Schedule,
    /// Window sizes and the time zone of calendar days.
    pub windows: pulse_batch::WindowSet,
    /// Types of the events carrying readings.
    pub source_pattern: pulse_core::Pattern,
}

const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The most runs `GET /v1/jobs/{name}/runs` returns.
pub const MAX_RUNS: usize = pulse_scheduler::DEFAULT_HISTORY_PER_JOB;

/// Job state shared by several instances: who runs a tick, and where aggregates live.
#[derive(Clone)]
pub struct SharedJobs {
    /// Asked before each scheduled run; exactly one instance gets each tick.
    pub lease: Arc<dyn JobLease>,
    /// The aggregates and checkpoints of every job.
    pub store: Arc<dyn AggregateStore>,
}

/// The configured jobs and their scheduler; cheap to clone.
#[derive(Clone)]
pub struct Jobs {
    inner: Arc<Inner>,
}

struct Inner {
    specs: Vec<JobSpec>,
    scheduler: Option<Scheduler>,
    store: Option<Arc<dyn AggregateStore>>,
}

/// Why jobs could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobsError {
    /// A job was refused by the scheduler.
    #[error("job {name}: {source}")]
    Schedule {
        /// The job.
        name: String,
        /// Why.
        source: SchedulerError,
    },
    /// Jobs of one instance need a data directory for their state stores.
    #[error("aggregation jobs need a data directory for their state")]
    NoDataDir,
}

struct AggregationJob {
    log: Arc<dyn EventLog>,
    job: LogJob,
    store: Arc<dyn AggregateStore>,
    rejects: Option<PathBuf>,
}

#[async_trait]
impl Job for AggregationJob {
    async fn run(&self, _ctx: JobContext) -> Result<JobOutcome, BoxError> {
        let rejects = match self.rejects.clone() {
            Some(path) => tokio::task::spawn_blocking(move || RejectLog::create(&path)).await??,
            None => RejectLog::none(),
        };
        let summary = run_log(self.log.as_ref(), &self.job, self.store.as_ref(), &rejects)
            .await
            .map_err(|err| match err {
                // Another instance's run committed first: its commit or the next run counts
                // these readings, so this run is superseded, not failed.
                moved @ BatchError::CheckpointMoved { .. } => {
                    Box::new(Superseded(moved.to_string())) as BoxError
                }
                other => other.into(),
            })?;
        Ok(JobOutcome {
            rows_read: summary.counts.rows,
            rejected: summary.counts.rejected_total(),
            windows_written: summary.windows_written,
        })
    }
}

impl Jobs {
    /// Starts the scheduler with every job (none when there are no jobs). Without
    /// `shared`, job state lives in `dir` and every tick runs on this instance.
    pub async fn start(
        specs: Vec<JobSpec>,
        log: Arc<dyn EventLog>,
        dir: Option<PathBuf>,
        shared: Option<SharedJobs>,
    ) -> Result<Self, JobsError> {
        if specs.is_empty() {
            return Ok(Self {
                inner: Arc::new(Inner {
                    specs,
                    scheduler: None,
                    store: None,
                }),
            });
        }
        let (builder, store) = match shared {
            Some(shared) => (Scheduler::builder().lease(shared.lease), shared.store),
            None => {
                let dir = dir.as_deref().ok_or(JobsError::NoDataDir)?;
                let store: Arc<dyn AggregateStore> = Arc::new(LocalStore::new(dir));
                (Scheduler::builder(), store)
            }
        };
        let scheduler = builder.start();
        for spec in &specs {
            let job = AggregationJob {
                log: log.clone(),
                job: LogJob::new(
                    spec.name.clone(),
                    spec.source_pattern.clone(),
                    spec.windows.clone(),
                ),
                store: store.clone(),
                rejects: dir
                    .as_ref()
                    .map(|d| d.join(format!("rejects-{}.jsonl", spec.name))),
            };
            let entry =
                pulse_scheduler::JobSpec::new(spec.name.clone(), spec.schedule.clone(), job);
            scheduler
                .add(entry)
                .await
                .map_err(|source| JobsError::Schedule {
                    name: spec.name.clone(),
                    source,
                })?;
        }
        Ok(Self {
            inner: Arc::new(Inner {
                specs,
                scheduler: Some(scheduler),
                store: Some(store),
            }),
        })
    }

    /// The job declarations.
    pub fn specs(&self) -> &[JobSpec] {
        &self.inner.specs
    }

    fn scheduler(&self) -> Result<&Scheduler, ApiError> {
        self.inner
            .scheduler
            .as_ref()
            .ok_or_else(|| ApiError::Unavailable("no job is configured".into()))
    }

    /// Every job with its state and last run.
    pub async fn list(&self) -> Result<Vec<Value>, ApiError> {
        let Some(scheduler) = &self.inner.scheduler else {
            return Ok(Vec::new());
        };
        let statuses = scheduler.jobs().await.map_err(scheduler_error)?;
        Ok(self
            .inner
            .specs
            .iter()
            .map(|spec| {
                let status = statuses.iter().find(|s| s.name == spec.name);
                job_view(spec, status)
            })
            .collect())
    }

    /// Runs a job now and returns its record once finished.
    pub async fn run(&self, name: &str) -> Result<Value, ApiError> {
        if !self.inner.specs.iter().any(|s| s.name == name) {
            return Err(ApiError::UnknownJob(name.to_owned()));
        }
        let record = self
            .scheduler()?
            .trigger(name)
            .await
            .map_err(scheduler_error)?;
        Ok(run_view(&record))
    }

    /// Stops scheduling and waits (bounded) for runs in progress.
    pub async fn shutdown(&self) {
        if let Some(scheduler) = &self.inner.scheduler {
            if let Err(err) = scheduler.shutdown(SHUTDOWN_GRACE).await {
                tracing::warn!(%err, "job scheduler did not stop cleanly");
            }
        }
    }

    /// The most recent runs of job `name` on this instance, newest first.
    pub async fn runs(&self, name: &str, limit: usize) -> Result<Vec<Value>, ApiError> {
        if !self.inner.specs.iter().any(|s| s.name == name) {
            return Err(ApiError::UnknownJob(name.to_owned()));
        }
        let records = self
            .scheduler()?
            .history(name, limit)
            .await
            .map_err(scheduler_error)?;
        Ok(records.iter().map(run_view).collect())
    }

    /// The jobs that compute `window`, with their source patterns.
    pub fn jobs_for(&self, window: &str) -> Vec<(String, pulse_core::Pattern)> {
        self.inner
            .specs
            .iter()
            .filter(|s| s.windows.windows().iter().any(|w| w.label() == window))
            .map(|s| (s.name.clone(), s.source_pattern.clone()))
            .collect()
    }

    /// The store every job commits to (`None` without jobs).
    pub fn store(&self) -> Option<&Arc<dyn AggregateStore>> {
        self.inner.store.as_ref()
    }
}

fn scheduler_error(err: SchedulerError) -> ApiError {
    match err {
        SchedulerError::UnknownJob(name) => ApiError::UnknownJob(name),
        SchedulerError::AlreadyRunning(name) => ApiError::JobRunning(name),
        SchedulerError::ShuttingDown | SchedulerError::Stopped => {
            ApiError::Unavailable("the job scheduler is stopping".into())
        }
        other => ApiError::Internal(other.to_string()),
    }
}

fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn run_view(r: &RunRecord) -> Value {
    json!({
        "run_id": r.run_id,
        "trigger": r.trigger,
        "scheduled_at": r.scheduled_at.map(rfc3339),
        "coalesced": r.coalesced,
        "started_at": rfc3339(r.started_at),
        "finished_at": rfc3339(r.finished_at),
        "rows_read": r.rows_read,
        "rejected": r.rejected,
        "windows_written": r.windows_written,
        "status": r.status.as_str(),
        "error": r.error,
    })
}

fn job_view(spec: &JobSpec, status: Option<&JobStatus>) -> Value {
    let windows: Vec<&str> = spec.windows.windows().iter().map(|w| w.label()).collect();
    json!({
        "name": spec.name,
        "schedule": spec.schedule.to_string(),
        "windows": windows,
        "tz": spec.windows.tz().name(),
        "source_pattern": spec.source_pattern.as_str(),
        "running": status.is_some_and(|s| s.running),
        "next_run": status.and_then(|s| s.next_run).map(rfc3339),
        "last_run": status.and_then(|s| s.last_run.as_ref()).map(run_view),
    })
}
