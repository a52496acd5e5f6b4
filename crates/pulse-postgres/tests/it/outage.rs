//! Losing the database and getting it back: clear `Unavailable` errors meanwhile,
//! reconnection through the pool, and nothing acknowledged lost.
//!
//! The outage is made by a TCP proxy between the log and the server that the test cuts
//! (dropping every connection and refusing new ones) and restores, so other tests
//! sharing the server are not disturbed.

use std::sync::Arc;
use std::time::Duration;

use pulse_core::{Event, EventLog, GroupConfig, LogError, Pattern, ReadQuery};
use pulse_postgres::{PostgresLog, PostgresOptions};
use tokio::net::{TcpListener, TcpStream};
use tokio_postgres::config::Host;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::support::{self, Schema};

/// A TCP proxy to the PostgreSQL server that can be cut and restored.
struct Proxy {
    port: u16,
    /// The token of the connections forwarded now; `None` while cut.
    open: Arc<parking_lot::Mutex<Option<CancellationToken>>>,
    links: TaskTracker,
}

impl Proxy {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(parking_lot::Mutex::new(Some(CancellationToken::new())));
        let links = TaskTracker::new();
        let (open2, links2) = (Arc::clone(&open), links.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let Some(cut) = open2.lock().clone() else {
                    continue; // dropped: the client sees the connection close at once
                };
                let upstream = upstream.clone();
                links2.spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    // Once cut, forward nothing more, even bytes already waiting.
                    tokio::select! {
                        biased;
                        () = cut.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    }
                });
            }
        });
        Self { port, open, links }
    }

    /// Refuses new connections and returns once every proxied connection is closed, so
    /// that nothing sent afterwards reaches the server. (A connection accepted just
    /// before holds the cancelled token and forwards nothing.)
    async fn cut(&self) {
        if let Some(token) = self.open.lock().take() {
            token.cancel();
        }
        self.links.close();
        self.links.wait().await;
        self.links.reopen();
    }

    fn restore(&self) {
        *self.open.lock() = Some(CancellationToken::new());
    }
}

/// The test server's URL with its host and port replaced by the proxy's.
fn through(url: &str, port: u16) -> (String, String) {
    let config: tokio_postgres::Config = url.parse().unwrap();
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".into(),
    };
    let upstream_port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("postgres");
    let db = config.get_dbname().unwrap_or("postgres");
    (
        format!("postgres://{user}@127.0.0.1:{port}/{db}"),
        format!("{host}:{upstream_port}"),
    )
}

fn is_unavailable<T: std::fmt::Debug>(result: &Result<T, LogError>) -> bool {
    matches!(result, Err(LogError::Unavailable(_)))
}

fn group() -> GroupConfig {
    GroupConfig::new(Pattern::parse("o.>").unwrap())
}

async fn retry_until_ok(log: &PostgresLog, events: Vec<Event>) -> u64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match log.append(events.clone()).await {
            Ok(appended) => return appended.last().map_or(0, |a| a.offset),
            Err(LogError::Unavailable(_)) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(other) => panic!("the log did not come back: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_database_is_unavailable_and_loses_nothing() {
    let Some(url) = support::url("losing_the_database_is_unavailable_and_loses_nothing") else {
        return;
    };
    let schema = Schema::new(url.clone(), "outage");
    let (proxied, upstream) = through(&url, 0);
    let proxy = Proxy::start(upstream).await;
    let (proxied, _) = through(&proxied, proxy.port);
    let mut options = schema.options();
    options.connect_timeout = Duration::from_secs(5);
    let log = PostgresLog::connect(&proxied, options).await.unwrap();

    let acked: Vec<Event> = (0..50)
        .map(|i| Event::new("o.x").with_id(format!("before-{i}")))
        .collect();
    log.append(acked).await.unwrap();
    log.ensure_group("g", group()).await.unwrap();
    let first = log.fetch("g", 10).await.unwrap();
    log.ack(
        "g",
        &first.iter().map(|d| d.event.offset).collect::<Vec<_>>(),
    )
    .await
    .unwrap();

    proxy.cut().await;
    let append = log.append(vec![Event::new("o.x").with_id("during")]).await;
    assert!(is_unavailable(&append), "append while down: {append:?}");
    let read = log.read(ReadQuery::after(0, 10)).await;
    assert!(is_unavailable(&read), "read while down: {read:?}");
    let fetch = log.fetch("g", 10).await;
    assert!(is_unavailable(&fetch), "fetch while down: {fetch:?}");
    let ack = log.ack("g", &[11]).await;
    assert!(is_unavailable(&ack), "ack while down: {ack:?}");

    proxy.restore();
    let last = retry_until_ok(&log, vec![Event::new("o.x").with_id("after")]).await;
    assert_eq!(last, 51, "the failed append stored nothing");
    let all = log.read(ReadQuery::after(0, 100)).await.unwrap();
    let ids: Vec<&str> = all.iter().map(|s| s.event.id.as_str()).collect();
    assert_eq!(ids.len(), 51);
    assert!(ids[..50]
        .iter()
        .enumerate()
        .all(|(i, id)| *id == format!("before-{i}")));
    let info = &log.groups().await.unwrap()[0];
    assert_eq!(
        info.committed, 10,
        "acknowledged deliveries stay acknowledged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_connections_are_replaced() {
    let Some(url) = support::url("terminated_connections_are_replaced") else {
        return;
    };
    let schema = Schema::new(url, "terminate");
    let log = schema.open().await;
    log.append((0..20).map(|_| Event::new("o.x")).collect())
        .await
        .unwrap();
    let admin = schema.admin().await;
    for round in 0..3 {
        admin
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
                &[&format!("pulse:{}", log.instance())],
            )
            .await
            .unwrap();
        // The next call may fail (clearly) or already go through a fresh connection.
        let read = log.read(ReadQuery::after(0, 100)).await;
        assert!(
            read.is_ok() || is_unavailable(&read),
            "round {round}: {read:?}"
        );
        let last = retry_until_ok(&log, vec![Event::new("o.x")]).await;
        assert_eq!(last, 21 + round);
    }
    assert_eq!(log.read(ReadQuery::after(0, 100)).await.unwrap().len(), 23);
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable() {
    if support::url("an_unreachable_server_is_unavailable").is_none() {
        return;
    }
    // A port nothing listens on.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut options = PostgresOptions::new("unreachable");
    options.connect_timeout = Duration::from_secs(5);
    let result = PostgresLog::connect(
        &format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        options,
    )
    .await;
    assert!(is_unavailable(&result), "{result:?}");
}
