//! Helpers shared by the integration tests.

use pulse_core::Event;
use pulse_sqlite::{FsyncPolicy, SqliteLog, SqliteOptions};

/// A log in a fresh temporary directory (fsync never: these tests do not cut power).
pub async fn temp_log() -> (SqliteLog, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let log = SqliteLog::open_with(dir.path(), fast())
        .await
        .unwrap();
    (log, dir)
}

/// Options for tests: no fsync.
pub fn fast() -> SqliteOptions {
    SqliteOptions::default().with_fsync(FsyncPolicy::Never)
}

/// An event of type `ty` with id `id`.
pub fn event(ty: &str, id: &str) -> Event {
    Event::new(ty).with_id(id)
}
