//! Helpers shared by the integration tests.

use std::time::Duration;

use pulse_core::{EventLog, ReadQuery, StoredEvent};
use pulse_sqlite::{FsyncPolicy, SqliteOptions};

/// Options for tests that do not cut power: no fsync.
pub(crate) fn fast() -> SqliteOptions {
    SqliteOptions::default().with_fsync(FsyncPolicy::Never)
}

/// Every stored event, read page by page.
pub(crate) async fn read_all(log: &impl EventLog, mut query: ReadQuery) -> Vec<StoredEvent> {
    let mut all = Vec::new();
    loop {
        let page = log.read(query.clone()).await.unwrap();
        let Some(last) = page.last() else {
            return all;
        };
        query.after = last.offset;
        all.extend(page);
    }
}

/// Polls `check` until it holds (background work such as retention), failing after a
/// generous bound; never asserts on how long it took.
pub(crate) async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..1000 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what} did not happen");
}

/// Schema version 1 as Pulse 0.1 wrote it, kept here verbatim on purpose.
pub(crate) const V1_SCHEMA: &str = "
CREATE TABLE events (
    seq INTEGER PRIMARY KEY, id TEXT NOT NULL, type TEXT NOT NULL, source TEXT NOT NULL,
    subject TEXT, time INTEGER NOT NULL, datacontenttype TEXT, dataschema TEXT,
    extensions TEXT, data BLOB);
CREATE UNIQUE INDEX events_id ON events (id);
CREATE TABLE log_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE consumer_groups (name TEXT PRIMARY KEY, pattern TEXT NOT NULL,
    committed INTEGER NOT NULL) WITHOUT ROWID;
";

/// What schema version 2 added to version 1, kept here verbatim on purpose (not read
/// from the migration files, so that a later edit of them cannot hide a broken upgrade).
pub(crate) const V2_CHANGES: &str = "
CREATE INDEX events_time ON events (time);
ALTER TABLE consumer_groups ADD COLUMN start TEXT NOT NULL DEFAULT 'earliest';
ALTER TABLE consumer_groups ADD COLUMN max_deliver INTEGER NOT NULL DEFAULT 5;
ALTER TABLE consumer_groups ADD COLUMN ack_wait_ms INTEGER NOT NULL DEFAULT 30000;
CREATE TABLE dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT, grp TEXT NOT NULL, event_seq INTEGER NOT NULL,
    error TEXT NOT NULL, attempts INTEGER NOT NULL, first_failure INTEGER NOT NULL,
    last_failure INTEGER NOT NULL, redriven INTEGER NOT NULL DEFAULT 0);
CREATE INDEX dead_letters_grp ON dead_letters (grp, id);
CREATE INDEX dead_letters_event ON dead_letters (event_seq);
";
