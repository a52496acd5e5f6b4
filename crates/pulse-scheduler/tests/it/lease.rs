//! The lease hook: each scheduled tick asks it first; a denied tick leaves no record here, a
//! failing lease is a failed run, and manual runs do not ask.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Timelike, Utc};
use parking_lot::Mutex;
use pulse_scheduler::{JobLease, JobSpec, LeaseError, RunStatus, RunTrigger};
use tokio::time::Instant;

use crate::support::{at, history, run_for, start_with, Harness, Probe};

/// Grants odd minutes only, as if another instance took the even ones; remembers every ask.
#[derive(Default)]
struct OddMinutes(Mutex<Vec<(String, DateTime<Utc>)>>);

#[async_trait]
impl JobLease for OddMinutes {
    async fn try_acquire(&self, job: &str, tick: DateTime<Utc>) -> Result<bool, LeaseError> {
        self.0.lock().push((job.to_owned(), tick));
        Ok(tick.minute() % 2 == 1)
    }
}

#[tokio::test(start_paused = true)]
async fn each_tick_runs_only_where_the_lease_is_acquired() {
    let lease = Arc::new(OddMinutes::default());
    let harness = start_with("2026-01-01T00:00:30Z", |b| b.lease(lease.clone()));
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
    run_for(Duration::from_secs(4 * 60)).await; // ticks 00:01 .. 00:04

    let asked: Vec<_> = lease.0.lock().iter().map(|(_, tick)| *tick).collect();
    let expected: Vec<_> = (1..=4)
        .map(|m| at(&format!("2026-01-01T00:0{m}:00Z")))
        .collect();
    assert_eq!(asked, expected);
    let ran: Vec<_> = history(&harness.scheduler, "agg")
        .await
        .iter()
        .map(|r| r.scheduled_at.unwrap())
        .collect();
    assert_eq!(ran, [expected[0], expected[2]]);
    assert_eq!(probe.runs().len(), 2);

    // A manual run does not ask the lease.
    let manual = harness.scheduler.trigger("agg").await.unwrap();
    assert_eq!(manual.trigger, RunTrigger::Manual);
    assert_eq!(lease.0.lock().len(), 4);
}

struct Unreachable;

#[async_trait]
impl JobLease for Unreachable {
    async fn try_acquire(&self, _job: &str, _tick: DateTime<Utc>) -> Result<bool, LeaseError> {
        Err(LeaseError::Backend("connection refused".into()))
    }
}

#[tokio::test(start_paused = true)]
async fn a_failing_lease_is_a_failed_run() {
    let harness = start_with("2026-01-01T00:00:30Z", |b| b.lease(Arc::new(Unreachable)));
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
    run_for(Duration::from_secs(60)).await;
    let records = history(&harness.scheduler, "agg").await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].status, RunStatus::Failed);
    assert_eq!(
        records[0].error.as_deref(),
        Some("could not acquire the job lease: job lease backend failed: connection refused")
    );
    assert!(probe.runs().is_empty());
}

/// The claims of a cluster: the first instance to claim a tick gets it. The test plays
/// another instance by claiming ticks itself; every ask of this instance is remembered
/// with when it was made.
#[derive(Default)]
struct Cluster {
    claimed: Mutex<Vec<DateTime<Utc>>>,
    asked: Mutex<Vec<(DateTime<Utc>, Instant)>>,
    /// Ticks whose claim fails, as with the lease store unreachable.
    unreachable: Mutex<Vec<DateTime<Utc>>>,
}

#[async_trait]
impl JobLease for Cluster {
    async fn try_acquire(&self, _job: &str, tick: DateTime<Utc>) -> Result<bool, LeaseError> {
        self.asked.lock().push((tick, Instant::now()));
        if self.unreachable.lock().contains(&tick) {
            return Err(LeaseError::Backend("the lease store is unreachable".into()));
        }
        let mut claimed = self.claimed.lock();
        let free = !claimed.contains(&tick);
        if free {
            claimed.push(tick);
        }
        Ok(free)
    }
}

/// From wall 00:00:30, job `agg` every minute on `cluster`'s lease, with a misfire grace
/// of 10 s, each run lasting 90 s: the 00:01 run goes until 00:02:30, so the 00:02 tick
/// finds this instance busy (and so on every other minute).
async fn busy_every_minute(cluster: &Arc<Cluster>) -> Harness {
    let harness = start_with("2026-01-01T00:00:30Z", |b| b.lease(cluster.clone()));
    let probe = Probe::new(&harness.clock, Duration::from_secs(90));
    harness
        .scheduler
        .add(
            JobSpec::new("agg", "every 1m".parse().unwrap(), probe)
                .misfire_grace(Duration::from_secs(10)),
        )
        .await
        .unwrap();
    harness
}

#[tokio::test(start_paused = true)]
async fn a_busy_instance_leaves_its_tick_to_the_others_and_records_it_missed_only_if_untaken() {
    let cluster = Arc::new(Cluster::default());
    // Another instance takes the 00:02 tick; nobody takes 00:04.
    cluster.claimed.lock().push(at("2026-01-01T00:02:00Z"));
    let started = Instant::now();
    let harness = busy_every_minute(&cluster).await;
    run_for(Duration::from_secs(4 * 60 + 15)).await; // wall 00:04:45

    let mut records = history(&harness.scheduler, "agg").await;
    records.sort_by_key(|r| r.scheduled_at);
    let seen: Vec<_> = records
        .iter()
        .map(|r| (r.scheduled_at.unwrap(), r.status))
        .collect();
    assert_eq!(
        seen,
        [
            (at("2026-01-01T00:01:00Z"), RunStatus::Ok),
            (at("2026-01-01T00:03:00Z"), RunStatus::Ok),
            (at("2026-01-01T00:04:00Z"), RunStatus::Missed),
        ],
        "the 00:02 tick, run elsewhere, leaves no record here"
    );
    let reason = records[2].error.as_deref().unwrap();
    assert!(
        reason.contains("no other instance started the tick"),
        "{reason}"
    );
    // The busy ticks were claimed only after their misfire grace: 00:02:10 and 00:04:10
    // are 100 s and 220 s after the start at 00:00:30.
    let asked = cluster.asked.lock().clone();
    for (busy, not_before) in [("2026-01-01T00:02:00Z", 100), ("2026-01-01T00:04:00Z", 220)] {
        let (_, when) = asked.iter().find(|(tick, _)| *tick == at(busy)).unwrap();
        let after = when.duration_since(started);
        assert!(
            after >= Duration::from_secs(not_before),
            "{busy} asked after {after:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_busy_tick_the_lease_cannot_answer_for_is_missed_with_the_lease_error() {
    let cluster = Arc::new(Cluster::default());
    cluster.unreachable.lock().push(at("2026-01-01T00:02:00Z"));
    let harness = busy_every_minute(&cluster).await;
    run_for(Duration::from_secs(2 * 60 + 15)).await; // wall 00:02:45

    let records = history(&harness.scheduler, "agg").await;
    let busy = records
        .iter()
        .find(|r| r.scheduled_at == Some(at("2026-01-01T00:02:00Z")))
        .expect("the busy tick is recorded");
    assert_eq!(busy.status, RunStatus::Missed);
    let reason = busy.error.as_deref().unwrap();
    assert!(
        reason.contains("could not tell") && reason.contains("the lease store is unreachable"),
        "{reason}"
    );
}
