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
