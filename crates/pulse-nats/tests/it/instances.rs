//! Several instances (handles) sharing one log and one consumer group.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use pulse_core::{EventLog, GroupConfig, Pattern, ReadQuery};

use crate::support::{self, events, Prefix, Proxy};

fn group_config(ack_wait: Duration) -> GroupConfig {
    let mut config = GroupConfig::new(Pattern::parse("health.>").unwrap());
    config.ack_wait = ack_wait;
    config
}

/// Three instances consuming one group: every event is handled exactly once, and events
/// appended through one instance are visible to the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_shared_by_three_instances_handles_each_event_once() {
    let Some(url) = support::url("a_group_shared_by_three_instances_handles_each_event_once")
    else {
        return;
    };
    let prefix = Prefix::new(url, "three");
    let logs = [
        Arc::new(prefix.open().await),
        Arc::new(prefix.open().await),
        Arc::new(prefix.open().await),
    ];
    logs[0]
        .ensure_group("workers", group_config(Duration::from_secs(60)))
        .await
        .unwrap();
    let total = 600;
    for (i, log) in logs.iter().enumerate() {
        log.append(events(&format!("i{i}"), total / 3, 20))
            .await
            .unwrap();
    }
    let mut watch = logs[2].watch_appends();
    tokio::time::timeout(
        Duration::from_secs(30),
        watch.wait_for(|&last| last >= total as u64),
    )
    .await
    .expect("other instances' appends show in the watch")
    .unwrap();
    let workers = logs.iter().cloned().map(|log| {
        tokio::spawn(async move {
            let mut handled = Vec::new();
            let mut idle = 0;
            while idle < 6 {
                let batch = log
                    .fetch_wait("workers", 64, Duration::from_millis(500))
                    .await
                    .unwrap();
                if batch.is_empty() {
                    idle += 1;
                    continue;
                }
                idle = 0;
                let offsets: Vec<u64> = batch.iter().map(|d| d.event.offset).collect();
                log.ack("workers", &offsets).await.unwrap();
                handled.extend(offsets);
            }
            handled
        })
    });
    let mut counts: HashMap<u64, usize> = HashMap::new();
    let mut per_worker = Vec::new();
    for worker in workers {
        let handled = worker.await.unwrap();
        per_worker.push(handled.len());
        for offset in handled {
            *counts.entry(offset).or_default() += 1;
        }
    }
    let handled: BTreeSet<u64> = counts.keys().copied().collect();
    assert_eq!(handled, (1..=total as u64).collect(), "every event handled");
    assert!(
        counts.values().all(|&n| n == 1),
        "no event handled twice: {per_worker:?}"
    );
    let group = &logs[1].groups().await.unwrap()[0];
    assert_eq!((group.committed, group.pending), (total as u64, 0));
}

/// An instance that dies holding fetched events: the others get them once the liveness
/// window has passed, and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_instances_events_go_to_the_others() {
    let Some(url) = support::url("a_dead_instances_events_go_to_the_others") else {
        return;
    };
    let prefix = Prefix::new(url.clone(), "handoff");
    let mut options = prefix.options.clone();
    options.liveness = Duration::from_secs(1);
    let proxy = Proxy::start(&url).await;
    let doomed = NatsLogExt::open_at(&proxy.url(), options.clone()).await;
    let survivor = prefix.open_with(options).await;
    doomed
        .ensure_group("workers", group_config(Duration::from_secs(60)))
        .await
        .unwrap();
    doomed.append(events("h", 20, 4)).await.unwrap();
    let taken = doomed
        .fetch_wait("workers", 100, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(!taken.is_empty());
    // The doomed instance acknowledges one event, then its network is gone for good.
    doomed
        .ack("workers", &[taken[0].event.offset])
        .await
        .unwrap();
    proxy.cut().await;
    let mut handled = BTreeSet::from([taken[0].event.offset]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
    while handled.len() < 20 && tokio::time::Instant::now() < deadline {
        let batch = survivor
            .fetch_wait("workers", 100, Duration::from_secs(2))
            .await
            .unwrap();
        let offsets: Vec<u64> = batch.iter().map(|d| d.event.offset).collect();
        survivor.ack("workers", &offsets).await.unwrap();
        for offset in offsets {
            assert!(
                handled.insert(offset) || offset != taken[0].event.offset,
                "an acknowledged event came back"
            );
        }
    }
    assert_eq!(
        handled,
        (1..=20).collect(),
        "nothing the dead instance held is lost"
    );
    assert_eq!(
        survivor.read(ReadQuery::after(0, 100)).await.unwrap().len(),
        20
    );
    drop(doomed);
}

/// Opening a log at an explicit URL (through a proxy).
struct NatsLogExt;

impl NatsLogExt {
    async fn open_at(url: &str, options: pulse_nats::NatsOptions) -> pulse_nats::NatsLog {
        pulse_nats::NatsLog::connect(url, options)
            .await
            .unwrap_or_else(|e| panic!("cannot open the NATS log at {url}: {e}"))
    }
}
