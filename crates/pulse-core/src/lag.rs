//! A consumer group's lag: the events it has still to handle.
//!
//! One computation for everyone who reports it (`GET /v1/groups`, the
//! `pulse_consumer_lag_*` gauges, `pulse log stats`), so the figures agree: a group only
//! ever receives events its pattern matches, so only those count, not every offset after
//! its committed one.

use chrono::{DateTime, Utc};

use crate::log::{EventLog, GroupInfo, LogError, ReadQuery};

/// Lag is counted exactly up to this many events, then reported as this many (at least).
pub const LAG_SCAN: usize = 10_000;

/// What a group has still to handle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupLag {
    /// Events after the committed offset that the group's pattern matches, at most
    /// [`LAG_SCAN`].
    pub events: u64,
    /// The `time` of the first of them, when it has one.
    pub oldest: Option<DateTime<Utc>>,
}

impl GroupLag {
    /// Whether there were more events than [`LAG_SCAN`], so `events` is a lower bound.
    pub fn is_capped(&self) -> bool {
        self.events >= LAG_SCAN as u64
    }

    /// How long the oldest of them has waited at `now`, in seconds (0 without one).
    pub fn seconds_at(&self, now: DateTime<Utc>) -> f64 {
        self.oldest
            .map_or(0.0, |t| ((now - t).num_milliseconds().max(0) as f64) / 1e3)
    }
}

/// The lag of `group` in `log`: the events after its committed offset that its pattern
/// matches (counted up to [`LAG_SCAN`]) and the time of the first.
pub async fn group_lag<L: EventLog + ?Sized>(
    log: &L,
    group: &GroupInfo,
) -> Result<GroupLag, LogError> {
    let pending = log
        .read(ReadQuery {
            after: group.committed,
            limit: LAG_SCAN,
            pattern: Some(group.pattern.clone()),
            since: None,
        })
        .await?;
    Ok(GroupLag {
        events: pending.len() as u64,
        oldest: pending.first().and_then(|e| e.event.time),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::GroupConfig;
    use crate::memory::MemoryLog;
    use crate::{Event, Pattern};

    #[tokio::test]
    async fn only_events_the_pattern_matches_count() {
        let log = MemoryLog::new();
        let time: DateTime<Utc> = "2024-01-01T00:00:00Z".parse().unwrap();
        let events = (0..10)
            .map(|i| {
                let ty = if i % 5 == 0 {
                    "billing.paid"
                } else {
                    "health.hr"
                };
                Event::new(ty).with_time(time + chrono::Duration::minutes(i))
            })
            .collect();
        log.append(events).await.unwrap();
        let info = log
            .ensure_group("g", GroupConfig::new(Pattern::parse("billing.>").unwrap()))
            .await
            .unwrap();
        let lag = group_lag(&log, &info).await.unwrap();
        assert_eq!(lag.events, 2);
        assert_eq!(lag.oldest, Some(time));
        assert!(!lag.is_capped());
        assert_eq!(lag.seconds_at(time + chrono::Duration::seconds(90)), 90.0);

        let after_first = GroupInfo {
            committed: 1,
            ..info
        };
        let lag = group_lag(&log, &after_first).await.unwrap();
        assert_eq!(lag.events, 1);
        assert_eq!(lag.oldest, Some(time + chrono::Duration::minutes(5)));
    }
}
