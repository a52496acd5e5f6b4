//! The SQLite state store: the `aggregates` table (one row per key, readable with plain
//! SQL, plus the mergeable state as a blob) and the checkpoint of every source.
//!
//! [`SqliteState::commit`](StateStore::commit) merges a run's new states into the stored
//! ones — touching only the keys the run saw, so late readings re-open only their
//! windows — and moves the source's checkpoint (a [`Cursor`], stored as its text), all in
//! one transaction and only if the checkpoint is still where the run started: a crash
//! before the commit leaves the previous aggregates and checkpoint, a crash after it
//! leaves the new ones, and no reading is counted twice. The same store serves as the
//! `sqlite:` output, as `--state`, and per job as [`LocalStore`](crate::LocalStore).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pulse_batch::failpoint;
use pulse_batch::time::format_rfc3339;
use pulse_batch::BatchError;
use pulse_batch::Merged;
use pulse_batch::Metric;
use pulse_batch::Row;
use pulse_batch::WindowSet;
use pulse_batch::{AggState, Stats};
use pulse_batch::{Commit, Cursor, StateStore};
use rusqlite::{params, Connection, OptionalExtension};

const SCHEMA_VERSION: &str = "1";

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS pulse_batch_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pulse_batch_checkpoints (
    source     TEXT PRIMARY KEY,
    position   TEXT NOT NULL,
    updated_at TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS aggregates (
    user_id      TEXT NOT NULL,
    metric       TEXT NOT NULL,
    unit         TEXT NOT NULL,
    "window"     TEXT NOT NULL,
    window_start TEXT NOT NULL,
    window_end   TEXT NOT NULL,
    count        INTEGER NOT NULL,
    sum          REAL NOT NULL,
    avg          REAL NOT NULL,
    min          REAL NOT NULL,
    max          REAL NOT NULL,
    stddev       REAL,
    p50          REAL NOT NULL,
    p95          REAL NOT NULL,
    p99          REAL NOT NULL,
    start_us     INTEGER NOT NULL,
    end_us       INTEGER NOT NULL,
    first_at     TEXT NOT NULL,
    last_at      TEXT NOT NULL,
    state        BLOB NOT NULL,
    PRIMARY KEY (user_id, metric, "window", window_start)
) WITHOUT ROWID;
"#;

const SELECT_STATE: &str = r#"SELECT state FROM aggregates
    WHERE user_id = ?1 AND metric = ?2 AND "window" = ?3 AND window_start = ?4"#;

const UPSERT: &str = r#"INSERT OR REPLACE INTO aggregates
    (user_id, metric, unit, "window", window_start, window_end, count, sum, avg, min, max,
     stddev, p50, p95, p99, start_us, end_us, first_at, last_at, state)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)"#;

const SELECT_ROWS: &str = r#"SELECT user_id, metric, "window", start_us, end_us, count, sum, avg,
    min, max, stddev, p50, p95, p99 FROM aggregates
    ORDER BY user_id, metric, "window", window_start"#;

/// A SQLite database holding aggregate state and checkpoints.
pub struct SqliteState {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteState")
            .field("path", &self.path)
            .finish()
    }
}

/// How long a run waits for another one holding the file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Switches to WAL. SQLite answers "busy" at once, without the busy timeout, while
/// another connection switches the same new file, so this waits out the timeout itself.
fn wal_mode(conn: &Connection) -> rusqlite::Result<()> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(e)
                if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            done => return done,
        }
    }
}

/// The checkpoint text of `source` as a cursor; text no Pulse wrote is refused.
fn decode(source: &str, text: &str) -> Result<Cursor, BatchError> {
    Cursor::decode(text).ok_or_else(|| BatchError::InputChanged {
        path: source.to_owned(),
        reason: "the stored position is not readable".to_owned(),
    })
}

/// Whether the stored checkpoint is the one a run started from. Offset 0 means "nothing
/// consumed" in every store, stored or not.
fn unmoved(stored: Option<&Cursor>, from: Option<&Cursor>) -> bool {
    let norm = |c: Option<&Cursor>| c.filter(|c| **c != Cursor::Offset(0)).cloned();
    norm(stored) == norm(from)
}

impl SqliteState {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<SqliteState, BatchError> {
        let err = |e| super::error(path, e);
        let mut conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
        wal_mode(&conn).map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        // Several runs may open a new file at once. IMMEDIATE makes them take turns (busy
        // timeout) instead of failing to upgrade a read; the first one's version stands.
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        tx.execute_batch(SCHEMA).map_err(err)?;
        tx.execute(
            "INSERT OR IGNORE INTO pulse_batch_meta (key, value) VALUES ('schema', ?1)",
            [SCHEMA_VERSION],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        let store = SqliteState {
            conn,
            path: path.to_owned(),
        };
        match store.meta("schema")? {
            Some(v) if v == SCHEMA_VERSION => {}
            found => {
                return Err(BatchError::State {
                    path: path.to_owned(),
                    reason: format!(
                        "written by schema version {}, this Pulse reads {SCHEMA_VERSION}",
                        found.as_deref().unwrap_or("(none)")
                    ),
                })
            }
        }
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sql(&self, e: rusqlite::Error) -> BatchError {
        super::error(&self.path, e)
    }

    fn meta(&self, key: &str) -> Result<Option<String>, BatchError> {
        self.conn
            .query_row(
                "SELECT value FROM pulse_batch_meta WHERE key = ?1",
                [key],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.sql(e))
    }

    /// Number of stored keys.
    pub fn len(&self) -> Result<u64, BatchError> {
        self.conn
            .query_row("SELECT count(*) FROM aggregates", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n as u64)
            .map_err(|e| self.sql(e))
    }

    /// Whether no key is stored.
    pub fn is_empty(&self) -> Result<bool, BatchError> {
        Ok(self.len()? == 0)
    }

    fn write(&mut self, delta: &Merged, commit: Commit<'_>) -> Result<u64, BatchError> {
        let Commit {
            source,
            from,
            to,
            reset,
        } = commit;
        let path = self.path.clone();
        let err = |e| super::error(&path, e);
        // IMMEDIATE: the checkpoint read below and the writes share one write lock, so
        // a concurrent commit waits (busy timeout) instead of failing on upgrade.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        if !reset {
            let stored: Option<String> = tx
                .query_row(
                    "SELECT position FROM pulse_batch_checkpoints WHERE source = ?1",
                    [source],
                    |r| r.get(0),
                )
                .optional()
                .map_err(err)?;
            let stored = stored.map(|text| decode(source, &text)).transpose()?;
            if !unmoved(stored.as_ref(), from) {
                return Err(BatchError::CheckpointMoved {
                    job: source.to_owned(),
                    expected: from.map_or(0, Cursor::offset),
                    found: stored.as_ref().map_or(0, Cursor::offset),
                });
            }
        }
        if reset {
            tx.execute_batch("DELETE FROM aggregates; DELETE FROM pulse_batch_checkpoints;")
                .map_err(err)?;
        }
        let fresh = !tx
            .query_row("SELECT EXISTS (SELECT 1 FROM aggregates)", [], |r| {
                r.get::<_, bool>(0)
            })
            .map_err(err)?;
        let mut written = 0u64;
        {
            let mut get = tx.prepare(SELECT_STATE).map_err(err)?;
            let mut put = tx.prepare(UPSERT).map_err(err)?;
            delta.for_each(|row, state| -> Result<(), BatchError> {
                let start = format_rfc3339(row.window_start);
                let stored: Option<Vec<u8>> = if fresh {
                    None
                } else {
                    get.query_row(
                        params![row.user_id, row.metric.name(), row.window, start],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(err)?
                };
                let merged = match stored {
                    Some(blob) => {
                        let mut stored =
                            AggState::from_bytes(&blob).ok_or_else(|| BatchError::State {
                                path: path.clone(),
                                reason: format!(
                                    "damaged state for {} {} {} {start}",
                                    row.user_id, row.metric, row.window
                                ),
                            })?;
                        stored.merge(state);
                        stored
                    }
                    None => state.clone(),
                };
                let s = merged.stats();
                put.execute(params![
                    row.user_id,
                    row.metric.name(),
                    row.metric.unit(),
                    row.window,
                    start,
                    format_rfc3339(row.window_end),
                    s.count as i64,
                    s.sum,
                    s.avg,
                    s.min,
                    s.max,
                    s.stddev,
                    s.p50,
                    s.p95,
                    s.p99,
                    row.window_start,
                    row.window_end,
                    format_rfc3339(merged.first_at),
                    format_rfc3339(merged.last_at),
                    merged.to_bytes(),
                ])
                .map_err(err)?;
                written += 1;
                Ok(())
            })?;
        }
        let now = format_rfc3339(chrono::Utc::now().timestamp_micros());
        tx.execute(
            "INSERT OR REPLACE INTO pulse_batch_checkpoints (source, position, updated_at) VALUES (?1, ?2, ?3)",
            params![source, to.encode(), now],
        )
        .map_err(err)?;
        tx.execute(
            "INSERT OR REPLACE INTO pulse_batch_meta (key, value) VALUES ('windows', ?1)",
            [delta.windows().describe()],
        )
        .map_err(err)?;
        failpoint::hit("batch.before_commit");
        tx.commit().map_err(err)?;
        Ok(written)
    }
}

impl StateStore for SqliteState {
    fn check_windows(&self, windows: &WindowSet) -> Result<(), BatchError> {
        match self.meta("windows")? {
            Some(stored) if stored != windows.describe() => Err(BatchError::State {
                path: self.path.clone(),
                reason: format!(
                    "it holds windows {stored}, not {}; run with --full to rebuild it",
                    windows.describe()
                ),
            }),
            _ => Ok(()),
        }
    }

    fn checkpoint(&self, source: &str) -> Result<Option<Cursor>, BatchError> {
        let text: Option<String> = self
            .conn
            .query_row(
                "SELECT position FROM pulse_batch_checkpoints WHERE source = ?1",
                [source],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.sql(e))?;
        text.map(|text| decode(source, &text)).transpose()
    }

    fn commit(&mut self, delta: &Merged, commit: Commit<'_>) -> Result<u64, BatchError> {
        self.write(delta, commit)
    }

    fn for_each_row(
        &self,
        f: &mut dyn FnMut(&Row<'_>) -> Result<(), BatchError>,
    ) -> Result<(), BatchError> {
        let mut stmt = self.conn.prepare(SELECT_ROWS).map_err(|e| self.sql(e))?;
        let mut rows = stmt.query([]).map_err(|e| self.sql(e))?;
        while let Some(r) = rows.next().map_err(|e| self.sql(e))? {
            let get_err = |e| super::error(&self.path, e);
            let user_id: String = r.get(0).map_err(get_err)?;
            let metric: String = r.get(1).map_err(get_err)?;
            let window: String = r.get(2).map_err(get_err)?;
            let metric = Metric::from_name(metric.as_bytes()).ok_or_else(|| BatchError::State {
                path: self.path.clone(),
                reason: format!("unknown metric {metric:?} in the aggregates table"),
            })?;
            let row = Row {
                user_id: &user_id,
                metric,
                window: &window,
                window_start: r.get(3).map_err(get_err)?,
                window_end: r.get(4).map_err(get_err)?,
                stats: Stats {
                    count: r.get::<_, i64>(5).map_err(get_err)? as u64,
                    sum: r.get(6).map_err(get_err)?,
                    avg: r.get(7).map_err(get_err)?,
                    min: r.get(8).map_err(get_err)?,
                    max: r.get(9).map_err(get_err)?,
                    stddev: r.get(10).map_err(get_err)?,
                    p50: r.get(11).map_err(get_err)?,
                    p95: r.get(12).map_err(get_err)?,
                    p99: r.get(13).map_err(get_err)?,
                },
            };
            f(&row)?;
        }
        Ok(())
    }
}
