//! `pulse serve`: the HTTP server on the embedded SQLite log, or on a log shared by
//! several instances (`[log] backend = "postgres"` or `"nats"`).
//!
//! Wires the configuration file and flags to `pulse_server`: flags (or their `PULSE_*`
//! environment variables) win over the file's `[server]` table, which wins over the
//! defaults (`./pulse-data`, `127.0.0.1:7400`). The address is bound before anything
//! else happens, so a busy port fails at once and leaves no data directory behind.
//! SIGTERM or ctrl-c drains the server, flushes group positions and closes the log; the
//! exit code is then 0.

use std::path::PathBuf;
use std::sync::Arc;

use std::process::ExitCode;

use anyhow::Context;
use pulse_core::{redact, EventLog};
use pulse_nats::{NatsLog, NatsOptions};
use pulse_postgres::{PostgresLog, PostgresOptions};
use pulse_server::jobs::SharedJobs;
use pulse_server::{Listen, Server, ServerOptions};
use pulse_sqlite::{SqliteLog, SqliteOptions};

use crate::config::{LogBackend, ServeConfig};

const DEFAULT_DATA_DIR: &str = "./pulse-data";
const DEFAULT_LISTEN: &str = "127.0.0.1:7400";

/// Log line format.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Arguments of `pulse serve`.
#[derive(clap::Args, Debug)]
pub(crate) struct ServeArgs {
    /// Configuration file (TOML): keys, durability, retention, webhooks, jobs, limits, TLS.
    #[arg(long, env = "PULSE_CONFIG")]
    config: Option<PathBuf>,
    /// Where the event log and webhook subscriptions live [default: ./pulse-data].
    #[arg(long, env = "PULSE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address to listen on, `host:port`: an IP address or a host name such as
    /// `localhost` (port 0 picks a free port) [default: 127.0.0.1:7400].
    #[arg(long, env = "PULSE_LISTEN", value_parser = parse_listen)]
    listen: Option<String>,
    /// Log format.
    #[arg(long, env = "PULSE_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
}

/// Accepts `host:port` with a numeric port; the host is resolved when it is bound.
fn parse_listen(text: &str) -> Result<String, String> {
    pulse_server::check_host_port(text).map(|()| text.to_owned())
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    // A second initialisation (tests in one process) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Runs the server; every error, start-up ones included, is reported through `tracing`
/// (so `--log-format json` gives only JSON lines), with the secrets of the log's URL
/// masked. Exit code 2 on an error.
pub(crate) fn run(args: ServeArgs) -> ExitCode {
    init_logging(args.log_format);
    match start(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let error = format!("{err:#}");
            if tracing::enabled!(tracing::Level::ERROR) {
                tracing::error!(%error, "pulse serve failed");
            } else {
                // Logging is switched off: say it on stderr all the same.
                eprintln!("error: {error}");
            }
            ExitCode::from(2)
        }
    }
}

fn start(args: ServeArgs) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(path) => ServeConfig::load(path)
            .with_context(|| format!("invalid configuration {}", path.display()))?,
        None => ServeConfig::default(),
    };
    let data_dir = args
        .data_dir
        .or_else(|| config.server.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let listen = args
        .listen
        .or_else(|| config.server.listen.clone())
        .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    runtime.block_on(serve(config, data_dir, listen))
}

/// The opened event log, closed its own way at shutdown.
enum OpenLog {
    Sqlite(Arc<SqliteLog>),
    Postgres(PostgresLog),
    Nats(Arc<NatsLog>),
}

impl OpenLog {
    /// Opens the log. The metrics recorder must be installed already: the backend's series
    /// are registered (at zero, with their help texts) before it records into them.
    async fn open(config: &ServeConfig, data_dir: &std::path::Path) -> anyhow::Result<Self> {
        match config.log.backend {
            LogBackend::Sqlite => {
                pulse_sqlite::metrics::register();
                let options = SqliteOptions::default().with_retention(config.retention);
                let log = SqliteLog::open_with(data_dir, options)
                    .await
                    .with_context(|| {
                        format!("failed to open the event log in {}", data_dir.display())
                    })?;
                Ok(Self::Sqlite(Arc::new(log)))
            }
            LogBackend::Postgres => {
                pulse_postgres::metrics::register();
                let url = config
                    .log
                    .url
                    .as_deref()
                    .context("log.url is required for the postgres backend")?;
                let log = PostgresLog::connect(url, postgres_options(config))
                    .await
                    .map_err(|e| without_secrets(&e, url))
                    .with_context(|| {
                        format!(
                            "failed to connect to the postgres event log at {}",
                            redact::redact_url(url)
                        )
                    })?;
                Ok(Self::Postgres(log))
            }
            LogBackend::Nats => {
                pulse_nats::metrics::register();
                let url = config
                    .log
                    .url
                    .as_deref()
                    .context("log.url is required for the nats backend")?;
                // The namespace on a NATS server is the subject prefix (and stream name).
                let mut options = NatsOptions::default();
                if let Some(prefix) = &config.log.schema {
                    options.prefix.clone_from(prefix);
                }
                if let Some(partitions) = config.log.partitions {
                    options.partitions = partitions;
                }
                options.tls_ca.clone_from(&config.log.tls_ca);
                options.retention = config.retention;
                // The backend's error names the server (without its secrets).
                let log = NatsLog::connect(url, options)
                    .await
                    .map_err(|e| without_secrets(&e, url))
                    .context("failed to connect to the nats event log")?;
                Ok(Self::Nats(Arc::new(log)))
            }
        }
    }

    /// With a shared log, jobs share it too: its lease runs each tick on one instance and
    /// its aggregate store keeps one set of aggregates for all of them.
    fn shared_jobs(&self) -> Option<SharedJobs> {
        match self {
            Self::Sqlite(_) => None,
            Self::Postgres(log) => Some(SharedJobs {
                lease: Arc::new(log.clone()),
                store: Arc::new(log.clone()),
            }),
            Self::Nats(log) => Some(SharedJobs {
                lease: log.clone(),
                store: log.clone(),
            }),
        }
    }

    fn log(&self) -> Arc<dyn EventLog> {
        match self {
            Self::Sqlite(log) => log.clone(),
            Self::Postgres(log) => Arc::new(log.clone()),
            Self::Nats(log) => log.clone(),
        }
    }

    async fn close(self) -> anyhow::Result<()> {
        match self {
            Self::Sqlite(log) => log.close().await.context("failed to close the event log"),
            // Hands this instance's unacknowledged deliveries to the other instances now.
            Self::Postgres(log) => log.close().await.context("failed to leave the event log"),
            Self::Nats(log) => {
                log.close().await;
                Ok(())
            }
        }
    }
}

/// A backend's error as text with every secret of `url` masked: the backends mask their
/// own messages already, this keeps it so whatever a client library wrote.
fn without_secrets(err: &pulse_core::LogError, url: &str) -> anyhow::Error {
    anyhow::anyhow!(redact::scrub(&err.to_string(), url))
}

/// The PostgreSQL log's options from the `[log]` and `[retention]` tables.
fn postgres_options(config: &ServeConfig) -> PostgresOptions {
    let mut options = PostgresOptions::default();
    if let Some(schema) = &config.log.schema {
        options.schema.clone_from(schema);
    }
    options.instance.clone_from(&config.log.instance);
    options.retention = config.retention;
    options
}

async fn serve(config: ServeConfig, data_dir: PathBuf, listen: String) -> anyhow::Result<()> {
    // Resolves a host name and tries each of its addresses, as `TcpListener::bind` does.
    let listener = tokio::net::TcpListener::bind(listen.as_str())
        .await
        .and_then(|listener| listener.into_std())
        .with_context(|| format!("cannot listen on {listen}"))?;
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("failed to create data directory {}", data_dir.display()))?;
    // Before the log opens, so that what it records from the start reaches `/metrics`.
    pulse_server::metrics::install();
    let opened = OpenLog::open(&config, &data_dir).await?;
    let server = Server::bind(
        config.server,
        opened.log(),
        ServerOptions {
            listen: Listen::Bound(listener),
            data_dir: Some(data_dir),
            shared_jobs: opened.shared_jobs(),
        },
    )
    .await
    .context("failed to start the server")?;
    server
        .run(pulse_server::shutdown::signal())
        .await
        .context("the server stopped with an error")?;
    opened.close().await?;
    tracing::info!("pulse serve stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn postgres_gets_the_retention_of_the_config_file() {
        let config = ServeConfig::parse(
            r#"
            [log]
            backend = "postgres"
            url = "postgres://db/pulse"
            schema = "shared"
            [retention]
            max_age = "7d"
            max_events = 1000
            max_bytes = 5000000
            "#,
        )
        .unwrap();
        let options = postgres_options(&config);
        assert_eq!(options.schema, "shared");
        assert_eq!(
            options.retention.max_age,
            Some(Duration::from_secs(7 * 86_400))
        );
        assert_eq!(options.retention.max_events, Some(1000));
        assert_eq!(options.retention.max_bytes, Some(5_000_000));
        assert!(options.validate().is_ok());

        let unlimited = postgres_options(&ServeConfig::default()).retention;
        assert_eq!(
            (unlimited.max_age, unlimited.max_events, unlimited.max_bytes),
            (None, None, None)
        );
    }
}
