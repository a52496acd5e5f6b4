//! The [`EventLog`] implementation of [`NatsLog`]: each method hands over to the module
//! that owns its part (append, read, group, dead_letter).

use std::time::Duration;

use async_trait::async_trait;
use pulse_core::{
    Appended, DeadLetter, Delivery, Event, EventLog, GroupConfig, GroupInfo, LogError, NackOutcome,
    ReadQuery, StoredEvent,
};
use tokio::sync::watch;

use crate::error::{classify, ensure_connected};
use crate::{append, dead_letter, group, read, NatsLog};

#[async_trait]
impl EventLog for NatsLog {
    async fn append(&self, events: Vec<Event>) -> Result<Vec<Appended>, LogError> {
        append::append(&self.shared, events).await
    }

    async fn read(&self, query: ReadQuery) -> Result<Vec<StoredEvent>, LogError> {
        read::read(&self.shared, query).await
    }

    async fn last_offset(&self) -> Result<u64, LogError> {
        ensure_connected(&self.shared.client)?;
        let info = self
            .shared
            .stream
            .get_info()
            .await
            .map_err(|e| classify(&self.shared.client, "cannot read the stream state", e))?;
        Ok(info.state.last_sequence)
    }

    fn watch_appends(&self) -> watch::Receiver<u64> {
        self.shared.tail.subscribe()
    }

    async fn ensure_group(&self, name: &str, config: GroupConfig) -> Result<GroupInfo, LogError> {
        group::ensure_group(&self.shared, name, config).await
    }

    async fn fetch(&self, group: &str, max: usize) -> Result<Vec<Delivery>, LogError> {
        group::fetch(&self.shared, group, max, None).await
    }

    async fn ack(&self, group: &str, offsets: &[u64]) -> Result<(), LogError> {
        group::ack(&self.shared, group, offsets).await
    }

    async fn nack(
        &self,
        group: &str,
        offset: u64,
        delay: Duration,
        error: &str,
    ) -> Result<NackOutcome, LogError> {
        group::nack(&self.shared, group, offset, delay, error).await
    }

    async fn groups(&self) -> Result<Vec<GroupInfo>, LogError> {
        group::groups(&self.shared).await
    }

    async fn dead_letters(
        &self,
        group: Option<&str>,
        after_id: u64,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, LogError> {
        dead_letter::dead_letters(&self.shared, group, after_id, limit).await
    }

    async fn redrive(&self, id: u64) -> Result<(), LogError> {
        dead_letter::redrive(&self.shared, id).await
    }

    /// Acks are confirmed by the server one by one, so there is nothing to flush.
    async fn flush(&self) -> Result<(), LogError> {
        Ok(())
    }

    /// Waits on the server (pull requests with an expiry) rather than polling.
    async fn fetch_wait(
        &self,
        group: &str,
        max: usize,
        timeout: Duration,
    ) -> Result<Vec<Delivery>, LogError> {
        group::fetch(&self.shared, group, max, Some(timeout)).await
    }
}
