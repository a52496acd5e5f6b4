//! The server's tables of the configuration file (`pulse.toml`).
//!
//! TOML is read into raw serde structs with `deny_unknown_fields`, so a misspelt key is an
//! error that names it, then [`RawConfig::validate`] turns them into [`Config`], the types
//! the server uses (patterns parsed, durations and URLs checked, names unique). Everything
//! is optional: an empty file is a valid configuration (open API, persistent events,
//! default limits).
//!
//! The tables about the process rather than the server (`[log]`, where the event log
//! lives, and `[retention]`, how long it keeps events) are read by the program that opens
//! the log (`pulse serve`), which hands the rest of the file to [`Config::from_table`].

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pulse_core::log::validate_group_name;
use pulse_core::{parse_duration, Pattern};
use serde::Deserialize;

use crate::auth::{ApiKey, KeyRing};
use crate::jobs::JobSpec;
use crate::webhook::{GroupDefaults, WebhookSpec};

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

/// A [`ConfigError::Invalid`] for `key`.
pub fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

/// The validated configuration.
#[derive(Debug, Default)]
pub struct Config {
    /// Address to listen on (`host:port`, the host resolved when bound), unless the command
    /// line says otherwise.
    pub listen: Option<String>,
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
    /// Webhook subscriptions declared in the file.
    pub webhooks: Vec<WebhookSpec>,
    /// Consumer group defaults.
    pub groups: GroupDefaults,
    /// Aggregation jobs.
    pub jobs: Vec<JobSpec>,
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
    groups: Option<RawGroups>,
    #[serde(default)]
    webhooks: Vec<RawWebhook>,
    #[serde(default)]
    jobs: Vec<RawJob>,
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

    /// Validates the server's tables of a parsed file (the program that read it has taken
    /// out the tables it reads itself).
    pub fn from_table(table: toml::Table) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))?;
        raw.validate()
    }
}

fn pattern(key: &str, text: &str) -> Result<Pattern, ConfigError> {
    Pattern::parse(text).map_err(|e| invalid(key, e.to_string()))
}

fn positive(key: &str, d: Duration) -> Result<Duration, ConfigError> {
    if d.is_zero() {
        return Err(invalid(key, "must be longer than 0"));
    }
    Ok(d)
}

/// `text` read by the one duration grammar ([`pulse_core::parse_duration`]: `500ms`, `30s`,
/// `1h30m`, `7d`), its error naming `key`.
pub fn duration(key: &str, text: &str) -> Result<Duration, ConfigError> {
    parse_duration(text).map_err(|e| invalid(key, e.reason))
}

impl RawConfig {
    /// Checks every value and builds the [`Config`].
    pub fn validate(self) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        if let Some(server) = self.server {
            if let Some(listen) = server.listen {
                crate::listen::check_host_port(&listen)
                    .map_err(|reason| invalid("server.listen", reason))?;
                config.listen = Some(listen);
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
            listen = "localhost:9000"
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
        assert_eq!(c.listen.as_deref(), Some("localhost:9000"));
        assert_eq!(c.limits.request_timeout, Duration::from_secs(5));
        assert_eq!(c.limits.header_read_timeout, Duration::from_secs(3));
        assert_eq!(c.limits.idle_timeout, Duration::from_secs(20));
        assert_eq!(durability_of(&c.durability, "debug.x"), Durability::Memory);
        assert_eq!(
            durability_of(&c.durability, "health.x"),
            Durability::Persistent
        );
        assert_eq!(c.webhooks[0].group, "webhook-billing");
        assert_eq!(c.jobs[0].windows.tz(), chrono_tz::Europe::Berlin);
        assert_eq!(c.jobs[0].windows.len(), 3);
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            ("[[durability]]\npattern = \"a..b\"\nmode = \"memory\"", "durability[0].pattern"),
            ("[server]\nlisten = \"localhost\"", "server.listen"),
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
        ];
        for (text, key) in cases {
            match Config::parse(text) {
                Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }
}
