//! What can go wrong when publishing or subscribing.

use super::subscription::SubscriptionId;
use crate::event::EventError;
use crate::log::LogError;
use crate::pattern::PatternError;

/// Why a publish failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// An event is malformed; nothing of the call was published.
    #[error("invalid event at index {index}: {source}")]
    InvalidEvent {
        /// Its position in the call (0 for `publish`).
        index: usize,
        /// What is wrong with it.
        source: EventError,
    },
    /// The bus was shut down.
    #[error("the bus is shut down and accepts no more events")]
    ShutDown,
    /// A subscription with the fail-fast policy had no room. The other subscriptions
    /// received the events, and a persistent event is stored in the log.
    #[error("queue of subscription {name:?} ({subscription}) is full: {rejected} event(s) not queued for it")]
    QueueFull {
        /// The subscription.
        subscription: SubscriptionId,
        /// Its name.
        name: String,
        /// How many events of the call it did not receive.
        rejected: usize,
    },
    /// A persistent publish was asked of a bus that has no event log.
    #[error("persistent publish needs a bus built with an event log (BusBuilder::log)")]
    NoLog,
    /// The event log failed; nothing of the call was dispatched.
    #[error("event log append failed: {0}")]
    Log(#[from] LogError),
}

/// Why a subscription could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// The pattern does not parse.
    #[error(transparent)]
    InvalidPattern(#[from] PatternError),
    /// An option is out of range.
    #[error("invalid subscription options: {0}")]
    InvalidOptions(String),
    /// `subscribe` was called outside a tokio runtime, so no worker can run.
    #[error("subscribe must be called within a tokio runtime")]
    NoRuntime,
    /// The bus was shut down.
    #[error("the bus is shut down")]
    ShutDown,
    /// A group subscription was asked of a bus that has no event log.
    #[error("a group subscription needs a bus built with an event log (BusBuilder::log)")]
    NoLog,
    /// The log refused or failed to make the group (a bad group name, the group's
    /// pattern, an unavailable backend).
    #[error("consumer group: {0}")]
    Log(#[from] LogError),
}
