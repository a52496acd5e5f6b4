//! The run history: bounded in memory, pluggable, and never fatal when its store fails.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use pulse_scheduler::{
    HistoryError, JobSpec, RunHistoryStore, RunRecord, RunStatus, SchedulerError,
};

use crate::support::{start_with, Probe};

#[tokio::test(start_paused = true)]
async fn the_memory_history_keeps_the_newest_runs() {
    let harness = start_with("2026-01-01T00:00:00Z", |b| b.history_per_job(3));
    let probe = Probe::new(&harness.clock, Duration::from_secs(1));
    harness
        .scheduler
        .add(JobSpec::new(
            "agg",
            "every 1h".parse().unwrap(),
            probe.clone(),
        ))
        .await
        .unwrap();
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(harness.scheduler.trigger("agg").await.unwrap().run_id);
    }
    let kept: Vec<u64> = harness
        .scheduler
        .history("agg", 10)
        .await
        .unwrap()
        .iter()
        .map(|r| r.run_id)
        .collect();
    assert_eq!(kept, [ids[4], ids[3], ids[2]]);
    assert_eq!(
        harness.scheduler.history("agg", 1).await.unwrap()[0].run_id,
        ids[4]
    );
    // The counters still count every run.
    assert_eq!(harness.scheduler.status("agg").await.unwrap().runs_ok, 5);
}

/// A store that keeps everything, as a durable backend would.
#[derive(Default)]
struct Recording(Mutex<Vec<RunRecord>>);

#[async_trait]
impl RunHistoryStore for Recording {
    async fn append(&self, record: &RunRecord) -> Result<(), HistoryError> {
        self.0.lock().push(record.clone());
        Ok(())
    }

    async fn recent(&self, job: &str, limit: usize) -> Result<Vec<RunRecord>, HistoryError> {
        Ok(self
            .0
            .lock()
            .iter()
            .rev()
            .filter(|r| r.job == job)
            .take(limit)
            .cloned()
            .collect())
    }
}

#[tokio::test(start_paused = true)]
async fn a_custom_store_receives_every_record() {
    let store = Arc::new(Recording::default());
    let harness = start_with("2026-01-01T00:00:00Z", |b| b.history_store(store.clone()));
    let probe = Probe::new(&harness.clock, Duration::from_secs(1));
    harness
        .scheduler
        .add(JobSpec::new(
            "agg",
            "every 1m".parse().unwrap(),
            probe.clone(),
        ))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(150)).await;
    let stored = store.0.lock().clone();
    assert_eq!(stored.len(), 2);
    assert!(stored.iter().all(|r| r.status == RunStatus::Ok));
    assert_eq!(harness.scheduler.history("agg", 5).await.unwrap().len(), 2);
}

/// A store whose backend is down.
struct Broken;

#[async_trait]
impl RunHistoryStore for Broken {
    async fn append(&self, _record: &RunRecord) -> Result<(), HistoryError> {
        Err(HistoryError::Backend("database is locked".into()))
    }

    async fn recent(&self, _job: &str, _limit: usize) -> Result<Vec<RunRecord>, HistoryError> {
        Err(HistoryError::Backend("database is locked".into()))
    }
}

#[tokio::test(start_paused = true)]
async fn a_failing_store_does_not_stop_the_jobs() {
    let harness = start_with("2026-01-01T00:00:00Z", |b| {
        b.history_store(Arc::new(Broken))
    });
    let probe = Probe::new(&harness.clock, Duration::from_secs(1));
    harness
        .scheduler
        .add(JobSpec::new(
            "agg",
            "every 1m".parse().unwrap(),
            probe.clone(),
        ))
        .await
        .unwrap();
    let record = harness.scheduler.trigger("agg").await.unwrap();
    assert_eq!(record.status, RunStatus::Ok);
    tokio::time::sleep(Duration::from_secs(90)).await;
    assert_eq!(probe.runs().len(), 2);
    let status = harness.scheduler.status("agg").await.unwrap();
    assert_eq!(status.runs_ok, 2);
    assert!(matches!(
        harness.scheduler.history("agg", 5).await,
        Err(SchedulerError::History(HistoryError::Backend(_)))
    ));
}
