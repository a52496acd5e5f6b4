//! Read connections, used from blocking threads so that no query runs on the runtime.
//!
//! WAL mode lets readers see the last committed state while the writer writes. A
//! small pool keeps idle connections (and their prepared statements and page cache)
//! between calls; each call runs on tokio's blocking pool.

use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;
use pulse_core::{LogError, ReadQuery, StoredEvent};
use rusqlite::{Connection, OpenFlags};

use crate::codec::{decode, time_to_nanos, COLUMNS};
use crate::error::sqlite_error;

/// Idle connections kept for reuse.
const MAX_IDLE: usize = 4;
/// Page cache of one read connection, in KiB (SQLite's negative `cache_size`).
const READER_CACHE_KIB: i64 = 4096;

/// The read side of a log.
#[derive(Clone)]
pub(crate) struct Readers {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self {
            inner: Arc::new(Inner {
                path,
                idle: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Runs `f` with a read connection on a blocking thread.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T, LogError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, LogError> + Send + 'static,
    {
        let readers = self.clone();
        tokio::task::spawn_blocking(move || readers.run_blocking(f))
            .await
            .map_err(|e| LogError::Storage(format!("read task failed: {e}")))?
    }

    /// Runs `f` with a read connection on the current thread.
    pub(crate) fn run_blocking<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, LogError>,
    ) -> Result<T, LogError> {
        let conn = match self.inner.idle.lock().pop() {
            Some(conn) => conn,
            None => self.open()?,
        };
        let result = f(&conn);
        let mut idle = self.inner.idle.lock();
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
        result
    }

    fn open(&self) -> Result<Connection, LogError> {
        let conn = Connection::open_with_flags(
            &self.inner.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| sqlite_error("cannot open a read connection", e))?;
        conn.execute_batch(&format!(
            "PRAGMA cache_size = -{READER_CACHE_KIB}; PRAGMA query_only = ON;"
        ))
        .map_err(|e| sqlite_error("cannot configure a read connection", e))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| sqlite_error("cannot configure a read connection", e))?;
        Ok(conn)
    }
}

/// Reads one page for `query`, in offset order, stopping at `query.limit` matches.
///
/// The type filter runs in Rust on the `type` column before the rest of the row is
/// decoded; the time filter runs in SQLite (`+time` keeps the scan on the offset order
/// instead of the time index, so memory stays bounded however far the page reaches).
pub(crate) fn read_page(
    conn: &Connection,
    query: &ReadQuery,
) -> Result<Vec<StoredEvent>, LogError> {
    read_page_until(conn, query, i64::MAX)
}

fn read_page_until(
    conn: &Connection,
    query: &ReadQuery,
    until: i64,
) -> Result<Vec<StoredEvent>, LogError> {
    if query.limit == 0 {
        return Ok(Vec::new());
    }
    let after = i64::try_from(query.after).unwrap_or(i64::MAX);
    let since = match query.since {
        Some(since) => time_to_nanos(since).unwrap_or(if since.timestamp() < 0 {
            i64::MIN
        } else {
            i64::MAX
        }),
        None => i64::MIN,
    };
    let sql = if query.since.is_some() {
        format!(
            "SELECT {COLUMNS} FROM events WHERE seq > ?1 AND seq <= ?3 AND +time >= ?2 ORDER BY seq"
        )
    } else {
        format!(
            "SELECT {COLUMNS} FROM events WHERE seq > ?1 AND seq <= ?3 AND ?2 = ?2 ORDER BY seq"
        )
    };
    let mut stmt = conn
        .prepare_cached(&sql)
        .map_err(|e| sqlite_error("cannot prepare a read", e))?;
    let mut rows = stmt
        .query(rusqlite::params![after, since, until])
        .map_err(|e| sqlite_error("cannot read events", e))?;
    let mut page = Vec::with_capacity(query.limit.min(16_384));
    while let Some(row) = rows
        .next()
        .map_err(|e| sqlite_error("cannot read events", e))?
    {
        if let Some(pattern) = &query.pattern {
            let ty = row
                .get_ref(2)
                .and_then(|v| Ok(v.as_str()?))
                .map_err(|e| sqlite_error("cannot read an event type", e))?;
            if !pattern.matches(ty) {
                continue;
            }
        }
        page.push(decode(row).map_err(|e| sqlite_error("cannot decode a stored event", e))?);
        if page.len() >= query.limit {
            break;
        }
    }
    Ok(page)
}

/// Reads the events of `(after, until]` that pass the filters of `query` (its `after`
/// and `limit` are ignored): one slice of a replay.
pub(crate) fn read_range(
    conn: &Connection,
    query: &ReadQuery,
    after: u64,
    until: u64,
) -> Result<Vec<StoredEvent>, LogError> {
    let range = ReadQuery {
        after,
        limit: usize::try_from(until.saturating_sub(after)).unwrap_or(usize::MAX),
        pattern: query.pattern.clone(),
        since: query.since,
    };
    let until = i64::try_from(until).unwrap_or(i64::MAX);
    let mut page = read_page_until(conn, &range, until)?;
    page.shrink_to_fit();
    Ok(page)
}

/// The smallest offset of an event whose time is at or after `since` (uses the time index).
pub(crate) fn first_offset_since(
    conn: &Connection,
    since: chrono::DateTime<chrono::Utc>,
) -> Result<Option<u64>, LogError> {
    let Ok(nanos) = time_to_nanos(since) else {
        return Ok(None);
    };
    conn.query_row(
        "SELECT min(seq) FROM events WHERE time >= ?1",
        [nanos],
        |row| row.get::<_, Option<i64>>(0),
    )
    .map(|seq| seq.map(|s| s as u64))
    .map_err(|e| sqlite_error("cannot search the time index", e))
}
