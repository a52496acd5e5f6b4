//! Interval schedules drive runs at their exact ticks, and each run is recorded.

use std::time::Duration;

use pulse_scheduler::{JobSpec, RunStatus, RunTrigger, Schedule, SchedulerError};

use crate::support::{at, history, run_for, start_at, Probe};

#[tokio::test(start_paused = true)]
async fn runs_at_each_interval_tick() {
    let harness = start_at("2026-01-01T00:00:30Z");
    let probe = Probe::new(&harness.clock, Duration::from_secs(1));
    let schedule: Schedule = "every 1m".parse().unwrap();
    harness
        .scheduler
        .add(JobSpec::new("agg", schedule, probe.clone()))
        .await
        .unwrap();
    let status = harness.scheduler.status("agg").await.unwrap();
    assert_eq!(status.next_run, Some(at("2026-01-01T00:01:00Z")));
    assert_eq!(status.schedule, "every 1m");

    run_for(Duration::from_secs(5 * 60)).await; // wall: 00:05:30

    let seen = probe.runs();
    let ticks: Vec<_> = seen.iter().map(|run| run.scheduled_at.unwrap()).collect();
    let expected: Vec<_> = (1..=5)
        .map(|m| at(&format!("2026-01-01T00:0{m}:00Z")))
        .collect();
    assert_eq!(ticks, expected);
    assert!(seen
        .iter()
        .all(|run| run.trigger == RunTrigger::Scheduled && Some(run.started) == run.scheduled_at));

    let records = history(&harness.scheduler, "agg").await;
    assert_eq!(records.len(), 5);
    for (record, tick) in records.iter().zip(&expected) {
        assert_eq!(record.status, RunStatus::Ok);
        assert_eq!(record.scheduled_at, Some(*tick));
        assert_eq!(record.started_at, *tick);
        assert_eq!(record.finished_at, *tick + chrono::Duration::seconds(1));
        assert_eq!(
            (record.rows_read, record.rejected, record.windows_written),
            (100, 2, 7)
        );
        assert_eq!(record.error, None);
        assert_eq!(record.coalesced, 0);
    }
    let status = harness.scheduler.status("agg").await.unwrap();
    assert_eq!(status.runs_ok, 5);
    assert_eq!(status.next_run, Some(at("2026-01-01T00:06:00Z")));
    assert_eq!(status.last_run.as_ref(), records.last());
}

#[tokio::test(start_paused = true)]
async fn offset_shifts_the_ticks() {
    let harness = start_at("2026-01-01T00:00:00Z");
    let probe = Probe::new(&harness.clock, Duration::from_secs(1));
    let schedule: Schedule = "every 1h offset 10m".parse().unwrap();
    harness
        .scheduler
        .add(JobSpec::new("hourly", schedule, probe.clone()))
        .await
        .unwrap();
    run_for(Duration::from_secs(3 * 3600)).await;
    let ticks: Vec<_> = probe
        .runs()
        .iter()
        .map(|r| r.scheduled_at.unwrap())
        .collect();
    assert_eq!(
        ticks,
        [
            at("2026-01-01T00:10:00Z"),
            at("2026-01-01T01:10:00Z"),
            at("2026-01-01T02:10:00Z")
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn jobs_are_independent() {
    let harness = start_at("2026-01-01T00:00:00Z");
    let fast = Probe::new(&harness.clock, Duration::from_secs(1));
    let slow = Probe::new(&harness.clock, Duration::from_secs(600));
    let scheduler = &harness.scheduler;
    scheduler
        .add(JobSpec::new(
            "fast",
            "every 1m".parse().unwrap(),
            fast.clone(),
        ))
        .await
        .unwrap();
    scheduler
        .add(JobSpec::new(
            "slow",
            "every 1h".parse().unwrap(),
            slow.clone(),
        ))
        .await
        .unwrap();
    run_for(Duration::from_secs(3600 + 5 * 60 + 30)).await;
    // The slow job's 10-minute run at 01:00 does not hold back the fast job's ticks.
    assert_eq!(fast.runs().len(), 65);
    assert_eq!(slow.runs().len(), 1);
    let names: Vec<_> = scheduler
        .jobs()
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.name)
        .collect();
    assert_eq!(names, ["fast", "slow"]);
}

#[tokio::test(start_paused = true)]
async fn adding_checks_the_name() {
    let harness = start_at("2026-01-01T00:00:00Z");
    let probe = Probe::new(&harness.clock, Duration::from_secs(1));
    let spec = |name: &str| JobSpec::new(name, "every 1m".parse().unwrap(), probe.clone());
    harness.scheduler.add(spec("agg")).await.unwrap();
    assert!(matches!(
        harness.scheduler.add(spec("agg")).await,
        Err(SchedulerError::DuplicateJob(name)) if name == "agg"
    ));
    assert!(matches!(
        harness.scheduler.add(spec("bad name")).await,
        Err(SchedulerError::InvalidJobName { .. })
    ));
    assert!(matches!(
        harness.scheduler.status("nope").await,
        Err(SchedulerError::UnknownJob(name)) if name == "nope"
    ));
    assert!(matches!(
        harness.scheduler.history("nope", 10).await,
        Err(SchedulerError::UnknownJob(_))
    ));
}
