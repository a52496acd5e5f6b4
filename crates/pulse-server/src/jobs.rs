//! Aggregation jobs: the configured `[[jobs]]` run on pulse-scheduler, each reading
//! readings from the event log (`pulse_batch::source::log`) into its own SQLite state
//! store `aggregates-<job>.db` in the data directory, where the aggregates and the
//! checkpoint commit together. `GET /v1/aggregates` reads those stores with plain SQL
//! (the `aggregates` table is pulse-batch's documented, SQL-readable output).
//!
//! Rejected readings of a run are counted in its record and written, with their reason,
//! to `rejects-<job>.jsonl` (replaced by each run), never logged.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pulse_batch::rejects::RejectLog;
use pulse_batch::sink::sqlite::StateStore;
use pulse_batch::source::log::{run_log, LogJob};
use pulse_core::EventLog;
use pulse_scheduler::{
    BoxError, Job, JobContext, JobOutcome, JobStatus, RunRecord, Scheduler, SchedulerError,
};
use serde_json::{json, Value};

use crate::config::JobSpec;
use crate::error::ApiError;

const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The configured jobs and their scheduler; cheap to clone.
#[derive(Clone)]
pub struct Jobs {
    inner: Arc<Inner>,
}

struct Inner {
    specs: Vec<JobSpec>,
    scheduler: Option<Scheduler>,
    dir: Option<PathBuf>,
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
    /// Jobs need a data directory for their state stores.
    #[error("aggregation jobs need a data directory for their state")]
    NoDataDir,
}

struct AggregationJob {
    log: Arc<dyn EventLog>,
    job: LogJob,
    store: PathBuf,
    rejects: PathBuf,
}

#[async_trait]
impl Job for AggregationJob {
    async fn run(&self, _ctx: JobContext) -> Result<JobOutcome, BoxError> {
        let (path, rejects_path) = (self.store.clone(), self.rejects.clone());
        let (store, rejects) = tokio::task::spawn_blocking(move || {
            Ok::<_, pulse_batch::BatchError>((
                StateStore::open(&path)?,
                RejectLog::create(&rejects_path)?,
            ))
        })
        .await??;
        let (_store, summary) = run_log(self.log.as_ref(), &self.job, store, &rejects).await?;
        Ok(JobOutcome {
            rows_read: summary.counts.rows,
            rejected: summary.counts.rejected_total(),
            windows_written: summary.windows_written,
        })
    }
}

fn store_path(dir: &Path, job: &str) -> PathBuf {
    dir.join(format!("aggregates-{job}.db"))
}

impl Jobs {
    /// Starts the scheduler with every job (none when there are no jobs).
    pub async fn start(
        specs: Vec<JobSpec>,
        log: Arc<dyn EventLog>,
        dir: Option<PathBuf>,
    ) -> Result<Self, JobsError> {
        let scheduler = if specs.is_empty() {
            None
        } else {
            let dir = dir.as_deref().ok_or(JobsError::NoDataDir)?;
            let scheduler = Scheduler::builder().start();
            for spec in &specs {
                let job = AggregationJob {
                    log: log.clone(),
                    job: LogJob::new(
                        spec.name.clone(),
                        spec.source_pattern.clone(),
                        spec.windows.clone(),
                    ),
                    store: store_path(dir, &spec.name),
                    rejects: dir.join(format!("rejects-{}.jsonl", spec.name)),
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
            Some(scheduler)
        };
        Ok(Self {
            inner: Arc::new(Inner {
                specs,
                scheduler,
                dir,
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

    /// The stores of the jobs that compute `window`, with their source patterns.
    pub fn stores_for(&self, window: &str) -> Vec<(PathBuf, pulse_core::Pattern)> {
        let Some(dir) = &self.inner.dir else {
            return Vec::new();
        };
        self.inner
            .specs
            .iter()
            .filter(|s| s.windows.windows().iter().any(|w| w.label() == window))
            .map(|s| (store_path(dir, &s.name), s.source_pattern.clone()))
            .collect()
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
