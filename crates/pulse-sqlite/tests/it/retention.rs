//! Retention by count and by age, in small background steps; offsets are never reused.
//! Retention by stored bytes is in `retention_bytes`.

use std::time::Duration;

use chrono::Utc;
use pulse_core::{Event, EventLog, GroupConfig, NackOutcome, Pattern, ReadQuery};
use pulse_sqlite::{Retention, SqliteLog, SqliteOptions};

use crate::support::{eventually, fast, read_all};

pub(crate) fn options(retention: Retention) -> SqliteOptions {
    SqliteOptions {
        retention,
        prune_interval: Duration::from_millis(10),
        prune_batch: 30,
        ..fast()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_events_keeps_the_newest_and_never_reuses_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let retention = Retention {
        max_events: Some(100),
        ..Retention::default()
    };
    let old = Utc::now() - chrono::Duration::days(2);
    let log = SqliteLog::open_with(dir.path(), options(retention))
        .await
        .unwrap();
    for chunk in 0..5 {
        let batch = (0..100)
            .map(|i| {
                Event::new("a.b")
                    .with_id(format!("e{}", chunk * 100 + i))
                    .with_time(old)
            })
            .collect();
        log.append(batch).await.unwrap();
    }
    eventually("pruning down to 100 events", || async {
        read_all(&log, ReadQuery::after(0, 1000)).await.len() == 100
    })
    .await;
    let kept = read_all(&log, ReadQuery::after(0, 1000)).await;
    assert_eq!(kept.first().unwrap().offset, 401);
    assert_eq!(kept.last().unwrap().offset, 500);
    let stats = log.stats().await.unwrap();
    assert_eq!(
        (stats.events, stats.first_offset, stats.last_offset),
        (100, 401, 500)
    );
    log.close().await.unwrap();
    drop(log);

    // Prune everything by age, reopen: the next offset continues after 500.
    let retention = Retention {
        max_age: Some(Duration::from_secs(3600)),
        ..Retention::default()
    };
    let log = SqliteLog::open_with(dir.path(), fast()).await.unwrap();
    assert_eq!(log.last_offset().await.unwrap(), 500);
    log.close().await.unwrap();
    drop(log);
    let log = SqliteLog::open_with(dir.path(), options(retention))
        .await
        .unwrap();
    eventually("pruning by age", || async {
        log.read(ReadQuery::after(0, 1)).await.unwrap().is_empty()
    })
    .await;
    log.close().await.unwrap();
    drop(log);
    let log = SqliteLog::open_with(dir.path(), fast()).await.unwrap();
    assert_eq!(log.last_offset().await.unwrap(), 500);
    let appended = log
        .append(vec![Event::new("a.b").with_time(old)])
        .await
        .unwrap();
    assert_eq!(appended[0].offset, 501, "offsets are never reused");
    // An id whose event was pruned can be stored again: dedup covers stored events.
    let again = log
        .append(vec![Event::new("a.b").with_id("e0")])
        .await
        .unwrap();
    assert_eq!((again[0].offset, again[0].duplicate), (502, false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_age_deletes_old_events_but_keeps_dead_lettered_ones() {
    let dir = tempfile::tempdir().unwrap();
    let retention = Retention {
        max_age: Some(Duration::from_secs(3600)),
        ..Retention::default()
    };
    let old = Utc::now() - chrono::Duration::days(2);
    // Fill the log before retention runs: open without retention first.
    let log = SqliteLog::open_with(dir.path(), fast()).await.unwrap();
    log.append(
        (0..50)
            .map(|_| Event::new("old.x").with_time(old))
            .collect(),
    )
    .await
    .unwrap();
    log.append((0..10).map(|_| Event::new("new.x")).collect())
        .await
        .unwrap();
    let mut config = GroupConfig::new(Pattern::parse("old.>").unwrap());
    config.max_deliver = 1;
    log.ensure_group("g", config).await.unwrap();
    let first = log.fetch("g", 1).await.unwrap();
    assert_eq!(first[0].event.offset, 1);
    let outcome = log.nack("g", 1, Duration::ZERO, "broken").await.unwrap();
    assert!(matches!(outcome, NackOutcome::DeadLettered(_)));
    log.close().await.unwrap();
    drop(log);

    let log = SqliteLog::open_with(dir.path(), options(retention))
        .await
        .unwrap();
    eventually("pruning old events", || async {
        read_all(&log, ReadQuery::after(0, 1000)).await.len() == 11
    })
    .await;
    let kept: Vec<u64> = read_all(&log, ReadQuery::after(0, 1000))
        .await
        .iter()
        .map(|s| s.offset)
        .collect();
    assert_eq!(kept, [1].into_iter().chain(51..=60).collect::<Vec<_>>());
    let letters = log.dead_letters(None, 0, 10).await.unwrap();
    assert_eq!(
        letters[0].event.offset, 1,
        "the dead letter keeps its event"
    );
}
