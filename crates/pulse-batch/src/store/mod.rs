//! [`AggregateStore`]: where a scheduled job over the event log keeps its aggregates and
//! its checkpoint (the offset of the last event it consumed), so that whichever Pulse
//! instance runs a tick continues from the same point and every instance answers
//! aggregate queries alike.
//!
//! The one rule every implementation keeps: a run's delta and the move of the checkpoint
//! from `from` to `to` take effect together, and only if the stored checkpoint is still
//! `from` — a compare-and-set. Two runs that started from the same checkpoint (a manual
//! run next to a scheduled one, or a run that outlasted its interval while another
//! instance took the next tick) cannot both commit: the second gets
//! [`BatchError::CheckpointMoved`] and changes nothing, so no reading is counted twice.
//!
//! Implementations: the per-job SQLite files of one instance
//! ([`sink::local::LocalStore`](crate::sink::local::LocalStore)), PostgreSQL and NATS
//! JetStream KV (in their backend crates, for several instances).

use async_trait::async_trait;

use crate::catalog::Metric;
use crate::error::BatchError;
use crate::row::Row;
use crate::state::Stats;
use crate::table::Merged;
use crate::time::Micros;
use crate::window::WindowSet;

/// Where a job stands in the log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// Every matching event up to this offset is in the aggregates (0: none yet).
    pub done: u64,
    /// A commit of the events up to this offset was started and not finished (a crash
    /// mid-commit, in a store that cannot commit in one transaction). The next run must
    /// first commit exactly the range `done..=pending` again, with
    /// [`AggregateStore::commit`] from `done` to `pending`; the store applies what is
    /// missing and nothing twice. Always `None` for transactional stores.
    pub pending: Option<u64>,
}

/// One aggregate query: one user's metric in one window size, by window start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AggregateQuery {
    /// The user.
    pub user_id: String,
    /// The metric name.
    pub metric: String,
    /// The window label, e.g. `5m`.
    pub window: String,
    /// Windows starting at or after this (µs since the epoch).
    pub from_us: Micros,
    /// Windows starting before this (µs since the epoch).
    pub to_us: Micros,
    /// At most this many rows, the earliest first.
    pub limit: usize,
}

/// A stored aggregate row, owned.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredRow {
    /// The user.
    pub user_id: String,
    /// The metric (its canonical unit is the row's unit).
    pub metric: Metric,
    /// The window label.
    pub window: String,
    /// Start (inclusive).
    pub window_start: Micros,
    /// End (exclusive).
    pub window_end: Micros,
    /// The statistics.
    pub stats: Stats,
}

impl StoredRow {
    /// The row in the shape of `pulse aggregate` output.
    pub fn row(&self) -> Row<'_> {
        Row {
            user_id: &self.user_id,
            metric: self.metric,
            window: &self.window,
            window_start: self.window_start,
            window_end: self.window_end,
            stats: self.stats,
        }
    }
}

/// Aggregates and checkpoints of jobs, by job name.
#[async_trait]
pub trait AggregateStore: Send + Sync + 'static {
    /// The checkpoint of `job`. A store that records the windows it was built for refuses
    /// other `windows` ([`BatchError::State`]).
    async fn checkpoint(&self, job: &str, windows: &WindowSet) -> Result<Checkpoint, BatchError>;

    /// Merges `delta` into the stored aggregates of `job` and moves its checkpoint from
    /// `from` to `to`, all or nothing. If the stored checkpoint is not `from` (another
    /// run committed first) this fails with [`BatchError::CheckpointMoved`] and changes
    /// nothing. Returns the keys written.
    async fn commit(&self, job: &str, delta: Merged, from: u64, to: u64)
        -> Result<u64, BatchError>;

    /// The rows of `job` that `query` selects, by window start.
    async fn query(&self, job: &str, query: &AggregateQuery) -> Result<Vec<StoredRow>, BatchError>;
}

/// Reads a checkpoint stored as decimal text (how every store writes offsets).
pub fn parse_offset(job: &str, text: &str) -> Result<u64, BatchError> {
    text.parse::<u64>().map_err(|_| BatchError::State {
        path: job.into(),
        reason: format!("checkpoint {text:?} of job {job} is not an offset"),
    })
}

#[cfg(feature = "contract")]
pub mod contract;
