//! The state every handler shares: the log, the keys, the live channel and the
//! background machinery (webhooks, jobs, shutdown).

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use pulse_core::EventLog;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::KeyRing;
use crate::config::{DurabilityRule, Limits};
use crate::jobs::Jobs;
use crate::live::Live;
use crate::storage::StorageHealth;
use crate::webhook::{GroupDefaults, Webhooks};

/// Shared by every request; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The durable log.
    pub log: Arc<dyn EventLog>,
    /// Whether the log's storage currently refuses writes for lack of space.
    pub storage: StorageHealth,
    /// The configured API keys.
    pub keys: KeyRing,
    /// Durability per type pattern.
    pub durability: Arc<Vec<DurabilityRule>>,
    /// Memory-durability events on their way to live subscribers.
    pub live: Live,
    /// Defaults for the groups the server creates.
    pub groups: GroupDefaults,
    /// Request limits.
    pub limits: Limits,
    /// Webhook subscriptions and their delivery workers.
    pub webhooks: Webhooks,
    /// Aggregation jobs and the aggregate store.
    pub jobs: Jobs,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// Cancelled when the server drains: streams end, workers stop.
    pub shutdown: CancellationToken,
    /// Long-lived tasks (WebSocket sessions) the drain waits for.
    pub tasks: TaskTracker,
}
