//! The aggregates of scheduled jobs in KV, shared by instances: a commit is a
//! compare-and-set on the job's checkpoint, and a commit interrupted by a crash (a real
//! process abort at each step) is completed by the next run, each reading counted once.

use std::sync::Arc;

use pulse_batch::aggregator::Aggregator;
use pulse_batch::reading::{RawReading, RawValue};
use pulse_batch::rejects::{Position, RejectLog};
use pulse_batch::source::log::{run_log, LogJob};
use pulse_batch::store::{AggregateQuery, AggregateStore};
use pulse_batch::table::{AggTable, Merged};
use pulse_batch::window::WindowSet;
use pulse_batch::BatchError;
use pulse_core::{Event, EventLog, Pattern};
use pulse_nats::{NatsLog, NatsOptions};

use crate::support::{self, Prefix};

/// Heart rates of `user` at the given times, as one run's delta in 5m windows.
fn delta(user: &str, readings: &[(f64, &str)]) -> Merged {
    let windows = Arc::new(WindowSet::parse("5m", "UTC").unwrap());
    let rejects = RejectLog::none();
    let mut agg = Aggregator::new(AggTable::new(windows.clone()), &rejects);
    for &(value, at) in readings {
        let raw = RawReading {
            user_id: Some(user.as_bytes()),
            metric: Some(b"heart_rate"),
            value: Some(RawValue::Number(value)),
            unit: Some(b"/min"),
            recorded_at: Some(at.as_bytes()),
            source: None,
        };
        agg.push(&raw, Position::Row(0), String::new).unwrap();
    }
    Merged::new(windows, vec![agg.table])
}

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
    let windows = WindowSet::parse("5m", "UTC").unwrap();
    let run = || {
        delta(
            "u1",
            &[
                (70.0, "2026-01-01T00:01:00Z"),
                (80.0, "2026-01-01T00:06:00Z"),
            ],
        )
    };

    assert_eq!(a.commit("rollup 5m/ü", run(), 0, 5).await.unwrap(), 2);
    let second = b.commit("rollup 5m/ü", run(), 0, 5).await;
    assert!(
        matches!(
            second,
            Err(BatchError::CheckpointMoved {
                expected: 0,
                found: 5,
                ..
            })
        ),
        "{second:?}"
    );
    assert_eq!(
        totals(&b, "rollup 5m/ü", "u1").await,
        vec![(1, 70.0), (1, 80.0)]
    );
    let checkpoint = b.checkpoint("rollup 5m/ü", &windows).await.unwrap();
    assert_eq!((checkpoint.done, checkpoint.pending), (5, None));

    let late = || delta("u1", &[(90.0, "2026-01-01T00:02:00Z")]);
    assert_eq!(b.commit("rollup 5m/ü", late(), 5, 8).await.unwrap(), 1);
    for from in [0, 5] {
        assert!(matches!(
            a.commit("rollup 5m/ü", late(), from, 9).await,
            Err(BatchError::CheckpointMoved { found: 8, .. })
        ));
    }
    assert_eq!(
        totals(&a, "rollup 5m/ü", "u1").await,
        vec![(2, 160.0), (1, 80.0)]
    );
    assert!(
        totals(&a, "other", "u1").await.is_empty(),
        "jobs stay apart"
    );

    // Racing commits of one range: exactly one moves the checkpoint, each key gets the
    // range once, whoever writes it.
    let (a, b) = (Arc::new(a), Arc::new(b));
    let racers: Vec<_> = [a.clone(), b.clone(), a.clone(), b.clone()]
        .into_iter()
        .map(|log| tokio::spawn(async move { log.commit("race", run(), 0, 3).await }))
        .collect();
    let mut won = 0;
    for racer in racers {
        match racer.await.unwrap() {
            Ok(_) => won += 1,
            Err(BatchError::CheckpointMoved { .. }) => {}
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(
        totals(a.as_ref(), "race", "u1").await,
        vec![(1, 70.0), (1, 80.0)]
    );
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
