//! Why a batch run failed. A rejected reading is not an error (see
//! [`crate::reading::RejectReason`]); these are the failures that stop a run before it
//! commits anything.

use std::path::PathBuf;

/// Why a batch run, or setting one up, failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// A window list or time zone is not valid.
    #[error("invalid window: {0}")]
    InvalidWindow(String),
    /// An input, output or state specification is not valid.
    #[error("invalid specification: {0}")]
    InvalidSpec(String),
    /// The input cannot be used (missing columns, unknown table, ...).
    #[error("invalid input {path}: {reason}")]
    InvalidInput {
        /// The input.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// An input could not be read: its server is unreachable or refused a query.
    #[error("cannot read input {input}: {reason}")]
    InputUnavailable {
        /// The input, without credentials.
        input: String,
        /// What failed.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("{action} {path}: {error}")]
    Io {
        /// What was being done, e.g. "cannot read".
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// A database file (a SQLite table or state store) failed.
    #[error("database {path}: {error}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// The driver's error.
        error: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The stored state does not belong to this job or is damaged.
    #[error("state {path}: {reason}")]
    State {
        /// The state database.
        path: PathBuf,
        /// What does not match.
        reason: String,
    },
    /// The input changed in a way an incremental run cannot follow (rewritten, truncated).
    #[error("input {path} changed since the last run ({reason}); run with --full to recompute")]
    InputChanged {
        /// The input.
        path: String,
        /// What changed.
        reason: String,
    },
    /// More distinct users than one run can hold.
    #[error("more than {0} distinct users in one run")]
    TooManyUsers(usize),
    /// Reading the event log failed.
    #[error("event log: {0}")]
    Log(pulse_core::LogError),
    /// Another run committed first: the job's checkpoint is no longer where this run
    /// started, so this run committed nothing (its readings are in the other run's commit
    /// or in the next run).
    #[error("job {job}: the checkpoint is at {found}, not {expected} where this run started; another run committed first, this one committed nothing")]
    CheckpointMoved {
        /// The job.
        job: String,
        /// The checkpoint this run started from.
        expected: u64,
        /// The checkpoint found (or the end of a range another run is committing).
        found: u64,
    },
    /// A worker thread panicked (a bug); nothing was committed.
    #[error("aggregation worker failed: {0}")]
    Worker(String),
}

impl BatchError {
    /// An [`Io`](BatchError::Io) error: `action` (e.g. "cannot read") on `path` failed.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        BatchError::Io {
            action,
            path: path.into(),
            error: source,
        }
    }

    /// A [`Database`](BatchError::Database) error of the file at `path`.
    pub fn database(
        path: impl Into<PathBuf>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        BatchError::Database {
            path: path.into(),
            error: Box::new(source),
        }
    }
}

impl From<pulse_core::LogError> for BatchError {
    fn from(e: pulse_core::LogError) -> Self {
        BatchError::Log(e)
    }
}
