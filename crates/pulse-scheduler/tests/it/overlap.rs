//! Runs of one job never overlap: a tick during a run is skipped or coalesced, by policy.

use std::time::Duration;

use pulse_scheduler::{JobSpec, OverlapPolicy, RunStatus};

use crate::support::{at, history, run_for, start_at, Probe};

#[tokio::test(start_paused = true)]
async fn skip_records_ticks_that_arrive_during_a_run_as_missed() {
    let harness = start_at("2026-01-01T00:00:30Z");
    // Each run takes 2.5 minutes of a 1-minute schedule.
    let probe = Probe::new(&harness.clock, Duration::from_secs(150));
    let spec = JobSpec::new("slow", "every 1m".parse().unwrap(), probe.clone())
        .overlap(OverlapPolicy::Skip);
    harness.scheduler.add(spec).await.unwrap();
    run_for(Duration::from_secs(275)).await; // wall 00:05:05

    assert_eq!(probe.max_active(), 1);
    let records = history(&harness.scheduler, "slow").await;
    let summary: Vec<_> = records
        .iter()
        .map(|r| (r.scheduled_at.unwrap(), r.status))
        .collect();
    assert_eq!(
        summary,
        [
            (at("2026-01-01T00:02:00Z"), RunStatus::Missed),
            (at("2026-01-01T00:03:00Z"), RunStatus::Missed),
            (at("2026-01-01T00:01:00Z"), RunStatus::Ok), // finished at 00:03:30
            (at("2026-01-01T00:05:00Z"), RunStatus::Missed),
        ]
    );
    assert_eq!(
        records[0].error.as_deref(),
        Some("previous run still running")
    );
    // The 00:04 run is in progress.
    let status = harness.scheduler.status("slow").await.unwrap();
    assert!(status.running);
    assert_eq!(status.running_since, Some(at("2026-01-01T00:04:00Z")));
    assert_eq!((status.runs_ok, status.runs_missed), (1, 3));
}

#[tokio::test(start_paused = true)]
async fn coalesce_runs_one_pending_tick_after_the_current_run() {
    let harness = start_at("2026-01-01T00:00:30Z");
    let probe = Probe::new(&harness.clock, Duration::from_secs(150));
    let spec = JobSpec::new("slow", "every 1m".parse().unwrap(), probe.clone())
        .overlap(OverlapPolicy::Coalesce)
        .misfire_grace(Duration::from_secs(600));
    harness.scheduler.add(spec).await.unwrap();
    run_for(Duration::from_secs(320)).await; // wall 00:05:50

    assert_eq!(probe.max_active(), 1);
    let starts: Vec<_> = probe
        .runs()
        .iter()
        .map(|r| (r.scheduled_at.unwrap(), r.started))
        .collect();
    assert_eq!(
        starts,
        [
            (at("2026-01-01T00:01:00Z"), at("2026-01-01T00:01:00Z")),
            // Ticks 00:02 and 00:03 arrived during the first run: one run, right after it.
            (at("2026-01-01T00:03:00Z"), at("2026-01-01T00:03:30Z")),
        ]
    );
    let records = history(&harness.scheduler, "slow").await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].coalesced, 0);
    let status = harness.scheduler.status("slow").await.unwrap();
    assert!(status.running && status.pending); // 00:04 and 00:05 wait, folded into one
    assert_eq!(status.runs_missed, 0);

    run_for(Duration::from_secs(15)).await; // 00:06:05: at 00:06 the second run ended, the pending one started
    let records = history(&harness.scheduler, "slow").await;
    assert_eq!(records[1].scheduled_at, Some(at("2026-01-01T00:03:00Z")));
    assert_eq!(records[1].coalesced, 1);
    let last = probe.runs().last().cloned().unwrap();
    assert_eq!(last.started, at("2026-01-01T00:06:00Z"));
    assert!(last.scheduled_at >= Some(at("2026-01-01T00:05:00Z")));
}
