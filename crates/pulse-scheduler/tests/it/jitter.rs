//! Jitter delays each scheduled run by a bounded random amount, reproducible with a seed.

use std::time::Duration;

use chrono::Duration as Delta;
use pulse_scheduler::{JobSpec, RunStatus};

use crate::support::{history, run_for, start_with, Probe};

async fn delays(seed: u64) -> Vec<Delta> {
    let harness = start_with("2026-01-01T00:00:00Z", |b| b.jitter_seed(seed));
    let probe = Probe::new(&harness.clock, Duration::from_secs(1));
    let spec = JobSpec::new("agg", "every 1m".parse().unwrap(), probe.clone())
        .jitter(Duration::from_secs(20))
        .misfire_grace(Duration::from_secs(1));
    harness.scheduler.add(spec).await.unwrap();
    run_for(Duration::from_secs(60 * 60 + 30)).await;
    let records = history(&harness.scheduler, "agg").await;
    assert_eq!(records.len(), 60);
    // The grace counts from the jittered time, so none of these runs is "late".
    assert!(records.iter().all(|r| r.status == RunStatus::Ok));
    records
        .iter()
        .map(|r| r.started_at - r.scheduled_at.unwrap())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn delays_stay_within_the_bound_and_follow_the_seed() {
    let first = delays(42).await;
    assert!(first
        .iter()
        .all(|d| *d >= Delta::zero() && *d <= Delta::seconds(20)));
    // Spread over the range rather than stuck at one value.
    assert!(first.iter().any(|d| *d < Delta::seconds(5)));
    assert!(first.iter().any(|d| *d > Delta::seconds(15)));
    assert_eq!(first, delays(42).await);
    assert_ne!(first, delays(43).await);
}
