//! Pulse's core: the CloudEvents [`Event`], NATS-style [`Pattern`]s, the in-process
//! [`Bus`](bus) and the [`EventLog`] trait that every durable backend implements.
//!
//! This crate has no network and no SQL: backends live in sibling crates
//! (`pulse-sqlite`, `pulse-postgres`, `pulse-nats`) and all pass the same contract suite
//! (`contract`, behind the `contract` feature).

pub mod bus;
#[cfg(feature = "contract")]
pub mod contract;
pub mod duration;
mod error_chain;
pub mod event;
pub mod group;
mod id;
pub mod lag;
pub mod log;
pub mod memory;
pub mod metrics;
pub mod pattern;
pub mod percent;
pub mod redact;
pub mod retention;

pub use bus::{
    Bus, BusBuilder, BusError, Durability, PublishError, Published, RetryPolicy, SubscribeOptions,
    Subscription,
};
pub use duration::{format_duration, parse_duration, DurationError};
pub use error_chain::error_chain;
pub use event::{Event, EventError};
pub use id::new_event_id;
pub use lag::{group_lag, GroupLag};
pub use log::{
    Appended, DeadLetter, Delivery, EventLog, GroupConfig, GroupInfo, LogError, NackOutcome,
    ReadQuery, StartPosition, StoredEvent,
};
pub use pattern::{Pattern, PatternError};
pub use retention::Retention;

/// The README's Rust quick start, compiled and run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeQuickStart;
