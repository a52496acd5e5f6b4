//! The aggregates of scheduled jobs on PostgreSQL, shared by instances: a commit is a
//! compare-and-set on the job's checkpoint, jobs keep their own rows, queries read them.

use std::sync::Arc;

use pulse_batch::aggregator::Aggregator;
use pulse_batch::reading::{RawReading, RawValue};
use pulse_batch::rejects::{Position, RejectLog};
use pulse_batch::store::{AggregateQuery, AggregateStore};
use pulse_batch::table::{AggTable, Merged};
use pulse_batch::window::WindowSet;
use pulse_batch::BatchError;

use crate::support::{self, Schema};

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

fn query(user: &str) -> AggregateQuery {
    AggregateQuery {
        user_id: user.into(),
        metric: "heart_rate".into(),
        window: "5m".into(),
        from_us: i64::MIN,
        to_us: i64::MAX,
        limit: 100,
    }
}

/// (count, sum) of every row of `user` in `job`.
async fn totals(store: &dyn AggregateStore, job: &str, user: &str) -> Vec<(u64, f64)> {
    store
        .query(job, &query(user))
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
    let schema = Schema::new(url, "aggcas");
    let (a, b) = (schema.open().await, schema.open().await);
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

    assert_eq!(a.commit("rollup", run(), 0, 5).await.unwrap(), 2);
    let second = b.commit("rollup", run(), 0, 5).await;
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
    assert_eq!(totals(&b, "rollup", "u1").await, vec![(1, 70.0), (1, 80.0)]);
    let checkpoint = b.checkpoint("rollup", &windows).await.unwrap();
    assert_eq!((checkpoint.done, checkpoint.pending), (5, None));

    // The next range moves on from 5; a run still holding 0 or 5 afterwards is refused.
    let late = || delta("u1", &[(90.0, "2026-01-01T00:02:00Z")]);
    assert_eq!(b.commit("rollup", late(), 5, 8).await.unwrap(), 1);
    for from in [0, 5] {
        assert!(matches!(
            a.commit("rollup", late(), from, 9).await,
            Err(BatchError::CheckpointMoved { found: 8, .. })
        ));
    }
    assert_eq!(
        totals(&a, "rollup", "u1").await,
        vec![(2, 160.0), (1, 80.0)]
    );

    // Racing first commits of a new job: exactly one wins, whatever the timing.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_keep_their_own_rows_and_queries_select_by_window_start() {
    let Some(url) = support::url("jobs_keep_their_own_rows_and_queries_select_by_window_start")
    else {
        return;
    };
    let schema = Schema::new(url, "aggjobs");
    let log = schema.open().await;
    let same_key = || delta("u1", &[(60.0, "2026-01-01T00:01:00Z")]);
    log.commit("first", same_key(), 0, 1).await.unwrap();
    log.commit("second", same_key(), 0, 1).await.unwrap();
    log.commit(
        "second",
        delta(
            "u1",
            &[
                (100.0, "2026-01-01T00:03:00Z"),
                (50.0, "2026-01-01T00:11:00Z"),
            ],
        ),
        1,
        2,
    )
    .await
    .unwrap();
    assert_eq!(totals(&log, "first", "u1").await, vec![(1, 60.0)]);
    assert_eq!(
        totals(&log, "second", "u1").await,
        vec![(2, 160.0), (1, 50.0)]
    );
    assert!(totals(&log, "first", "u2").await.is_empty());

    let start = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .unwrap()
            .timestamp_micros()
    };
    let mut q = query("u1");
    q.from_us = start("2026-01-01T00:05:00Z");
    let rows = log.query("second", &q).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].window_start, start("2026-01-01T00:10:00Z"));
    assert_eq!(rows[0].window_end, start("2026-01-01T00:15:00Z"));
    let mut q = query("u1");
    q.limit = 1;
    let rows = log.query("second", &q).await.unwrap();
    assert_eq!((rows.len(), rows[0].stats.avg), (1, 80.0));
}
