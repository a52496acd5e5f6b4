//! Misfire grace and the coalescing of ticks missed during a stall (simulated by jumping the
//! wall clock forward, as a suspended process or a clock step would).

use std::time::Duration;

use pulse_scheduler::{JobSpec, OverlapPolicy, RunStatus};

use crate::support::{at, history, run_for, start_at, Probe};

fn every_minute(probe: &Probe) -> JobSpec {
    JobSpec::new("agg", "every 1m".parse().unwrap(), probe.clone())
        .misfire_grace(Duration::from_secs(30))
}

#[tokio::test(start_paused = true)]
async fn ticks_missed_in_a_stall_coalesce_into_one_run() {
    let harness = start_at("2026-01-01T00:00:30Z");
    let probe = Probe::new(&harness.clock, Duration::from_secs(1));
    harness.scheduler.add(every_minute(&probe)).await.unwrap();

    harness.clock.jump(Duration::from_secs(5 * 60 + 10));
    run_for(Duration::from_secs(35)).await; // wall 00:06:15

    let runs = probe.runs();
    assert_eq!(runs.len(), 1, "one run for ticks 00:01..00:06");
    assert_eq!(runs[0].scheduled_at, Some(at("2026-01-01T00:06:00Z")));
    assert_eq!(runs[0].started, at("2026-01-01T00:06:10Z")); // 10 s late: within the grace
    let records = history(&harness.scheduler, "agg").await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].status, RunStatus::Ok);
    assert_eq!(records[0].coalesced, 5);
}

#[tokio::test(start_paused = true)]
async fn a_tick_later_than_the_grace_is_missed_and_the_next_one_runs() {
    let harness = start_at("2026-01-01T00:00:30Z");
    let probe = Probe::new(&harness.clock, Duration::from_secs(1));
    harness.scheduler.add(every_minute(&probe)).await.unwrap();

    harness.clock.jump(Duration::from_secs(5 * 60 + 50));
    run_for(Duration::from_secs(45)).await; // wakes at wall 00:06:50, then 00:07:00 runs

    let records = history(&harness.scheduler, "agg").await;
    assert_eq!(records.len(), 2);
    let missed = &records[0];
    assert_eq!(missed.status, RunStatus::Missed);
    assert_eq!(missed.scheduled_at, Some(at("2026-01-01T00:06:00Z")));
    assert_eq!(missed.coalesced, 5);
    assert_eq!(
        missed.error.as_deref(),
        Some("not started within the misfire grace of 30s (late by 50s)")
    );
    assert_eq!((missed.rows_read, missed.windows_written), (0, 0));
    assert_eq!(records[1].status, RunStatus::Ok);
    assert_eq!(records[1].scheduled_at, Some(at("2026-01-01T00:07:00Z")));
    let runs = probe.runs();
    assert_eq!(runs.len(), 1, "the missed tick did not run");
}

#[tokio::test(start_paused = true)]
async fn a_coalesced_tick_that_waited_past_its_grace_is_missed() {
    let harness = start_at("2026-01-01T00:00:30Z");
    let probe = Probe::new(&harness.clock, Duration::from_secs(150));
    let spec = JobSpec::new("slow", "every 1m".parse().unwrap(), probe.clone())
        .overlap(OverlapPolicy::Coalesce)
        .misfire_grace(Duration::from_secs(20));
    harness.scheduler.add(spec).await.unwrap();
    run_for(Duration::from_secs(200)).await; // wall 00:03:50

    let records = history(&harness.scheduler, "slow").await;
    let summary: Vec<_> = records
        .iter()
        .map(|r| (r.scheduled_at.unwrap(), r.status, r.coalesced))
        .collect();
    // The first run ends at 00:03:30; the pending 00:03 tick is 30 s late, past the 20 s grace.
    assert_eq!(
        summary,
        [
            (at("2026-01-01T00:01:00Z"), RunStatus::Ok, 0),
            (at("2026-01-01T00:03:00Z"), RunStatus::Missed, 1),
        ]
    );
    assert_eq!(probe.runs().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_clock_stepped_back_re_plans_instead_of_waiting_an_hour() {
    let harness = start_at("2026-01-01T01:00:30Z");
    let probe = Probe::new(&harness.clock, Duration::from_secs(1));
    harness.scheduler.add(every_minute(&probe)).await.unwrap();
    assert_eq!(
        harness.scheduler.status("agg").await.unwrap().next_run,
        Some(at("2026-01-01T01:01:00Z"))
    );
    harness.clock.jump_back(Duration::from_secs(3600)); // wall 00:00:30
    run_for(Duration::from_secs(95)).await; // wall 00:02:05

    let ticks: Vec<_> = probe
        .runs()
        .iter()
        .map(|r| r.scheduled_at.unwrap())
        .collect();
    // The actor noticed the step at its next wake (00:01:00) and planned from there.
    assert_eq!(ticks, [at("2026-01-01T00:02:00Z")]);
    assert_eq!(
        harness.scheduler.status("agg").await.unwrap().next_run,
        Some(at("2026-01-01T00:03:00Z"))
    );
}
