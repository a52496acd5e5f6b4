//! Job leases and checkpoints in KV, shared by instances.

use std::sync::Arc;

use crate::support::{self, Prefix};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tick_is_claimed_by_exactly_one_instance() {
    let Some(url) = support::url("each_tick_is_claimed_by_exactly_one_instance") else {
        return;
    };
    let prefix = Prefix::new(url, "leases");
    let logs = [
        Arc::new(prefix.open().await),
        Arc::new(prefix.open().await),
        Arc::new(prefix.open().await),
    ];
    let at = |secs: i64| chrono::DateTime::from_timestamp(secs, 0).unwrap();
    for tick in [at(1_700_000_000), at(1_700_000_300), at(1_700_000_600)] {
        let claims = logs
            .iter()
            .cloned()
            .map(|log| tokio::spawn(async move { log.try_acquire_job("rollup 5m/ü", tick).await }));
        let mut winners = 0;
        for claim in claims {
            winners += usize::from(claim.await.unwrap().unwrap());
        }
        assert_eq!(winners, 1, "tick {tick}");
    }
    assert!(!logs[0]
        .try_acquire_job("rollup 5m/ü", at(1_700_000_000))
        .await
        .unwrap());
    assert!(logs[0]
        .try_acquire_job("other", at(1_700_000_000))
        .await
        .unwrap());
    let holder = logs[1]
        .job_holder("other", at(1_700_000_000))
        .await
        .unwrap();
    assert!(holder.is_some());
    assert_eq!(logs[1].job_holder("other", at(1)).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_are_shared_and_replaced() {
    let Some(url) = support::url("checkpoints_are_shared_and_replaced") else {
        return;
    };
    let prefix = Prefix::new(url, "checkpoints");
    let (a, b) = (prefix.open().await, prefix.open().await);
    assert_eq!(a.load_checkpoint("daily").await.unwrap(), None);
    a.store_checkpoint("daily", b"offset=10").await.unwrap();
    assert_eq!(
        b.load_checkpoint("daily").await.unwrap().as_deref(),
        Some(&b"offset=10"[..])
    );
    b.store_checkpoint("daily", &[0, 1, 2, 255]).await.unwrap();
    assert_eq!(
        a.load_checkpoint("daily").await.unwrap().as_deref(),
        Some(&[0, 1, 2, 255][..])
    );
    assert_eq!(a.load_checkpoint("hourly").await.unwrap(), None);
}
