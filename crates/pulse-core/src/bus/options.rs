//! How a subscription receives events ([`SubscribeOptions`]) and how an event is
//! published ([`PublishOptions`]).

use std::fmt;
use std::sync::Arc;

use super::dead_letter::DeadLetterSink;
use super::delivery::RetryPolicy;

/// What `publish` does when a subscription's queue is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OverflowPolicy {
    /// The publisher waits until the subscription has room (backpressure).
    #[default]
    Wait,
    /// `publish` returns [`PublishError::QueueFull`](super::PublishError::QueueFull)
    /// naming the subscription; the other subscriptions still receive the event.
    FailFast,
}

/// How a subscription receives events.
///
/// ```
/// use pulse_core::bus::{OverflowPolicy, RetryPolicy, SubscribeOptions};
/// let options = SubscribeOptions::new()
///     .name("heart-rate-alerts")
///     .capacity(10_000)
///     .concurrency(4)
///     .overflow(OverflowPolicy::FailFast)
///     .retry(RetryPolicy::none());
/// assert!(options.validate().is_ok());
/// ```
#[derive(Clone)]
pub struct SubscribeOptions {
    pub(crate) name: Option<String>,
    pub(crate) capacity: usize,
    pub(crate) overflow: OverflowPolicy,
    pub(crate) concurrency: usize,
    pub(crate) retry: RetryPolicy,
    pub(crate) dead_letter: Option<Arc<dyn DeadLetterSink>>,
}

impl SubscribeOptions {
    /// The default queue capacity.
    pub const DEFAULT_CAPACITY: usize = 1024;

    /// Defaults: named after the pattern, 1024 queued events at most, publishers wait
    /// when it is full, one event at a time, [`RetryPolicy::default`], the bus's
    /// dead-letter sink.
    pub fn new() -> Self {
        Self {
            name: None,
            capacity: Self::DEFAULT_CAPACITY,
            overflow: OverflowPolicy::Wait,
            concurrency: 1,
            retry: RetryPolicy::default(),
            dead_letter: None,
        }
    }

    /// Names the subscription (in errors, dead letters and the `subscription` metric
    /// label); the pattern is the name otherwise.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The most events queued for this subscription at once (at least `concurrency`).
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// What publishing does when the queue is full.
    pub fn overflow(mut self, overflow: OverflowPolicy) -> Self {
        self.overflow = overflow;
        self
    }

    /// How many events may be handled at once (at least 1). Events with the same
    /// `subject` are still handled one at a time, in publish order: each subject maps
    /// to one of `concurrency` lanes, and the queue capacity is split between lanes.
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// How failed events are retried.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Where events go after the last failed attempt, instead of the bus's sink.
    pub fn dead_letter(mut self, sink: Arc<dyn DeadLetterSink>) -> Self {
        self.dead_letter = Some(sink);
        self
    }

    /// Checks the values, saying which one is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.concurrency == 0 {
            return Err("concurrency must be at least 1".to_owned());
        }
        if self.capacity < self.concurrency {
            return Err(format!(
                "capacity ({}) must be at least the concurrency ({})",
                self.capacity, self.concurrency
            ));
        }
        if let Some(name) = &self.name {
            if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
                return Err(format!(
                    "subscription names are 1 to 128 printable characters, got {name:?}"
                ));
            }
        }
        self.retry.validate()
    }
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for SubscribeOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscribeOptions")
            .field("name", &self.name)
            .field("capacity", &self.capacity)
            .field("overflow", &self.overflow)
            .field("concurrency", &self.concurrency)
            .field("retry", &self.retry)
            .field("dead_letter", &self.dead_letter.as_ref().map(|_| "custom"))
            .finish()
    }
}

/// Whether a published event is appended to the bus's durable log first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// Persistent when the bus has a log and the type is not configured memory-only.
    #[default]
    Default,
    /// Appended to the log before dispatch; an error when the bus has no log.
    Persistent,
    /// Dispatched only (at-most-once, lost on a crash).
    Memory,
}

/// How an event is published.
///
/// ```
/// use pulse_core::bus::{Durability, PublishOptions};
/// assert_eq!(PublishOptions::memory().durability, Durability::Memory);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PublishOptions {
    /// Persistent or memory-only.
    pub durability: Durability,
}

impl PublishOptions {
    /// Dispatch only, never appended to the log.
    pub fn memory() -> Self {
        Self {
            durability: Durability::Memory,
        }
    }

    /// Appended to the log before dispatch.
    pub fn persistent() -> Self {
        Self {
            durability: Durability::Persistent,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_options_are_rejected() {
        assert!(SubscribeOptions::new().validate().is_ok());
        let err = SubscribeOptions::new()
            .concurrency(0)
            .validate()
            .unwrap_err();
        assert!(err.contains("concurrency"));
        let err = SubscribeOptions::new()
            .capacity(2)
            .concurrency(4)
            .validate()
            .unwrap_err();
        assert!(err.contains("capacity"));
        assert!(SubscribeOptions::new().name("").validate().is_err());
        let retry = RetryPolicy {
            max_attempts: 0,
            ..RetryPolicy::default()
        };
        assert!(SubscribeOptions::new().retry(retry).validate().is_err());
    }
}
