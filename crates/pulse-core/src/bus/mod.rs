//! The in-process event bus: publish events, subscribe handlers by type pattern.
//!
//! There is no dispatcher task: `publish` validates the event, looks up its route (the
//! matching subscriptions, cached per type by the router), and pushes it into
//! each subscription's bounded queue, waiting or failing when a queue is full. Each
//! subscription runs one worker task per lane (its concurrency); events with the same
//! `subject` always go to the same lane, so they are handled one at a time in publish
//! order. Work is batched at both ends so the per-event cost is one `Arc` and a few
//! pointer moves: [`Bus::publish_batch`] pushes a run of events under one lock, and a
//! worker takes up to 256 queued events at once and records metrics once per batch.
//!
//! With an [`EventLog`] ([`BusBuilder::log`]), a persistent publish appends first and
//! dispatches after, returning the offset; a duplicate id is not dispatched again.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use pulse_core::bus::{Bus, HandlerResult, SubscribeOptions};
//! use pulse_core::Event;
//!
//! let bus = Bus::new();
//! let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
//! let _subscription = bus.subscribe(
//!     "health.reading.*",
//!     move |event: Arc<Event>| {
//!         let tx = tx.clone();
//!         async move {
//!             tx.send(event.subject.clone())?;
//!             HandlerResult::Ok(())
//!         }
//!     },
//!     SubscribeOptions::new(),
//! )?;
//! bus.publish(Event::new("health.reading.heart_rate").with_subject("user-42")).await?;
//! assert_eq!(rx.recv().await, Some(Some("user-42".to_owned())));
//! let report = bus.shutdown(std::time::Duration::from_secs(5)).await;
//! assert!(report.completed);
//! # Ok(())
//! # }
//! ```

mod dead_letter;
mod delivery;
mod error;
mod handler;
mod lane;
mod options;
mod publish;
mod router;
mod shutdown;
mod subscription;
mod worker;

pub use dead_letter::{DeadLetterError, DeadLetterRecord, DeadLetterSink, MemoryDeadLetters};
pub use delivery::RetryPolicy;
pub use error::{BusError, PublishError};
pub use handler::{DynHandler, Handler, HandlerError, HandlerResult, SharedHandler};
pub use options::{Durability, OverflowPolicy, PublishOptions, SubscribeOptions};
pub use publish::Published;
pub use shutdown::ShutdownReport;
pub use subscription::{Subscription, SubscriptionId, SubscriptionStats};

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::{BusMetrics, SubscriptionMetrics};
use crate::{EventLog, Pattern, PatternError};
use router::Router;
use subscription::SubShared;
use worker::Worker;

/// Something that names a pattern: a `&str`, a `String` or a [`Pattern`].
pub trait IntoPattern {
    /// Parses it.
    fn into_pattern(self) -> Result<Pattern, PatternError>;
}

impl IntoPattern for &str {
    fn into_pattern(self) -> Result<Pattern, PatternError> {
        Pattern::parse(self)
    }
}

impl IntoPattern for &String {
    fn into_pattern(self) -> Result<Pattern, PatternError> {
        Pattern::parse(self)
    }
}

impl IntoPattern for String {
    fn into_pattern(self) -> Result<Pattern, PatternError> {
        Pattern::parse(&self)
    }
}

impl IntoPattern for Pattern {
    fn into_pattern(self) -> Result<Pattern, PatternError> {
        Ok(self)
    }
}

impl IntoPattern for &Pattern {
    fn into_pattern(self) -> Result<Pattern, PatternError> {
        Ok(self.clone())
    }
}

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
    dead_letters: Option<Arc<dyn DeadLetterSink>>,
}

impl BusBuilder {
    /// Persists events through `log` before dispatching them.
    pub fn log(mut self, log: Arc<dyn EventLog>) -> Self {
        self.log = Some(log);
        self
    }

    /// Types matching `pattern` are memory-only unless a publish asks otherwise.
    pub fn memory_only(mut self, pattern: Pattern) -> Self {
        self.memory_only.push(pattern);
        self
    }

    /// Where subscriptions without their own sink put dead letters (by default a
    /// [`MemoryDeadLetters`] reachable through [`Bus::dead_letters`]).
    pub fn dead_letter_sink(mut self, sink: Arc<dyn DeadLetterSink>) -> Self {
        self.dead_letters = Some(sink);
        self
    }

    /// Builds the bus.
    pub fn build(self) -> Bus {
        let (dead_letters, memory_dead_letters) = match self.dead_letters {
            Some(sink) => (sink, None),
            None => {
                let memory = Arc::new(MemoryDeadLetters::default());
                (Arc::clone(&memory) as Arc<dyn DeadLetterSink>, Some(memory))
            }
        };
        Bus {
            inner: Arc::new(Inner {
                router: Arc::new(Router::new(self.memory_only)),
                closed: AtomicBool::new(false),
                log: self.log,
                dead_letters,
                memory_dead_letters,
                tracker: TaskTracker::new(),
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
    inner: Arc<Inner>,
}

struct Inner {
    router: Arc<Router>,
    closed: AtomicBool,
    log: Option<Arc<dyn EventLog>>,
    dead_letters: Arc<dyn DeadLetterSink>,
    memory_dead_letters: Option<Arc<MemoryDeadLetters>>,
    tracker: TaskTracker,
    hard_stop: CancellationToken,
    next_id: AtomicU64,
    metrics: BusMetrics,
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

    /// The in-memory dead letters, unless the bus was given its own sink.
    pub fn dead_letters(&self) -> Option<Arc<MemoryDeadLetters>> {
        self.inner.memory_dead_letters.clone()
    }

    /// Runs `handler` on every event whose type matches `pattern`, from the next publish
    /// on. Must be called within a tokio runtime (the subscription's workers run there).
    pub fn subscribe<H: Handler>(
        &self,
        pattern: impl IntoPattern,
        handler: H,
        options: SubscribeOptions,
    ) -> Result<Subscription, BusError> {
        let inner = &self.inner;
        if inner.closed.load(Ordering::SeqCst) {
            return Err(BusError::ShutDown);
        }
        let pattern = pattern.into_pattern()?;
        options.validate().map_err(BusError::InvalidOptions)?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| BusError::NoRuntime)?;
        let id = SubscriptionId(inner.next_id.fetch_add(1, Ordering::Relaxed));
        let name = options
            .name
            .clone()
            .unwrap_or_else(|| pattern.as_str().to_owned());
        let shared = Arc::new(SubShared::new(
            id,
            name.into(),
            pattern,
            options.capacity,
            options.concurrency,
            options.overflow,
            inner.hard_stop.child_token(),
        ));
        let metrics = SubscriptionMetrics::new(&shared.name);
        let handler = Arc::new(handler);
        let sink = options
            .dead_letter
            .clone()
            .unwrap_or_else(|| Arc::clone(&inner.dead_letters));
        let workers = (0..shared.lanes.len())
            .map(|lane| {
                let worker = Worker {
                    handler: Arc::clone(&handler),
                    subscription: Arc::clone(&shared),
                    lane,
                    retry: options.retry.clone(),
                    dead_letters: Arc::clone(&sink),
                    metrics: metrics.clone(),
                };
                let hard_stop = inner.hard_stop.clone();
                inner.tracker.spawn_on(
                    async move {
                        tokio::select! {
                            () = worker.run() => {}
                            () = hard_stop.cancelled() => {}
                        }
                    },
                    &runtime,
                )
            })
            .collect();
        inner.router.insert(Arc::clone(&shared));
        let subscription = Subscription::new(shared, Arc::clone(&inner.router), workers);
        // A shutdown that began meanwhile may not have seen this subscription.
        if inner.closed.load(Ordering::SeqCst) {
            return Err(BusError::ShutDown);
        }
        Ok(subscription)
    }
}
