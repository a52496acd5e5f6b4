//! The public face of the scheduler: a cloneable [`Scheduler`] handle that sends commands to
//! the one task owning all job state (see `actor.rs`), and the [`SchedulerBuilder`] that starts
//! that task.
//!
//! Every method is a message and a reply, so the handle can be cloned into HTTP handlers freely
//! and nothing is shared behind a lock; per-job status is also published on `watch` channels.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use crate::actor::{Actor, Command};
use crate::clock::{Clock, SystemClock};
use crate::error::SchedulerError;
use crate::history::{MemoryHistory, RunHistoryStore, DEFAULT_HISTORY_PER_JOB};
use crate::job::JobSpec;
use crate::lease::{AlwaysAcquire, JobLease};
use crate::record::RunRecord;
use crate::status::JobStatus;

/// Room for commands waiting for the scheduler task (callers wait when it is full).
const COMMAND_QUEUE: usize = 64;

/// What [`Scheduler::shutdown`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Jobs whose run was in progress and finished before the deadline.
    pub finished: Vec<String>,
    /// Jobs whose run was cancelled at the deadline (recorded as failed).
    pub cancelled: Vec<String>,
}

/// Configures and starts a [`Scheduler`].
pub struct SchedulerBuilder {
    clock: Arc<dyn Clock>,
    lease: Arc<dyn JobLease>,
    history: Option<Arc<dyn RunHistoryStore>>,
    history_per_job: usize,
    jitter_seed: Option<u64>,
}

impl SchedulerBuilder {
    /// The wall clock to follow (default [`SystemClock`]; tests use a
    /// [`TokioClock`](crate::TokioClock)).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The lease asked before each scheduled run (default [`AlwaysAcquire`]).
    pub fn lease(mut self, lease: Arc<dyn JobLease>) -> Self {
        self.lease = lease;
        self
    }

    /// Where finished runs are kept (default a [`MemoryHistory`] of
    /// [`history_per_job`](Self::history_per_job) runs per job).
    pub fn history_store(mut self, store: Arc<dyn RunHistoryStore>) -> Self {
        self.history = Some(store);
        self
    }

    /// How many runs per job the default in-memory history keeps (default
    /// [`DEFAULT_HISTORY_PER_JOB`]).
    pub fn history_per_job(mut self, runs: usize) -> Self {
        self.history_per_job = runs;
        self
    }

    /// Seeds the jitter's random numbers, for reproducible tests (default: random).
    pub fn jitter_seed(mut self, seed: u64) -> Self {
        self.jitter_seed = Some(seed);
        self
    }

    /// Starts the scheduler task on the current tokio runtime and returns its handle.
    ///
    /// # Panics
    /// When called outside a tokio runtime (as `tokio::spawn` does).
    pub fn start(self) -> Scheduler {
        let history = self
            .history
            .unwrap_or_else(|| Arc::new(MemoryHistory::new(self.history_per_job)));
        let rng = match self.jitter_seed {
            Some(seed) => fastrand::Rng::with_seed(seed),
            None => fastrand::Rng::new(),
        };
        let (commands, receiver) = mpsc::channel(COMMAND_QUEUE);
        let actor = Actor::new(self.clock, self.lease, Arc::clone(&history), rng);
        tokio::spawn(actor.run(receiver));
        Scheduler { commands, history }
    }
}

/// A handle to a running scheduler; clones talk to the same scheduler.
///
/// When the last handle is dropped the scheduler stops: it schedules nothing more and cancels
/// the runs in progress at once (as a shutdown with no grace). Call [`shutdown`](Self::shutdown) to let them finish first.
///
/// ```
/// use std::time::Duration;
/// use pulse_scheduler::{job_fn, JobOutcome, JobSpec, Schedule, Scheduler};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let scheduler = Scheduler::builder().start();
/// let job = job_fn(|_ctx| async { Ok(JobOutcome { rows_read: 10, ..JobOutcome::default() }) });
/// let schedule = Schedule::parse("every 5m", chrono_tz::UTC).unwrap();
/// scheduler.add(JobSpec::new("aggregate", schedule, job)).await.unwrap();
/// let run = scheduler.trigger("aggregate").await.unwrap();
/// assert_eq!(run.rows_read, 10);
/// scheduler.shutdown(Duration::from_secs(5)).await.unwrap();
/// # }
/// ```
#[derive(Clone)]
pub struct Scheduler {
    commands: mpsc::Sender<Command>,
    history: Arc<dyn RunHistoryStore>,
}

impl Scheduler {
    /// A builder with the defaults: system clock, no lease, in-memory history, random jitter.
    pub fn builder() -> SchedulerBuilder {
        SchedulerBuilder {
            clock: Arc::new(SystemClock),
            lease: Arc::new(AlwaysAcquire),
            history: None,
            history_per_job: DEFAULT_HISTORY_PER_JOB,
            jitter_seed: None,
        }
    }

    /// Adds a job; its first tick is the schedule's first after now.
    ///
    /// Errors: [`SchedulerError::InvalidJobName`], [`SchedulerError::DuplicateJob`],
    /// [`SchedulerError::ShuttingDown`], [`SchedulerError::Stopped`].
    pub async fn add(&self, spec: JobSpec) -> Result<(), SchedulerError> {
        self.request(|reply| Command::Add {
            spec: Box::new(spec),
            reply,
        })
        .await?
    }

    /// Runs the job now (without jitter or lease) and returns its record once it has finished.
    ///
    /// Errors: [`SchedulerError::UnknownJob`], [`SchedulerError::AlreadyRunning`] (a run of the
    /// job is in progress), [`SchedulerError::ShuttingDown`], [`SchedulerError::Stopped`].
    /// Dropping the returned future does not stop the run.
    pub async fn trigger(&self, name: &str) -> Result<RunRecord, SchedulerError> {
        let name = name.to_owned();
        self.request(|reply| Command::Trigger { name, reply })
            .await?
    }

    /// The job's current status.
    pub async fn status(&self, name: &str) -> Result<JobStatus, SchedulerError> {
        let receiver = self.watch(name).await?;
        let status = receiver.borrow().clone();
        Ok(status)
    }

    /// A `watch` receiver that sees each change of the job's status.
    pub async fn watch(&self, name: &str) -> Result<watch::Receiver<JobStatus>, SchedulerError> {
        let name = name.to_owned();
        self.request(|reply| Command::Watch { name, reply }).await?
    }

    /// Every job's status, in the order they were added.
    pub async fn jobs(&self) -> Result<Vec<JobStatus>, SchedulerError> {
        self.request(|reply| Command::Jobs { reply }).await
    }

    /// The job's most recent runs, newest first, at most `limit`. Still readable after the
    /// scheduler stopped (the name is then not checked).
    pub async fn history(
        &self,
        name: &str,
        limit: usize,
    ) -> Result<Vec<RunRecord>, SchedulerError> {
        match self.watch(name).await {
            Ok(_) | Err(SchedulerError::Stopped) => {}
            Err(err) => return Err(err),
        }
        Ok(self.history.recent(name, limit).await?)
    }

    /// Stops scheduling, waits up to `grace` for the runs in progress, then cancels the rest:
    /// their [`JobContext::cancelled`](crate::JobContext::cancelled) fires, and a run still
    /// going a second later is aborted (its future dropped). Cancelled runs are recorded as
    /// failed. Then the scheduler task stops. A second call while this
    /// happens gets the same report; a call after the scheduler stopped, an empty one.
    pub async fn shutdown(&self, grace: Duration) -> Result<ShutdownReport, SchedulerError> {
        match self
            .request(|reply| Command::Shutdown { grace, reply })
            .await
        {
            Err(SchedulerError::Stopped) => Ok(ShutdownReport::default()),
            other => other,
        }
    }

    async fn request<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, SchedulerError> {
        let (reply, response) = oneshot::channel();
        self.commands
            .send(command(reply))
            .await
            .map_err(|_| SchedulerError::Stopped)?;
        response.await.map_err(|_| SchedulerError::Stopped)
    }
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("stopped", &self.commands.is_closed())
            .finish_non_exhaustive()
    }
}
