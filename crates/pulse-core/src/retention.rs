//! [`Retention`]: how long an event log keeps events, the one type every backend and the
//! configuration file's `[retention]` table use.

use std::time::Duration;

/// How long events are kept. Every limit set applies, and an event is deleted as soon
/// as one of them says so; `None` means unlimited.
///
/// Every backend applies every limit. On SQLite and PostgreSQL, retention deletes the
/// oldest events in small batches without stalling appends, events referenced by a dead
/// letter are kept until the dead letter is gone, and offsets are never reused; NATS
/// hands the limits to its stream. Dedup only sees stored events: an id whose event was
/// pruned can be appended again.
///
/// ```
/// use pulse_core::Retention;
///
/// let retention = Retention {
///     max_bytes: Some(512 * 1024 * 1024),
///     ..Retention::default()
/// };
/// assert!(retention.is_limited());
/// assert!(!Retention::default().is_limited());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    /// Delete events older than this (by the time the backend stored them, or their
    /// `time`; see the backend).
    pub max_age: Option<Duration>,
    /// Keep at most this many of the newest events.
    pub max_events: Option<u64>,
    /// Keep the newest events whose stored sizes add up to at most this many bytes; the
    /// older ones go, and so does an event larger than the whole budget. Each backend
    /// counts the bytes it stores (see its documentation of `max_bytes`).
    pub max_bytes: Option<u64>,
}

impl Retention {
    /// Whether any limit is set.
    pub fn is_limited(&self) -> bool {
        self.max_age.is_some() || self.max_events.is_some() || self.max_bytes.is_some()
    }
}
