//! The checks every [`AggregateStore`] passes, written once and run by each store's tests
//! (local SQLite here, PostgreSQL and NATS in their crates), as the `EventLog` contract
//! suite is for logs. Behind the `contract` feature; the functions panic on a failed check.

use std::sync::Arc;

use super::{AggregateQuery, AggregateStore};
use crate::aggregator::Aggregator;
use crate::error::BatchError;
use crate::reading::{RawReading, RawValue};
use crate::rejects::{Position, RejectLog};
use crate::table::{AggTable, Merged};
use crate::window::WindowSet;

/// Heart rates of `user` at the given times, as one run's delta in 5m windows.
fn delta(user: &str, readings: &[(f64, &str)]) -> Merged {
    let windows = Arc::new(WindowSet::parse("5m", "UTC").expect("a valid window set"));
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
        agg.push(&raw, Position::Row(0), String::new)
            .expect("a valid reading");
    }
    Merged::new(windows, vec![agg.table])
}

/// Every 5m heart-rate row of `user`.
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
        .expect("a query")
        .iter()
        .map(|r| (r.stats.count, r.stats.sum))
        .collect()
}

/// A commit is a compare-and-set on `job`'s checkpoint: a second commit from the same
/// checkpoint, through another handle `b` on the same store as `a`, is refused and changes
/// nothing; later ranges move on; of racing first commits of a new job exactly one wins.
pub async fn commits_are_compare_and_set<S: AggregateStore>(a: Arc<S>, b: Arc<S>, job: &str) {
    let windows = WindowSet::parse("5m", "UTC").expect("a valid window set");
    let run = || {
        delta(
            "u1",
            &[
                (70.0, "2026-01-01T00:01:00Z"),
                (80.0, "2026-01-01T00:06:00Z"),
            ],
        )
    };

    assert_eq!(a.commit(job, run(), 0, 5).await.expect("first commit"), 2);
    let second = b.commit(job, run(), 0, 5).await;
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
        totals(b.as_ref(), job, "u1").await,
        vec![(1, 70.0), (1, 80.0)]
    );
    let checkpoint = b.checkpoint(job, &windows).await.expect("a checkpoint");
    assert_eq!((checkpoint.done, checkpoint.pending), (5, None));

    // The next range moves on from 5; a run still holding 0 or 5 afterwards is refused.
    let late = || delta("u1", &[(90.0, "2026-01-01T00:02:00Z")]);
    assert_eq!(b.commit(job, late(), 5, 8).await.expect("next range"), 1);
    for from in [0, 5] {
        assert!(matches!(
            a.commit(job, late(), from, 9).await,
            Err(BatchError::CheckpointMoved { found: 8, .. })
        ));
    }
    assert_eq!(
        totals(a.as_ref(), job, "u1").await,
        vec![(2, 160.0), (1, 80.0)]
    );

    // Racing first commits of a new job: exactly one wins, whatever the timing.
    let race = format!("{job}-race");
    let racers: Vec<_> = [a.clone(), b.clone(), a.clone(), b.clone()]
        .into_iter()
        .map(|store| {
            let race = race.clone();
            tokio::spawn(async move { store.commit(&race, run(), 0, 3).await })
        })
        .collect();
    let mut won = 0;
    for racer in racers {
        match racer.await.expect("a racer") {
            Ok(_) => won += 1,
            Err(BatchError::CheckpointMoved { .. }) => {}
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(
        totals(a.as_ref(), &race, "u1").await,
        vec![(1, 70.0), (1, 80.0)]
    );
}

/// Two jobs writing the same key keep their own rows; a query selects by window start
/// and stops at its limit, the earliest rows first.
pub async fn jobs_keep_their_own_rows_and_queries_select_by_window_start(
    store: &dyn AggregateStore,
) {
    let same_key = || delta("u1", &[(60.0, "2026-01-01T00:01:00Z")]);
    store
        .commit("first", same_key(), 0, 1)
        .await
        .expect("commit");
    store
        .commit("second", same_key(), 0, 1)
        .await
        .expect("commit");
    let more = delta(
        "u1",
        &[
            (100.0, "2026-01-01T00:03:00Z"),
            (50.0, "2026-01-01T00:11:00Z"),
        ],
    );
    store.commit("second", more, 1, 2).await.expect("commit");
    assert_eq!(totals(store, "first", "u1").await, vec![(1, 60.0)]);
    assert_eq!(
        totals(store, "second", "u1").await,
        vec![(2, 160.0), (1, 50.0)]
    );
    assert!(totals(store, "first", "u2").await.is_empty());
    assert!(totals(store, "never-ran", "u1").await.is_empty());

    let start = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .expect("a valid time")
            .timestamp_micros()
    };
    let mut q = query("u1");
    q.from_us = start("2026-01-01T00:05:00Z");
    let rows = store.query("second", &q).await.expect("a query");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].window_start, start("2026-01-01T00:10:00Z"));
    assert_eq!(rows[0].window_end, start("2026-01-01T00:15:00Z"));
    let mut q = query("u1");
    q.limit = 1;
    let rows = store.query("second", &q).await.expect("a query");
    assert_eq!((rows.len(), rows[0].stats.avg), (1, 80.0));
}
