//! Contract checks of appending and reading: offsets, all-or-nothing batches, ids, filters.

use std::collections::HashSet;
use std::time::Duration;

use super::event;
use crate::log::{EventLog, LogError, ReadQuery};
use crate::{Event, Pattern};

/// Offsets start at 1 and grow by one per stored event, across calls.
pub async fn append_assigns_increasing_offsets<L: EventLog>(log: &L) {
    assert_eq!(log.last_offset().await.unwrap(), 0);
    let first = log
        .append(vec![event("a.b", None), event("a.c", None)])
        .await
        .unwrap();
    let second = log.append(vec![event("a.d", None)]).await.unwrap();
    let all: Vec<u64> = first.iter().chain(&second).map(|a| a.offset).collect();
    assert_eq!(all, vec![1, 2, 3]);
    assert!(first.iter().chain(&second).all(|a| !a.duplicate));
    assert_eq!(log.last_offset().await.unwrap(), 3);
    let read = log.read(ReadQuery::after(0, 10)).await.unwrap();
    let types: Vec<&str> = read.iter().map(|s| &*s.event.ty).collect();
    assert_eq!(types, vec!["a.b", "a.c", "a.d"]);
}

/// One invalid event rejects the whole batch, names its index, and stores nothing.
pub async fn append_is_all_or_nothing<L: EventLog>(log: &L) {
    let batch = vec![event("a.b", None), event("a..b", None), event("a.c", None)];
    match log.append(batch).await {
        Err(LogError::InvalidEvent { index: 1, .. }) => {}
        other => panic!("expected the second event to be rejected, got {other:?}"),
    }
    assert!(matches!(
        log.append(vec![event("a.b", None).with_id("")]).await,
        Err(LogError::InvalidEvent { index: 0, .. })
    ));
    assert_eq!(log.last_offset().await.unwrap(), 0);
    assert!(log.read(ReadQuery::after(0, 10)).await.unwrap().is_empty());
}

/// Events without a time get the append time; given times are kept.
pub async fn append_sets_missing_time<L: EventLog>(log: &L) {
    let given: chrono::DateTime<chrono::Utc> = "2020-05-06T07:08:09.123Z".parse().unwrap();
    let before = chrono::Utc::now() - chrono::Duration::seconds(1);
    log.append(vec![
        event("a.b", None),
        event("a.b", None).with_time(given),
    ])
    .await
    .unwrap();
    let read = log.read(ReadQuery::after(0, 10)).await.unwrap();
    assert!(read[0].event.time.expect("time is set") >= before);
    assert_eq!(read[1].event.time, Some(given));
}

/// A stored id is not stored again; the original offset comes back.
pub async fn duplicate_ids_return_the_original_offset<L: EventLog>(log: &L) {
    let original = event("a.b", None).with_id("order-1");
    log.append(vec![event("a.x", None), original.clone()])
        .await
        .unwrap();
    let again = log
        .append(vec![original.clone(), event("a.y", None)])
        .await
        .unwrap();
    assert_eq!((again[0].offset, again[0].duplicate), (2, true));
    assert_eq!((again[1].offset, again[1].duplicate), (3, false));
    let retried = log.append(vec![original]).await.unwrap();
    assert_eq!((retried[0].offset, retried[0].duplicate), (2, true));
    assert_eq!(log.last_offset().await.unwrap(), 3);
}

/// A batch in which two events have the same id is refused whole, naming both, and
/// stores nothing: the second event's data would otherwise be dropped silently.
pub async fn a_batch_that_repeats_an_id_is_refused<L: EventLog>(log: &L) {
    let first = event("billing.invoice", None).with_id("inv-1");
    let second = event("billing.invoice", None)
        .with_id("inv-1")
        .with_json(&serde_json::json!({"amount": 2}))
        .expect("json data");
    match log
        .append(vec![event("a.x", None), first, event("a.y", None), second])
        .await
    {
        Err(LogError::RepeatedId {
            first: 1,
            second: 3,
        }) => {}
        other => panic!("expected events 1 and 3 to be named, got {other:?}"),
    }
    assert_eq!(log.last_offset().await.unwrap(), 0);
    assert!(log.read(ReadQuery::after(0, 10)).await.unwrap().is_empty());
}

/// Reads page by offset and filter by pattern and time, in offset order.
pub async fn read_pages_and_filters<L: EventLog>(log: &L) {
    let old: chrono::DateTime<chrono::Utc> = "2021-01-01T00:00:00Z".parse().unwrap();
    let new: chrono::DateTime<chrono::Utc> = "2022-01-01T00:00:00Z".parse().unwrap();
    let events: Vec<Event> = (0..10)
        .map(|i| {
            let ty = if i % 2 == 0 {
                "health.reading.hr"
            } else {
                "billing.paid"
            };
            event(ty, None).with_time(if i < 5 { old } else { new })
        })
        .collect();
    log.append(events).await.unwrap();
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = log.read(ReadQuery::after(after, 3)).await.unwrap();
        let Some(last) = page.last() else { break };
        assert!(page.len() <= 3);
        after = last.offset;
        seen.extend(page.iter().map(|s| s.offset));
    }
    assert_eq!(seen, (1..=10).collect::<Vec<_>>());
    let mut query = ReadQuery::after(0, 100);
    query.pattern = Some(Pattern::parse("health.>").unwrap());
    let health: Vec<u64> = log
        .read(query.clone())
        .await
        .unwrap()
        .iter()
        .map(|s| s.offset)
        .collect();
    assert_eq!(health, vec![1, 3, 5, 7, 9]);
    query.since = Some(new);
    let recent: Vec<u64> = log
        .read(query.clone())
        .await
        .unwrap()
        .iter()
        .map(|s| s.offset)
        .collect();
    assert_eq!(recent, vec![7, 9]);
    query.after = 7;
    query.limit = 1;
    let next: Vec<u64> = log
        .read(query)
        .await
        .unwrap()
        .iter()
        .map(|s| s.offset)
        .collect();
    assert_eq!(next, vec![9]);
    assert!(log.read(ReadQuery::after(10, 5)).await.unwrap().is_empty());
}

/// The append watch moves to the last offset.
pub async fn watch_reports_appends<L: EventLog>(log: &L) {
    let mut watch = log.watch_appends();
    log.append(vec![event("a.b", None), event("a.b", None)])
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), watch.wait_for(|&last| last == 2))
        .await
        .expect("the watch reports the append")
        .expect("the log is alive");
}

/// Appends from many tasks at once each get their own offsets, and all are readable.
pub async fn concurrent_appends_get_distinct_offsets<L: EventLog>(log: &L) {
    let tasks = (0..8).map(|t| async move {
        let mut offsets = Vec::new();
        for i in 0..25 {
            let batch = vec![event("a.b", Some(&format!("{t}"))).with_id(format!("{t}-{i}"))];
            offsets.extend(log.append(batch).await.unwrap().iter().map(|a| a.offset));
        }
        offsets
    });
    let all: Vec<u64> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .flatten()
        .collect();
    let distinct: HashSet<u64> = all.iter().copied().collect();
    assert_eq!((all.len(), distinct.len()), (200, 200));
    assert_eq!(distinct, (1..=200).collect());
    assert_eq!(
        log.read(ReadQuery::after(0, 1000)).await.unwrap().len(),
        200
    );
}
