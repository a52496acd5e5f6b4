//! The errors of this crate: one enum for reading schedules, one for talking to a running
//! [`Scheduler`](crate::Scheduler), and the small ones the pluggable traits return.
//!
//! Callers match on variants (the HTTP layer maps [`SchedulerError::AlreadyRunning`] to 409 and
//! [`SchedulerError::UnknownJob`] to 404); the messages are for people reading a config error.

use std::time::Duration;

use crate::schedule::format_duration;
use pulse_core::duration::DurationError;

/// A boxed error from a job, a lease backend or a history backend: the scheduler only keeps its
/// text, so any error type (including `anyhow::Error`, via `.into()`) fits.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What a job returns when another run (usually on another instance) already did its work,
/// for instance committed the same input first: the run is recorded
/// [`superseded`](crate::RunStatus::Superseded), not failed. The text says what happened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Superseded(pub String);

/// Why a schedule (`every 5m`, `30 2 * * *`, ...) or a duration could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// The schedule text is empty.
    #[error(
        "schedule is empty (expected \"every 5m\" or a cron expression such as \"*/5 * * * *\")"
    )]
    Empty,
    /// A duration is malformed.
    #[error("invalid duration \"{input}\": {reason}")]
    InvalidDuration {
        /// The text that was read as a duration.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An `every ...` schedule is malformed.
    #[error("invalid interval schedule \"{input}\": {reason}")]
    InvalidInterval {
        /// The whole schedule text.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An interval of zero.
    #[error("interval must be longer than zero")]
    ZeroInterval,
    /// An interval offset that is not shorter than the period.
    #[error("offset {} must be shorter than the interval {}", format_duration(*.offset), format_duration(*.period))]
    OffsetTooLarge {
        /// The offset given.
        offset: Duration,
        /// The interval period.
        period: Duration,
    },
    /// A cron expression with the wrong number of fields.
    #[error("cron expression \"{expr}\" has {found} fields; expected 5 (minute hour day-of-month month day-of-week) or 6 (second first)")]
    CronFieldCount {
        /// The expression.
        expr: String,
        /// How many whitespace-separated fields it has.
        found: usize,
    },
    /// A cron expression whose named field is invalid.
    #[error("cron expression \"{expr}\": invalid {field} field \"{value}\": {reason}")]
    CronField {
        /// The expression.
        expr: String,
        /// Which field (`minute`, `hour`, `day-of-month`, `month`, `day-of-week`, `second`).
        field: &'static str,
        /// The field's text.
        value: String,
        /// What the cron parser said.
        reason: String,
    },
    /// A cron expression that is invalid as a whole (for example an unknown `@alias`).
    #[error("invalid cron expression \"{expr}\": {reason}")]
    InvalidCron {
        /// The expression.
        expr: String,
        /// What the cron parser said.
        reason: String,
    },
    /// A cron expression that parses but never fires (for example `0 0 30 2 *`, February 30).
    #[error("cron expression \"{expr}\" never fires")]
    NeverFires {
        /// The expression.
        expr: String,
    },
    /// A time zone name that is not in the IANA database.
    #[error("unknown time zone \"{0}\" (expected an IANA name such as Europe/Berlin or UTC)")]
    UnknownTimeZone(String),
}

impl From<DurationError> for ScheduleError {
    fn from(e: DurationError) -> Self {
        Self::InvalidDuration {
            input: e.input,
            reason: e.reason,
        }
    }
}

/// Why a request to the [`Scheduler`](crate::Scheduler) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchedulerError {
    /// No job has this name.
    #[error("unknown job \"{0}\"")]
    UnknownJob(String),
    /// The job is running now (a second run would overlap it).
    #[error("job \"{0}\" is already running")]
    AlreadyRunning(String),
    /// A job with this name was already added.
    #[error("a job named \"{0}\" already exists")]
    DuplicateJob(String),
    /// The job name is not usable (it becomes a metric label, so it is kept simple).
    #[error("invalid job name \"{name}\": {reason}")]
    InvalidJobName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The scheduler is shutting down and starts nothing new.
    #[error("the scheduler is shutting down")]
    ShuttingDown,
    /// The scheduler has stopped.
    #[error("the scheduler has stopped")]
    Stopped,
    /// The run history store failed.
    #[error(transparent)]
    History(#[from] HistoryError),
}

/// A failure of a [`RunHistoryStore`](crate::RunHistoryStore) backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HistoryError {
    /// The backend failed; the text says how.
    #[error("run history store failed: {0}")]
    Backend(BoxError),
}

/// A failure of a [`JobLease`](crate::JobLease) backend (the tick is then recorded as failed).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LeaseError {
    /// The backend failed; the text says how.
    #[error("job lease backend failed: {0}")]
    Backend(BoxError),
}
