//! Whether the event log can take writes, for `/readyz`.
//!
//! Reads keep working on a full disk, so asking the log for its last offset says nothing
//! about writes. Instead every call to the log goes through `StorageWatch`, which notes a
//! [`LogError::StorageFull`] and forgets it at the next append that stores an event. While
//! it is noted, `/readyz` answers `507 storage_full` — unless a small probe file can be
//! written to the data directory again: then space is back, and readiness returns without
//! waiting for a client to publish (a load balancer that follows `/readyz` sends no
//! publishes to a not-ready instance, so waiting for one could take forever).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pulse_core::{
    Appended, DeadLetter, Delivery, Event, EventLog, GroupConfig, GroupInfo, LogError, NackOutcome,
    Pattern, ReadQuery, StoredEvent,
};
use tokio::sync::watch;

/// The name of the file `/readyz` writes (and removes) to see whether space is back.
const PROBE_FILE: &str = ".pulse-space-probe";
/// Bytes the probe writes: a few SQLite pages' worth.
const PROBE_BYTES: usize = 64 * 1024;

/// Whether writes currently fail for lack of space; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct StorageHealth {
    full: Arc<AtomicBool>,
    data_dir: Option<PathBuf>,
}

impl StorageHealth {
    /// Health of a log whose local files (if any) live in `data_dir`.
    pub fn new(data_dir: Option<PathBuf>) -> Self {
        Self {
            full: Arc::default(),
            data_dir,
        }
    }

    /// True while the last write failed for lack of space and none succeeded since.
    pub fn is_full(&self) -> bool {
        self.full.load(Ordering::Relaxed)
    }

    /// Whether writes can be expected to succeed: true unless the storage is full and the
    /// data directory still refuses a small write. A successful probe clears the mark.
    pub async fn writable(&self) -> bool {
        if !self.is_full() {
            return true;
        }
        let Some(dir) = self.data_dir.clone() else {
            // No local directory to probe (a shared backend): wait for a write to succeed.
            return false;
        };
        let probe = tokio::task::spawn_blocking(move || probe_space(&dir.join(PROBE_FILE)));
        let ok = matches!(
            tokio::time::timeout(Duration::from_secs(2), probe).await,
            Ok(Ok(Ok(())))
        );
        if ok {
            self.full.store(false, Ordering::Relaxed);
        }
        ok
    }

    fn observe<T>(&self, result: &Result<T, LogError>) {
        if let Err(LogError::StorageFull(_)) = result {
            if !self.full.swap(true, Ordering::Relaxed) {
                tracing::warn!("event log storage is full: writes fail until space is freed");
            }
        }
    }
}

fn probe_space(path: &std::path::Path) -> std::io::Result<()> {
    use std::io::Write;
    let result = (|| {
        let mut file = std::fs::File::create(path)?;
        file.write_all(&[0u8; PROBE_BYTES])?;
        file.sync_all()
    })();
    let _ = std::fs::remove_file(path);
    result
}

/// An [`EventLog`] that forwards every call and keeps [`StorageHealth`] up to date.
///
/// It forwards the trait's provided methods too (`set_group_pattern`, `fetch_wait`): left to
/// their defaults they would answer for the wrapper, not for the backend (a missing
/// `set_group_pattern` made `PUT /v1/groups/{group}` answer 501 on every backend; the server
/// test `groups::an_administrator_changes_a_groups_pattern` goes through this wrapper).
pub(crate) struct StorageWatch {
    inner: Arc<dyn EventLog>,
    health: StorageHealth,
}

impl StorageWatch {
    pub(crate) fn new(inner: Arc<dyn EventLog>, health: StorageHealth) -> Self {
        Self { inner, health }
    }

    fn seen<T>(&self, result: Result<T, LogError>) -> Result<T, LogError> {
        self.health.observe(&result);
        result
    }
}

#[async_trait]
impl EventLog for StorageWatch {
    async fn append(&self, events: Vec<Event>) -> Result<Vec<Appended>, LogError> {
        let result = self.inner.append(events).await;
        if let Ok(appended) = &result {
            // Only a stored event proves that pages could be written again.
            if appended.iter().any(|a| !a.duplicate) {
                self.health.full.store(false, Ordering::Relaxed);
            }
        }
        self.seen(result)
    }

    async fn read(&self, query: ReadQuery) -> Result<Vec<StoredEvent>, LogError> {
        self.inner.read(query).await
    }

    async fn last_offset(&self) -> Result<u64, LogError> {
        self.inner.last_offset().await
    }

    fn watch_appends(&self) -> watch::Receiver<u64> {
        self.inner.watch_appends()
    }

    async fn ensure_group(&self, name: &str, config: GroupConfig) -> Result<GroupInfo, LogError> {
        self.seen(self.inner.ensure_group(name, config).await)
    }

    async fn set_group_pattern(&self, name: &str, pattern: Pattern) -> Result<GroupInfo, LogError> {
        self.seen(self.inner.set_group_pattern(name, pattern).await)
    }

    async fn fetch(&self, group: &str, max: usize) -> Result<Vec<Delivery>, LogError> {
        self.seen(self.inner.fetch(group, max).await)
    }

    async fn ack(&self, group: &str, offsets: &[u64]) -> Result<(), LogError> {
        self.seen(self.inner.ack(group, offsets).await)
    }

    async fn nack(
        &self,
        group: &str,
        offset: u64,
        delay: Duration,
        error: &str,
    ) -> Result<NackOutcome, LogError> {
        self.seen(self.inner.nack(group, offset, delay, error).await)
    }

    async fn groups(&self) -> Result<Vec<GroupInfo>, LogError> {
        self.inner.groups().await
    }

    async fn dead_letters(
        &self,
        group: Option<&str>,
        after_id: u64,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, LogError> {
        self.inner.dead_letters(group, after_id, limit).await
    }

    async fn redrive(&self, id: u64) -> Result<(), LogError> {
        self.seen(self.inner.redrive(id).await)
    }

    async fn flush(&self) -> Result<(), LogError> {
        self.seen(self.inner.flush().await)
    }

    async fn fetch_wait(
        &self,
        group: &str,
        max: usize,
        timeout: Duration,
    ) -> Result<Vec<Delivery>, LogError> {
        // Forwarded so that a backend's own waiting (not the trait's polling) is kept.
        self.seen(self.inner.fetch_wait(group, max, timeout).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_mark_is_cleared_by_a_probe_that_can_write() {
        let dir = tempfile::tempdir().unwrap();
        let health = StorageHealth::new(Some(dir.path().to_owned()));
        assert!(health.writable().await);
        health.observe::<()>(&Err(LogError::StorageFull("x".into())));
        assert!(health.is_full());
        // The directory has room: the probe writes, and the mark goes.
        assert!(health.writable().await);
        assert!(!health.is_full());
        assert!(!dir.path().join(PROBE_FILE).exists(), "the probe cleans up");
    }

    #[tokio::test]
    async fn without_a_directory_only_a_stored_append_clears_the_mark() {
        let health = StorageHealth::new(None);
        let log = StorageWatch::new(
            Arc::new(pulse_core::memory::MemoryLog::new()),
            health.clone(),
        );
        health.observe::<()>(&Err(LogError::StorageFull("x".into())));
        assert!(!health.writable().await);
        log.append(vec![Event::new("a.b")]).await.unwrap();
        assert!(health.writable().await);
    }
}
