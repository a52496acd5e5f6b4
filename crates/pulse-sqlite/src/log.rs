//! [`SqliteLog`]: opening a log file and serving the [`EventLog`] calls.
//!
//! The handle is cheap to clone and talks to one writer thread (appends, group
//! positions, dead letters) and a pool of read connections on tokio's blocking pool:
//! no SQLite call ever runs on a runtime worker. An advisory lock on `<file>.lock`
//! keeps a second process from writing the same log.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use futures::{Stream, StreamExt};
use parking_lot::Mutex;
use pulse_core::{
    Appended, DeadLetter, Delivery, Event, EventLog, GroupConfig, GroupInfo, LogError, NackOutcome,
    Pattern, ReadQuery, StoredEvent,
};
use rusqlite::{Connection, OpenFlags};
use tokio::sync::{mpsc, oneshot, watch};

use crate::checkpoint;
use crate::error::{io_error, sqlite_error};
use crate::group;
use crate::metrics as m;
use crate::options::{FsyncPolicy, SqliteOptions};
use crate::reader::{self, Readers};
use crate::schema::{self, FileKind, SCHEMA_VERSION};
use crate::shared::Shared;
use crate::size;
use crate::writer::{self, Command, DirtyOffsets, Writer};
use crate::{dead_letter, stats::LogStats};

/// The file name of a log inside a data directory.
pub const DEFAULT_FILE_NAME: &str = "pulse.db";

/// Page cache of the write connection, in KiB: the right edges of the table and its
/// two indexes stay in memory instead of being read back from the WAL.
const WRITER_CACHE_KIB: i64 = 16 * 1024;

/// Commands waiting for the writer, at most; a full queue makes callers wait.
const QUEUE_CAPACITY: usize = 4096;

/// The embedded, durable [`EventLog`] on SQLite.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use pulse_core::{Event, EventLog, ReadQuery};
/// use pulse_sqlite::SqliteLog;
///
/// let dir = tempfile::tempdir().unwrap();
/// let log = SqliteLog::open(dir.path()).await.unwrap();
/// let appended = log.append(vec![Event::new("health.reading.heart_rate")]).await.unwrap();
/// assert_eq!(appended[0].offset, 1);
/// let read = log.read(ReadQuery::after(0, 100)).await.unwrap();
/// assert_eq!(read[0].event.ty, "health.reading.heart_rate");
/// log.close().await.unwrap();
/// # });
/// ```
#[derive(Clone)]
pub struct SqliteLog {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SqliteLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteLog")
            .field("path", &self.shared.path)
            .field("read_only", &self.shared.writer.is_none())
            .finish()
    }
}

impl SqliteLog {
    /// Opens (or creates) the log at `path` with the default options: fsync always,
    /// no retention. See [`open_with`](Self::open_with) for how `path` is read.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, LogError> {
        Self::open_with(path, SqliteOptions::default()).await
    }

    /// Opens (or creates) the log at `path`: a directory (created if needed) holds
    /// [`DEFAULT_FILE_NAME`]; a path ending in `.db`, `.sqlite` or `.sqlite3`, or an
    /// existing file, is the log file itself.
    ///
    /// An existing file is checked read-only first and left untouched when it is not a
    /// Pulse log, is corrupt, or comes from a newer Pulse ([`LogError::Incompatible`]).
    /// An older schema is migrated.
    pub async fn open_with(
        path: impl AsRef<Path>,
        options: SqliteOptions,
    ) -> Result<Self, LogError> {
        let path = path.as_ref().to_owned();
        tokio::task::spawn_blocking(move || Self::open_blocking(&path, options))
            .await
            .map_err(|e| LogError::Storage(format!("open task failed: {e}")))?
    }

    /// Like [`open_with`](Self::open_with), on the current thread (outside a runtime's
    /// workers). Reads need a tokio runtime when they run.
    pub fn open_blocking(path: &Path, options: SqliteOptions) -> Result<Self, LogError> {
        let file = resolve_path(path, !options.read_only)?;
        let kind = schema::inspect(&file)?;
        if options.read_only {
            return Self::open_read_only(file, kind);
        }
        let lock = lock_file(&file)?;
        let mut conn = Connection::open_with_flags(
            &file,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| sqlite_error(&format!("cannot open {}", file.display()), e))?;
        configure_writer(&conn, options.fsync)?;
        conn.execute_batch(&format!("PRAGMA cache_size = -{WRITER_CACHE_KIB};"))
            .map_err(|e| sqlite_error("cannot configure the log", e))?;
        schema::migrate(&mut conn)?;
        // Checkpoints run on their own thread (see `checkpoint`), not inside commits.
        conn.execute_batch("PRAGMA wal_autocheckpoint = 0;")
            .map_err(|e| sqlite_error("cannot configure the log", e))?;
        let last = last_seq(&conn)?;
        let stored_bytes =
            size::total(&conn).map_err(|e| sqlite_error("cannot read the stored bytes", e))?;
        metrics::gauge!(m::STORED_BYTES).set(stored_bytes as f64);
        let groups = group::restore(&conn)?;
        let (last_tx, last_rx) = watch::channel(last);
        let dirty = DirtyOffsets::default();
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let mut wal = file.clone().into_os_string();
        wal.push("-wal");
        let wal_path = PathBuf::from(wal);
        let writer = Writer::new(
            conn,
            options.clone(),
            wal_path.clone(),
            last_tx,
            dirty.clone(),
            lock,
        );
        let writer_thread = std::thread::Builder::new()
            .name("pulse-sqlite-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| io_error("cannot start the writer thread", e))?;
        let tick = [
            options.offset_commit_interval,
            options.prune_interval,
            match options.fsync {
                FsyncPolicy::Interval(d) => d,
                _ => Duration::from_secs(1),
            },
        ]
        .into_iter()
        .min()
        .unwrap_or(Duration::from_secs(1))
        .clamp(Duration::from_millis(5), Duration::from_secs(1));
        let alive = Arc::new(());
        checkpoint::spawn(file.clone(), wal_path.clone(), options.fsync, &alive)
            .map_err(|e| io_error("cannot start the checkpoint thread", e))?;
        writer::spawn_ticker(&tx, tick).map_err(|e| io_error("cannot start the tick thread", e))?;
        tracing::info!(path = %file.display(), last_offset = last, "event log opened");
        Ok(Self {
            shared: Arc::new(Shared {
                readers: Readers::new(file.clone()),
                path: file,
                writer: Some(tx),
                last_seq: last_rx,
                dirty,
                groups: Mutex::new(groups),
                writer_thread: Some(writer_thread),
                _alive: Some(alive),
            }),
        })
    }

    fn open_read_only(file: PathBuf, kind: FileKind) -> Result<Self, LogError> {
        match kind {
            FileKind::New => {
                return Err(LogError::Storage(format!(
                    "no event log at {}",
                    file.display()
                )))
            }
            FileKind::Pulse(v) if v < SCHEMA_VERSION => {
                return Err(LogError::Incompatible(format!(
                    "{} has schema version {v}; open it once for writing to migrate it to {SCHEMA_VERSION}",
                    file.display()
                )))
            }
            FileKind::Pulse(_) => {}
        }
        let readers = Readers::new(file.clone());
        let (last, groups) =
            readers.run_blocking(|conn| Ok((last_seq(conn)?, group::restore(conn)?)))?;
        let (_tx, last_rx) = watch::channel(last);
        Ok(Self {
            shared: Arc::new(Shared {
                readers,
                path: file,
                writer: None,
                last_seq: last_rx,
                dirty: DirtyOffsets::default(),
                groups: Mutex::new(groups),
                writer_thread: None,
                _alive: None,
            }),
        })
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Writes pending group positions, stops the writer and waits for it; later calls
    /// through any clone fail with [`LogError::Closed`].
    pub async fn close(&self) -> Result<(), LogError> {
        let Some(writer) = &self.shared.writer else {
            return Ok(());
        };
        let (reply, done) = oneshot::channel();
        if writer.send(Command::Shutdown { reply }).await.is_err() {
            return Ok(());
        }
        let _ = done.await;
        Ok(())
    }

    /// The smallest offset of an event whose `time` is at or after `since` (through
    /// the time index), to start a replay by time without scanning older events.
    pub async fn first_offset_since(
        &self,
        since: chrono::DateTime<Utc>,
    ) -> Result<Option<u64>, LogError> {
        self.shared
            .readers
            .run(move |conn| reader::first_offset_since(conn, since))
            .await
    }

    /// Streams the events after `query.after` and up to `until` (default: the last
    /// offset when called) that pass the query's filters, in offset order, in slices.
    /// `query.limit` is the span of offsets one slice covers; two slices are read at
    /// once on separate connections, so memory stays at a few slices however long the
    /// log, and replay uses both cores.
    pub async fn replay(
        &self,
        query: ReadQuery,
        until: Option<u64>,
    ) -> Result<impl Stream<Item = Result<Vec<StoredEvent>, LogError>> + Send + 'static, LogError>
    {
        let last = self.last_offset().await?;
        let end = until.map_or(last, |u| u.min(last));
        let span = (query.limit.max(1)) as u64;
        let starts = (query.after..end).step_by(usize::try_from(span).unwrap_or(usize::MAX));
        let readers = self.shared.readers.clone();
        let query = Arc::new(query);
        Ok(futures::stream::iter(starts)
            .map(move |start| {
                let (readers, query) = (readers.clone(), query.clone());
                let stop = start.saturating_add(span).min(end);
                async move {
                    readers
                        .run(move |conn| reader::read_range(conn, &query, start, stop))
                        .await
                }
            })
            .buffered(2))
    }

    /// Sizes, offsets and times of the log, for operators.
    pub async fn stats(&self) -> Result<LogStats, LogError> {
        let path = self.shared.path.clone();
        let last = self.last_offset().await?;
        self.shared
            .readers
            .run(move |conn| LogStats::read(conn, &path, last))
            .await
    }
}

#[async_trait]
impl EventLog for SqliteLog {
    async fn append(&self, events: Vec<Event>) -> Result<Vec<Appended>, LogError> {
        self.shared.append(events).await
    }

    async fn read(&self, query: ReadQuery) -> Result<Vec<StoredEvent>, LogError> {
        self.shared
            .readers
            .run(move |conn| reader::read_page(conn, &query))
            .await
    }

    async fn last_offset(&self) -> Result<u64, LogError> {
        if self.shared.writer.is_none() {
            // Another process may be writing: ask the file.
            return self.shared.readers.run(last_seq).await;
        }
        Ok(*self.shared.last_seq.borrow())
    }

    fn watch_appends(&self) -> watch::Receiver<u64> {
        self.shared.last_seq.clone()
    }

    async fn ensure_group(&self, name: &str, config: GroupConfig) -> Result<GroupInfo, LogError> {
        self.shared.ensure_group(name, config).await
    }

    async fn set_group_pattern(&self, name: &str, pattern: Pattern) -> Result<GroupInfo, LogError> {
        self.shared.set_group_pattern(name, pattern).await
    }

    async fn fetch(&self, group: &str, max: usize) -> Result<Vec<Delivery>, LogError> {
        self.shared.fetch(group, max).await
    }

    async fn ack(&self, group: &str, offsets: &[u64]) -> Result<(), LogError> {
        self.shared.ack(group, offsets).await
    }

    async fn nack(
        &self,
        group: &str,
        offset: u64,
        delay: Duration,
        error: &str,
    ) -> Result<NackOutcome, LogError> {
        self.shared.nack(group, offset, delay, error).await
    }

    async fn groups(&self) -> Result<Vec<GroupInfo>, LogError> {
        Ok(self.shared.group_infos())
    }

    async fn dead_letters(
        &self,
        group: Option<&str>,
        after_id: u64,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, LogError> {
        let group = group.map(str::to_owned);
        self.shared
            .readers
            .run(move |conn| dead_letter::list(conn, group.as_deref(), after_id, limit))
            .await
    }

    async fn redrive(&self, id: u64) -> Result<(), LogError> {
        self.shared.redrive(id).await
    }

    async fn flush(&self) -> Result<(), LogError> {
        self.shared.flush().await
    }
}

/// Where the log file of `path` is; creates the directory when `create` is set.
fn resolve_path(path: &Path, create: bool) -> Result<PathBuf, LogError> {
    let is_file_name = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e, "db" | "sqlite" | "sqlite3"));
    let (dir, file) = if path.is_dir() || (!path.exists() && !is_file_name) {
        (path.to_owned(), path.join(DEFAULT_FILE_NAME))
    } else {
        let dir = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
            _ => PathBuf::from("."),
        };
        (dir, path.to_owned())
    };
    if create {
        std::fs::create_dir_all(&dir).map_err(|e| {
            io_error(
                &format!("cannot create the data directory {}", dir.display()),
                e,
            )
        })?;
    }
    Ok(file)
}

/// Takes the advisory lock that makes this process the log's only writer.
fn lock_file(file: &Path) -> Result<std::fs::File, LogError> {
    let mut lock_path = file.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| {
            io_error(
                &format!("cannot create the lock file {}", lock_path.display()),
                e,
            )
        })?;
    match rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(lock),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(LogError::Unavailable(format!(
            "{} is in use by another Pulse process",
            file.display()
        ))),
        Err(err) => Err(io_error(
            &format!("cannot lock {}", lock_path.display()),
            err.into(),
        )),
    }
}

fn configure_writer(conn: &Connection, fsync: FsyncPolicy) -> Result<(), LogError> {
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(|e| sqlite_error("cannot switch the log to WAL mode", e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(LogError::Storage(format!(
            "the log cannot use WAL mode (journal mode is {mode})"
        )));
    }
    let synchronous = match fsync {
        FsyncPolicy::Always => "FULL",
        FsyncPolicy::Interval(_) => "NORMAL",
        FsyncPolicy::Never => "OFF",
    };
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {synchronous}; PRAGMA foreign_keys = OFF; PRAGMA temp_store = MEMORY;"
    ))
    .map_err(|e| sqlite_error("cannot configure the log", e))?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(|e| sqlite_error("cannot configure the log", e))
}

/// The highest offset ever stored: the recorded high-water mark or the newest row.
fn last_seq(conn: &Connection) -> Result<u64, LogError> {
    conn.query_row(
        "SELECT max(coalesce((SELECT value FROM log_meta WHERE key = 'last_seq'), 0), \
                    coalesce((SELECT max(seq) FROM events), 0))",
        [],
        |row| row.get::<_, i64>(0),
    )
    .map(|v| v as u64)
    .map_err(|e| sqlite_error("cannot read the last offset", e))
}
