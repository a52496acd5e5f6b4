//! PostgreSQL as the source (binary COPY of a readings table) and the sink (aggregates
//! upserted with the checkpoint) of an incremental aggregation.

use std::sync::Arc;

use pulse_batch::Aggregator;
use pulse_batch::RejectLog;
use pulse_batch::WindowSet;
use pulse_batch::{AggTable, Merged};

use crate::support::{self, Schema};

async fn run(log: &pulse_postgres::PostgresLog, windows: &Arc<WindowSet>) -> (u64, u64, u64) {
    let after: i64 = match log.load_checkpoint("readings").await.unwrap() {
        Some(bytes) => String::from_utf8(bytes).unwrap().parse().unwrap(),
        None => 0,
    };
    let rejects = RejectLog::none();
    let mut agg = Aggregator::new(AggTable::new(windows.clone()), &rejects);
    let last = log
        .aggregate_table("readings", after, &mut agg)
        .await
        .unwrap();
    let counts = agg.counts.clone();
    let delta = Merged::new(windows.clone(), vec![agg.table]);
    let (from, to) = (u64::try_from(after).unwrap(), u64::try_from(last).unwrap());
    let written = if to == from {
        0
    } else {
        log.commit_aggregates("readings", &delta, from, to)
            .await
            .unwrap()
    };
    (counts.rows, counts.rejected_total(), written)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_table_to_aggregates_incrementally() {
    let Some(url) = support::url("readings_table_to_aggregates_incrementally") else {
        return;
    };
    let schema = Schema::new(url, "batch");
    let log = schema.open().await;
    let admin = schema.admin().await;
    admin
        .batch_execute(&format!(
            "CREATE TABLE \"{0}\".readings (id bigserial PRIMARY KEY, user_id text, metric text, \
             value double precision, unit text, recorded_at timestamptz);
             INSERT INTO \"{0}\".readings (user_id, metric, value, unit, recorded_at) VALUES
               ('u1', 'heart_rate', 70, '/min', '2026-01-01T00:01:00Z'),
               ('u1', 'heart_rate', 80, 'bpm', '2026-01-01T00:02:00Z'),
               ('u1', 'heart_rate', 60, '/min', '2026-01-01T00:07:00Z'),
               ('u2', 'steps', 1000, NULL, '2026-01-01T00:03:00Z'),
               ('u2', 'warp_speed', 9, NULL, '2026-01-01T00:03:00Z');",
            schema.name
        ))
        .await
        .unwrap();
    let windows = Arc::new(WindowSet::parse("5m", "UTC").unwrap());
    assert_eq!(run(&log, &windows).await, (5, 1, 3), "rows, rejected, keys");
    let select = format!(
        "SELECT count, avg, min, max FROM \"{}\".aggregates WHERE user_id = 'u1' \
         AND metric = 'heart_rate' AND window_start = '2026-01-01T00:00:00Z'",
        schema.name
    );
    let row = admin.query_one(&select, &[]).await.unwrap();
    let (count, avg): (i64, f64) = (row.get(0), row.get(1));
    assert_eq!((count, avg), (2, 75.0));

    // A late reading re-opens only its own window, merged with what is stored.
    admin
        .batch_execute(&format!(
            "INSERT INTO \"{}\".readings (user_id, metric, value, unit, recorded_at) VALUES \
             ('u1', 'heart_rate', 90, '/min', '2026-01-01T00:04:00Z')",
            schema.name
        ))
        .await
        .unwrap();
    assert_eq!(
        run(&log, &windows).await,
        (1, 0, 1),
        "only the new row is read"
    );
    let row = admin.query_one(&select, &[]).await.unwrap();
    let (count, avg, min, max): (i64, f64, f64, f64) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!((count, avg, min, max), (3, 80.0, 70.0, 90.0));
    assert_eq!(
        run(&log, &windows).await,
        (0, 0, 0),
        "nothing new, nothing written"
    );
    assert_eq!(
        log.load_checkpoint("readings").await.unwrap().as_deref(),
        Some(&b"6"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_table_or_column_is_a_clear_error() {
    let Some(url) = support::url("a_missing_table_or_column_is_a_clear_error") else {
        return;
    };
    let schema = Schema::new(url, "batchbad");
    let log = schema.open().await;
    let rejects = RejectLog::none();
    let windows = Arc::new(WindowSet::parse("5m", "UTC").unwrap());
    let mut agg = Aggregator::new(AggTable::new(windows), &rejects);
    assert!(matches!(
        log.aggregate_table("nothing_here", 0, &mut agg).await,
        Err(pulse_batch::BatchError::InvalidInput { .. })
    ));
    schema
        .admin()
        .await
        .batch_execute(&format!(
            "CREATE TABLE \"{}\".partial (id bigserial, user_id text, metric text)",
            schema.name
        ))
        .await
        .unwrap();
    assert!(matches!(
        log.aggregate_table("partial", 0, &mut agg).await,
        Err(pulse_batch::BatchError::InvalidInput { .. })
    ));
    assert!(matches!(
        log.aggregate_table("bad;name", 0, &mut agg).await,
        Err(pulse_batch::BatchError::InvalidSpec(_))
    ));
}
