//! The listener: accepts connections (plain or TLS) up to `max_connections` at once,
//! serves HTTP/1.1 and HTTP/2 with upgrades (WebSocket) through [`crate::connection`]
//! (idle and header timeouts, room made by closing idle connections), and drains on
//! shutdown.
//!
//! Draining, in order: stop accepting; cancel streams (SSE ends, WebSocket sessions
//! nack what they hold and close); let in-flight requests finish; stop webhook workers
//! after their current deliveries; flush group positions with `EventLog::flush`. Each
//! wait is bounded by the drain timeout so a stuck client cannot hold the process.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use pulse_core::{EventLog, LogError};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, TlsConfig};
use crate::connection::Connections;
use crate::jobs::{Jobs, JobsError, SharedJobs};
use crate::listen::Listen;
use crate::live::Live;
use crate::routes::router;
use crate::state::AppState;
use crate::storage::{StorageHealth, StorageWatch};
use crate::webhook::{WebhookError, Webhooks};

const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
const LAG_REFRESH: Duration = Duration::from_secs(10);

/// Why the server could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The address could not be bound.
    // The I/O error is the source, not part of the message, so that a report of the
    // whole chain names it once.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The certificate or key could not be loaded.
    #[error("TLS: {0}")]
    Tls(String),
    /// Aggregation jobs could not start.
    #[error(transparent)]
    Jobs(#[from] JobsError),
    /// Webhook subscriptions could not be loaded.
    #[error(transparent)]
    Webhooks(#[from] WebhookError),
    /// The log failed at start or at the final flush.
    #[error(transparent)]
    Log(#[from] LogError),
}

/// What the server needs besides its configuration.
pub struct ServerOptions {
    /// Where to listen.
    pub listen: Listen,
    /// Where webhook subscriptions (and, without `shared_jobs`, job state) are kept;
    /// `None` keeps subscriptions in memory only.
    pub data_dir: Option<PathBuf>,
    /// Job leases and aggregate state shared with other instances (from a shared log's
    /// backend); `None` keeps job state in `data_dir` and runs every tick here.
    pub shared_jobs: Option<SharedJobs>,
}

/// A bound server, ready to [`run`](Self::run).
pub struct Server {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    state: AppState,
    max_connections: usize,
}

impl Server {
    /// Binds the address and starts the background workers (webhooks).
    pub async fn bind(
        config: Config,
        log: Arc<dyn EventLog>,
        options: ServerOptions,
    ) -> Result<Self, ServerError> {
        let tls = config.tls.as_ref().map(load_tls).transpose()?;
        let listener = options.listen.bind().await?;
        // First, so the jobs' and webhook workers' series reach the recorder.
        let metrics = crate::metrics::install();
        let storage = StorageHealth::new(options.data_dir.clone());
        let log: Arc<dyn EventLog> = Arc::new(StorageWatch::new(log, storage.clone()));
        let shutdown = CancellationToken::new();
        let jobs = Jobs::start(
            config.jobs,
            log.clone(),
            options.data_dir.clone(),
            options.shared_jobs,
        )
        .await?;
        let webhooks = Webhooks::start(
            log.clone(),
            config.groups.clone(),
            options.data_dir,
            config.webhooks,
            shutdown.clone(),
        )
        .await?;
        // The lag gauges (and dead-letter counters) of the groups already in the log exist
        // from the first scrape on; `run` refreshes them periodically.
        if let Err(err) = crate::routes::refresh_lag(log.as_ref()).await {
            tracing::debug!(%err, "lag refresh failed");
        }
        let state = AppState {
            log,
            storage,
            keys: config.keys,
            durability: Arc::new(config.durability),
            live: Live::default(),
            groups: config.groups,
            limits: config.limits.clone(),
            webhooks,
            jobs,
            metrics,
            shutdown,
            tasks: TaskTracker::new(),
        };
        Ok(Self {
            listener,
            tls,
            state,
            max_connections: config.limits.max_connections,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        // A bound listener always has an address; fall back to the unspecified one.
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Serves until `shutdown` resolves, then drains and flushes the log.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), ServerError> {
        let Self {
            listener,
            tls,
            state,
            max_connections,
        } = self;
        let app = router(state.clone());
        let connections = Connections::new(max_connections);
        let conn_tasks = TaskTracker::new();
        let lag = tokio::spawn(refresh_lag_periodically(
            state.log.clone(),
            state.shutdown.clone(),
        ));
        tracing::info!(addr = %listener.local_addr().map_err(|source| ServerError::Bind { addr: SocketAddr::from(([0, 0, 0, 0], 0)), source })?, tls = tls.is_some(), "pulse serve listening");
        tokio::pin!(shutdown);
        loop {
            let (stream, _peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(err) => {
                        // Out of file descriptors and similar: back off instead of spinning.
                        tracing::warn!(%err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            // Accepted first, so that at the limit the longest-idle connection makes room
            // for this one instead of this one waiting in the kernel's backlog.
            tokio::select! {
                () = connections.make_room() => {}
                () = &mut shutdown => break,
            }
            let _ = stream.set_nodelay(true);
            conn_tasks.spawn(crate::connection::serve(
                connections.register(),
                stream,
                tls.clone(),
                app.clone(),
                state.limits.clone(),
                state.shutdown.clone(),
            ));
        }
        drop(listener);
        tracing::info!("draining: no new connections");
        state.shutdown.cancel();
        conn_tasks.close();
        if tokio::time::timeout(DRAIN_TIMEOUT, conn_tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not finish in time");
        }
        state.tasks.close();
        if tokio::time::timeout(DRAIN_TIMEOUT, state.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("some streams did not finish in time");
        }
        if tokio::time::timeout(DRAIN_TIMEOUT, state.webhooks.wait())
            .await
            .is_err()
        {
            tracing::warn!("some webhook deliveries did not finish in time");
        }
        state.jobs.shutdown().await;
        lag.abort();
        state.log.flush().await?;
        tracing::info!("drained, group positions flushed");
        Ok(())
    }
}

async fn refresh_lag_periodically(log: Arc<dyn EventLog>, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(LAG_REFRESH) => {}
        }
        if let Err(err) = crate::routes::refresh_lag(log.as_ref()).await {
            tracing::debug!(%err, "lag refresh failed");
        }
    }
}

fn load_tls(config: &TlsConfig) -> Result<TlsAcceptor, ServerError> {
    let read = |path: &Path| {
        std::fs::read(path)
            .map_err(|e| ServerError::Tls(format!("cannot read {}: {e}", path.display())))
    };
    let cert_pem = read(&config.cert)?;
    let key_pem = read(&config.key)?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ServerError::Tls(format!("{}: {e}", config.cert.display())))?;
    if certs.is_empty() {
        return Err(ServerError::Tls(format!(
            "{} holds no certificate",
            config.cert.display()
        )));
    }
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| ServerError::Tls(format!("{}: {e}", config.key.display())))?
        .ok_or_else(|| {
            ServerError::Tls(format!("{} holds no private key", config.key.display()))
        })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(server)))
}
