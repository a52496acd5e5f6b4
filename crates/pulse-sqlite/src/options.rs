//! How a [`SqliteLog`](crate::SqliteLog) stores: fsync policy, retention, group commit.

use std::time::Duration;

/// When committed events reach the disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Every group commit is fsynced before `append` returns (`synchronous=FULL`).
    #[default]
    Always,
    /// Commits are written at once and fsynced at this interval: a power loss may lose
    /// up to this much, a process crash loses nothing.
    Interval(Duration),
    /// Never fsync (`synchronous=OFF`): for tests and throwaway data.
    Never,
}

/// How long events are kept: [`pulse_core::Retention`]. On SQLite, `max_age` goes by the
/// events' `time`, and an event's stored size (what `max_bytes` counts) is the byte length
/// of its id, type, source, subject, datacontenttype, dataschema, extensions (as the stored
/// JSON text) and data, an absent attribute counting 0. SQLite's own overhead (row
/// headers, indexes, free pages) is not counted, so the file stays larger than the budget.
/// Events held by a dead letter are kept and not counted. [`LogStats::stored_bytes`] is
/// the total.
///
/// ```
/// use pulse_sqlite::Retention;
///
/// let retention = Retention {
///     max_bytes: Some(512 * 1024 * 1024),
///     ..Retention::default()
/// };
/// assert!(retention.is_limited());
/// ```
///
/// [`LogStats::stored_bytes`]: crate::LogStats::stored_bytes
pub use pulse_core::Retention;

/// Options of [`SqliteLog::open`](crate::SqliteLog::open).
#[derive(Clone, Debug, PartialEq)]
pub struct SqliteOptions {
    /// When commits are fsynced (default: always).
    pub fsync: FsyncPolicy,
    /// How long events are kept (default: forever).
    pub retention: Retention,
    /// The most events one group commit takes (default 8192); more waiting appends go
    /// into the next transaction.
    pub max_commit_events: usize,
    /// How often acknowledged group positions are written (default 100 ms); `flush`
    /// writes them at once.
    pub offset_commit_interval: Duration,
    /// How often retention looks for events to delete (default 1 s).
    pub prune_interval: Duration,
    /// The most events one retention step deletes (default 10,000).
    pub prune_batch: usize,
    /// Open for reading only: no writer, no lock, no migration; writes fail.
    pub read_only: bool,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            fsync: FsyncPolicy::Always,
            retention: Retention::default(),
            max_commit_events: 8192,
            offset_commit_interval: Duration::from_millis(100),
            prune_interval: Duration::from_secs(1),
            prune_batch: 10_000,
            read_only: false,
        }
    }
}

impl SqliteOptions {
    /// The default options with another fsync policy.
    pub fn with_fsync(mut self, fsync: FsyncPolicy) -> Self {
        self.fsync = fsync;
        self
    }

    /// The default options with a retention policy.
    pub fn with_retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// Opens read-only.
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }
}
