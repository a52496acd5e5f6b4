//! [`NatsOptions`]: how a [`NatsLog`](crate::NatsLog) names its JetStream resources and
//! behaves.
//!
//! The prefix is the unit of isolation: every event of the log is published under
//! `<prefix>.<partition>.<event type>` into one stream (see
//! [`partition`](crate::partition)), and the dead-letter stream and KV buckets take
//! their names from it. Instances that should share a log name the same prefix and the
//! same number of partitions.

use std::path::PathBuf;
use std::time::Duration;

use async_nats::ConnectOptions;
use pulse_core::{LogError, Retention};

use crate::partition::Part;

/// Settings of a [`NatsLog`](crate::NatsLog).
#[derive(Clone, Debug)]
pub struct NatsOptions {
    /// The subject prefix: dot-separated tokens of `[A-Za-z0-9_-]`. Events are published
    /// to `<prefix>.<partition>.<event type>`.
    pub prefix: String,
    /// How many partitions events with a subject are spread over (by a hash of the
    /// subject). Events of one partition are handled one at a time per group, across
    /// every instance, so this bounds a group's concurrency for events with a subject.
    /// Fixed when the stream is created and recorded in it: every instance must use the
    /// same value, and opening a stream made with another value is refused.
    pub partitions: u32,
    /// The stream's name; `None` derives it from the prefix (dots become `_`).
    pub stream: Option<String>,
    /// JetStream's duplicate window: a publish whose event id was stored less than this
    /// long ago is recognised by the server itself and returns the original offset.
    /// NATS's default is two minutes; the server keeps every id of the window in memory.
    pub duplicate_window: Duration,
    /// Also keep a durable id → offset index (a KV bucket) so that an id stays
    /// deduplicated after the duplicate window has passed. Costs two more requests per
    /// event, so it is off by default.
    pub id_index: bool,
    /// How long events are kept (default: forever), handed to the stream: `max_age` is
    /// JetStream's `max_age` and must not be shorter than `duplicate_window`, `max_events`
    /// its `max_msgs`, and `max_bytes` its `max_bytes`, which counts each message's
    /// subject, headers and payload as the server stores them. The counts are 1 to
    /// `i64::MAX`.
    pub retention: Retention,
    /// Store the streams in memory instead of files (tests only: nothing survives a
    /// server restart).
    pub memory_storage: bool,
    /// Timeout of every request to the server (publish acks, API calls, acks).
    pub request_timeout: Duration,
    /// How long to wait for the first connection.
    pub connect_timeout: Duration,
    /// A PEM file of the certificate authorities trusted for the server's certificate.
    /// When set, the connection must be TLS (the server's `tls` block), checked against
    /// these and the host name of the URL. Without it, a `tls://` URL is checked against
    /// the system's trust store.
    pub tls_ca: Option<PathBuf>,
    /// The most events without a subject one group has fetched and not yet
    /// acknowledged (JetStream's `max_ack_pending` of the group's unordered consumer;
    /// each partition's is 1); bounds the memory of every member.
    pub max_ack_pending: i64,
    /// Redelivery delays after an ack-wait expiry (JetStream's consumer `backoff`);
    /// empty means every redelivery waits the group's ack wait. Used only when shorter
    /// than the group's `max_deliver`, as JetStream requires.
    pub backoff: Vec<Duration>,
    /// How soon the events a dead instance had fetched go to the other members: the
    /// consumers' ack wait on the server, kept alive by progress acks while the instance
    /// lives (a group's own, longer `ack_wait` is enforced by the instance).
    pub liveness: Duration,
    /// How long a job lease (one `(job, tick)` claim) is kept.
    pub lease_ttl: Duration,
    /// How often `watch_appends` asks the server for the last offset, to see appends
    /// made by other instances (this instance's own appends show at once).
    pub watch_interval: Duration,
}

impl Default for NatsOptions {
    fn default() -> Self {
        Self::new("pulse")
    }
}

impl NatsOptions {
    /// Defaults for the log under `prefix`: 16 partitions, file storage, a 2 minute
    /// duplicate window without an id index, 5 s timeouts, a 3 s liveness window, up to
    /// 4,096 unacknowledged events without a subject per group, job leases kept a day,
    /// other instances' appends seen within 100 ms.
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            partitions: 16,
            stream: None,
            duplicate_window: Duration::from_secs(120),
            id_index: false,
            retention: Retention::default(),
            memory_storage: false,
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            tls_ca: None,
            max_ack_pending: 4096,
            backoff: Vec::new(),
            liveness: Duration::from_secs(3),
            lease_ttl: Duration::from_secs(24 * 3600),
            watch_interval: Duration::from_millis(100),
        }
    }

    /// The client settings every connection of the log starts from: its timeout and TLS.
    pub(crate) fn client(&self) -> ConnectOptions {
        let client = ConnectOptions::new().connection_timeout(self.connect_timeout);
        match &self.tls_ca {
            Some(ca) => client.add_root_certificates(ca.clone()).require_tls(true),
            None => client,
        }
    }

    /// Checks the settings, naming the first one that is wrong.
    pub fn validate(&self) -> Result<(), LogError> {
        let token_ok = |t: &str| {
            !t.is_empty()
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        if !self.prefix.split('.').all(token_ok) || self.prefix.len() > 64 {
            return Err(invalid(format!(
                "prefix must be up to 64 characters of dot-separated [A-Za-z0-9_-] tokens, got {:?}",
                self.prefix
            )));
        }
        if let Some(stream) = &self.stream {
            if !token_ok(stream) || stream.len() > 64 {
                return Err(invalid(format!(
                    "stream must be 1 to 64 characters of [A-Za-z0-9_-], got {stream:?}"
                )));
            }
        }
        if !(1..=MAX_PARTITIONS).contains(&self.partitions) {
            return Err(invalid(format!(
                "partitions must be 1 to {MAX_PARTITIONS}, got {}",
                self.partitions
            )));
        }
        if self.duplicate_window < Duration::from_millis(100) {
            return Err(invalid("duplicate_window must be at least 100ms".into()));
        }
        if self
            .retention
            .max_age
            .is_some_and(|age| age < self.duplicate_window)
        {
            return Err(invalid(
                "max_age must not be shorter than duplicate_window".into(),
            ));
        }
        for (name, limit) in [
            ("max_events", self.retention.max_events),
            ("max_bytes", self.retention.max_bytes),
        ] {
            // JetStream takes its limits as signed 64-bit numbers, 0 meaning none.
            if limit.is_some_and(|n| n == 0 || n > i64::MAX as u64) {
                return Err(invalid(format!("{name} must be 1 to {}", i64::MAX)));
            }
        }
        if let Some(ca) = &self.tls_ca {
            // Read at connect time by the client, whose error would not name the file.
            std::fs::File::open(ca)
                .map_err(|e| invalid(format!("tls_ca {}: {e}", ca.display())))?;
        }
        if self.request_timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(invalid("timeouts must not be zero".into()));
        }
        if self.liveness < Duration::from_millis(300) {
            return Err(invalid("liveness must be at least 300ms".into()));
        }
        if self.max_ack_pending < 1 {
            return Err(invalid("max_ack_pending must be at least 1".into()));
        }
        if self.lease_ttl < Duration::from_secs(1) {
            return Err(invalid("lease_ttl must be at least 1s".into()));
        }
        if self.watch_interval.is_zero() {
            return Err(invalid("watch_interval must not be zero".into()));
        }
        Ok(())
    }

    /// The names of every JetStream resource of the log.
    pub fn names(&self) -> Names {
        let stream = self
            .stream
            .clone()
            .unwrap_or_else(|| self.prefix.replace('.', "_"));
        Names {
            events_subject_prefix: self.prefix.clone(),
            partitions: self.partitions,
            dead_stream: format!("{stream}_DLQ"),
            dead_prefix: format!("{}_dlq", self.prefix),
            ids_bucket: format!("{stream}_ids"),
            leases_bucket: format!("{stream}_leases"),
            checkpoints_bucket: format!("{stream}_checkpoints"),
            aggregates_bucket: format!("{stream}_aggregates"),
            stream,
        }
    }
}

/// Where a log keeps its data on the server.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Names {
    /// The event stream.
    pub stream: String,
    /// Events are published to `<this>.<partition>.<event type>`.
    pub events_subject_prefix: String,
    /// How many partitions events with a subject are spread over.
    pub partitions: u32,
    /// The dead-letter stream.
    pub dead_stream: String,
    /// Its subjects: `<this>.dead.<group>` (dead letters) and `<this>.redrive.<group>`
    /// (dead letters handed back).
    pub dead_prefix: String,
    /// The KV bucket of the id index.
    pub ids_bucket: String,
    /// The KV bucket of job leases.
    pub leases_bucket: String,
    /// The KV bucket of job checkpoints.
    pub checkpoints_bucket: String,
    /// The KV bucket of the aggregates and checkpoints of aggregation jobs.
    pub aggregates_bucket: String,
}

impl Names {
    /// The subject of an event of type `ty` and subject `subject`.
    pub fn event_subject(&self, ty: &str, subject: Option<&str>) -> String {
        let part = Part::of(subject, self.partitions);
        format!("{}.{}.{ty}", self.events_subject_prefix, part.token())
    }

    /// The subjects of the event stream: every partition, every type.
    pub fn stream_subjects(&self) -> String {
        format!("{}.*.>", self.events_subject_prefix)
    }

    /// The subject filter of events whose type matches `pattern` (Pulse's pattern
    /// grammar is NATS's, so it maps token for token), in every partition.
    pub fn event_filter(&self, pattern: Option<&str>) -> String {
        format!(
            "{}.*.{}",
            self.events_subject_prefix,
            pattern.unwrap_or(">")
        )
    }

    /// The subject filter of the events of `part` whose type matches `pattern`.
    pub(crate) fn part_filter(&self, part: Part, pattern: &str) -> String {
        format!("{}.{}.{pattern}", self.events_subject_prefix, part.token())
    }

    /// The event type (or pattern) of a subject (or filter) of the log's.
    pub fn event_type<'a>(&self, subject: &'a str) -> Option<&'a str> {
        let rest = subject
            .strip_prefix(self.events_subject_prefix.as_str())?
            .strip_prefix('.')?;
        let (_part, ty) = rest.split_once('.')?;
        Some(ty)
    }

    /// The subject of `group`'s dead letters (`*` for every group).
    pub fn dead_subject(&self, group: &str) -> String {
        format!("{}.dead.{group}", self.dead_prefix)
    }

    /// The subject of `group`'s redrive requests.
    pub fn redrive_subject(&self, group: &str) -> String {
        format!("{}.redrive.{group}", self.dead_prefix)
    }
}

/// The most partitions a log may have (each is one consumer per group).
pub const MAX_PARTITIONS: u32 = 1024;

fn invalid(message: String) -> LogError {
    LogError::Incompatible(format!("invalid NATS options: {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_prefix() {
        let names = NatsOptions::new("acme.pulse").names();
        assert_eq!(names.stream, "acme_pulse");
        assert_eq!(
            names.event_subject("health.hr", None),
            "acme.pulse.u.health.hr"
        );
        let keyed = names.event_subject("health.hr", Some("user-1"));
        let part = Part::of(Some("user-1"), 16).token();
        assert_eq!(keyed, format!("acme.pulse.{part}.health.hr"));
        assert_eq!(
            names.event_filter(Some("health.*")),
            "acme.pulse.*.health.*"
        );
        assert_eq!(names.event_filter(None), "acme.pulse.*.>");
        assert_eq!(names.stream_subjects(), "acme.pulse.*.>");
        assert_eq!(
            names.part_filter(Part::Partition(3), "health.>"),
            "acme.pulse.3.health.>"
        );
        assert_eq!(names.event_type(&keyed), Some("health.hr"));
        assert_eq!(names.event_type("acme.pulse.u.health.*"), Some("health.*"));
        assert_eq!(names.event_type("acme.pulsex.u.health"), None);
        assert_eq!(names.dead_subject("g"), "acme.pulse_dlq.dead.g");
        assert_eq!(names.dead_stream, "acme_pulse_DLQ");
    }

    #[test]
    fn bad_settings_are_named() {
        for prefix in ["", "a..b", "a b", "a.*", "a.>"] {
            let err = NatsOptions::new(prefix).validate().unwrap_err();
            assert!(err.to_string().contains("prefix"), "{prefix:?}: {err}");
        }
        let mut options = NatsOptions::new("ok");
        options.duplicate_window = Duration::from_millis(1);
        assert!(options
            .validate()
            .unwrap_err()
            .to_string()
            .contains("duplicate_window"));
        let mut options = NatsOptions::new("ok");
        options.partitions = 0;
        assert!(options
            .validate()
            .unwrap_err()
            .to_string()
            .contains("partitions"));
        assert!(NatsOptions::new("ok").validate().is_ok());
    }

    #[test]
    fn limits_and_the_tls_authority_file_are_checked() {
        let named = |options: NatsOptions| options.validate().unwrap_err().to_string();
        for limit in [0, i64::MAX as u64 + 1] {
            let mut options = NatsOptions::new("ok");
            options.retention.max_bytes = Some(limit);
            assert!(named(options).contains("max_bytes must be 1 to"), "{limit}");
            let mut options = NatsOptions::new("ok");
            options.retention.max_events = Some(limit);
            assert!(
                named(options).contains("max_events must be 1 to"),
                "{limit}"
            );
        }
        let mut options = NatsOptions::new("ok");
        options.retention.max_bytes = Some(i64::MAX as u64);
        options.retention.max_events = Some(1);
        assert!(options.validate().is_ok());
        options.tls_ca = Some("/no/such/nats-ca.pem".into());
        assert!(named(options).contains("tls_ca /no/such/nats-ca.pem"));
    }
}
