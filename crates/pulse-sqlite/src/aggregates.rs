//! [`LocalStore`]: the [`AggregateStore`] of one Pulse instance — a SQLite
//! [`SqliteState`] per job, `aggregates-<job>.db` in a directory, with the job's
//! checkpoint under `log:<job>`.
//!
//! Each call opens the job's file on the blocking pool (SQLite must not block the async
//! runtime), so there is no connection to share between calls; opening costs far less
//! than a run. Queries open the file read-only and find no rows before a job's first
//! commit, without creating anything.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use pulse_batch::BatchError;
use pulse_batch::Merged;
use pulse_batch::Metric;
use pulse_batch::Stats;
use pulse_batch::WindowSet;
use pulse_batch::{
    log_source_id, AggregateQuery, AggregateStore, Checkpoint, Commit, Cursor, StateStore,
    StoredRow,
};
use rusqlite::{params, Connection, OpenFlags};

use crate::batch::SqliteState;

const SELECT: &str = r#"SELECT user_id, metric, "window", start_us, end_us, count, sum, avg,
    min, max, stddev, p50, p95, p99 FROM aggregates
    WHERE user_id = ?1 AND metric = ?2 AND "window" = ?3 AND start_us >= ?4 AND start_us < ?5
    ORDER BY start_us LIMIT ?6"#;

/// Per-job SQLite state stores in one directory.
#[derive(Clone, Debug)]
pub struct LocalStore {
    dir: PathBuf,
}

impl LocalStore {
    /// Stores in `dir` (created by the first commit's caller, not here).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The file of `job`.
    pub fn path_of(&self, job: &str) -> PathBuf {
        self.dir.join(format!("aggregates-{job}.db"))
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BatchError> + Send + 'static,
) -> Result<T, BatchError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BatchError::Worker(e.to_string()))?
}

#[async_trait]
impl AggregateStore for LocalStore {
    async fn checkpoint(&self, job: &str, windows: &WindowSet) -> Result<Checkpoint, BatchError> {
        let (path, job, windows) = (self.path_of(job), job.to_owned(), windows.clone());
        blocking(move || {
            let store = SqliteState::open(&path)?;
            store.check_windows(&windows)?;
            let done = match store.checkpoint(&log_source_id(&job))? {
                Some(Cursor::Offset(done)) => done,
                Some(Cursor::File(_)) => {
                    return Err(BatchError::State {
                        path,
                        reason: format!("the checkpoint of job {job} is not an offset"),
                    })
                }
                None => 0,
            };
            Ok(Checkpoint {
                done,
                pending: None,
            })
        })
        .await
    }

    async fn commit(
        &self,
        job: &str,
        delta: Merged,
        from: u64,
        to: u64,
    ) -> Result<u64, BatchError> {
        let (path, job) = (self.path_of(job), job.to_owned());
        blocking(move || {
            let (source, from, to) = (
                log_source_id(&job),
                Cursor::Offset(from),
                Cursor::Offset(to),
            );
            let commit = Commit {
                source: &source,
                from: Some(&from),
                to: &to,
                reset: false,
            };
            SqliteState::open(&path)?
                .commit(&delta, commit)
                .map_err(|err| match err {
                    // The store names the checkpoint by its key; callers know the job.
                    BatchError::CheckpointMoved {
                        expected, found, ..
                    } => BatchError::CheckpointMoved {
                        job,
                        expected,
                        found,
                    },
                    other => other,
                })
        })
        .await
    }

    async fn query(&self, job: &str, query: &AggregateQuery) -> Result<Vec<StoredRow>, BatchError> {
        let (path, query) = (self.path_of(job), query.clone());
        blocking(move || {
            if !path.exists() {
                return Ok(Vec::new());
            }
            read(&path, &query).map_err(|e| crate::batch::error(&path, e))?
        })
        .await
    }
}

/// The rows of one query; the outer error is SQLite's, the inner one a damaged row.
fn read(path: &Path, q: &AggregateQuery) -> rusqlite::Result<Result<Vec<StoredRow>, BatchError>> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // The first run creates the file before its tables: nothing to read yet.
    let has_table: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'aggregates')",
        [],
        |r| r.get(0),
    )?;
    let mut out = Vec::new();
    if !has_table {
        return Ok(Ok(out));
    }
    let mut stmt = conn.prepare(SELECT)?;
    let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
    let mut rows = stmt.query(params![
        q.user_id, q.metric, q.window, q.from_us, q.to_us, limit
    ])?;
    while let Some(r) = rows.next()? {
        let metric: String = r.get(1)?;
        let Some(metric) = Metric::from_name(metric.as_bytes()) else {
            return Ok(Err(BatchError::State {
                path: path.to_owned(),
                reason: format!("unknown metric {metric:?} in the aggregates table"),
            }));
        };
        out.push(StoredRow {
            user_id: r.get(0)?,
            metric,
            window: r.get(2)?,
            window_start: r.get(3)?,
            window_end: r.get(4)?,
            stats: Stats {
                count: r.get::<_, i64>(5)? as u64,
                sum: r.get(6)?,
                avg: r.get(7)?,
                min: r.get(8)?,
                max: r.get(9)?,
                stddev: r.get(10)?,
                p50: r.get(11)?,
                p95: r.get(12)?,
                p99: r.get(13)?,
            },
        });
    }
    Ok(Ok(out))
}
