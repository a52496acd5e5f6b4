//! The [`Bus`] handle, what its clones share, and the [`BusBuilder`] that makes one.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::dead_letter::MemoryDeadLetters;
use super::router::Router;
use crate::log::EventLog;
use crate::metrics::BusMetrics;
use crate::pattern::Pattern;

/// Configures a [`Bus`].
///
/// ```
/// use pulse_core::bus::Bus;
/// use pulse_core::Pattern;
/// let bus = Bus::builder()
///     .memory_only(Pattern::parse("metrics.>").unwrap())
///     .build();
/// # drop(bus);
/// ```
#[derive(Default)]
pub struct BusBuilder {
    log: Option<Arc<dyn EventLog>>,
    memory_only: Vec<Pattern>,
    dead_letters: Option<Arc<MemoryDeadLetters>>,
}

impl BusBuilder {
    /// Persists events through `log` before dispatching them, and lets
    /// [`Bus::subscribe_group`] consume the log's consumer groups.
    pub fn log(mut self, log: Arc<dyn EventLog>) -> Self {
        self.log = Some(log);
        self
    }

    /// Types matching `pattern` are memory-only unless a publish asks otherwise.
    pub fn memory_only(mut self, pattern: Pattern) -> Self {
        self.memory_only.push(pattern);
        self
    }

    /// Where live subscriptions without their own store put dead letters (by default a
    /// new [`MemoryDeadLetters`]); reachable through [`Bus::dead_letters`].
    pub fn dead_letters(mut self, store: Arc<MemoryDeadLetters>) -> Self {
        self.dead_letters = Some(store);
        self
    }

    /// Builds the bus.
    pub fn build(self) -> Bus {
        Bus {
            inner: Arc::new(Inner {
                router: Arc::new(Router::new(self.memory_only)),
                closed: AtomicBool::new(false),
                log: self.log,
                dead_letters: self.dead_letters.unwrap_or_default(),
                tracker: TaskTracker::new(),
                draining: CancellationToken::new(),
                hard_stop: CancellationToken::new(),
                next_id: AtomicU64::new(1),
                metrics: BusMetrics::new(),
            }),
        }
    }
}

/// The in-process event bus; cloning it gives another handle to the same bus.
#[derive(Clone)]
pub struct Bus {
    pub(crate) inner: Arc<Inner>,
}

/// What every handle of one bus shares.
pub(crate) struct Inner {
    pub(crate) router: Arc<Router>,
    pub(crate) closed: AtomicBool,
    pub(crate) log: Option<Arc<dyn EventLog>>,
    pub(crate) dead_letters: Arc<MemoryDeadLetters>,
    /// Every worker and group consumer, waited for by `shutdown`.
    pub(crate) tracker: TaskTracker,
    /// Cancelled when shutdown begins: group consumers stop fetching.
    pub(crate) draining: CancellationToken,
    /// Cancelled at the shutdown deadline: every task stops where it is.
    pub(crate) hard_stop: CancellationToken,
    pub(crate) next_id: AtomicU64,
    pub(crate) metrics: BusMetrics,
}

impl Default for Bus {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bus")
            .field("subscriptions", &self.inner.router.subscriptions().len())
            .field("log", &self.inner.log.is_some())
            .field("closed", &self.inner.closed.load(Ordering::Relaxed))
            .finish()
    }
}

impl Bus {
    /// A memory-only bus with the default settings.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// Configures a bus.
    pub fn builder() -> BusBuilder {
        BusBuilder::default()
    }

    /// The dead letters of live subscriptions that were not given a store of their own
    /// (group subscriptions dead-letter into the log: `EventLog::dead_letters`).
    pub fn dead_letters(&self) -> &Arc<MemoryDeadLetters> {
        &self.inner.dead_letters
    }

    /// The log the bus persists to, if it was built with one.
    pub fn log(&self) -> Option<&Arc<dyn EventLog>> {
        self.inner.log.as_ref()
    }
}
