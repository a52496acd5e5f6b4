//! Pulse's job scheduler: runs named async jobs on interval or cron schedules, one run of a
//! job at a time, and keeps a history of how each run went.
//!
//! - [`Schedule`]: `every 5m [offset 1m]` (elapsed time, epoch-aligned) or a cron expression
//!   in an IANA time zone, with documented daylight-saving rules ([`CronSchedule`]).
//! - [`Scheduler`]: a cloneable handle to one task that owns all job state. Per job: no
//!   overlapping runs ([`OverlapPolicy`]), a misfire grace, coalescing of ticks missed during a
//!   stall, jitter, run-now ([`Scheduler::trigger`]), a bounded run history
//!   ([`RunHistoryStore`]), status on a `watch` channel, and a graceful shutdown.
//! - [`JobLease`]: asked before each scheduled run so several instances run each tick once.
//!
//! The scheduler knows nothing of HTTP or aggregation: a [`Job`] reports a [`JobOutcome`]
//! (rows read, rejected, windows written) or an error. Time is read from a [`Clock`], so tests
//! drive everything with tokio's paused time ([`TokioClock`]).

mod actor;
mod clock;
pub mod error;
mod history;
mod job;
mod lease;
pub mod metrics;
mod record;
mod schedule;
mod scheduler;
mod status;

pub use clock::{Clock, SystemClock, TokioClock};
pub use error::{BoxError, HistoryError, LeaseError, ScheduleError, SchedulerError, Superseded};
pub use history::{MemoryHistory, RunHistoryStore, DEFAULT_HISTORY_PER_JOB};
pub use job::{
    job_fn, FnJob, Job, JobContext, JobOutcome, JobSpec, OverlapPolicy, DEFAULT_MISFIRE_GRACE,
};
pub use lease::{AlwaysAcquire, JobLease};
pub use record::{RunRecord, RunStatus, RunTrigger};
pub use schedule::{format_duration, parse_duration, CronSchedule, Interval, Schedule};
pub use scheduler::{Scheduler, SchedulerBuilder, ShutdownReport};
pub use status::JobStatus;
