//! Cron jobs in a time zone run at the right instants across daylight-saving changes.

use std::time::Duration;

use chrono::{DateTime, Utc};
use pulse_scheduler::{JobSpec, Schedule};

use crate::support::{at, run_for, start_at, Probe};

async fn ticks_over(start: &str, expr: &str, zone: &str, span: Duration) -> Vec<DateTime<Utc>> {
    let harness = start_at(start);
    let probe = Probe::new(&harness.clock, Duration::from_secs(1));
    let tz = Schedule::parse_time_zone(zone).unwrap();
    let schedule = Schedule::parse(expr, tz).unwrap();
    harness
        .scheduler
        .add(JobSpec::new("nightly", schedule, probe.clone()))
        .await
        .unwrap();
    run_for(span).await;
    let runs = probe.runs();
    // Each run started exactly at its tick.
    assert!(runs.iter().all(|run| Some(run.started) == run.scheduled_at));
    runs.iter().map(|run| run.scheduled_at.unwrap()).collect()
}

#[tokio::test(start_paused = true)]
async fn spring_forward_runs_the_skipped_time_once_after_the_gap() {
    // New York, 2026-03-08: 02:00 EST jumps to 03:00 EDT, so 02:30 does not exist that day.
    let ticks = ticks_over(
        "2026-03-07T00:00:00Z",
        "30 2 * * *",
        "America/New_York",
        Duration::from_secs(3 * 86_400),
    )
    .await;
    assert_eq!(
        ticks,
        [
            at("2026-03-07T07:30:00Z"), // 02:30 EST
            at("2026-03-08T07:00:00Z"), // 03:00 EDT: right after the gap
            at("2026-03-09T06:30:00Z"), // 02:30 EDT
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn fall_back_runs_the_repeated_time_once() {
    // New York, 2026-11-01: 02:00 EDT goes back to 01:00 EST, so 01:30 happens twice.
    let ticks = ticks_over(
        "2026-10-31T12:00:00Z",
        "30 1 * * *",
        "America/New_York",
        Duration::from_secs(2 * 86_400),
    )
    .await;
    assert_eq!(
        ticks,
        [at("2026-11-01T05:30:00Z"), at("2026-11-02T06:30:00Z")]
    );
}

#[tokio::test(start_paused = true)]
async fn hourly_jobs_keep_real_hours_across_fall_back() {
    let ticks = ticks_over(
        "2026-11-01T03:30:00Z",
        "0 * * * *",
        "America/New_York",
        Duration::from_secs(5 * 3600),
    )
    .await;
    let expected: Vec<_> = (4..=8)
        .map(|h| at(&format!("2026-11-01T0{h}:00:00Z")))
        .collect();
    assert_eq!(ticks, expected); // 00:00 EDT, 01:00 EDT, 01:00 EST, 02:00 EST, 03:00 EST
}

#[tokio::test(start_paused = true)]
async fn daily_in_a_zone_without_dst() {
    // Asia/Shanghai is UTC+8 all year: midnight there is 16:00 UTC.
    let ticks = ticks_over(
        "2026-03-01T00:00:00Z",
        "0 0 * * *",
        "Asia/Shanghai",
        Duration::from_secs(2 * 86_400),
    )
    .await;
    assert_eq!(
        ticks,
        [at("2026-03-01T16:00:00Z"), at("2026-03-02T16:00:00Z")]
    );
}
