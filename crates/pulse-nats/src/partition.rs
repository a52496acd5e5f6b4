//! Partitions: how an event's `subject` (Pulse's partition key) picks the NATS subject it
//! is stored under, and how a consumer group's JetStream consumers are named.
//!
//! An event with a subject is stored at `<prefix>.<p>.<type>` with
//! `p = fnv1a(subject) % partitions`; one without a subject has no order to keep and is
//! stored at `<prefix>.u.<type>` ("unordered"). A group owns one durable consumer per
//! partition (`<group>~<p>`, `max_ack_pending = 1`, so JetStream hands out a partition's
//! next event only once the previous one is acknowledged or terminated, whichever
//! instance holds it) and one for the unordered events (`<group>~u`, the configured
//! `max_ack_pending`). `~` cannot occur in a group name, so consumer names never clash.
//!
//! FNV-1a is fixed here and never changes: every instance, in every version, must put a
//! subject in the same partition.

/// The token of events without a subject.
pub(crate) const UNORDERED: &str = "u";

/// Separates a group's name from its consumer's part.
const SEPARATOR: char = '~';

/// One of a group's consumers: a partition's, or the unordered events'.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Part {
    /// Events whose subject hashes to this partition.
    Partition(u32),
    /// Events without a subject.
    Unordered,
}

impl Part {
    /// Every part of a log with `partitions` partitions, the unordered one last.
    pub(crate) fn all(partitions: u32) -> impl Iterator<Item = Part> {
        (0..partitions)
            .map(Part::Partition)
            .chain(std::iter::once(Part::Unordered))
    }

    /// The part holding events with `subject`.
    pub(crate) fn of(subject: Option<&str>, partitions: u32) -> Part {
        match subject {
            Some(subject) => Part::Partition(fnv1a(subject.as_bytes()) % partitions.max(1)),
            None => Part::Unordered,
        }
    }

    /// The subject token of the part.
    pub(crate) fn token(self) -> String {
        match self {
            Part::Partition(p) => p.to_string(),
            Part::Unordered => UNORDERED.to_owned(),
        }
    }

    fn parse(token: &str) -> Option<Part> {
        if token == UNORDERED {
            return Some(Part::Unordered);
        }
        // Only canonical decimals: "01" is not partition 1.
        let p: u32 = token.parse().ok()?;
        (p.to_string() == token).then_some(Part::Partition(p))
    }

    /// The durable name of `group`'s consumer of this part.
    pub(crate) fn consumer(self, group: &str) -> String {
        format!("{group}{SEPARATOR}{}", self.token())
    }

    /// The group and part of a consumer name, when it is one of Pulse's.
    pub(crate) fn of_consumer(name: &str) -> Option<(&str, Part)> {
        let (group, token) = name.rsplit_once(SEPARATOR)?;
        Some((group, Part::parse(token)?))
    }

    /// Index of the part among [`Part::all`].
    pub(crate) fn index(self, partitions: u32) -> usize {
        match self {
            Part::Partition(p) => p as usize,
            Part::Unordered => partitions as usize,
        }
    }
}

/// 32-bit FNV-1a.
fn fnv1a(bytes: &[u8]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for &b in bytes {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_fnv1a_and_stable() {
        assert_eq!(fnv1a(b""), 0x811c_9dc5);
        assert_eq!(fnv1a(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a(b"foobar"), 0xbf9c_f968);
        assert_eq!(
            Part::of(Some("user-1"), 16),
            Part::of(Some("user-1"), 16),
            "same subject, same partition"
        );
        assert_eq!(Part::of(None, 16), Part::Unordered);
    }

    #[test]
    fn subjects_spread_over_partitions() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..200 {
            seen.insert(Part::of(Some(&format!("user-{i}")), 16));
        }
        assert_eq!(seen.len(), 16);
    }

    #[test]
    fn the_contract_suites_subjects_fall_apart() {
        // `group_keeps_order_per_subject` expects alice and bob to run concurrently.
        assert_ne!(Part::of(Some("alice"), 16), Part::of(Some("bob"), 16));
    }

    #[test]
    fn consumer_names_round_trip() {
        for part in Part::all(4) {
            let name = part.consumer("my-group_1");
            assert_eq!(Part::of_consumer(&name), Some(("my-group_1", part)));
            assert_eq!(Part::all(4).nth(part.index(4)), Some(part));
        }
        assert_eq!(Part::of_consumer("plain"), None);
        assert_eq!(Part::of_consumer("g~01"), None);
        assert_eq!(Part::of_consumer("g~x"), None);
    }
}
