//! Replay: paging through a larger log with pattern and time filters, against a naive
//! filter of everything; starting by time through the index; reading while another
//! handle writes.

use chrono::{Duration as ChronoDuration, TimeZone, Utc};
use pulse_core::{Event, EventLog, Pattern, ReadQuery};
use pulse_sqlite::SqliteLog;

use futures::StreamExt;

use crate::support::{fast, read_all};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_pages_match_a_naive_filter() {
    let dir = tempfile::tempdir().unwrap();
    let log = SqliteLog::open_with(dir.path(), fast()).await.unwrap();
    let base = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
    let types = [
        "health.reading.hr",
        "health.reading.bp",
        "billing.paid",
        "health.alert",
    ];
    for chunk in 0..10 {
        let batch = (0..1000)
            .map(|i| {
                let n = chunk * 1000 + i;
                // Times mostly rise with the offset, with some late arrivals.
                let minutes = if n % 97 == 0 { n / 2 } else { n };
                Event::new(types[n as usize % types.len()])
                    .with_time(base + ChronoDuration::minutes(minutes))
                    .with_subject(format!("user-{}", n % 13))
            })
            .collect();
        log.append(batch).await.unwrap();
    }
    let everything = read_all(&log, ReadQuery::after(0, 997)).await;
    assert_eq!(everything.len(), 10_000);
    let since = base + ChronoDuration::minutes(6000);
    for pattern in [
        None,
        Some("health.>"),
        Some("health.reading.*"),
        Some("billing.paid"),
    ] {
        for since in [None, Some(since)] {
            let query = ReadQuery {
                after: 0,
                limit: 777,
                pattern: pattern.map(|p| Pattern::parse(p).unwrap()),
                since,
            };
            let expected: Vec<u64> = everything
                .iter()
                .filter(|s| query.accepts(s))
                .map(|s| s.offset)
                .collect();
            let got: Vec<u64> = read_all(&log, query.clone())
                .await
                .iter()
                .map(|s| s.offset)
                .collect();
            assert_eq!(got, expected, "{pattern:?} since {since:?}");
            assert!(!got.is_empty());
            // The streamed replay, in slices of 777 offsets read ahead, agrees.
            let mut slices = Box::pin(log.replay(query.clone(), None).await.unwrap());
            let mut streamed = Vec::new();
            while let Some(slice) = slices.next().await {
                streamed.extend(slice.unwrap().iter().map(|s| s.offset));
            }
            assert_eq!(streamed, expected, "replay of {pattern:?} since {since:?}");
        }
    }
    // The time index finds where a replay by time starts, late arrivals included.
    let first = log.first_offset_since(since).await.unwrap().unwrap();
    let naive = everything
        .iter()
        .find(|s| s.event.time.unwrap() >= since)
        .unwrap()
        .offset;
    assert_eq!(first, naive);
    let mut bounded = Box::pin(
        log.replay(ReadQuery::after(100, 7), Some(120))
            .await
            .unwrap(),
    );
    let mut offsets = Vec::new();
    while let Some(slice) = bounded.next().await {
        offsets.extend(slice.unwrap().iter().map(|s| s.offset));
    }
    assert_eq!(offsets, (101..=120).collect::<Vec<_>>());
    assert_eq!(
        log.first_offset_since(base + ChronoDuration::days(3650))
            .await
            .unwrap(),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_handle_follows_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let writer = SqliteLog::open_with(dir.path(), fast()).await.unwrap();
    writer.append(vec![Event::new("a.b")]).await.unwrap();
    let reader = SqliteLog::open_with(dir.path(), fast().read_only())
        .await
        .unwrap();
    assert_eq!(reader.read(ReadQuery::after(0, 10)).await.unwrap().len(), 1);
    writer
        .append((0..5).map(|_| Event::new("a.b")).collect())
        .await
        .unwrap();
    assert_eq!(reader.last_offset().await.unwrap(), 6);
    assert_eq!(reader.read(ReadQuery::after(1, 10)).await.unwrap().len(), 5);
    assert!(reader.stats().await.unwrap().events == 6);
}
