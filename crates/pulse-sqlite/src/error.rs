//! Turning SQLite failures into [`LogError`]s a user can act on.
//!
//! The variant says what the caller can do (retry on `Unavailable`, free space on
//! `StorageFull`, fix the disk on `Storage`); the message names the cause in plain words
//! first (disk full, read-only, corrupt) and keeps SQLite's own text after it.

use pulse_core::LogError;
use rusqlite::ErrorCode;

/// Maps a SQLite error met while doing `context`.
pub(crate) fn sqlite_error(context: &str, err: rusqlite::Error) -> LogError {
    let cause = match err.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => {
            return LogError::StorageFull(format!("{context}: the disk is full ({err})"))
        }
        Some(ErrorCode::ReadOnly) => "the log file or its directory is read-only",
        Some(ErrorCode::CannotOpen) => {
            "the log file cannot be opened or created (missing or read-only directory?)"
        }
        Some(ErrorCode::PermissionDenied) => "permission denied",
        Some(ErrorCode::DatabaseCorrupt) | Some(ErrorCode::NotADatabase) => {
            "the log file is corrupt"
        }
        Some(ErrorCode::SystemIoFailure) => "an I/O error occurred",
        Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => {
            return LogError::Unavailable(format!("{context}: the log is busy: {err}"))
        }
        _ => return LogError::Storage(format!("{context}: {err}")),
    };
    LogError::Storage(format!("{context}: {cause} ({err})"))
}

/// Maps an I/O error met while doing `context`.
pub(crate) fn io_error(context: &str, err: std::io::Error) -> LogError {
    let cause = match err.kind() {
        std::io::ErrorKind::PermissionDenied => "permission denied",
        std::io::ErrorKind::ReadOnlyFilesystem => "read-only file system",
        std::io::ErrorKind::StorageFull => {
            return LogError::StorageFull(format!("{context}: the disk is full ({err})"))
        }
        _ => return LogError::Storage(format!("{context}: {err}")),
    };
    LogError::Storage(format!("{context}: {cause} ({err})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_full_is_named() {
        let err = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            None,
        );
        let mapped = sqlite_error("cannot append", err);
        assert!(matches!(mapped, LogError::StorageFull(ref m) if m.contains("disk is full")));
        let io = std::io::Error::from_raw_os_error(28); // ENOSPC
        assert!(matches!(
            io_error("cannot sync", io),
            LogError::StorageFull(_)
        ));
    }

    #[test]
    fn busy_is_retryable() {
        let err = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        );
        assert!(matches!(sqlite_error("x", err), LogError::Unavailable(_)));
    }
}
