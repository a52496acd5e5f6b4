//! [`LogStats`]: what `pulse log stats` shows about a log file.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use pulse_core::LogError;
use rusqlite::Connection;

use crate::codec::nanos_to_time;
use crate::dead_letter;
use crate::error::sqlite_error;
use crate::size;

/// Sizes, offsets and times of a log.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LogStats {
    /// The log file.
    pub path: PathBuf,
    /// Its schema version.
    pub schema_version: u32,
    /// Size of the database file in bytes.
    pub file_bytes: u64,
    /// Size of its write-ahead log in bytes.
    pub wal_bytes: u64,
    /// Events stored.
    pub events: u64,
    /// The oldest stored offset (0 when empty).
    pub first_offset: u64,
    /// The highest offset ever assigned (0 when nothing was appended).
    pub last_offset: u64,
    /// The `time` of the oldest stored event.
    pub first_time: Option<DateTime<Utc>>,
    /// The `time` of the newest stored event.
    pub last_time: Option<DateTime<Utc>>,
    /// Dead letters stored.
    pub dead_letters: u64,
    /// The stored sizes of the stored events added up, dead-lettered ones included: what
    /// [`Retention::max_bytes`](crate::Retention::max_bytes) limits. Smaller than
    /// `file_bytes`, which also holds SQLite's row headers, indexes and free pages.
    pub stored_bytes: u64,
}

impl LogStats {
    pub(crate) fn read(conn: &Connection, path: &Path, last_offset: u64) -> Result<Self, LogError> {
        let fail = |e| sqlite_error("cannot read log statistics", e);
        let schema_version: u32 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(fail)?;
        let events: i64 = conn
            .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
            .map_err(fail)?;
        let edge = |sql: &str| -> Result<Option<(u64, DateTime<Utc>)>, LogError> {
            match conn.query_row(sql, [], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))) {
                Ok((seq, time)) => Ok(Some((seq as u64, nanos_to_time(time)))),
                Err(rusqlite::Error::QueryReturnedNoRows) => Ok(None),
                Err(e) => Err(sqlite_error("cannot read log statistics", e)),
            }
        };
        let first = edge("SELECT seq, time FROM events ORDER BY seq LIMIT 1")?;
        let last = edge("SELECT seq, time FROM events ORDER BY seq DESC LIMIT 1")?;
        let size = |suffix: &str| {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            std::fs::metadata(PathBuf::from(p))
                .map(|m| m.len())
                .unwrap_or(0)
        };
        Ok(Self {
            path: path.to_owned(),
            schema_version,
            file_bytes: size(""),
            wal_bytes: size("-wal"),
            events: events as u64,
            first_offset: first.map_or(0, |f| f.0),
            last_offset,
            first_time: first.map(|f| f.1),
            last_time: last.map(|l| l.1),
            dead_letters: dead_letter::count(conn)?,
            stored_bytes: size::total(conn).map_err(fail)?,
        })
    }
}
