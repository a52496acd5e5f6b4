//! Run-now on demand, its errors, and failures recorded with their error text.

use std::time::Duration;

use pulse_scheduler::{
    job_fn, BoxError, JobOutcome, JobSpec, RunStatus, RunTrigger, SchedulerError, Superseded,
};

use crate::support::{at, history, start_at, wait_status, Probe};

#[derive(Debug, thiserror::Error)]
#[error("source unreadable")]
struct SourceError(#[source] std::io::Error);

#[tokio::test(start_paused = true)]
async fn trigger_runs_now_and_returns_the_record() {
    let harness = start_at("2026-01-01T00:00:00Z");
    let probe = Probe::new(&harness.clock, Duration::from_secs(3));
    harness
        .scheduler
        .add(JobSpec::new(
            "agg",
            "every 1h".parse().unwrap(),
            probe.clone(),
        ))
        .await
        .unwrap();
    let record = harness.scheduler.trigger("agg").await.unwrap();
    assert_eq!(record.status, RunStatus::Ok);
    assert_eq!(record.trigger, RunTrigger::Manual);
    assert_eq!(record.scheduled_at, None);
    assert_eq!(record.started_at, at("2026-01-01T00:00:00Z"));
    assert_eq!(record.finished_at, at("2026-01-01T00:00:03Z"));
    assert_eq!(
        (record.rows_read, record.rejected, record.windows_written),
        (100, 2, 7)
    );
    assert_eq!(probe.runs()[0].run_id, record.run_id);
    assert_eq!(
        history(&harness.scheduler, "agg").await,
        vec![record.clone()]
    );
    // The schedule is unchanged by a manual run.
    let status = harness.scheduler.status("agg").await.unwrap();
    assert_eq!(status.next_run, Some(at("2026-01-01T01:00:00Z")));
    assert_eq!(status.last_run, Some(record));
}

#[tokio::test(start_paused = true)]
async fn trigger_while_running_is_refused() {
    let harness = start_at("2026-01-01T00:00:00Z");
    let probe = Probe::new(&harness.clock, Duration::from_secs(600));
    harness
        .scheduler
        .add(JobSpec::new(
            "agg",
            "every 1h".parse().unwrap(),
            probe.clone(),
        ))
        .await
        .unwrap();
    let mut status = harness.scheduler.watch("agg").await.unwrap();
    let scheduler = harness.scheduler.clone();
    let first = tokio::spawn(async move { scheduler.trigger("agg").await });
    let running = wait_status(&mut status, |s| s.running).await;
    assert_eq!(running.running_since, Some(at("2026-01-01T00:00:00Z")));

    assert!(matches!(
        harness.scheduler.trigger("agg").await,
        Err(SchedulerError::AlreadyRunning(name)) if name == "agg"
    ));
    let record = first.await.unwrap().unwrap();
    assert_eq!(record.status, RunStatus::Ok);
    assert_eq!(probe.runs().len(), 1);
    assert_eq!(probe.max_active(), 1);
    wait_status(&mut status, |s| !s.running).await;
    assert!(matches!(
        harness.scheduler.trigger("missing").await,
        Err(SchedulerError::UnknownJob(name)) if name == "missing"
    ));
}

#[tokio::test(start_paused = true)]
async fn a_failure_is_recorded_with_its_error_text() {
    let harness = start_at("2026-01-01T00:00:00Z");
    let job = job_fn(|_ctx| async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let io = std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "/data/readings.csv: no such file",
        );
        Err::<JobOutcome, BoxError>(SourceError(io).into())
    });
    harness
        .scheduler
        .add(JobSpec::new("agg", "every 1m".parse().unwrap(), job))
        .await
        .unwrap();

    let manual = harness.scheduler.trigger("agg").await.unwrap();
    assert_eq!(manual.status, RunStatus::Failed);
    assert_eq!(
        manual.error.as_deref(),
        Some("source unreadable: /data/readings.csv: no such file")
    );
    assert_eq!((manual.rows_read, manual.windows_written), (0, 0));

    // Scheduled runs fail the same way, and keep being scheduled.
    tokio::time::sleep(Duration::from_secs(150)).await; // wall 00:02:32
    let records = history(&harness.scheduler, "agg").await;
    assert_eq!(records.len(), 3);
    assert!(records
        .iter()
        .all(|r| r.status == RunStatus::Failed && r.error == manual.error));
    assert_eq!(records[1].scheduled_at, Some(at("2026-01-01T00:01:00Z")));
    let status = harness.scheduler.status("agg").await.unwrap();
    assert_eq!((status.runs_ok, status.runs_failed), (0, 3));
}

#[tokio::test(start_paused = true)]
async fn a_run_whose_work_was_done_elsewhere_is_superseded_not_failed() {
    let harness = start_at("2026-01-01T00:00:00Z");
    let job = job_fn(|_ctx| async {
        let why = "the checkpoint is at 8, not 5: another run committed first";
        // Wrapped as job code does with `?`: the scheduler still finds it.
        Err::<JobOutcome, BoxError>(Box::new(Superseded(why.to_owned())))
    });
    harness
        .scheduler
        .add(JobSpec::new("agg", "every 1m".parse().unwrap(), job))
        .await
        .unwrap();
    let manual = harness.scheduler.trigger("agg").await.unwrap();
    assert_eq!(manual.status, RunStatus::Superseded);
    assert_eq!(
        manual.error.as_deref(),
        Some("the checkpoint is at 8, not 5: another run committed first")
    );
    tokio::time::sleep(Duration::from_secs(90)).await; // wall 00:01:30
    let records = history(&harness.scheduler, "agg").await;
    assert_eq!(records.len(), 2);
    assert!(records.iter().all(|r| r.status == RunStatus::Superseded));
    let status = harness.scheduler.status("agg").await.unwrap();
    assert_eq!(
        (status.runs_ok, status.runs_failed, status.runs_superseded),
        (0, 0, 2)
    );
    assert_eq!(
        serde_json::to_value(&records[0]).unwrap()["status"],
        "superseded"
    );
}

#[tokio::test(start_paused = true)]
async fn a_panicking_job_is_a_failed_run_not_a_dead_scheduler() {
    let harness = start_at("2026-01-01T00:00:00Z");
    let job = job_fn(|_ctx| async {
        if true {
            panic!("window index out of range");
        }
        Ok(JobOutcome::default())
    });
    harness
        .scheduler
        .add(JobSpec::new("agg", "every 1m".parse().unwrap(), job))
        .await
        .unwrap();
    let record = harness.scheduler.trigger("agg").await.unwrap();
    assert_eq!(record.status, RunStatus::Failed);
    assert_eq!(
        record.error.as_deref(),
        Some("job panicked: window index out of range")
    );
    // Still scheduling.
    let again = harness.scheduler.trigger("agg").await.unwrap();
    assert_eq!(again.run_id, record.run_id + 1);
}
