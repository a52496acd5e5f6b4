//! Graceful shutdown: stop scheduling, wait for running jobs up to a deadline, then cancel.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pulse_scheduler::{job_fn, BoxError, JobOutcome, JobSpec, RunStatus, SchedulerError};

use crate::support::{history, run_for, start_at, wait_status, Probe};

#[tokio::test(start_paused = true)]
async fn shutdown_waits_for_a_run_that_ends_in_time() {
    let harness = start_at("2026-01-01T00:00:00Z");
    let probe = Probe::new(&harness.clock, Duration::from_secs(30));
    let scheduler = harness.scheduler.clone();
    scheduler
        .add(JobSpec::new(
            "agg",
            "every 1m".parse().unwrap(),
            probe.clone(),
        ))
        .await
        .unwrap();
    let trigger = tokio::spawn({
        let scheduler = scheduler.clone();
        async move { scheduler.trigger("agg").await }
    });
    let mut status = scheduler.watch("agg").await.unwrap();
    wait_status(&mut status, |s| s.running).await;

    let report = scheduler.shutdown(Duration::from_secs(60)).await.unwrap();
    assert_eq!(report.finished, ["agg"]);
    assert!(report.cancelled.is_empty());
    let record = trigger.await.unwrap().unwrap();
    assert_eq!(record.status, RunStatus::Ok);
    // No tick ran during or after the drain (the 00:01 tick came after the shutdown started).
    run_for(Duration::from_secs(300)).await;
    assert_eq!(probe.runs().len(), 1);
    assert!(matches!(
        scheduler.trigger("agg").await,
        Err(SchedulerError::Stopped)
    ));
    assert!(matches!(
        scheduler
            .add(JobSpec::new(
                "other",
                "every 1m".parse().unwrap(),
                probe.clone()
            ))
            .await,
        Err(SchedulerError::Stopped)
    ));
    // A second shutdown is harmless.
    assert_eq!(
        scheduler.shutdown(Duration::ZERO).await.unwrap(),
        Default::default()
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_cancels_runs_past_the_deadline() {
    let harness = start_at("2026-01-01T00:00:00Z");
    let probe = Probe::new(&harness.clock, Duration::from_secs(600));
    let scheduler = harness.scheduler.clone();
    scheduler
        .add(JobSpec::new(
            "long",
            "every 1m".parse().unwrap(),
            probe.clone(),
        ))
        .await
        .unwrap();
    let trigger = tokio::spawn({
        let scheduler = scheduler.clone();
        async move { scheduler.trigger("long").await }
    });
    let mut status = scheduler.watch("long").await.unwrap();
    wait_status(&mut status, |s| s.running).await;

    let report = scheduler.shutdown(Duration::from_secs(5)).await.unwrap();
    assert_eq!(report.cancelled, ["long"]);
    assert!(report.finished.is_empty());
    let record = trigger.await.unwrap().unwrap();
    assert_eq!(record.status, RunStatus::Failed);
    assert_eq!(
        record.error.as_deref(),
        Some("cancelled: the scheduler shut down before the run finished")
    );
    // The 5 s grace, then one second to react to the cancellation, then the abort.
    assert_eq!(record.duration(), chrono::Duration::seconds(6));
    assert_eq!(probe.max_active(), 1);
    // The run's future was dropped (its guard ran), not left running.
    let probe_after = probe.clone();
    run_for(Duration::from_secs(1)).await;
    assert_eq!(probe_after.runs().len(), 1);
    let final_status = status.borrow().clone();
    assert!(!final_status.running);
    assert_eq!(final_status.next_run, None);
    assert_eq!(final_status.runs_failed, 1);
}

#[tokio::test(start_paused = true)]
async fn a_cooperative_job_sees_the_cancellation() {
    let harness = start_at("2026-01-01T00:00:00Z");
    let saw_cancel = Arc::new(AtomicBool::new(false));
    let job = job_fn({
        let saw_cancel = saw_cancel.clone();
        move |ctx| {
            let saw_cancel = saw_cancel.clone();
            async move {
                tokio::select! {
                    () = ctx.cancelled() => {
                        saw_cancel.store(true, Ordering::SeqCst);
                        Err::<JobOutcome, BoxError>("stopped at a checkpoint".into())
                    }
                    () = tokio::time::sleep(Duration::from_secs(3600)) => Ok(JobOutcome::default()),
                }
            }
        }
    });
    let scheduler = harness.scheduler.clone();
    scheduler
        .add(JobSpec::new("agg", "every 1m".parse().unwrap(), job))
        .await
        .unwrap();
    run_for(Duration::from_secs(61)).await; // the 00:01 run is going
    assert!(scheduler.status("agg").await.unwrap().running);
    let report = scheduler.shutdown(Duration::from_secs(10)).await.unwrap();
    assert_eq!(report.cancelled, ["agg"]);
    let records = history(&scheduler, "agg").await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].status, RunStatus::Failed);
    assert!(saw_cancel.load(Ordering::SeqCst));
    // The job stopped by itself at the deadline and its own error was kept.
    assert_eq!(records[0].error.as_deref(), Some("stopped at a checkpoint"));
    assert_eq!(records[0].duration(), chrono::Duration::seconds(11)); // 00:01:00 → 00:01:11
}

#[tokio::test(start_paused = true)]
async fn shutdown_refuses_new_work_while_draining() {
    let harness = start_at("2026-01-01T00:00:00Z");
    let probe = Probe::new(&harness.clock, Duration::from_secs(30));
    let scheduler = harness.scheduler.clone();
    scheduler
        .add(JobSpec::new(
            "agg",
            "every 1m".parse().unwrap(),
            probe.clone(),
        ))
        .await
        .unwrap();
    let first = tokio::spawn({
        let scheduler = scheduler.clone();
        async move { scheduler.trigger("agg").await }
    });
    let mut status = scheduler.watch("agg").await.unwrap();
    wait_status(&mut status, |s| s.running).await;
    let drain = tokio::spawn({
        let scheduler = scheduler.clone();
        async move { scheduler.shutdown(Duration::from_secs(60)).await }
    });
    wait_status(&mut status, |s| s.next_run.is_none()).await;
    assert!(matches!(
        scheduler.trigger("agg").await,
        Err(SchedulerError::ShuttingDown)
    ));
    assert!(matches!(
        scheduler
            .add(JobSpec::new(
                "b",
                "every 1m".parse().unwrap(),
                probe.clone()
            ))
            .await,
        Err(SchedulerError::ShuttingDown)
    ));
    // Status is still readable while draining.
    assert!(scheduler.jobs().await.unwrap()[0].running);
    assert_eq!(drain.await.unwrap().unwrap().finished, ["agg"]);
    assert_eq!(first.await.unwrap().unwrap().status, RunStatus::Ok);
}

#[tokio::test(start_paused = true)]
async fn dropping_every_handle_stops_the_scheduler_and_its_runs() {
    let harness = start_at("2026-01-01T00:00:00Z");
    let probe = Probe::new(&harness.clock, Duration::from_secs(600));
    harness
        .scheduler
        .add(JobSpec::new(
            "agg",
            "every 1m".parse().unwrap(),
            probe.clone(),
        ))
        .await
        .unwrap();
    let mut status = harness.scheduler.watch("agg").await.unwrap();
    wait_status(&mut status, |s| s.running).await;
    drop(harness.scheduler);
    // The status channel closes when the scheduler task ends; the last status is not running.
    while status.changed().await.is_ok() {}
    assert!(!status.borrow().running);
    run_for(Duration::from_secs(3600)).await;
    assert_eq!(probe.runs().len(), 1);
    assert_eq!(probe.max_active(), 1);
}
