//! The in-process event bus: the in-process front of the event log.
//!
//! **What the bus is.** One delivery model for every consumer in Pulse, with two ways to
//! subscribe:
//!
//! - [`Bus::subscribe`] makes a *live subscription*: events published through this bus
//!   are dispatched to it in-process, at most once — memory events always, persistent
//!   ones after they are appended. Failures are retried in place by the subscription's
//!   [`RetryPolicy`] and then kept in [`MemoryDeadLetters`]. This is the path that runs at
//!   millions of events per second, and what a server's live tail (SSE or WebSocket
//!   without a group) is.
//! - [`Bus::subscribe_group`], on a bus built with an [`EventLog`](crate::EventLog),
//!   makes a *group subscription*: a member of one of the log's consumer groups,
//!   fetching, acking and nacking through the `EventLog` trait exactly as a WebSocket
//!   client, a webhook or another Pulse instance does. Order per subject, redelivery,
//!   dead letters and the position across restarts are the log's; the subscription's
//!   [`RetryPolicy`] gives the group its `max_deliver` and every nack its delay.
//!
//! [`RetryPolicy`] is the one retry model (the server's webhooks take their delays from
//! it too), and [`Durability`] the one definition of persistent or memory.
//!
//! **How live dispatch works.** There is no dispatcher task: `publish` validates the
//! event, looks up its route (the matching live subscriptions, cached per type by the
//! router), and pushes it into each subscription's bounded queue, waiting or failing when
//! a queue is full. Each subscription runs one worker task per lane (its concurrency);
//! events with the same `subject` always go to the same lane, so they are handled one at
//! a time in publish order. Work is batched at both ends so the per-event cost is one
//! `Arc` and a few pointer moves: [`Bus::publish_batch`] pushes a run of events under one
//! lock, and a worker takes up to 256 queued events at once and records metrics once per
//! batch.
//!
//! With an [`EventLog`](crate::EventLog) ([`BusBuilder::log`]), a persistent publish
//! appends first and dispatches after, returning the offset; a duplicate id is not
//! dispatched again.
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

mod consumer;
mod dead_letter;
mod delivery;
mod error;
mod handle;
mod handler;
mod lane;
mod options;
mod publish;
mod retry;
mod router;
mod shutdown;
mod subscribe;
mod subscription;
mod tally;
mod worker;

pub use dead_letter::{DeadLetterRecord, MemoryDeadLetters};
pub use error::{BusError, PublishError};
pub use handle::{Bus, BusBuilder};
pub use handler::{DynHandler, Handler, HandlerError, HandlerResult, SharedHandler};
pub use options::{Durability, OverflowPolicy, PublishOptions, SubscribeOptions};
pub use publish::Published;
pub use retry::RetryPolicy;
pub use shutdown::ShutdownReport;
pub use subscribe::IntoPattern;
pub use subscription::{Subscription, SubscriptionId, SubscriptionStats};
