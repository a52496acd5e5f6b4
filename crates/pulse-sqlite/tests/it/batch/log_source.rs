//! The event-log source on `MemoryLog`: single readings and arrays, fallbacks from the
//! event's subject and time, pattern filtering, checkpoints committed with the
//! aggregates, and a crash between aggregation and commit that counts nothing twice.

use std::sync::Arc;

use pulse_batch::aggregate_event;
use pulse_batch::AggTable;
use pulse_batch::Aggregator;
use pulse_batch::RejectLog;
use pulse_batch::StateStore;
use pulse_batch::WindowSet;
use pulse_batch::{run_log, LogJob};
use pulse_core::memory::MemoryLog;
use pulse_core::{Event, EventLog, Pattern, ReadQuery};
use pulse_sqlite::batch::SqliteState;
use pulse_sqlite::LocalStore;
use rusqlite::Connection;
use serde_json::json;

use super::common::*;

fn reading(user: &str, value: f64, at: &str) -> serde_json::Value {
    json!({"user_id": user, "metric": "heart_rate", "value": value, "unit": "bpm", "recorded_at": at})
}

fn event(ty: &str, data: &serde_json::Value) -> Event {
    Event::new(ty.to_owned())
        .with_json(data)
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn append(log: &MemoryLog, events: Vec<Event>) {
    log.append(events).await.unwrap_or_else(|e| panic!("{e}"));
}

fn job() -> LogJob {
    let pattern = Pattern::parse("health.reading.>").unwrap_or_else(|e| panic!("{e}"));
    let windows = WindowSet::parse("1h", "UTC").unwrap_or_else(|e| panic!("{e}"));
    let mut job = LogJob::new("hourly", pattern, windows);
    job.page = 2;
    job.commit_every = 3;
    job
}

fn totals(db: &std::path::Path) -> Vec<(String, i64, f64)> {
    let conn = Connection::open(db).unwrap_or_else(|e| panic!("{e}"));
    let mut stmt = conn
        .prepare("SELECT user_id, count, sum FROM aggregates ORDER BY user_id, window_start")
        .unwrap_or_else(|e| panic!("{e}"));
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap_or_else(|e| panic!("{e}"));
    rows.map(|r| r.unwrap_or_else(|e| panic!("{e}"))).collect()
}

fn checkpoint(db: &std::path::Path) -> Option<String> {
    let store = SqliteState::open(db).unwrap_or_else(|e| panic!("{e}"));
    store
        .checkpoint("log:hourly")
        .unwrap_or_else(|e| panic!("{e}"))
        .map(|cursor| cursor.encode())
}

#[tokio::test]
async fn events_aggregate_once_across_runs_and_a_crash() {
    let dir = tmp();
    let store = LocalStore::new(dir.path());
    let db = store.path_of("hourly");
    let log = MemoryLog::new();
    let job = job();
    let rejects = RejectLog::none();
    let at = chrono::DateTime::parse_from_rfc3339("2025-06-01T10:20:00Z")
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_else(|e| panic!("{e}"));
    append(
        &log,
        vec![
            event("health.reading.heart_rate", &reading("a", 60.0, "2025-06-01T10:00:00Z")),
            event(
                "health.reading.batch",
                &json!([
                    reading("a", 70.0, "2025-06-01T10:10:00Z"),
                    reading("b", 80.0, "2025-06-01T10:10:00Z"),
                    {"user_id": "b", "metric": "heart_rate", "value": 999, "recorded_at": "2025-06-01T10:10:00Z"},
                    "not a reading"
                ]),
            ),
            event("billing.invoice", &reading("a", 1000.0, "2025-06-01T10:00:00Z")),
            // No user_id and no recorded_at: the subject and the event time fill them.
            event("health.reading.heart_rate", &json!({"metric": "heart_rate", "value": 90}))
                .with_subject("c")
                .with_time(at),
            Event::new("health.reading.heart_rate").with_data("application/json", &b"{oops"[..]),
        ],
    )
    .await;
    let first = run_log(&log, &job, &store, &rejects)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        first.counts.rows, 7,
        "5 readings in 4 matching events, one of them bad, and one bad event"
    );
    assert_eq!(first.counts.rejected_total(), 3);
    assert_eq!(
        totals(&db),
        vec![
            ("a".into(), 2, 130.0),
            ("b".into(), 1, 80.0),
            ("c".into(), 1, 90.0)
        ]
    );
    assert_eq!(checkpoint(&db).as_deref(), Some("5"));

    // Nothing new: nothing read, nothing written.
    let again = run_log(&log, &job, &store, &rejects)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((again.counts.rows, again.keys_updated), (0, 0));

    // New events; a run aggregates them and "crashes" before its commit.
    append(
        &log,
        vec![
            event(
                "health.reading.heart_rate",
                &reading("a", 100.0, "2025-06-01T10:30:00Z"),
            ),
            event(
                "health.reading.heart_rate",
                &reading("d", 50.0, "2025-06-01T11:30:00Z"),
            ),
        ],
    )
    .await;
    {
        let windows = Arc::clone(&job.windows);
        let mut agg = Aggregator::new(AggTable::new(windows), &rejects);
        let events = log
            .read(ReadQuery {
                after: 5,
                limit: 100,
                pattern: Some(job.pattern.clone()),
                since: None,
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        for e in &events {
            aggregate_event(&mut agg, e).unwrap_or_else(|e| panic!("{e}"));
        }
        assert_eq!(agg.table.len(), 2);
        // The process dies here: the aggregated delta is lost, nothing was committed.
    }
    assert_eq!(totals(&db).len(), 3);
    let after = run_log(&log, &job, &store, &rejects)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(after.counts.rows, 2);
    assert_eq!(
        totals(&db),
        vec![
            ("a".into(), 3, 230.0),
            ("b".into(), 1, 80.0),
            ("c".into(), 1, 90.0),
            ("d".into(), 1, 50.0)
        ]
    );
    assert_eq!(checkpoint(&db).as_deref(), Some("7"));
}

#[tokio::test]
async fn a_tail_of_non_matching_events_is_consumed() {
    let dir = tmp();
    let store = LocalStore::new(dir.path());
    let log = MemoryLog::new();
    let job = job();
    let rejects = RejectLog::none();
    append(
        &log,
        vec![event(
            "health.reading.x",
            &reading("a", 60.0, "2025-06-01T10:00:00Z"),
        )],
    )
    .await;
    append(
        &log,
        (0..5).map(|_| event("other.thing", &json!({}))).collect(),
    )
    .await;
    let summary = run_log(&log, &job, &store, &rejects)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(summary.counts.rows, 1);
    assert_eq!(checkpoint(&store.path_of("hourly")).as_deref(), Some("6"));
}

/// Two commits from the same checkpoint (two runs that started together): the second is
/// refused and changes nothing, so its readings are not counted twice.
#[tokio::test]
async fn a_commit_from_a_moved_checkpoint_is_refused() {
    use pulse_batch::AggregateStore;
    use pulse_batch::Merged;
    let dir = tmp();
    let store = LocalStore::new(dir.path());
    let log = MemoryLog::new();
    let job = job();
    let rejects = RejectLog::none();
    append(
        &log,
        vec![event(
            "health.reading.heart_rate",
            &reading("a", 60.0, "2025-06-01T10:00:00Z"),
        )],
    )
    .await;
    let delta = || async {
        let mut agg = Aggregator::new(AggTable::new(Arc::clone(&job.windows)), &rejects);
        let events = log
            .read(ReadQuery {
                after: 0,
                limit: 10,
                pattern: None,
                since: None,
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        for e in &events {
            aggregate_event(&mut agg, e).unwrap_or_else(|e| panic!("{e}"));
        }
        Merged::new(Arc::clone(&job.windows), vec![agg.table])
    };
    assert_eq!(
        store.commit("hourly", delta().await, 0, 1).await.ok(),
        Some(1)
    );
    let second = store.commit("hourly", delta().await, 0, 1).await;
    assert!(
        matches!(
            second,
            Err(pulse_batch::BatchError::CheckpointMoved {
                expected: 0,
                found: 1,
                ..
            })
        ),
        "{second:?}"
    );
    assert_eq!(
        totals(&store.path_of("hourly")),
        vec![("a".into(), 1, 60.0)]
    );
    let checkpoint = store
        .checkpoint("hourly", &job.windows)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((checkpoint.done, checkpoint.pending), (1, None));
}
