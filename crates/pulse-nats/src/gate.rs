//! The per-subject gate of one consumer group on one instance.
//!
//! A JetStream pull consumer hands out any pending message to any puller; it knows
//! nothing of Pulse's `subject` (the partition key). The gate sits between the consumer
//! and the caller of `fetch`: messages pulled from JetStream are admitted here, and one
//! is handed out only when no earlier message of the same subject is known to this
//! instance — held, in flight, or nacked and not yet back. Held messages stay
//! unacknowledged on the server (the log keeps them alive with progress acks), so no
//! other member gets them meanwhile.
//!
//! This is exact for one instance. Across instances it is best effort: two instances may
//! each hold events of one subject (JetStream hands them to whoever pulls), so ordering
//! per subject is guaranteed among the events one instance fetched (see the crate docs).
//! To keep a dead member from stalling a subject forever, an event that left this
//! instance (nacked, or not acknowledged within the ack wait) blocks its subject only
//! until it is back or `ack_wait` past its due time — by then the server has handed it
//! to someone.
//!
//! Pure bookkeeping, no I/O; generic over what a held message carries so that it is
//! tested without a server.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    /// Pulled and waiting for its turn or for a fetch.
    Held,
    /// Handed out; expected back by `deadline`.
    InFlight { deadline: Instant },
    /// Nacked or expired: the server redelivers it; it blocks its subject until `until`.
    Away { until: Instant },
}

#[derive(Debug)]
struct Entry<M> {
    subject: Option<String>,
    slot: Slot,
    message: M,
    /// When a delivery of it first failed here.
    first_failure: Option<DateTime<Utc>>,
}

/// The gate of one group; `M` is what a message carries (its reply subject and event).
#[derive(Debug)]
pub(crate) struct Gate<M> {
    entries: BTreeMap<u64, Entry<M>>,
    subjects: HashMap<String, BTreeSet<u64>>,
}

impl<M> Default for Gate<M> {
    fn default() -> Self {
        Self {
            entries: BTreeMap::new(),
            subjects: HashMap::new(),
        }
    }
}

impl<M: Clone> Gate<M> {
    /// Messages known to this instance for the group.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Takes a message pulled from the server: new, or a redelivery of one known here.
    pub(crate) fn admit(&mut self, seq: u64, subject: Option<String>, message: M) {
        let slot = Slot::Held;
        if let Some(entry) = self.entries.get_mut(&seq) {
            entry.message = message;
            entry.slot = slot;
            return;
        }
        if let Some(subject) = &subject {
            self.subjects
                .entry(subject.clone())
                .or_default()
                .insert(seq);
        }
        self.entries.insert(
            seq,
            Entry {
                subject,
                slot,
                message,
                first_failure: None,
            },
        );
    }

    /// Hands out up to `max` held messages whose subject has nothing earlier here,
    /// oldest first, each due back within `ack_wait`.
    pub(crate) fn take_ready(
        &mut self,
        now: Instant,
        max: usize,
        ack_wait: Duration,
    ) -> Vec<(u64, M)> {
        self.expire(now, ack_wait);
        let mut out = Vec::new();
        for (&seq, entry) in &mut self.entries {
            if out.len() >= max {
                break;
            }
            if !matches!(entry.slot, Slot::Held) {
                continue;
            }
            let first = entry
                .subject
                .as_ref()
                .and_then(|s| self.subjects.get(s))
                .and_then(|seqs| seqs.first());
            if first.is_some_and(|&f| f != seq) {
                continue;
            }
            entry.slot = Slot::InFlight {
                deadline: now + ack_wait,
            };
            out.push((seq, entry.message.clone()));
        }
        out
    }

    /// The message of `seq` if it was handed out (in flight, or since expired or nacked
    /// but not back yet): what an ack or nack needs.
    pub(crate) fn delivered(&self, seq: u64) -> Option<&M> {
        self.entries
            .get(&seq)
            .filter(|e| !matches!(e.slot, Slot::Held))
            .map(|e| &e.message)
    }

    /// Forgets a message that was acknowledged or terminated; the next of its subject
    /// may go.
    pub(crate) fn remove(&mut self, seq: u64) {
        let Some(entry) = self.entries.remove(&seq) else {
            return;
        };
        if let Some(subject) = entry.subject {
            if let Some(seqs) = self.subjects.get_mut(&subject) {
                seqs.remove(&seq);
                if seqs.is_empty() {
                    self.subjects.remove(&subject);
                }
            }
        }
    }

    /// Records a failed delivery of `seq` at `now`; returns when its first one failed.
    pub(crate) fn failed(&mut self, seq: u64, now: DateTime<Utc>) -> DateTime<Utc> {
        match self.entries.get_mut(&seq) {
            Some(entry) => *entry.first_failure.get_or_insert(now),
            None => now,
        }
    }

    /// Records that `seq` was nacked: the server hands it out again after `delay`.
    pub(crate) fn nacked(&mut self, seq: u64, now: Instant, delay: Duration, ack_wait: Duration) {
        if let Some(entry) = self.entries.get_mut(&seq) {
            entry.slot = Slot::Away {
                until: now + delay + ack_wait,
            };
        }
    }

    /// Messages to keep alive on the server: held ones, and in-flight ones whose ack wait
    /// here has not run out (the server's own ack wait is the shorter liveness window).
    pub(crate) fn alive(&self, now: Instant) -> Vec<M> {
        self.entries
            .values()
            .filter(|e| match e.slot {
                Slot::Held => true,
                Slot::InFlight { deadline } => deadline > now,
                Slot::Away { .. } => false,
            })
            .map(|e| e.message.clone())
            .collect()
    }

    /// Forgets every held and in-flight message; returns them, to be handed back.
    pub(crate) fn drain(&mut self) -> Vec<M> {
        let taken = std::mem::take(&mut self.entries);
        self.subjects.clear();
        taken
            .into_values()
            .filter(|e| !matches!(e.slot, Slot::Away { .. }))
            .map(|e| e.message)
            .collect()
    }

    /// In-flight messages past their deadline are away (the server redelivers them);
    /// away messages not back in time are forgotten.
    fn expire(&mut self, now: Instant, ack_wait: Duration) {
        let mut gone = Vec::new();
        for (&seq, entry) in &mut self.entries {
            match entry.slot {
                Slot::InFlight { deadline } if deadline <= now => {
                    entry.slot = Slot::Away {
                        until: deadline + ack_wait,
                    };
                }
                Slot::Away { until } if until <= now => gone.push(seq),
                _ => {}
            }
        }
        for seq in gone {
            self.remove(seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_secs(10);

    fn seqs(out: &[(u64, &'static str)]) -> Vec<u64> {
        out.iter().map(|(s, _)| *s).collect()
    }

    fn gate(items: &[(u64, Option<&str>)]) -> Gate<&'static str> {
        let mut gate = Gate::default();
        for &(seq, subject) in items {
            gate.admit(seq, subject.map(str::to_owned), "m");
        }
        gate
    }

    #[test]
    fn one_event_per_subject_at_a_time() {
        let now = Instant::now();
        let mut g = gate(&[(1, Some("a")), (2, Some("a")), (3, Some("b")), (4, None)]);
        assert_eq!(seqs(&g.take_ready(now, 10, WAIT)), vec![1, 3, 4]);
        assert!(g.delivered(2).is_none(), "a held event is not delivered");
        assert!(g.take_ready(now, 10, WAIT).is_empty());
        g.remove(1);
        assert_eq!(seqs(&g.take_ready(now, 10, WAIT)), vec![2]);
        assert_eq!(g.len(), 3);
    }

    #[test]
    fn a_nacked_event_blocks_its_subject_until_it_is_back() {
        let now = Instant::now();
        let mut g = gate(&[(1, Some("a")), (2, Some("a"))]);
        g.take_ready(now, 10, WAIT);
        g.nacked(1, now, Duration::ZERO, WAIT);
        assert!(g.take_ready(now, 10, WAIT).is_empty(), "2 waits for 1");
        g.admit(1, Some("a".into()), "again");
        assert_eq!(g.take_ready(now, 10, WAIT), vec![(1, "again")]);
    }

    #[test]
    fn an_event_that_never_comes_back_stops_blocking() {
        let now = Instant::now();
        let mut g = gate(&[(1, Some("a")), (2, Some("a"))]);
        g.take_ready(now, 10, WAIT);
        let expired = now + WAIT;
        assert!(g.take_ready(expired, 10, WAIT).is_empty());
        assert!(g.delivered(1).is_some(), "a late ack still finds it");
        let later = expired + WAIT;
        assert_eq!(seqs(&g.take_ready(later, 10, WAIT)), vec![2]);
        assert!(g.delivered(1).is_none());
    }

    #[test]
    fn alive_and_drained_messages() {
        let now = Instant::now();
        let mut g = gate(&[(1, Some("a")), (2, Some("a")), (3, None)]);
        g.take_ready(now, 10, WAIT);
        g.nacked(3, now, Duration::ZERO, WAIT);
        assert_eq!(g.alive(now).len(), 2, "held 2 and in-flight 1");
        assert_eq!(g.alive(now + WAIT).len(), 1, "1 ran out of its ack wait");
        assert_eq!(g.drain().len(), 2);
        assert_eq!(g.len(), 0);
    }
}
