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
//! Implementations live in the backend crates, so that this crate links no database:
//! the per-job SQLite files of one instance (`pulse_sqlite::aggregates::LocalStore`),
//! PostgreSQL and NATS JetStream KV (for several instances).
//!
//! [`StateStore`] is the same idea for `pulse aggregate --state`: aggregates plus one
//! checkpoint per input, committed together under the same compare-and-set rule. Every
//! checkpoint, in every store, is a [`Cursor`] with one text form ([`Cursor::encode`]):
//! an event-log offset or a table's row id as decimal text — what PostgreSQL and NATS
//! store for jobs — and a file position as a small JSON object.

use std::path::Path;

use async_trait::async_trait;

use crate::catalog::Metric;
use crate::error::BatchError;
use crate::row::Row;
use crate::source::{FilePosition, TableSource};
use crate::state::Stats;
use crate::table::Merged;
use crate::time::Micros;
use crate::window::WindowSet;

/// Where a run stopped reading its input: the one checkpoint shape of every store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cursor {
    /// The last event-log offset consumed, or the largest table row id read.
    Offset(u64),
    /// How far into a CSV or JSONL file, with a fingerprint of the consumed part.
    File(FilePosition),
}

impl Cursor {
    /// The stored text: an offset in decimal, a file position as JSON.
    ///
    /// ```
    /// use pulse_batch::Cursor;
    /// assert_eq!(Cursor::Offset(42).encode(), "42");
    /// assert_eq!(Cursor::decode("42"), Some(Cursor::Offset(42)));
    /// let file = Cursor::decode(r#"{"offset":9,"rows":1,"fingerprint":"ab"}"#);
    /// assert!(matches!(file, Some(Cursor::File(p)) if p.offset == 9));
    /// assert_eq!(Cursor::decode("not a cursor"), None);
    /// ```
    pub fn encode(&self) -> String {
        match self {
            Cursor::Offset(n) => n.to_string(),
            // A struct of two integers and a string always serializes.
            Cursor::File(p) => serde_json::to_string(p).unwrap_or_default(),
        }
    }

    /// Reads the text [`encode`](Self::encode) wrote; `None` if it is neither form.
    pub fn decode(text: &str) -> Option<Cursor> {
        if text.starts_with('{') {
            serde_json::from_str(text).ok().map(Cursor::File)
        } else {
            text.parse().ok().map(Cursor::Offset)
        }
    }

    /// The offset, or the bytes consumed of a file.
    pub fn offset(&self) -> u64 {
        match self {
            Cursor::Offset(n) => *n,
            Cursor::File(p) => p.offset,
        }
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.encode())
    }
}

/// One commit of a [`StateStore`]: a run's delta and the move of `source`'s checkpoint.
#[derive(Clone, Copy, Debug)]
pub struct Commit<'a> {
    /// The input whose checkpoint moves (e.g. `file:/abs/path.csv`, `log:<job>`).
    pub source: &'a str,
    /// The checkpoint the run started from (`None`: none was stored). The commit fails
    /// with [`BatchError::CheckpointMoved`] and writes nothing unless it is still there.
    /// Not checked with `reset`, which replaces whatever is stored.
    pub from: Option<&'a Cursor>,
    /// The new checkpoint.
    pub to: &'a Cursor,
    /// Clears every aggregate and checkpoint first (`--full`), in the same transaction.
    pub reset: bool,
}

/// Aggregates and per-input checkpoints of `pulse aggregate` runs (`--state`, `sqlite:`
/// outputs), committed together. Synchronous: the CLI's runner is.
pub trait StateStore: Send {
    /// Refuses a store built for other windows or another time zone
    /// ([`BatchError::State`]).
    fn check_windows(&self, windows: &WindowSet) -> Result<(), BatchError>;

    /// The stored checkpoint of `source`, if any.
    fn checkpoint(&self, source: &str) -> Result<Option<Cursor>, BatchError>;

    /// Merges every state of `delta` into the stored state of its key and moves the
    /// checkpoint (see [`Commit`]), all or nothing. Returns the keys written.
    fn commit(&mut self, delta: &Merged, commit: Commit<'_>) -> Result<u64, BatchError>;

    /// Calls `f` with every stored row, in output order.
    fn for_each_row(
        &self,
        f: &mut dyn FnMut(&Row<'_>) -> Result<(), BatchError>,
    ) -> Result<(), BatchError>;
}

/// Opens the database files a job names (`sqlite:` inputs, outputs and `--state`).
/// pulse-batch links no database; `pulse_sqlite::batch::Sqlite` implements this.
pub trait Databases: Send + Sync + std::fmt::Debug {
    /// Opens (or creates) the state store at `path`.
    fn open_state(&self, path: &Path) -> Result<Box<dyn StateStore>, BatchError>;

    /// A readings table of the database at `path`, read by row id.
    fn open_table(&self, path: &Path, table: &str) -> Result<Box<dyn TableSource>, BatchError>;
}

/// The checkpoint key of log job `job` in a store keyed by input ([`StateStore`]).
pub fn log_source_id(job: &str) -> String {
    format!("log:{job}")
}

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

/// Reads a job's checkpoint stored as text ([`Cursor::encode`]); it must be an offset.
pub fn parse_offset(job: &str, text: &str) -> Result<u64, BatchError> {
    match Cursor::decode(text) {
        Some(Cursor::Offset(n)) => Ok(n),
        _ => Err(BatchError::State {
            path: job.into(),
            reason: format!("checkpoint {text:?} of job {job} is not an offset"),
        }),
    }
}

#[cfg(feature = "contract")]
pub mod contract;
