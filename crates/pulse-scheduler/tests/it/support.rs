//! Shared test scaffolding: a scheduler on a [`TokioClock`], and a probe job that records what
//! it was asked to do and how many of its runs overlapped.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use pulse_scheduler::{
    BoxError, Clock, Job, JobContext, JobOutcome, JobStatus, RunRecord, RunTrigger, Scheduler,
    SchedulerBuilder, TokioClock,
};
use tokio::sync::watch;

/// Parses an RFC 3339 time.
pub(crate) fn at(text: &str) -> DateTime<Utc> {
    text.parse().expect("test times are valid RFC 3339")
}

/// A scheduler whose wall clock starts at `wall` and follows tokio's paused time.
pub(crate) struct Harness {
    pub(crate) clock: Arc<TokioClock>,
    pub(crate) scheduler: Scheduler,
}

pub(crate) fn start_at(wall: &str) -> Harness {
    start_with(wall, |builder| builder)
}

pub(crate) fn start_with(
    wall: &str,
    configure: impl FnOnce(SchedulerBuilder) -> SchedulerBuilder,
) -> Harness {
    let clock = Arc::new(TokioClock::starting_at(at(wall)));
    let builder = Scheduler::builder().clock(clock.clone()).jitter_seed(1);
    let scheduler = configure(builder).start();
    Harness { clock, scheduler }
}

/// Fails the test if `future` takes longer than `limit` of virtual time (a guard against a
/// test that would otherwise advance virtual time forever, not a timing assertion).
pub(crate) async fn within<T>(limit: Duration, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, future)
        .await
        .expect("condition not reached within the virtual time limit")
}

/// Waits until the job's status satisfies `condition`.
pub(crate) async fn wait_status(
    receiver: &mut watch::Receiver<JobStatus>,
    condition: impl FnMut(&JobStatus) -> bool,
) -> JobStatus {
    within(
        Duration::from_secs(7 * 86_400),
        receiver.wait_for(condition),
    )
    .await
    .expect("the scheduler keeps the status channel open")
    .clone()
}

/// Lets virtual time run for `duration` (every timer due meanwhile fires, in order).
pub(crate) async fn run_for(duration: Duration) {
    tokio::time::sleep(duration).await;
}

/// What one run of a [`Probe`] job saw.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) run_id: u64,
    pub(crate) trigger: RunTrigger,
    pub(crate) scheduled_at: Option<DateTime<Utc>>,
    pub(crate) started: DateTime<Utc>,
}

#[derive(Debug, Default)]
struct ProbeState {
    runs: Vec<Seen>,
    active: usize,
    max_active: usize,
}

/// Records every run; each run lasts `run_for` of virtual time and returns `outcome`.
#[derive(Clone)]
pub(crate) struct Probe {
    state: Arc<Mutex<ProbeState>>,
    clock: Arc<TokioClock>,
    run_for: Duration,
    outcome: JobOutcome,
}

impl Probe {
    pub(crate) fn new(clock: &Arc<TokioClock>, run_for: Duration) -> Self {
        Self {
            state: Arc::default(),
            clock: clock.clone(),
            run_for,
            outcome: JobOutcome {
                rows_read: 100,
                rejected: 2,
                windows_written: 7,
            },
        }
    }

    pub(crate) fn runs(&self) -> Vec<Seen> {
        self.state.lock().runs.clone()
    }

    pub(crate) fn max_active(&self) -> usize {
        self.state.lock().max_active
    }
}

#[async_trait]
impl Job for Probe {
    async fn run(&self, ctx: JobContext) -> Result<JobOutcome, BoxError> {
        {
            let mut state = self.state.lock();
            state.runs.push(Seen {
                run_id: ctx.run_id(),
                trigger: ctx.trigger(),
                scheduled_at: ctx.scheduled_at(),
                started: self.clock.now(),
            });
            state.active += 1;
            state.max_active = state.max_active.max(state.active);
        }
        // Decrement even when the run is cancelled (the future dropped mid-sleep).
        let _active = ActiveGuard(self.state.clone());
        tokio::time::sleep(self.run_for).await;
        Ok(self.outcome)
    }
}

struct ActiveGuard(Arc<Mutex<ProbeState>>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.lock().active -= 1;
    }
}

/// The job's history, oldest first.
pub(crate) async fn history(scheduler: &Scheduler, job: &str) -> Vec<RunRecord> {
    let mut runs = scheduler
        .history(job, 1000)
        .await
        .expect("history is readable");
    runs.reverse();
    runs
}
