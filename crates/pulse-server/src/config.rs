//! The server's configuration file (`pulse.toml`).
//!
//! TOML is read into raw serde structs with `deny_unknown_fields`, so a misspelt key is an
//! error that names it, then [`RawConfig::validate`] turns them into [`Config`], the types
//! the server uses (patterns parsed, durations and URLs checked, names unique). Everything
//! is optional: an empty file is a valid configuration (open API, persistent events,
//! default limits).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pulse_core::log::validate_group_name;
use pulse_core::Pattern;
use serde::Deserialize;

use crate::auth::{ApiKey, KeyRing};
use crate::webhook::WebhookSpec;

/// Why a configuration was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML does not parse or has an unknown or mistyped key.
    #[error("{0}")]
    Parse(String),
    /// A value is not allowed; the message names the key.
    #[error("{key}: {reason}")]
    Invalid {
        /// The dotted key, e.g. `api_keys[1].publish[0]`.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

/// The validated configuration.
#[derive(Debug, Default)]
pub struct Config {
    /// Address to listen on, unless the command line says otherwise.
    pub listen: Option<SocketAddr>,
    /// Data directory, unless the command line says otherwise.
    pub data_dir: Option<PathBuf>,
    /// Request limits.
    pub limits: Limits,
    /// TLS certificate and key, when the server speaks HTTPS.
    pub tls: Option<TlsConfig>,
    /// The API keys; empty means the API is open.
    pub keys: KeyRing,
    /// Durability per type pattern, first match wins; unmatched types are persistent.
    pub durability: Vec<DurabilityRule>,
    /// How long the log keeps events.
    pub retention: Retention,
    /// Webhook subscriptions declared in the file.
    pub webhooks: Vec<WebhookSpec>,
    /// Consumer group defaults.
    pub groups: GroupDefaults,
    /// Aggregation jobs.
    pub jobs: Vec<JobSpec>,
    /// Where the event log lives (`[log]`).
    pub log: LogConfig,
}

/// Request limits.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Longest time a non-streaming request may take.
    pub request_timeout: Duration,
    /// Most connections held at once. At the limit, the connection idle the longest (no
    /// request in flight: keep-alive, a head not complete yet, a TLS handshake) is closed
    /// to make room; only when every connection has a request in flight does a new one wait.
    pub max_connections: usize,
    /// Longest time an HTTP/1 request head (request line and headers) may take to arrive
    /// in full, counted from its first byte: a client sending half a request is cut off.
    pub header_read_timeout: Duration,
    /// Longest time a connection may stay open with no request in flight (before its
    /// first request, between keep-alive requests, an HTTP/2 connection with no stream).
    /// Streams (SSE, a WebSocket session) are requests in flight and are not cut.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 4 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            // Longer than the keep-alive of the Python client's aiohttp (15 s): the client
            // should close an idle connection first, so that it never sends a request on
            // one the server is closing.
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Paths of a PEM certificate chain and private key.
#[derive(Clone, Debug)]
pub struct TlsConfig {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
}

/// How events of some types are kept: pulse-core's one definition, spelled `"persistent"`
/// or `"memory"` in the file.
pub use pulse_core::Durability;

/// One durability rule.
#[derive(Clone, Debug)]
pub struct DurabilityRule {
    /// The types it applies to.
    pub pattern: Pattern,
    /// How they are kept.
    pub mode: Durability,
}

/// Which durability a type gets under `rules` (first match, else persistent).
pub fn durability_of(rules: &[DurabilityRule], ty: &str) -> Durability {
    rules
        .iter()
        .find(|r| r.pattern.matches(ty))
        .map_or(Durability::Persistent, |r| r.mode)
}

/// How long the log keeps events. Every backend applies every limit; an event goes when
/// any limit says so. Events a dead letter points to are kept on SQLite and PostgreSQL.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Retention {
    /// Drop events older than this.
    pub max_age: Option<Duration>,
    /// Keep at most this many events.
    pub max_events: Option<u64>,
    /// Keep the newest events whose stored sizes add up to at most this many bytes
    /// (each backend counts the bytes it stores; see its `max_bytes`).
    pub max_bytes: Option<u64>,
}

/// Consumer group defaults for groups the server creates (WebSocket, SSE, webhooks).
#[derive(Clone, Debug)]
pub struct GroupDefaults {
    /// How long a delivery may stay unacknowledged before it is redelivered.
    pub ack_wait: Duration,
    /// Deliveries before an event is dead-lettered.
    pub max_deliver: u32,
}

impl Default for GroupDefaults {
    fn default() -> Self {
        Self {
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
        }
    }
}

/// One aggregation job.
#[derive(Clone, Debug)]
pub struct JobSpec {
    /// Unique name.
    pub name: String,
    /// When it runs (`every 5m` or a cron expression in the job's time zone).
    pub schedule: pulse_scheduler::Schedule,
    /// Window sizes and the time zone of calendar days.
    pub windows: pulse_batch::WindowSet,
    /// Types of the events carrying readings.
    pub source_pattern: Pattern,
}

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    server: Option<RawServer>,
    limits: Option<RawLimits>,
    tls: Option<RawTls>,
    #[serde(default)]
    api_keys: Vec<RawKey>,
    #[serde(default)]
    durability: Vec<RawDurability>,
    retention: Option<RawRetention>,
    groups: Option<RawGroups>,
    #[serde(default)]
    webhooks: Vec<RawWebhook>,
    #[serde(default)]
    jobs: Vec<RawJob>,
    log: Option<RawLog>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_body_bytes: Option<usize>,
    request_timeout: Option<String>,
    max_connections: Option<usize>,
    header_read_timeout: Option<String>,
    idle_timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: PathBuf,
    key: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    name: String,
    key: Option<String>,
    key_env: Option<String>,
    #[serde(default)]
    publish: Vec<String>,
    #[serde(default)]
    subscribe: Vec<String>,
    #[serde(default)]
    admin: bool,
}

impl std::fmt::Debug for RawKey {
    // The secret never reaches a log line, even through a debug print of the config.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawKey").field("name", &self.name).finish()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDurability {
    pattern: String,
    mode: Durability,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    max_age: Option<String>,
    max_events: Option<u64>,
    max_bytes: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroups {
    ack_wait: Option<String>,
    max_deliver: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    name: String,
    pattern: String,
    group: Option<String>,
    url: String,
    max_deliver: Option<u32>,
    backoff_ms: Option<Vec<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJob {
    name: String,
    schedule: String,
    windows: Vec<String>,
    #[serde(default = "default_tz")]
    tz: String,
    source_pattern: String,
}

fn default_tz() -> String {
    "UTC".into()
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses and validates configuration text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        raw.validate()
    }
}

fn pattern(key: &str, text: &str) -> Result<Pattern, ConfigError> {
    Pattern::parse(text).map_err(|e| invalid(key, e.to_string()))
}

/// Parses `500ms`, `30s`, `5m`, `2h`, `7d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} has no unit: use ms, s, m, h or d"))?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} does not start with a whole number"))?;
    let ms = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {text:?}: use ms, s, m, h or d"
            ))
        }
    };
    n.checked_mul(ms)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{text:?} is too long"))
}

/// `limit` unless it is zero.
fn at_least_one(key: &str, limit: Option<u64>) -> Result<Option<u64>, ConfigError> {
    match limit {
        Some(0) => Err(invalid(key, "must be at least 1")),
        limit => Ok(limit),
    }
}

fn positive(key: &str, d: Duration) -> Result<Duration, ConfigError> {
    if d.is_zero() {
        return Err(invalid(key, "must be longer than 0"));
    }
    Ok(d)
}

fn duration(key: &str, text: &str) -> Result<Duration, ConfigError> {
    parse_duration(text).map_err(|reason| invalid(key, reason))
}

impl RawConfig {
    /// Checks every value and builds the [`Config`].
    pub fn validate(self) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        if let Some(server) = self.server {
            if let Some(listen) = server.listen {
                config.listen = Some(listen.parse().map_err(|_| {
                    invalid(
                        "server.listen",
                        format!("{listen:?} is not an address like 127.0.0.1:7400"),
                    )
                })?);
            }
            config.data_dir = server.data_dir;
        }
        if let Some(limits) = self.limits {
            if let Some(max) = limits.max_body_bytes {
                if max == 0 {
                    return Err(invalid("limits.max_body_bytes", "must be at least 1"));
                }
                config.limits.max_body_bytes = max;
            }
            if let Some(t) = limits.request_timeout {
                config.limits.request_timeout = duration("limits.request_timeout", &t)?;
            }
            if let Some(max) = limits.max_connections {
                if max == 0 {
                    return Err(invalid("limits.max_connections", "must be at least 1"));
                }
                config.limits.max_connections = max;
            }
            if let Some(t) = limits.header_read_timeout {
                config.limits.header_read_timeout = positive(
                    "limits.header_read_timeout",
                    duration("limits.header_read_timeout", &t)?,
                )?;
            }
            if let Some(t) = limits.idle_timeout {
                config.limits.idle_timeout =
                    positive("limits.idle_timeout", duration("limits.idle_timeout", &t)?)?;
            }
        }
        config.tls = self.tls.map(|t| TlsConfig {
            cert: t.cert,
            key: t.key,
        });
        config.keys = validate_keys(self.api_keys)?;
        for (i, rule) in self.durability.into_iter().enumerate() {
            config.durability.push(DurabilityRule {
                pattern: pattern(&format!("durability[{i}].pattern"), &rule.pattern)?,
                mode: rule.mode,
            });
        }
        if let Some(r) = self.retention {
            config.retention = Retention {
                max_age: r
                    .max_age
                    .map(|t| duration("retention.max_age", &t))
                    .transpose()?,
                max_events: at_least_one("retention.max_events", r.max_events)?,
                max_bytes: at_least_one("retention.max_bytes", r.max_bytes)?,
            };
        }
        if let Some(g) = self.groups {
            if let Some(t) = g.ack_wait {
                config.groups.ack_wait = duration("groups.ack_wait", &t)?;
            }
            if let Some(m) = g.max_deliver {
                if m == 0 {
                    return Err(invalid("groups.max_deliver", "must be at least 1"));
                }
                config.groups.max_deliver = m;
            }
        }
        config.webhooks = validate_webhooks(self.webhooks, &config.groups)?;
        config.jobs = validate_jobs(self.jobs)?;
        if let Some(log) = self.log {
            config.log = validate_log(log)?;
        }
        Ok(config)
    }
}

fn validate_keys(raw: Vec<RawKey>) -> Result<KeyRing, ConfigError> {
    let mut keys = Vec::with_capacity(raw.len());
    let mut names = HashSet::new();
    for (i, k) in raw.into_iter().enumerate() {
        let at = |field: &str| format!("api_keys[{i}].{field}");
        if k.name.is_empty() || !names.insert(k.name.clone()) {
            return Err(invalid(
                at("name"),
                format!("{:?} is empty or used twice", k.name),
            ));
        }
        let secret = match (k.key, k.key_env) {
            (Some(key), None) => key,
            (None, Some(var)) => std::env::var(&var).map_err(|_| {
                invalid(
                    at("key_env"),
                    format!("environment variable {var} is not set"),
                )
            })?,
            _ => {
                return Err(invalid(
                    at("key"),
                    "give exactly one of `key` and `key_env`",
                ))
            }
        };
        if secret.len() < 16 {
            return Err(invalid(
                at("key"),
                "a key must be at least 16 characters long",
            ));
        }
        let publish = k
            .publish
            .iter()
            .enumerate()
            .map(|(j, p)| pattern(&at(&format!("publish[{j}]")), p))
            .collect::<Result<_, _>>()?;
        let subscribe = k
            .subscribe
            .iter()
            .enumerate()
            .map(|(j, p)| pattern(&at(&format!("subscribe[{j}]")), p))
            .collect::<Result<_, _>>()?;
        keys.push(ApiKey::new(k.name, secret, publish, subscribe, k.admin));
    }
    KeyRing::new(keys).map_err(|reason| invalid("api_keys", reason))
}

fn validate_webhooks(
    raw: Vec<RawWebhook>,
    defaults: &GroupDefaults,
) -> Result<Vec<WebhookSpec>, ConfigError> {
    let mut out: Vec<WebhookSpec> = Vec::with_capacity(raw.len());
    for (i, w) in raw.into_iter().enumerate() {
        let at = |field: &str| format!("webhooks[{i}].{field}");
        let group = w.group.unwrap_or_else(|| format!("webhook-{}", w.name));
        let spec = WebhookSpec::new(
            w.name,
            pattern(&at("pattern"), &w.pattern)?,
            group,
            w.url,
            w.max_deliver.unwrap_or(defaults.max_deliver),
            w.backoff_ms,
        )
        .map_err(|(field, reason)| invalid(at(field), reason))?;
        if out.iter().any(|o| o.id == spec.id || o.group == spec.group) {
            return Err(invalid(at("name"), "name or group used by another webhook"));
        }
        out.push(spec);
    }
    Ok(out)
}

fn validate_jobs(raw: Vec<RawJob>) -> Result<Vec<JobSpec>, ConfigError> {
    let mut out: Vec<JobSpec> = Vec::with_capacity(raw.len());
    for (i, j) in raw.into_iter().enumerate() {
        let at = |field: &str| format!("jobs[{i}].{field}");
        if validate_group_name(&j.name).is_err() || out.iter().any(|o| o.name == j.name) {
            return Err(invalid(
                at("name"),
                format!(
                    "{:?} must be 1 to 64 characters of [A-Za-z0-9_-] and unique",
                    j.name
                ),
            ));
        }
        let tz =
            j.tz.parse::<chrono_tz::Tz>()
                .map_err(|_| invalid(at("tz"), format!("{:?} is not an IANA time zone", j.tz)))?;
        if j.windows.is_empty() {
            return Err(invalid(
                at("windows"),
                "give at least one window, e.g. [\"5m\", \"1h\"]",
            ));
        }
        let windows = pulse_batch::WindowSet::parse(&j.windows.join(","), &j.tz)
            .map_err(|e| invalid(at("windows"), e.to_string()))?;
        let schedule = pulse_scheduler::Schedule::parse(&j.schedule, tz)
            .map_err(|e| invalid(at("schedule"), e.to_string()))?;
        out.push(JobSpec {
            name: j.name,
            schedule,
            windows,
            source_pattern: pattern(&at("source_pattern"), &j.source_pattern)?,
        });
    }
    Ok(out)
}

/// Which event log the server stores events in (`[log] backend`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogBackend {
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
pub struct LogConfig {
    /// The backend.
    pub backend: LogBackend,
    /// Server URL of the `postgres` or `nats` backend (may hold a password).
    pub url: Option<String>,
    /// Namespace of the log on the shared server (the PostgreSQL schema, the NATS subject
    /// prefix); the backend's default when absent.
    pub schema: Option<String>,
    /// This instance's name among the instances sharing the log; an instance restarted
    /// under the same name takes back its unacknowledged deliveries at once. A fresh
    /// name per start when absent.
    pub instance: Option<String>,
    /// NATS only: how many partitions events with a subject are spread over (fixed when
    /// the stream is created; every instance must give the same number). A group handles
    /// at most this many subjects at once, in order per subject; the backend's default
    /// when absent.
    pub partitions: Option<u32>,
    /// NATS only: a PEM file of the authorities trusted for the server's certificate;
    /// the connection must then be TLS. (PostgreSQL takes `sslmode` and `sslrootcert`
    /// in its URL.)
    pub tls_ca: Option<PathBuf>,
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
    use super::*;

    #[test]
    fn empty_file_is_the_default() {
        let c = Config::parse("").unwrap();
        assert!(c.keys.is_open());
        assert_eq!(c.limits.max_body_bytes, 4 * 1024 * 1024);
        assert!(c.durability.is_empty());
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = Config::parse("[limits]\nmax_body = 3\n").unwrap_err();
        assert!(matches!(err, ConfigError::Parse(_)));
        assert!(err.to_string().contains("max_body"), "{err}");
        let err = Config::parse("colour = 1\n").unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
    }

    #[test]
    fn a_full_file_validates() {
        let c = Config::parse(
            r#"
            [server]
            listen = "127.0.0.1:9000"
            data_dir = "/tmp/x"
            [limits]
            max_body_bytes = 1000
            request_timeout = "5s"
            max_connections = 10
            header_read_timeout = "3s"
            idle_timeout = "20s"
            [[api_keys]]
            name = "ingest"
            key = "0123456789abcdef"
            publish = ["health.>"]
            [[durability]]
            pattern = "debug.>"
            mode = "memory"
            [retention]
            max_age = "7d"
            max_bytes = 10_000_000_000
            [[webhooks]]
            name = "billing"
            pattern = "health.>"
            url = "http://127.0.0.1:1/hook"
            backoff_ms = [10, 20]
            [[jobs]]
            name = "readings"
            schedule = "every 5m"
            windows = ["5m", "1h", "1d"]
            tz = "Europe/Berlin"
            source_pattern = "health.reading.>"
            "#,
        )
        .unwrap();
        assert_eq!(c.listen, Some("127.0.0.1:9000".parse().unwrap()));
        assert_eq!(c.limits.request_timeout, Duration::from_secs(5));
        assert_eq!(c.limits.header_read_timeout, Duration::from_secs(3));
        assert_eq!(c.limits.idle_timeout, Duration::from_secs(20));
        assert_eq!(durability_of(&c.durability, "debug.x"), Durability::Memory);
        assert_eq!(
            durability_of(&c.durability, "health.x"),
            Durability::Persistent
        );
        assert_eq!(c.retention.max_age, Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(c.retention.max_bytes, Some(10_000_000_000));
        assert_eq!(c.webhooks[0].group, "webhook-billing");
        assert_eq!(c.jobs[0].windows.tz(), chrono_tz::Europe::Berlin);
        assert_eq!(c.jobs[0].windows.len(), 3);
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            ("[[durability]]\npattern = \"a..b\"\nmode = \"memory\"", "durability[0].pattern"),
            ("[limits]\nrequest_timeout = \"5 parsecs\"", "limits.request_timeout"),
            ("[limits]\nidle_timeout = \"0s\"", "limits.idle_timeout"),
            ("[limits]\nheader_read_timeout = \"soon\"", "limits.header_read_timeout"),
            ("[[api_keys]]\nname = \"a\"\nkey = \"short\"", "api_keys[0].key"),
            (
                "[[api_keys]]\nname = \"a\"\nkey = \"0123456789abcdef\"\nsubscribe = [\"x.>.y\"]",
                "api_keys[0].subscribe[0]",
            ),
            (
                "[[jobs]]\nname = \"j\"\nschedule = \"every 1m\"\nwindows = [\"5 parsecs\"]\nsource_pattern = \"a.>\"",
                "jobs[0].windows",
            ),
            (
                "[[jobs]]\nname = \"j\"\nschedule = \"every 1m\"\nwindows = [\"5m\"]\ntz = \"Mars/Base\"\nsource_pattern = \"a.>\"",
                "jobs[0].tz",
            ),
            (
                "[[jobs]]\nname = \"j\"\nschedule = \"every day\"\nwindows = [\"5m\"]\nsource_pattern = \"a.>\"",
                "jobs[0].schedule",
            ),
            ("[[webhooks]]\nname = \"w\"\npattern = \"a\"\nurl = \"ftp://x\"", "webhooks[0].url"),
            ("[retention]\nmax_events = 0", "retention.max_events"),
            ("[retention]\nmax_bytes = 0", "retention.max_bytes"),
        ];
        for (text, key) in cases {
            match Config::parse(text) {
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
        let c = Config::parse(include_str!("../../../deploy/pulse.toml")).unwrap();
        assert_eq!(c.jobs.len(), 1);
        assert_eq!(c.webhooks[0].id, "billing");
        assert!(!c.keys.is_open());
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse_duration("2").is_err());
        assert!(parse_duration("h").is_err());
    }

    #[test]
    fn the_log_table_names_a_shared_backend() {
        let c = Config::parse(
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
        assert_eq!(Config::parse("").unwrap().log.backend, LogBackend::Sqlite);
        let nats = Config::parse(
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
            match Config::parse(text) {
                Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        assert!(matches!(
            Config::parse("[log]\nbackend = \"mysql\""),
            Err(ConfigError::Parse(_))
        ));
    }
}
