//! Recognising a Pulse log file and migrating it to the current schema.
//!
//! A Pulse log carries `PRAGMA application_id = PULSE_APPLICATION_ID` and its schema
//! version in `PRAGMA user_version`. Before anything writes to an existing file it is
//! inspected through a read-only connection: a file that is not SQLite, a SQLite file of
//! another application, or a log from a newer Pulse is refused with
//! [`LogError::Incompatible`] and left byte for byte as it was. Migrations are the
//! numbered `.sql` files beside this module, applied in one transaction each.

use std::path::Path;

use pulse_core::LogError;
use rusqlite::{Connection, OpenFlags};

use crate::error::sqlite_error;

/// `PRAGMA application_id` of every Pulse log: "PLSE" in ASCII.
pub const PULSE_APPLICATION_ID: i32 = 0x504C_5345;

/// The migrations, in order; migration `i` (0-based) brings the schema to version `i + 1`.
pub(crate) const MIGRATIONS: [&str; 4] = [
    include_str!("../migrations/0001_events.sql"),
    include_str!("../migrations/0002_time_index_dead_letters.sql"),
    include_str!("../migrations/0003_event_sizes.sql"),
    include_str!("../migrations/0004_delivery_attempts.sql"),
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// What an existing file turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    /// No file, or an empty one: a new log is created.
    New,
    /// A Pulse log at this schema version.
    Pulse(u32),
}

/// Inspects `path` without modifying it.
pub(crate) fn inspect(path: &Path) -> Result<FileKind, LogError> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => {
            return Err(LogError::Storage(format!(
                "{} is a directory, not a log file",
                path.display()
            )))
        }
        Ok(meta) if meta.len() == 0 => return Ok(FileKind::New),
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(FileKind::New),
        Err(err) => {
            return Err(LogError::Storage(format!(
                "cannot read {}: {err}",
                path.display()
            )))
        }
    }
    let incompatible = |what: String| LogError::Incompatible(format!("{}: {what}", path.display()));
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| sqlite_error("cannot open the log read-only", e))?;
    // The first statement reads the header and the schema page: garbage fails here.
    let header = conn.query_row(
        "SELECT (SELECT application_id FROM pragma_application_id()), \
                (SELECT user_version FROM pragma_user_version()), \
                (SELECT count(*) FROM sqlite_schema)",
        [],
        |row| {
            Ok((
                row.get::<_, i32>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, i64>(2)?,
            ))
        },
    );
    let (app_id, version, objects) = match header {
        Ok(header) => header,
        Err(err) => {
            return Err(match err.sqlite_error_code() {
                Some(rusqlite::ErrorCode::NotADatabase) => {
                    incompatible("not a SQLite database (so not a Pulse log)".into())
                }
                Some(rusqlite::ErrorCode::DatabaseCorrupt) => {
                    incompatible(format!("the database is corrupt: {err}"))
                }
                _ => sqlite_error("cannot read the log header", err),
            })
        }
    };
    if app_id != PULSE_APPLICATION_ID {
        if app_id == 0 && version == 0 && objects == 0 {
            // An empty SQLite database (for example created by `sqlite3 file ""`).
            return Ok(FileKind::New);
        }
        return Err(incompatible(format!(
            "not a Pulse log (application_id {app_id:#x}, a Pulse log has {PULSE_APPLICATION_ID:#x})"
        )));
    }
    let version = u32::try_from(version)
        .map_err(|_| incompatible(format!("invalid schema version {version}")))?;
    if version > SCHEMA_VERSION {
        return Err(incompatible(format!(
            "written by a newer Pulse (schema version {version}, this build knows up to {SCHEMA_VERSION}); \
             upgrade Pulse to open it"
        )));
    }
    // Catch a damaged schema before writing: every Pulse table must be readable.
    conn.query_row(
        "SELECT count(*) FROM sqlite_schema WHERE type = 'table'",
        [],
        |_| Ok(()),
    )
    .map_err(|e| incompatible(format!("the database schema cannot be read: {e}")))?;
    Ok(FileKind::Pulse(version))
}

/// Applies every migration above the file's version, each in its own transaction.
pub(crate) fn migrate(conn: &mut Connection) -> Result<u32, LogError> {
    let current: u32 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(|e| sqlite_error("cannot read the schema version", e))?;
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = index as u32 + 1;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| sqlite_error("cannot start a migration", e))?;
        tx.execute_batch(sql).map_err(|e| {
            sqlite_error(&format!("migration to schema version {version} failed"), e)
        })?;
        tx.execute_batch(&format!(
            "PRAGMA application_id = {PULSE_APPLICATION_ID}; PRAGMA user_version = {version};"
        ))
        .map_err(|e| sqlite_error("cannot record the schema version", e))?;
        tx.commit().map_err(|e| {
            sqlite_error(&format!("migration to schema version {version} failed"), e)
        })?;
        tracing::info!(version, "event log schema migrated");
    }
    Ok(SCHEMA_VERSION.max(current))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_build_the_current_schema_from_nothing() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), SCHEMA_VERSION);
        let app: i32 = conn
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .unwrap();
        assert_eq!(app, PULSE_APPLICATION_ID);
        // Running again is a no-op.
        assert_eq!(migrate(&mut conn).unwrap(), SCHEMA_VERSION);
    }

    #[test]
    fn a_missing_or_empty_file_is_new() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.db");
        assert_eq!(inspect(&path).unwrap(), FileKind::New);
        std::fs::write(&path, b"").unwrap();
        assert_eq!(inspect(&path).unwrap(), FileKind::New);
    }
}
