//! [`Shared`]: what every clone of a [`PostgresLog`](crate::PostgresLog) handle shares
//! (the pool, this instance's name, the writer's queue, the tail watch), which the group,
//! dead-letter and retention modules take.

use std::sync::Arc;

use deadpool_postgres::Pool;
use tokio::sync::{mpsc, watch, Notify};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::append::AppendRequest;
use crate::retention::Pruner;
use crate::PostgresOptions;

/// What every clone of a handle shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) pool: Pool,
    pub(crate) options: PostgresOptions,
    /// This instance's name in `deliveries.owner` and `instances`.
    pub(crate) instance: String,
    pub(crate) tail: Arc<watch::Sender<u64>>,
    pub(crate) appender: mpsc::Sender<AppendRequest>,
    /// Woken by this instance's acks and nacks, which may make a blocked event due.
    pub(crate) settled: Notify,
    /// Held shared by fetches, exclusively by retention steps (see [`crate::retention`]).
    pub(crate) retention_key: i64,
    /// This instance's retention limits; its task runs only when a limit is set.
    pub(crate) pruner: Pruner,
    pub(crate) stop: CancellationToken,
    pub(crate) _stop_on_drop: DropGuard,
}
