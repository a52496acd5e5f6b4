//! Publishing: validate, stamp the time, append persistent events to the log, then
//! queue each event for every live subscription its type routes to (group subscriptions
//! receive persistent events from the log).
//!
//! A run of events of one type is routed once and pushed to each lane under one lock;
//! the last subscription of a route receives the events themselves, the others clones of
//! the `Arc`, so a single-subscriber publish moves each event without touching its
//! reference count.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;

use super::error::PublishError;
use super::handle::Bus;
use super::lane::{Entry, PushError};
use super::options::{Durability, OverflowPolicy, PublishOptions};
use super::router::Route;
use super::subscription::SubShared;
use crate::event::Event;
use crate::log::{EventLog, LogError};

/// What publishing one event did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Published {
    /// The offset in the event log, for a persistent event.
    pub offset: Option<u64>,
    /// Whether the log already held an event with this id, so it was neither stored nor
    /// dispatched again.
    pub duplicate: bool,
}

impl Bus {
    /// Publishes one event with the default durability (persistent when the bus has a
    /// log and the type is not memory-only). Waits while a subscription with the `Wait`
    /// policy is full.
    pub async fn publish(&self, event: Event) -> Result<Published, PublishError> {
        self.publish_with(event, PublishOptions::default()).await
    }

    /// Publishes one event without appending it to the log (at-most-once).
    pub async fn publish_memory(&self, event: Event) -> Result<Published, PublishError> {
        self.publish_with(event, PublishOptions::memory()).await
    }

    /// Publishes one event as `options` say.
    pub async fn publish_with(
        &self,
        mut event: Event,
        options: PublishOptions,
    ) -> Result<Published, PublishError> {
        let inner = &self.inner;
        if inner.closed.load(Ordering::SeqCst) {
            return Err(PublishError::ShutDown);
        }
        event
            .validate()
            .map_err(|source| PublishError::InvalidEvent { index: 0, source })?;
        let started = Instant::now();
        if event.time.is_none() {
            event.time = Some(Utc::now());
        }
        let route = inner.router.route(&event.ty);
        let mut published = Published::default();
        if let Some(log) = self.log_for(options, &route)? {
            let appended = log.append(vec![event.clone()]).await?;
            let appended = appended.first().ok_or_else(|| {
                PublishError::Log(LogError::Storage(
                    "the log returned no result for the appended event".to_owned(),
                ))
            })?;
            published.offset = Some(appended.offset);
            published.duplicate = appended.duplicate;
            if appended.duplicate {
                return Ok(published);
            }
        }
        let entry = Entry {
            event: Arc::new(event),
            published: started,
        };
        self.dispatch_one(&route, entry).await?;
        inner.metrics.published.increment(1);
        Ok(published)
    }

    /// Publishes events in order with the default durability; one invalid event rejects
    /// the whole call. This is the fast path: a run of events of the same type costs
    /// one route lookup and one queue lock per subscription lane.
    pub async fn publish_batch(&self, events: Vec<Event>) -> Result<Vec<Published>, PublishError> {
        self.publish_batch_with(events, PublishOptions::default())
            .await
    }

    /// Publishes events in order as `options` say. With a log, the persistent events
    /// are appended in one call before any is dispatched.
    pub async fn publish_batch_with(
        &self,
        mut events: Vec<Event>,
        options: PublishOptions,
    ) -> Result<Vec<Published>, PublishError> {
        let inner = &self.inner;
        if inner.closed.load(Ordering::SeqCst) {
            return Err(PublishError::ShutDown);
        }
        let mut valid: Option<&Event> = None;
        for (index, event) in events.iter().enumerate() {
            event
                .validate_unlike(valid)
                .map_err(|source| PublishError::InvalidEvent { index, source })?;
            valid = Some(event);
        }
        let started = Instant::now();
        let now = Utc::now();
        for event in &mut events {
            event.time.get_or_insert(now);
        }
        let mut results = vec![Published::default(); events.len()];
        let may_persist = inner.log.is_some() && options.durability != Some(Durability::Memory);
        if may_persist || options.durability == Some(Durability::Persistent) {
            self.append_batch(&events, options, &mut results).await?;
        }
        let mut entries: Vec<Entry> = events
            .into_iter()
            .zip(&results)
            .filter(|(_, result)| !result.duplicate)
            .map(|(event, _)| Entry {
                event: Arc::new(event),
                published: started,
            })
            .collect();
        let count = entries.len() as u64;
        while !entries.is_empty() {
            let ty = &entries[0].event.ty;
            let run = entries.iter().take_while(|e| e.event.ty == *ty).count();
            let route = inner.router.route(ty);
            let rest = entries.split_off(run);
            self.dispatch(&route, entries).await?;
            entries = rest;
        }
        inner.metrics.published.increment(count);
        Ok(results)
    }

    /// Appends the events of a batch that are persistent and fills in their results.
    async fn append_batch(
        &self,
        events: &[Event],
        options: PublishOptions,
        results: &mut [Published],
    ) -> Result<(), PublishError> {
        let mut positions = Vec::new();
        let mut to_append = Vec::new();
        let mut log = None;
        for (i, event) in events.iter().enumerate() {
            let route = self.inner.router.route(&event.ty);
            if let Some(l) = self.log_for(options, &route)? {
                log = Some(l);
                positions.push(i);
                to_append.push(event.clone());
            }
        }
        let Some(log) = log else {
            return Ok(());
        };
        let appended = log.append(to_append).await.map_err(|err| match err {
            // Name the positions in the caller's batch, not in its persistent part.
            LogError::RepeatedId { first, second } => LogError::RepeatedId {
                first: positions.get(first).copied().unwrap_or(first),
                second: positions.get(second).copied().unwrap_or(second),
            },
            other => other,
        })?;
        if appended.len() != positions.len() {
            return Err(PublishError::Log(LogError::Storage(format!(
                "the log returned {} results for {} appended events",
                appended.len(),
                positions.len()
            ))));
        }
        for (i, a) in positions.into_iter().zip(appended) {
            results[i] = Published {
                offset: Some(a.offset),
                duplicate: a.duplicate,
            };
        }
        Ok(())
    }

    /// The log to append to, if the event is persistent.
    fn log_for(
        &self,
        options: PublishOptions,
        route: &Route,
    ) -> Result<Option<&Arc<dyn EventLog>>, PublishError> {
        match (options.durability, &self.inner.log) {
            (Some(Durability::Memory), _) => Ok(None),
            (Some(Durability::Persistent), None) => Err(PublishError::NoLog),
            (Some(Durability::Persistent), Some(log)) => Ok(Some(log)),
            (None, Some(log)) if !route.memory_only => Ok(Some(log)),
            (None, _) => Ok(None),
        }
    }

    /// Queues `entries` (all of the route's type) for every subscription of the route;
    /// the last one gets the entries themselves, the others clones. A full fail-fast
    /// subscription does not keep the others from receiving them; the first such error
    /// is returned at the end.
    async fn dispatch(&self, route: &Route, entries: Vec<Entry>) -> Result<(), PublishError> {
        let mut full = None;
        let Some((last, others)) = route.subscriptions.split_last() else {
            return Ok(());
        };
        for sub in others {
            let result = self.dispatch_to(sub, entries.iter().cloned()).await;
            self.note_push_result(sub, result, &mut full)?;
        }
        let result = self.dispatch_to(last, entries.into_iter()).await;
        self.note_push_result(last, result, &mut full)?;
        full.map_or(Ok(()), Err)
    }

    /// [`dispatch`](Self::dispatch) for one event, without allocating.
    async fn dispatch_one(&self, route: &Route, entry: Entry) -> Result<(), PublishError> {
        let mut full = None;
        let Some((last, others)) = route.subscriptions.split_last() else {
            return Ok(());
        };
        for sub in others {
            let result = self.dispatch_to(sub, std::iter::once(entry.clone())).await;
            self.note_push_result(sub, result, &mut full)?;
        }
        let result = self.dispatch_to(last, std::iter::once(entry)).await;
        self.note_push_result(last, result, &mut full)?;
        full.map_or(Ok(()), Err)
    }

    /// Queues `entries` for one subscription.
    async fn dispatch_to<I>(&self, sub: &SubShared, entries: I) -> Result<(), PushError>
    where
        I: ExactSizeIterator<Item = Entry>,
    {
        let wait = sub.overflow == OverflowPolicy::Wait;
        if sub.lanes.len() == 1 {
            sub.lanes[0].push(entries, wait).await
        } else {
            self.dispatch_lanes(sub, entries, wait).await
        }
    }

    /// Turns a push result into the publish outcome: shutdown is an error at once, a
    /// full fail-fast queue is remembered, an unsubscribed one is ignored.
    fn note_push_result(
        &self,
        sub: &SubShared,
        result: Result<(), PushError>,
        full: &mut Option<PublishError>,
    ) -> Result<(), PublishError> {
        match result {
            Ok(()) => Ok(()),
            // Unsubscribed after the route was taken: it no longer receives events.
            Err(PushError::Closed { .. }) if sub.stopped.load(Ordering::Relaxed) => Ok(()),
            Err(PushError::Closed { .. }) => Err(PublishError::ShutDown),
            Err(PushError::Full { rejected }) => {
                full.get_or_insert_with(|| PublishError::QueueFull {
                    subscription: sub.id,
                    name: sub.name.to_string(),
                    rejected,
                });
                Ok(())
            }
        }
    }

    /// Queues `entries` for a subscription with several lanes, each to its subject's lane.
    async fn dispatch_lanes<I>(
        &self,
        sub: &SubShared,
        mut entries: I,
        wait: bool,
    ) -> Result<(), PushError>
    where
        I: ExactSizeIterator<Item = Entry>,
    {
        if entries.len() == 1 {
            if let Some(entry) = entries.next() {
                let lane = &sub.lanes[sub.lane_for(&entry.event)];
                return lane.push(std::iter::once(entry), wait).await;
            }
        }
        let mut buckets: Vec<Vec<Entry>> = vec![Vec::new(); sub.lanes.len()];
        for entry in entries {
            buckets[sub.lane_for(&entry.event)].push(entry);
        }
        let mut rejected = 0;
        let mut closed = false;
        for (lane, bucket) in sub.lanes.iter().zip(buckets) {
            if bucket.is_empty() {
                continue;
            }
            match lane.push(bucket.into_iter(), wait).await {
                Ok(()) => {}
                Err(PushError::Full { rejected: r }) => rejected += r,
                Err(PushError::Closed { rejected: r }) => {
                    closed = true;
                    rejected += r;
                }
            }
        }
        match (closed, rejected) {
            (_, 0) => Ok(()),
            (true, rejected) => Err(PushError::Closed { rejected }),
            (false, rejected) => Err(PushError::Full { rejected }),
        }
    }
}
