//! [`PostgresOptions`]: how a [`PostgresLog`](crate::PostgresLog) connects and behaves.
//!
//! The schema is the unit of isolation: every table lives in it, so several logs (or
//! several test runs) share one database without seeing each other, and every instance
//! that should share a log names the same schema.

use std::time::Duration;

use pulse_core::{LogError, Retention};

/// Settings of a [`PostgresLog`](crate::PostgresLog).
#[derive(Clone, Debug)]
pub struct PostgresOptions {
    /// The schema holding the log's tables; created when missing. 1 to 63 characters of
    /// `[a-z0-9_]`, not starting with a digit.
    pub schema: String,
    /// Pooled connections (the LISTEN connection comes on top).
    pub pool_size: usize,
    /// This instance's name in the delivery bookkeeping. An instance that reconnects
    /// under the same name takes back its unacknowledged deliveries at once; `None` picks
    /// a fresh random name.
    pub instance: Option<String>,
    /// How long to wait for a connection, from the pool or from the server.
    pub connect_timeout: Duration,
    /// The most events written in one append transaction (group commit).
    pub max_batch: usize,
    /// How often this instance records that it is alive.
    pub heartbeat: Duration,
    /// After how long without a heartbeat an instance counts as dead: its in-flight
    /// deliveries go to the other instances without waiting for their ack wait.
    pub instance_timeout: Duration,
    /// How long events are kept (default: forever). `max_age` goes by the time the event
    /// was stored; an event's stored size (what `max_bytes` counts) is the octets of its
    /// attributes and data as stored, defined in the `retention` module; events held by a
    /// dead letter are kept and not counted. `max_bytes` is at most `i64::MAX`.
    pub retention: Retention,
    /// How often this instance looks for events to delete when a limit is set; with
    /// several instances, one of them prunes at a time.
    pub prune_interval: Duration,
    /// The most events one retention step deletes (one short transaction).
    pub prune_batch: usize,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self::new("pulse")
    }
}

impl PostgresOptions {
    /// Defaults for the log in `schema`: 8 connections, 5 s timeouts, batches of up to
    /// 8,192 events, a heartbeat every second and instances dead after 3 s of silence;
    /// no retention (when one is set, a pass every 5 s, 10,000 events per step).
    pub fn new(schema: impl Into<String>) -> Self {
        Self {
            schema: schema.into(),
            pool_size: 8,
            instance: None,
            connect_timeout: Duration::from_secs(5),
            max_batch: 8192,
            heartbeat: Duration::from_secs(1),
            instance_timeout: Duration::from_secs(3),
            retention: Retention::default(),
            prune_interval: Duration::from_secs(5),
            prune_batch: 10_000,
        }
    }

    /// Checks the settings, naming the first one that is wrong.
    pub fn validate(&self) -> Result<(), LogError> {
        let schema = &self.schema;
        let schema_ok = !schema.is_empty()
            && schema.len() <= 63
            && !schema.starts_with(|c: char| c.is_ascii_digit())
            && schema
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !schema_ok {
            return Err(invalid(format!(
                "schema must be 1 to 63 characters of [a-z0-9_] not starting with a digit, got {schema:?}"
            )));
        }
        if self.pool_size == 0 {
            return Err(invalid("pool_size must be at least 1".into()));
        }
        if self.max_batch == 0 {
            return Err(invalid("max_batch must be at least 1".into()));
        }
        if self.heartbeat.is_zero() || self.instance_timeout <= self.heartbeat {
            return Err(invalid(
                "instance_timeout must be longer than a non-zero heartbeat".into(),
            ));
        }
        if self.prune_interval.is_zero() || self.prune_batch == 0 {
            return Err(invalid(
                "prune_interval and prune_batch must be non-zero".into(),
            ));
        }
        if self.retention.max_age.is_some_and(|age| age.is_zero()) {
            return Err(invalid("max_age must be non-zero".into()));
        }
        // Byte totals are PostgreSQL bigints.
        if self
            .retention
            .max_bytes
            .is_some_and(|bytes| i64::try_from(bytes).is_err())
        {
            return Err(invalid(format!("max_bytes must be at most {}", i64::MAX)));
        }
        if let Some(name) = &self.instance {
            if name.is_empty() || name.len() > 128 {
                return Err(invalid("instance must be 1 to 128 characters".into()));
            }
        }
        Ok(())
    }
}

fn invalid(message: String) -> LogError {
    LogError::Incompatible(format!("invalid postgres options: {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_checked() {
        for good in ["pulse", "t_1", "a"] {
            assert!(PostgresOptions::new(good).validate().is_ok(), "{good}");
        }
        let long = "x".repeat(64);
        for bad in ["", "1abc", "Pulse", "a-b", "a;drop", long.as_str()] {
            assert!(PostgresOptions::new(bad).validate().is_err(), "{bad}");
        }
    }

    #[test]
    fn retention_settings_are_checked() {
        let mut options = PostgresOptions::new("p");
        options.retention.max_age = Some(Duration::from_secs(60));
        options.retention.max_events = Some(0);
        options.retention.max_bytes = Some(0);
        assert!(options.validate().is_ok());
        options.retention.max_bytes = Some(i64::MAX as u64);
        assert!(options.validate().is_ok());
        for bad in [
            PostgresOptions {
                retention: Retention {
                    max_age: Some(Duration::ZERO),
                    ..options.retention
                },
                ..options.clone()
            },
            PostgresOptions {
                prune_interval: Duration::ZERO,
                ..options.clone()
            },
            PostgresOptions {
                prune_batch: 0,
                ..options.clone()
            },
            PostgresOptions {
                retention: Retention {
                    max_bytes: Some(i64::MAX as u64 + 1),
                    ..options.retention
                },
                ..options.clone()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_instance_timeout_must_exceed_the_heartbeat() {
        let mut options = PostgresOptions::new("p");
        options.instance_timeout = options.heartbeat;
        assert!(options.validate().is_err());
    }
}
