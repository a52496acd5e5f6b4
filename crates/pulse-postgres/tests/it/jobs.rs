//! Job leases and checkpoints shared by several instances.

use chrono::{DateTime, TimeZone, Utc};
use pulse_postgres::PostgresLog;
use pulse_scheduler::JobLease;

fn tick(n: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + n * 60, 0).unwrap()
}

use crate::support::{self, Schema};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tick_is_claimed_by_exactly_one_instance() {
    let Some(url) = support::url("each_tick_is_claimed_by_exactly_one_instance") else {
        return;
    };
    let schema = Schema::new(url, "leases");
    let mut logs: Vec<PostgresLog> = Vec::new();
    for _ in 0..3 {
        logs.push(schema.open().await);
    }
    for n in 0..20 {
        // Through the scheduler's hook, as `pulse-scheduler` calls it.
        let claims =
            futures::future::join_all(logs.iter().map(|log| log.try_acquire("hourly", tick(n))))
                .await;
        let winners: Vec<usize> = claims
            .into_iter()
            .enumerate()
            .filter_map(|(i, c)| c.unwrap().then_some(i))
            .collect();
        assert_eq!(winners.len(), 1, "tick {n}: {winners:?}");
        let holder = logs[0].job_holder("hourly", tick(n)).await.unwrap();
        assert_eq!(holder.as_deref(), Some(logs[winners[0]].instance()));
    }
    assert!(
        logs[1].try_acquire_job("daily", tick(0)).await.unwrap(),
        "jobs are independent"
    );
    assert_eq!(
        logs[2].prune_job_leases("hourly", tick(10)).await.unwrap(),
        10
    );
    assert_eq!(logs[2].job_holder("hourly", tick(3)).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_are_shared_and_replaced() {
    let Some(url) = support::url("checkpoints_are_shared_and_replaced") else {
        return;
    };
    let schema = Schema::new(url, "checkpoints");
    let a = schema.open().await;
    let b = schema.open().await;
    assert_eq!(a.load_checkpoint("rollup").await.unwrap(), None);
    a.store_checkpoint("rollup", b"offset=10").await.unwrap();
    b.store_checkpoint("rollup", b"offset=20").await.unwrap();
    assert_eq!(
        a.load_checkpoint("rollup").await.unwrap().as_deref(),
        Some(&b"offset=20"[..])
    );
    assert_eq!(b.load_checkpoint("other").await.unwrap(), None);
}
