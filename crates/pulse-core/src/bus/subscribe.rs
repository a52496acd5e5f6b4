//! Subscribing: [`Bus::subscribe`] makes a live subscription (lanes fed by `publish`),
//! [`Bus::subscribe_group`] a member of one of the log's consumer groups.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use super::consumer::GroupConsumer;
use super::error::BusError;
use super::handle::{Bus, Inner};
use super::handler::Handler;
use super::lane::MAX_BATCH;
use super::options::SubscribeOptions;
use super::subscription::{SubShared, Subscription, SubscriptionId};
use super::worker::Worker;
use crate::log::{validate_group_name, GroupConfig};
use crate::metrics::SubscriptionMetrics;
use crate::pattern::{Pattern, PatternError};

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

impl Bus {
    /// Runs `handler` on every event whose type matches `pattern`, from the next publish
    /// on: a live subscription, at most once (events published through this bus, memory
    /// and persistent alike, retried in place and then dead-lettered into
    /// [`Bus::dead_letters`]). Must be called within a tokio runtime (the subscription's
    /// workers run there).
    pub fn subscribe<H: Handler>(
        &self,
        pattern: impl IntoPattern,
        handler: H,
        options: SubscribeOptions,
    ) -> Result<Subscription, BusError> {
        let (pattern, runtime) = self.check(pattern, &options)?;
        let inner = &self.inner;
        let name = options
            .name
            .clone()
            .unwrap_or_else(|| pattern.as_str().to_owned());
        let shared = Arc::new(SubShared::new(
            next_id(inner),
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
                spawn(inner, &runtime, worker.run())
            })
            .collect();
        inner.router.insert(Arc::clone(&shared));
        self.finish(shared, workers)
    }

    /// Runs `handler` as a member of the log's consumer group `group` (made if needed,
    /// receiving the types matching `pattern`): the same semantics a WebSocket or webhook
    /// consumer of the group gets. Every persistent event of those types is handled at
    /// least once, also those appended by other publishers of the log and while no
    /// member ran; a failure is nacked with the [`RetryPolicy`](super::RetryPolicy)
    /// delay and redelivered, the `max_attempts`-th one becomes a dead letter of the log
    /// (`EventLog::dead_letters`, redrivable); events of one subject are handled one at
    /// a time in offset order; memory events do not reach it.
    ///
    /// Needs a bus built with a log ([`BusBuilder::log`](super::BusBuilder::log)) and a
    /// tokio runtime.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::sync::Arc;
    /// use pulse_core::bus::{Bus, HandlerResult, SubscribeOptions};
    /// use pulse_core::{memory::MemoryLog, Event};
    ///
    /// let bus = Bus::builder().log(Arc::new(MemoryLog::new())).build();
    /// bus.publish(Event::new("health.reading.heart_rate")).await?; // before the member
    /// let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    /// let _member = bus
    ///     .subscribe_group(
    ///         "alerts",
    ///         "health.reading.*",
    ///         move |event: Arc<Event>| {
    ///             let tx = tx.clone();
    ///             async move { Ok(tx.send(event.ty.clone())?) }
    ///         },
    ///         SubscribeOptions::new(),
    ///     )
    ///     .await?;
    /// assert_eq!(rx.recv().await.as_deref(), Some("health.reading.heart_rate"));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn subscribe_group<H: Handler>(
        &self,
        group: &str,
        pattern: impl IntoPattern,
        handler: H,
        options: SubscribeOptions,
    ) -> Result<Subscription, BusError> {
        let (pattern, runtime) = self.check(pattern, &options)?;
        let inner = &self.inner;
        let log = inner.log.clone().ok_or(BusError::NoLog)?;
        validate_group_name(group)?;
        let mut config = GroupConfig::new(pattern.clone());
        config.start = options.start;
        config.max_deliver = options.retry.max_attempts;
        config.ack_wait = options.ack_wait;
        log.ensure_group(group, config).await?;
        let name = options.name.clone().unwrap_or_else(|| group.to_owned());
        let shared = Arc::new(SubShared::for_group(
            next_id(inner),
            name.into(),
            pattern,
            inner.hard_stop.child_token(),
        ));
        let consumer = GroupConsumer {
            handler: Arc::new(handler),
            metrics: SubscriptionMetrics::new(&shared.name),
            subscription: Arc::clone(&shared),
            log,
            group: group.into(),
            retry: options.retry,
            batch: options.capacity.min(MAX_BATCH),
            concurrency: options.concurrency,
            draining: inner.draining.clone(),
        };
        let workers = vec![spawn(inner, &runtime, consumer.run())];
        // Registered for shutdown and statistics; the router never routes to it.
        inner.router.insert(Arc::clone(&shared));
        self.finish(shared, workers)
    }

    /// Checks what every subscription needs: an open bus, a pattern, valid options and
    /// a runtime to run on.
    fn check(
        &self,
        pattern: impl IntoPattern,
        options: &SubscribeOptions,
    ) -> Result<(Pattern, Handle), BusError> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(BusError::ShutDown);
        }
        let pattern = pattern.into_pattern()?;
        options.validate().map_err(BusError::InvalidOptions)?;
        let runtime = Handle::try_current().map_err(|_| BusError::NoRuntime)?;
        Ok((pattern, runtime))
    }

    fn finish(
        &self,
        shared: Arc<SubShared>,
        workers: Vec<JoinHandle<()>>,
    ) -> Result<Subscription, BusError> {
        let subscription = Subscription::new(shared, Arc::clone(&self.inner.router), workers);
        // A shutdown that began meanwhile may not have seen this subscription.
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(BusError::ShutDown);
        }
        Ok(subscription)
    }
}

fn next_id(inner: &Inner) -> SubscriptionId {
    SubscriptionId(inner.next_id.fetch_add(1, Ordering::Relaxed))
}

/// Spawns one of the bus's tasks: tracked for shutdown, stopped at its deadline.
fn spawn(
    inner: &Inner,
    runtime: &Handle,
    task: impl std::future::Future<Output = ()> + Send + 'static,
) -> JoinHandle<()> {
    let hard_stop = inner.hard_stop.clone();
    inner.tracker.spawn_on(
        async move {
            tokio::select! {
                () = task => {}
                () = hard_stop.cancelled() => {}
            }
        },
        runtime,
    )
}
