//! How a subscription receives events ([`SubscribeOptions`]) and how an event is
//! published ([`PublishOptions`], [`Durability`]).
//!
//! [`Durability`] is the one definition of "persistent or memory" in Pulse: the bus's
//! publish options and the server's `[[durability]]` rules both use it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::dead_letter::MemoryDeadLetters;
use super::retry::RetryPolicy;
use crate::log::StartPosition;

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
    pub(crate) dead_letter: Option<Arc<MemoryDeadLetters>>,
    pub(crate) start: StartPosition,
    pub(crate) ack_wait: Duration,
}

impl SubscribeOptions {
    /// The default queue capacity.
    pub const DEFAULT_CAPACITY: usize = 1024;

    /// Defaults: named after the pattern (a group subscription after its group), 1024
    /// queued events at most, publishers wait when it is full, one event at a time,
    /// [`RetryPolicy::default`], the bus's dead letters; a new group starts at the
    /// earliest event and redelivers what is not settled within 30 s.
    pub fn new() -> Self {
        Self {
            name: None,
            capacity: Self::DEFAULT_CAPACITY,
            overflow: OverflowPolicy::Wait,
            concurrency: 1,
            retry: RetryPolicy::default(),
            dead_letter: None,
            start: StartPosition::Earliest,
            ack_wait: Duration::from_secs(30),
        }
    }

    /// Names the subscription (in errors, dead letters and the `subscription` metric
    /// label); the pattern (or the group) is the name otherwise.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The most events queued for this subscription at once (at least `concurrency`).
    /// A group subscription fetches at most this many (and at most 256) at once.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// What publishing does when the queue is full. A group subscription has no queue
    /// to fill: it fetches from the log at its own pace.
    pub fn overflow(mut self, overflow: OverflowPolicy) -> Self {
        self.overflow = overflow;
        self
    }

    /// How many events may be handled at once (at least 1). Events with the same
    /// `subject` are still handled one at a time, in publish order: each subject maps
    /// to one of `concurrency` lanes, and the queue capacity is split between lanes (in a
    /// group subscription, the log holds a subject's next event back until the previous
    /// one is settled).
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// How failed events are retried: in place for a live subscription; for a group
    /// subscription, `max_attempts` is the group's `max_deliver` and a failure is nacked
    /// with the policy's delay.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Where a live subscription's events go after the last failed attempt, instead of
    /// the bus's [`Bus::dead_letters`](super::Bus::dead_letters). A group subscription's
    /// dead letters are always the log's.
    pub fn dead_letter(mut self, sink: Arc<MemoryDeadLetters>) -> Self {
        self.dead_letter = Some(sink);
        self
    }

    /// Where a group subscription's group starts when it does not exist yet.
    pub fn start(mut self, start: StartPosition) -> Self {
        self.start = start;
        self
    }

    /// How long a group subscription may take to settle a delivery before the log hands
    /// it out again (at least 1 ms).
    pub fn ack_wait(mut self, ack_wait: Duration) -> Self {
        self.ack_wait = ack_wait;
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
        if self.ack_wait < Duration::from_millis(1) {
            return Err("ack_wait must be at least 1 ms".to_owned());
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
            .field("start", &self.start)
            .field("ack_wait", &self.ack_wait)
            .finish()
    }
}

/// How an event is kept: appended to the durable log first, or only dispatched.
///
/// Written `"persistent"` / `"memory"` in configuration files (the server's
/// `[[durability]]` rules).
///
/// ```
/// use pulse_core::Durability;
/// let mode: Durability = serde_json::from_str("\"memory\"").unwrap();
/// assert_eq!(mode, Durability::Memory);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Appended to the log and committed before the publish returns; consumer groups
    /// receive it at least once.
    Persistent,
    /// Dispatched to live subscribers only, lost on a crash (at most once).
    Memory,
}

/// How an event is published.
///
/// ```
/// use pulse_core::bus::{Durability, PublishOptions};
/// assert_eq!(PublishOptions::memory().durability, Some(Durability::Memory));
/// assert_eq!(PublishOptions::default().durability, None);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PublishOptions {
    /// Persistent or memory-only; `None` (the default) is persistent when the bus has a
    /// log and the type is not configured memory-only, memory otherwise. Persistent on a
    /// bus without a log is an error.
    pub durability: Option<Durability>,
}

impl PublishOptions {
    /// Dispatch only, never appended to the log.
    pub fn memory() -> Self {
        Self {
            durability: Some(Durability::Memory),
        }
    }

    /// Appended to the log before dispatch.
    pub fn persistent() -> Self {
        Self {
            durability: Some(Durability::Persistent),
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
        let err = SubscribeOptions::new()
            .ack_wait(Duration::ZERO)
            .validate()
            .unwrap_err();
        assert!(err.contains("ack_wait"));
    }
}
