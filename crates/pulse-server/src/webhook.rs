//! Webhook subscriptions: each one is a consumer group plus a delivery worker that POSTs
//! every event (structured mode) to a URL. A 2xx answer acks; anything else, a timeout
//! or a refused connection nacks with the subscription's backoff, and the group
//! dead-letters the event after `max_deliver` attempts. `max_deliver` and `backoff_ms` are
//! the spelling of a [`RetryPolicy`] with listed delays: the same retry model as the
//! bus's subscriptions.
//!
//! Subscriptions created over the API are kept in `webhooks.json` in the data directory
//! (written to a temporary file and renamed, so a crash leaves the old or the new list);
//! those declared in the configuration are started at boot and cannot be deleted.
//!
//! A subscription's pattern is its group's: creating one on an existing group with another
//! pattern is a 409 `conflict`, like any join. Two operator actions change it: the
//! configuration file (a declared subscription whose pattern changed re-points its group
//! at boot) and `PUT /v1/groups/{name}` (which updates the API subscription using the
//! group, and refuses a group declared in the file).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use parking_lot::Mutex;
use pulse_core::{Delivery, EventLog, GroupConfig, LogError, NackOutcome, Pattern, RetryPolicy};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::codec::STRUCTURED;
use crate::error::ApiError;
use crate::metrics::{DeliveryMetrics, Transport, WEBHOOK_DELIVERIES, WEBHOOK_FAILURES};

/// Consumer group defaults for groups the server creates (WebSocket, SSE, webhooks).
#[derive(Clone, Debug)]
pub struct GroupDefaults {
    /// How long a delivery may stay unacknowledged before it is redelivered.
    pub ack_wait: Duration,
    /// Deliveries before an event is dead-lettered.
    pub max_deliver: u32,
}

impl Default for GroupDefaults {
    fn default() -> Self {
        Self {
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
        }
    }
}

const FILE: &str = "webhooks.json";
const DEFAULT_BACKOFF_MS: [u64; 3] = [1_000, 5_000, 30_000];
const BATCH: usize = 64;
const CONCURRENCY: usize = 16;
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
const IDLE_CHECK: Duration = Duration::from_millis(100);

/// One webhook subscription.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WebhookSpec {
    /// Its id (the name, for subscriptions from the configuration).
    pub id: String,
    /// The event types it receives.
    pub pattern: Pattern,
    /// The consumer group that tracks its deliveries.
    pub group: String,
    /// Where events are POSTed.
    pub url: String,
    /// Deliveries before an event is dead-lettered.
    pub max_deliver: u32,
    /// Delay before each redelivery; the last value repeats.
    pub backoff_ms: Vec<u64>,
    /// Whether it comes from the configuration file (and so cannot be deleted).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub from_config: bool,
}

impl WebhookSpec {
    /// Checks the fields; an error names the field and says why.
    pub fn new(
        id: String,
        pattern: Pattern,
        group: String,
        url: String,
        max_deliver: u32,
        backoff_ms: Option<Vec<u64>>,
    ) -> Result<Self, (&'static str, String)> {
        pulse_core::log::validate_group_name(&group).map_err(|e| ("group", e.to_string()))?;
        let parsed =
            reqwest::Url::parse(&url).map_err(|e| ("url", format!("{url:?} is not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
            return Err((
                "url",
                "must be an http:// or https:// URL with a host".into(),
            ));
        }
        if max_deliver == 0 {
            return Err(("max_deliver", "must be at least 1".into()));
        }
        let backoff_ms = backoff_ms.unwrap_or_else(|| DEFAULT_BACKOFF_MS.to_vec());
        if backoff_ms.is_empty()
            || backoff_ms.len() > 32
            || backoff_ms.iter().any(|&b| b > 86_400_000)
        {
            return Err(("backoff_ms", "give 1 to 32 delays of at most a day".into()));
        }
        Ok(Self {
            id,
            pattern,
            group,
            url,
            max_deliver,
            backoff_ms,
            from_config: false,
        })
    }

    /// How failed deliveries are retried: `max_deliver` attempts, `backoff_ms` between them.
    pub fn retry(&self) -> RetryPolicy {
        let delays = self.backoff_ms.iter().map(|&ms| Duration::from_millis(ms));
        RetryPolicy::with_delays(self.max_deliver, delays.collect())
    }

    /// The delay before redelivering after failed attempt `attempt` (from 1).
    pub fn backoff(&self, attempt: u32) -> Duration {
        self.retry().backoff(attempt)
    }
}

struct Running {
    spec: WebhookSpec,
    stop: CancellationToken,
}

/// The subscriptions and their workers; cheap to clone.
#[derive(Clone)]
pub struct Webhooks {
    inner: Arc<Inner>,
}

struct Inner {
    log: Arc<dyn EventLog>,
    defaults: GroupDefaults,
    path: Option<PathBuf>,
    client: reqwest::Client,
    running: Mutex<BTreeMap<String, Running>>,
    // Serializes create/delete so the file matches the map.
    change: tokio::sync::Mutex<()>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

impl Webhooks {
    /// Loads stored subscriptions (from `data_dir`), adds those from the configuration
    /// and starts a worker for each.
    pub async fn start(
        log: Arc<dyn EventLog>,
        defaults: GroupDefaults,
        data_dir: Option<PathBuf>,
        configured: Vec<WebhookSpec>,
        shutdown: CancellationToken,
    ) -> Result<Self, WebhookError> {
        let client = reqwest::Client::builder()
            .timeout(DELIVERY_TIMEOUT)
            .user_agent(concat!("pulse/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| WebhookError::Client(e.to_string()))?;
        let path = data_dir.map(|d| d.join(FILE));
        let mut specs: Vec<WebhookSpec> = match &path {
            Some(p) if p.exists() => {
                let text =
                    std::fs::read_to_string(p).map_err(|e| WebhookError::Store(e.to_string()))?;
                serde_json::from_str(&text)
                    .map_err(|e| WebhookError::Store(format!("{}: {e}", p.display())))?
            }
            _ => Vec::new(),
        };
        specs.retain(|s| !s.from_config);
        for mut spec in configured {
            spec.from_config = true;
            specs.retain(|s| s.id != spec.id && s.group != spec.group);
            specs.push(spec);
        }
        let this = Self {
            inner: Arc::new(Inner {
                log,
                defaults,
                path,
                client,
                running: Mutex::new(BTreeMap::new()),
                change: tokio::sync::Mutex::new(()),
                tasks: TaskTracker::new(),
                shutdown,
            }),
        };
        for spec in specs {
            this.launch(spec)
                .await
                .map_err(|e| WebhookError::Store(e.to_string()))?;
        }
        Ok(this)
    }

    /// Every subscription.
    pub fn list(&self) -> Vec<WebhookSpec> {
        self.inner
            .running
            .lock()
            .values()
            .map(|r| r.spec.clone())
            .collect()
    }

    /// Adds a subscription and starts delivering.
    pub async fn create(&self, spec: WebhookSpec) -> Result<WebhookSpec, ApiError> {
        let _guard = self.inner.change.lock().await;
        if let Some(other) = self
            .inner
            .running
            .lock()
            .values()
            .find(|r| r.spec.group == spec.group)
        {
            return Err(ApiError::GroupInUse {
                group: spec.group.clone(),
                id: other.spec.id.clone(),
            });
        }
        self.launch(spec.clone()).await?;
        if let Err(err) = self.persist().await {
            self.stop(&spec.id);
            return Err(ApiError::Internal(err.to_string()));
        }
        Ok(spec)
    }

    /// Stops and removes a subscription created over the API.
    pub async fn delete(&self, id: &str) -> Result<(), ApiError> {
        let _guard = self.inner.change.lock().await;
        match self.inner.running.lock().get(id) {
            None => return Err(ApiError::NotFound(format!("no subscription {id:?}"))),
            Some(r) if r.spec.from_config => {
                return Err(ApiError::InvalidParameter(format!(
                    "subscription {id:?} is declared in the configuration file; remove it there"
                )))
            }
            Some(_) => {}
        }
        self.stop(id);
        self.persist()
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))
    }

    /// Waits for the workers to finish their current deliveries (after shutdown).
    pub async fn wait(&self) {
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }

    fn stop(&self, id: &str) {
        if let Some(r) = self.inner.running.lock().remove(id) {
            r.stop.cancel();
        }
    }

    /// Changes the pattern of `group`'s subscription, if one uses it, with the group's.
    /// A group declared in the configuration file is changed there instead.
    pub async fn set_group_pattern(
        &self,
        group: &str,
        pattern: Pattern,
    ) -> Result<pulse_core::GroupInfo, ApiError> {
        let _guard = self.inner.change.lock().await;
        let user = self
            .inner
            .running
            .lock()
            .values()
            .find(|r| r.spec.group == group)
            .map(|r| (r.spec.id.clone(), r.spec.from_config));
        if let Some((id, true)) = &user {
            return Err(ApiError::Conflict(format!(
                "consumer group {group:?} belongs to subscription {id:?}, declared in the \
                 configuration file: change its pattern there"
            )));
        }
        let info = self
            .inner
            .log
            .set_group_pattern(group, pattern.clone())
            .await?;
        if let Some((id, _)) = user {
            if let Some(r) = self.inner.running.lock().get_mut(&id) {
                r.spec.pattern = pattern;
            }
            self.persist()
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?;
        }
        Ok(info)
    }

    async fn launch(&self, spec: WebhookSpec) -> Result<(), ApiError> {
        let retry = spec.retry();
        let mut config = GroupConfig::new(spec.pattern.clone());
        config.max_deliver = retry.max_attempts;
        config.ack_wait = self.inner.defaults.ack_wait.max(DELIVERY_TIMEOUT * 2);
        match self
            .inner
            .log
            .ensure_group(&spec.group, config.clone())
            .await
        {
            // The configuration file is an operator's word: its pattern re-points the group.
            Err(LogError::GroupPatternConflict { .. }) if spec.from_config => {
                self.inner
                    .log
                    .set_group_pattern(&spec.group, spec.pattern.clone())
                    .await?;
                tracing::warn!(
                    subscription = %spec.id,
                    group = %spec.group,
                    pattern = %spec.pattern,
                    "the configuration file changed the pattern of the subscription's group"
                );
                self.inner.log.ensure_group(&spec.group, config).await?;
            }
            other => {
                other?;
            }
        }
        let stop = self.inner.shutdown.child_token();
        let worker = Worker {
            log: self.inner.log.clone(),
            client: self.inner.client.clone(),
            metrics: DeliveryMetrics::new(Some(&spec.group), Transport::Webhook),
            spec: spec.clone(),
            retry,
            stop: stop.clone(),
        };
        self.inner.tasks.spawn(worker.run());
        self.inner
            .running
            .lock()
            .insert(spec.id.clone(), Running { spec, stop });
        Ok(())
    }

    /// Writes the API-created subscriptions to the file: written to a temporary file,
    /// fsynced and renamed over the old one, on a blocking thread so the fsync does not
    /// stall the runtime.
    async fn persist(&self) -> Result<(), WebhookError> {
        let Some(path) = self.inner.path.clone() else {
            return Ok(());
        };
        let specs: Vec<WebhookSpec> = self.list().into_iter().filter(|s| !s.from_config).collect();
        let text =
            serde_json::to_vec_pretty(&specs).map_err(|e| WebhookError::Store(e.to_string()))?;
        let display = path.display().to_string();
        tokio::task::spawn_blocking(move || {
            let tmp = path.with_extension("json.tmp");
            std::fs::write(&tmp, text)
                .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
                .and_then(|()| std::fs::rename(&tmp, &path))
        })
        .await
        .map_err(|e| WebhookError::Store(format!("{display}: {e}")))?
        .map_err(|e| WebhookError::Store(format!("{display}: {e}")))
    }
}

/// Why webhooks could not start or be stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// The HTTP client could not be built.
    #[error("webhook client: {0}")]
    Client(String),
    /// The subscription file could not be read or written.
    #[error("webhook subscriptions file: {0}")]
    Store(String),
}

struct Worker {
    log: Arc<dyn EventLog>,
    client: reqwest::Client,
    spec: WebhookSpec,
    retry: RetryPolicy,
    stop: CancellationToken,
    metrics: DeliveryMetrics,
}

impl Worker {
    async fn run(self) {
        let mut appends = self.log.watch_appends();
        while !self.stop.is_cancelled() {
            appends.borrow_and_update();
            match self.log.fetch(&self.spec.group, BATCH).await {
                Ok(batch) if !batch.is_empty() => {
                    futures::stream::iter(batch)
                        .for_each_concurrent(CONCURRENCY, |d| self.deliver(d))
                        .await;
                    continue;
                }
                Ok(_) => {}
                Err(LogError::Closed) => return,
                Err(err) => {
                    tracing::warn!(subscription = %self.spec.id, %err, "webhook fetch failed")
                }
            }
            tokio::select! {
                () = self.stop.cancelled() => return,
                _ = appends.changed() => {}
                () = tokio::time::sleep(IDLE_CHECK) => {}
            }
        }
    }

    async fn deliver(&self, d: Delivery) {
        self.metrics.observe_delay(d.event.event.time);
        let offset = d.event.offset;
        let sent = self
            .client
            .post(&self.spec.url)
            .header(reqwest::header::CONTENT_TYPE, STRUCTURED)
            .body(d.event.event.to_json_string())
            .send()
            .await;
        let failure = match sent {
            Ok(r) if r.status().is_success() => None,
            Ok(r) => Some(format!("the receiver answered {}", r.status())),
            Err(e) if e.is_timeout() => Some("the receiver did not answer in time".to_owned()),
            Err(e) if e.is_connect() => Some("the receiver refused the connection".to_owned()),
            Err(_) => Some("the request to the receiver failed".to_owned()),
        };
        let Some(reason) = failure else {
            metrics::counter!(WEBHOOK_DELIVERIES, "outcome" => "ok").increment(1);
            if let Err(err) = self.log.ack(&self.spec.group, &[offset]).await {
                tracing::warn!(subscription = %self.spec.id, offset, %err, "webhook ack failed");
            }
            return;
        };
        metrics::counter!(WEBHOOK_FAILURES).increment(1);
        tracing::warn!(subscription = %self.spec.id, offset, attempt = d.attempt, reason = %reason, "webhook delivery failed");
        match self
            .log
            .nack(
                &self.spec.group,
                offset,
                self.retry.backoff_with_jitter(d.attempt),
                &reason,
            )
            .await
        {
            Ok(NackOutcome::DeadLettered(id)) => {
                metrics::counter!(WEBHOOK_DELIVERIES, "outcome" => "dead_lettered").increment(1);
                self.metrics.dead_lettered();
                tracing::warn!(subscription = %self.spec.id, offset, dead_letter = id, "webhook event dead-lettered");
            }
            Ok(NackOutcome::Redeliver) => {
                metrics::counter!(WEBHOOK_DELIVERIES, "outcome" => "failed").increment(1);
            }
            Err(err) => {
                tracing::warn!(subscription = %self.spec.id, offset, %err, "webhook nack failed")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(url: &str, backoff: Option<Vec<u64>>) -> Result<WebhookSpec, (&'static str, String)> {
        WebhookSpec::new(
            "w".into(),
            Pattern::parse("a.>").unwrap(),
            "g".into(),
            url.into(),
            3,
            backoff,
        )
    }

    #[test]
    fn urls_and_backoff_are_checked() {
        assert_eq!(spec("ftp://x/", None).unwrap_err().0, "url");
        assert_eq!(spec("not a url", None).unwrap_err().0, "url");
        assert_eq!(spec("http://x/", Some(vec![])).unwrap_err().0, "backoff_ms");
        let s = spec("http://127.0.0.1:9/hook", Some(vec![10, 20])).unwrap();
        assert_eq!(s.backoff(1), Duration::from_millis(10));
        assert_eq!(s.backoff(2), Duration::from_millis(20));
        assert_eq!(s.backoff(9), Duration::from_millis(20));
    }
}
