//! Losing the connection to NATS and getting it back: clear `Unavailable` errors
//! meanwhile, reconnection by itself, nothing acknowledged lost.

use std::collections::BTreeSet;
use std::time::Duration;

use pulse_core::{EventLog, GroupConfig, LogError, Pattern, ReadQuery};
use pulse_nats::NatsLog;

use crate::support::{self, events, Prefix, Proxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_nats_gives_clear_errors_and_loses_nothing_acknowledged() {
    let Some(url) = support::url("losing_nats_gives_clear_errors_and_loses_nothing_acknowledged")
    else {
        return;
    };
    let prefix = Prefix::new(url.clone(), "outage");
    let proxy = Proxy::start(&url).await;
    let mut options = prefix.options.clone();
    options.request_timeout = Duration::from_secs(2);
    let log = NatsLog::connect(&proxy.url(), options)
        .await
        .expect("connect through the proxy");
    log.ensure_group("g", GroupConfig::new(Pattern::parse("health.>").unwrap()))
        .await
        .unwrap();
    let before = log.append(events("before", 10, 3)).await.unwrap();
    assert_eq!(before.last().unwrap().offset, 10);
    let fetched = log
        .fetch_wait("g", 100, Duration::from_secs(10))
        .await
        .unwrap();
    let mut acked: BTreeSet<u64> = fetched.iter().map(|d| d.event.offset).take(2).collect();
    log.ack("g", &acked.iter().copied().collect::<Vec<_>>())
        .await
        .unwrap();

    proxy.cut().await;
    let during = events("during", 5, 3);
    let mut saw_unavailable = false;
    for _ in 0..3 {
        match log.append(during.clone()).await {
            Err(LogError::Unavailable(_)) => saw_unavailable = true,
            other => panic!("expected Unavailable while NATS is cut off, got {other:?}"),
        }
    }
    assert!(saw_unavailable);
    assert!(matches!(
        log.read(ReadQuery::after(0, 10)).await,
        Err(LogError::Unavailable(_))
    ));
    assert!(matches!(
        log.fetch("g", 10).await,
        Err(LogError::Unavailable(_))
    ));
    assert!(matches!(log.groups().await, Err(LogError::Unavailable(_))));

    proxy.restore();
    // The client reconnects by itself; the same batch is appended again until it goes
    // through, and its ids keep it from being stored twice.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    let appended = loop {
        match log.append(during.clone()).await {
            Ok(appended) => break appended,
            Err(LogError::Unavailable(_)) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("the log did not come back: {e}"),
        }
    };
    assert_eq!(appended.len(), 5);
    let stored = log.read(ReadQuery::after(0, 100)).await.unwrap();
    let ids: BTreeSet<&str> = stored.iter().map(|s| s.event.id.as_str()).collect();
    assert_eq!(
        (stored.len(), ids.len()),
        (15, 15),
        "every event stored once"
    );

    // Everything not acknowledged before the cut is handed out again (or was still in
    // flight here); the acknowledged ones never come back.
    let mut handled = acked.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    let pending: Vec<u64> = fetched
        .iter()
        .map(|d| d.event.offset)
        .filter(|o| !acked.contains(o))
        .collect();
    log.ack("g", &pending).await.unwrap();
    handled.extend(pending);
    while handled.len() < 15 && tokio::time::Instant::now() < deadline {
        let batch = log
            .fetch_wait("g", 100, Duration::from_secs(1))
            .await
            .unwrap();
        for delivery in &batch {
            assert!(
                !acked.contains(&delivery.event.offset),
                "acknowledged event {} delivered again",
                delivery.event.offset
            );
        }
        let offsets: Vec<u64> = batch.iter().map(|d| d.event.offset).collect();
        log.ack("g", &offsets).await.unwrap();
        handled.extend(offsets);
    }
    assert_eq!(handled, (1..=15).collect());
    acked.clear();
    let group = &log.groups().await.unwrap()[0];
    assert_eq!(group.committed, 15);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_unavailable() {
    if support::url("an_unreachable_server_is_unavailable").is_none() {
        return;
    }
    // A port nobody listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut options = pulse_nats::NatsOptions::new("pulsetest-unreachable");
    options.connect_timeout = Duration::from_secs(2);
    let err = NatsLog::connect(&format!("nats://127.0.0.1:{port}"), options)
        .await
        .unwrap_err();
    assert!(matches!(err, LogError::Unavailable(_)), "{err}");
}
