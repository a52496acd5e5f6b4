//! The configuration file of `pulse serve` (`pulse.toml`): one TOML file, whose tables
//! are read by the program they configure.
//!
//! This module reads the tables about the process: `[log]`, where the event log lives,
//! and `[retention]`, how long it keeps events (a [`Retention`], which every backend
//! takes). The rest of the file goes to [`pulse_server::Config::from_table`], which reads
//! the server's tables. As there, raw structs with `deny_unknown_fields` are validated into
//! the types the program uses, and a bad value is an error that names its key.

use std::path::{Path, PathBuf};

use pulse_core::Retention;
use pulse_server::config::{duration, invalid};
use pulse_server::{Config, ConfigError};
use serde::Deserialize;

/// The whole validated file.
#[derive(Debug, Default)]
pub(crate) struct ServeConfig {
    /// The server's tables.
    pub(crate) server: Config,
    /// Where the event log lives (`[log]`).
    pub(crate) log: LogConfig,
    /// How long the log keeps events (`[retention]`).
    pub(crate) retention: Retention,
}

impl ServeConfig {
    /// Reads and validates a configuration file.
    pub(crate) fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses and validates configuration text.
    pub(crate) fn parse(text: &str) -> Result<Self, ConfigError> {
        let mut table: toml::Table =
            toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        let raw_log: Option<RawLog> = take(&mut table, "log")?;
        let raw_retention: Option<RawRetention> = take(&mut table, "retention")?;
        let server = Config::from_table(table)?;
        let retention = match raw_retention {
            Some(r) => validate_retention(r)?,
            None => Retention::default(),
        };
        let log = match raw_log {
            Some(l) => validate_log(l)?,
            None => LogConfig::default(),
        };
        Ok(Self {
            server,
            log,
            retention,
        })
    }
}

/// Takes the table `name` out of `table` and reads it as `T`.
fn take<T: serde::de::DeserializeOwned>(
    table: &mut toml::Table,
    name: &str,
) -> Result<Option<T>, ConfigError> {
    table
        .remove(name)
        .map(|value| {
            value
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Parse(format!("[{name}]: {e}")))
        })
        .transpose()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    max_age: Option<String>,
    max_events: Option<u64>,
    max_bytes: Option<u64>,
}

fn validate_retention(r: RawRetention) -> Result<Retention, ConfigError> {
    Ok(Retention {
        max_age: r
            .max_age
            .map(|t| duration("retention.max_age", &t))
            .transpose()?,
        max_events: at_least_one("retention.max_events", r.max_events)?,
        max_bytes: at_least_one("retention.max_bytes", r.max_bytes)?,
    })
}

/// `limit` unless it is zero.
fn at_least_one(key: &str, limit: Option<u64>) -> Result<Option<u64>, ConfigError> {
    match limit {
        Some(0) => Err(invalid(key, "must be at least 1")),
        limit => Ok(limit),
    }
}

/// Which event log `pulse serve` stores events in (`[log] backend`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogBackend {
    /// The embedded SQLite log in the data directory: one instance.
    #[default]
    Sqlite,
    /// A PostgreSQL database shared by several instances.
    Postgres,
    /// NATS JetStream shared by several instances.
    Nats,
}

/// The `[log]` table: where the event log lives.
#[derive(Clone, Default, PartialEq)]
pub(crate) struct LogConfig {
    /// The backend.
    pub(crate) backend: LogBackend,
    /// Server URL of the `postgres` or `nats` backend (may hold a password).
    pub(crate) url: Option<String>,
    /// Namespace of the log on the shared server (the PostgreSQL schema, the NATS subject
    /// prefix); the backend's default when absent.
    pub(crate) schema: Option<String>,
    /// This instance's name among the instances sharing the log; an instance restarted
    /// under the same name takes back its unacknowledged deliveries at once. A fresh
    /// name per start when absent.
    pub(crate) instance: Option<String>,
    /// NATS only: how many partitions events with a subject are spread over (fixed when
    /// the stream is created; every instance must give the same number). A group handles
    /// at most this many subjects at once, in order per subject; the backend's default
    /// when absent.
    pub(crate) partitions: Option<u32>,
    /// NATS only: a PEM file of the authorities trusted for the server's certificate;
    /// the connection must then be TLS. (PostgreSQL takes `sslmode` and `sslrootcert`
    /// in its URL.)
    pub(crate) tls_ca: Option<PathBuf>,
}

impl std::fmt::Debug for LogConfig {
    // The URL may carry a password: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogConfig")
            .field("backend", &self.backend)
            .field("url", &self.url.as_ref().map(|_| "<set>"))
            .field("schema", &self.schema)
            .field("instance", &self.instance)
            .field("partitions", &self.partitions)
            .field("tls_ca", &self.tls_ca)
            .finish()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    backend: Option<LogBackend>,
    url: Option<String>,
    url_env: Option<String>,
    schema: Option<String>,
    instance: Option<String>,
    partitions: Option<u32>,
    tls_ca: Option<PathBuf>,
}

impl std::fmt::Debug for RawLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawLog")
            .field("backend", &self.backend)
            .finish()
    }
}

fn validate_log(raw: RawLog) -> Result<LogConfig, ConfigError> {
    let backend = raw.backend.unwrap_or_default();
    let url = match (raw.url, raw.url_env) {
        (Some(_), Some(_)) => return Err(invalid("log.url", "give url or url_env, not both")),
        (Some(url), None) => Some(url),
        (None, Some(var)) => Some(std::env::var(&var).map_err(|_| {
            invalid(
                "log.url_env",
                format!("environment variable {var:?} is not set"),
            )
        })?),
        (None, None) => None,
    };
    match (backend, &url) {
        (LogBackend::Sqlite, Some(_)) => {
            return Err(invalid(
                "log.url",
                "the sqlite log lives in the data directory and takes no url",
            ))
        }
        (LogBackend::Postgres | LogBackend::Nats, None) => {
            return Err(invalid("log.url", "this backend needs the server's url"))
        }
        (LogBackend::Postgres | LogBackend::Nats, Some(url)) if url.trim().is_empty() => {
            return Err(invalid("log.url", "must not be empty"))
        }
        _ => {}
    }
    if raw.schema.is_some() && backend == LogBackend::Sqlite {
        return Err(invalid("log.schema", "only for a shared backend"));
    }
    if raw.schema.as_deref().is_some_and(str::is_empty) {
        return Err(invalid("log.schema", "must not be empty"));
    }
    if let Some(name) = &raw.instance {
        if name.is_empty() || name.len() > 128 {
            return Err(invalid("log.instance", "must be 1 to 128 characters"));
        }
    }
    if raw.partitions.is_some() && backend != LogBackend::Nats {
        return Err(invalid("log.partitions", "only for the nats backend"));
    }
    if raw.partitions.is_some_and(|n| !(1..=1024).contains(&n)) {
        return Err(invalid("log.partitions", "must be 1 to 1024"));
    }
    if raw.tls_ca.is_some() && backend != LogBackend::Nats {
        return Err(invalid(
            "log.tls_ca",
            "only for the nats backend (postgres takes sslrootcert in its url)",
        ));
    }
    Ok(LogConfig {
        backend,
        url,
        schema: raw.schema,
        instance: raw.instance,
        partitions: raw.partitions,
        tls_ca: raw.tls_ca,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_process_tables_and_the_server_tables_share_one_file() {
        let c = ServeConfig::parse(
            r#"
            [server]
            listen = "127.0.0.1:9000"
            [retention]
            max_age = "7d"
            max_bytes = 10_000_000_000
            [limits]
            request_timeout = "1h30m"
            "#,
        )
        .unwrap();
        assert_eq!(c.server.listen.as_deref(), Some("127.0.0.1:9000"));
        assert_eq!(c.retention.max_age, Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(c.retention.max_bytes, Some(10_000_000_000));
        assert_eq!(c.server.limits.request_timeout, Duration::from_secs(5400));
        assert_eq!(
            ServeConfig::parse("").unwrap().retention,
            Retention::default()
        );
    }

    #[test]
    fn unknown_keys_are_named_in_every_table() {
        for (text, key) in [
            ("colour = 1\n", "colour"),
            ("[limits]\nmax_body = 3\n", "max_body"),
            ("[retention]\nmax_days = 3\n", "max_days"),
            (
                "[log]\nbackend = \"nats\"\nurl = \"nats://n\"\nprefix = \"x\"\n",
                "prefix",
            ),
        ] {
            let err = ServeConfig::parse(text).unwrap_err();
            assert!(matches!(err, ConfigError::Parse(_)), "{text}");
            assert!(err.to_string().contains(key), "{err}");
        }
    }

    #[test]
    fn bad_retention_values_name_their_key() {
        for (text, key) in [
            ("[retention]\nmax_events = 0", "retention.max_events"),
            ("[retention]\nmax_bytes = 0", "retention.max_bytes"),
            ("[retention]\nmax_age = \"5 parsecs\"", "retention.max_age"),
        ] {
            match ServeConfig::parse(text) {
                Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_deployment_example_is_valid() {
        for var in ["PULSE_KEY_INGEST", "PULSE_KEY_DASHBOARD", "PULSE_KEY_OPS"] {
            // Only this test reads these variables.
            std::env::set_var(var, format!("{var}-example-secret"));
        }
        let c = ServeConfig::parse(include_str!("../../../deploy/pulse.toml"))
            .unwrap()
            .server;
        assert_eq!(c.jobs.len(), 1);
        assert_eq!(c.webhooks[0].id, "billing");
        assert!(!c.keys.is_open());
    }

    #[test]
    fn the_log_table_names_a_shared_backend() {
        let c = ServeConfig::parse(
            "[log]\nbackend = \"postgres\"\nurl = \"postgres://u:secret@db/pulse\"\nschema = \"pulse_eu\"\ninstance = \"node-1\"",
        )
        .unwrap();
        assert_eq!(c.log.backend, LogBackend::Postgres);
        assert_eq!(c.log.url.as_deref(), Some("postgres://u:secret@db/pulse"));
        assert_eq!(c.log.schema.as_deref(), Some("pulse_eu"));
        assert!(
            !format!("{c:?}").contains("secret"),
            "the url is never printed"
        );
        assert_eq!(
            ServeConfig::parse("").unwrap().log.backend,
            LogBackend::Sqlite
        );
        let nats = ServeConfig::parse(
            "[log]\nbackend = \"nats\"\nurl = \"tls://n:4222\"\npartitions = 64\ntls_ca = \"/etc/pulse/nats-ca.pem\"",
        )
        .unwrap();
        assert_eq!(nats.log.partitions, Some(64));
        assert_eq!(
            nats.log.tls_ca,
            Some(PathBuf::from("/etc/pulse/nats-ca.pem"))
        );
        for (text, key) in [
            ("[log]\nbackend = \"postgres\"", "log.url"),
            ("[log]\nurl = \"postgres://db\"", "log.url"),
            (
                "[log]\nbackend = \"nats\"\nurl_env = \"PULSE_TEST_UNSET_VARIABLE\"",
                "log.url_env",
            ),
            ("[log]\nschema = \"x\"", "log.schema"),
            ("[log]\npartitions = 8", "log.partitions"),
            (
                "[log]\nbackend = \"postgres\"\nurl = \"postgres://db\"\ntls_ca = \"/ca.pem\"",
                "log.tls_ca",
            ),
            (
                "[log]\nbackend = \"nats\"\nurl = \"nats://n:4222\"\npartitions = 0",
                "log.partitions",
            ),
        ] {
            match ServeConfig::parse(text) {
                Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        assert!(matches!(
            ServeConfig::parse("[log]\nbackend = \"mysql\""),
            Err(ConfigError::Parse(_))
        ));
    }
}
