//! The aggregates of scheduled jobs in KV, shared by instances: the `AggregateStore`
//! checks of `pulse_batch::contract` (a commit is a compare-and-set on the job's
//! checkpoint, jobs keep their own rows), and a commit interrupted by a crash (a real
//! process abort at each step) is completed by the next run, each reading counted once.

use std::sync::Arc;

use pulse_batch::RejectLog;
use pulse_batch::WindowSet;
use pulse_batch::{contract, AggregateQuery, AggregateStore};
use pulse_batch::{run_log, LogJob};
use pulse_core::{Event, EventLog, Pattern};
use pulse_nats::{NatsLog, NatsOptions};

use crate::support::{self, Prefix};

/// (count, sum) of every 5m row of `user` in `job`, by window start.
async fn totals(store: &dyn AggregateStore, job: &str, user: &str) -> Vec<(u64, f64)> {
    let query = AggregateQuery {
        user_id: user.into(),
        metric: "heart_rate".into(),
        window: "5m".into(),
        from_us: i64::MIN,
        to_us: i64::MAX,
        limit: 1000,
    };
    store
        .query(job, &query)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.stats.count, r.stats.sum))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_commit_from_the_same_checkpoint_changes_nothing() {
    let Some(url) = support::url("a_second_commit_from_the_same_checkpoint_changes_nothing") else {
        return;
    };
    let prefix = Prefix::new(url, "aggcas");
    let (a, b) = (prefix.open().await, prefix.open().await);
    // A job name with characters KV keys may not hold.
    contract::commits_are_compare_and_set(Arc::new(a), Arc::new(b), "rollup 5m/ü").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_keep_their_own_rows_and_queries_select_by_window_start() {
    let Some(url) = support::url("jobs_keep_their_own_rows_and_queries_select_by_window_start")
    else {
        return;
    };
    let prefix = Prefix::new(url, "aggjobs");
    contract::jobs_keep_their_own_rows_and_queries_select_by_window_start(&prefix.open().await)
        .await;
}

/// Set in the child process: the prefix to run the job on.
const CHILD_PREFIX: &str = "PULSE_TEST_NATS_CRASH_PREFIX";
const TEST: &str = "aggregates::a_commit_interrupted_by_a_crash_is_completed_once";

fn job() -> LogJob {
    let pattern = Pattern::parse("health.reading.>").unwrap();
    LogJob::new("hr", pattern, WindowSet::parse("5m", "UTC").unwrap())
}

/// Readings of round `round`: users u0..u3, one reading each in two windows.
fn readings(round: usize) -> Vec<Event> {
    (0..8)
        .map(|i| {
            let minute = if i % 2 == 0 { 1 } else { 7 };
            let data = serde_json::json!({"user_id": format!("u{}", i / 2), "metric": "heart_rate",
                "value": 60 + round * 10, "unit": "/min",
                "recorded_at": format!("2026-01-01T00:0{minute}:00Z")});
            Event::new("health.reading.heart_rate")
                .with_id(format!("r{round}-{i}"))
                .with_json(&data)
                .unwrap()
        })
        .collect()
}

/// The child: runs the job until the failpoint aborts the process.
async fn crash_in_child(prefix: String) {
    let url = std::env::var("PULSE_TEST_NATS_URL").unwrap();
    let log = NatsLog::connect(&url, NatsOptions::new(prefix))
        .await
        .unwrap();
    let result = run_log(&log, &job(), &log, &RejectLog::none()).await;
    panic!("the failpoint was not reached: {result:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_interrupted_by_a_crash_is_completed_once() {
    if let Ok(prefix) = std::env::var(CHILD_PREFIX) {
        return crash_in_child(prefix).await;
    }
    let Some(url) = support::url("a_commit_interrupted_by_a_crash_is_completed_once") else {
        return;
    };
    let prefix = Prefix::new(url.clone(), "aggcrash");
    let log = prefix.open().await;
    let job = job();
    let mut done = 0;
    for (round, failpoint) in [
        "nats.aggregates.after_intent",
        "nats.aggregates.after_first_key",
        "nats.aggregates.after_keys",
    ]
    .into_iter()
    .enumerate()
    {
        let appended = log.append(readings(round)).await.unwrap();
        let last = appended.last().unwrap().offset;
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([TEST, "--exact", "--nocapture"])
            .env(CHILD_PREFIX, &prefix.options.prefix)
            .env("PULSE_TEST_NATS_URL", &url)
            .env(pulse_batch::failpoint::ENV, failpoint)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(!status.success(), "{failpoint}: the child crashed");
        let checkpoint = log.checkpoint("hr", &job.windows).await.unwrap();
        assert_eq!(
            (checkpoint.done, checkpoint.pending),
            (done, Some(last)),
            "{failpoint}: the intent survived the crash"
        );

        let summary = run_log(&log, &job, &log, &RejectLog::none()).await.unwrap();
        assert_eq!(
            summary.counts.rows, 8,
            "{failpoint}: the range was read again"
        );
        let checkpoint = log.checkpoint("hr", &job.windows).await.unwrap();
        assert_eq!((checkpoint.done, checkpoint.pending), (last, None));
        done = last;
        // Every reading of every round so far counts once.
        let rounds = round as u64 + 1;
        let sum: f64 = (0..=round).map(|r| 60.0 + r as f64 * 10.0).sum();
        for user in 0..4 {
            assert_eq!(
                totals(&log, "hr", &format!("u{user}")).await,
                vec![(rounds, sum), (rounds, sum)],
                "{failpoint}: user u{user}"
            );
        }
    }
    let again = run_log(&log, &job, &log, &RejectLog::none()).await.unwrap();
    assert_eq!((again.counts.rows, again.keys_updated), (0, 0));
}
