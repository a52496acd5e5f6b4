//! [`TableSource`]: a table of a database this crate does not link (PostgreSQL, for one),
//! read in increasing `id` order, so that the runner treats it like a SQLite table: the
//! position is the largest id read and commits with the aggregates in the state store.
//!
//! pulse-batch stays free of database drivers; the `pulse` binary, which wires components
//! together, implements this trait with the driver and hands it in as
//! [`Input::External`](super::Input::External).

use std::sync::Arc;

use crate::aggregator::Aggregator;
use crate::error::BatchError;
use crate::progress::Progress;

/// A readings table with an increasing integer `id`, read after a position.
pub trait TableSource: Send + Sync {
    /// A stable identity for checkpoints, without credentials, e.g.
    /// `postgres://host:5432/db?schema=public&table=readings`.
    fn source_id(&self) -> String;

    /// Feeds every row with an id above `after` to `agg`, in id order; returns the largest
    /// id read (`after` when there was none).
    fn aggregate(
        &self,
        after: i64,
        agg: &mut Aggregator<'_>,
        progress: &Progress,
    ) -> Result<i64, BatchError>;
}

/// A shared [`TableSource`], compared and printed by its [`TableSource::source_id`].
#[derive(Clone)]
pub struct ExternalTable(pub Arc<dyn TableSource>);

impl ExternalTable {
    /// Wraps `source`.
    pub fn new(source: impl TableSource + 'static) -> Self {
        ExternalTable(Arc::new(source))
    }
}

impl std::ops::Deref for ExternalTable {
    type Target = dyn TableSource;

    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

impl std::fmt::Debug for ExternalTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ExternalTable")
            .field(&self.0.source_id())
            .finish()
    }
}

impl PartialEq for ExternalTable {
    fn eq(&self, other: &Self) -> bool {
        self.0.source_id() == other.0.source_id()
    }
}

impl Eq for ExternalTable {}
