//! The `EventLog` contract suite: one set of generic checks that every backend runs, so
//! that memory, SQLite, PostgreSQL and NATS keep the same semantics.
//!
//! A backend instantiates it in its integration tests with [`event_log_contract!`], given
//! an async expression that makes a fresh, empty log and a guard kept alive for the test
//! (a temporary directory, a schema to drop, or `()`):
//!
//! ```ignore
//! pulse_core::event_log_contract!(async {
//!     let dir = tempfile::tempdir().unwrap();
//!     (SqliteLog::open(dir.path()).await.unwrap(), dir)
//! });
//! ```
//!
//! Durable backends also call [`resumes_after_reopen`] and [`attempts_survive_reopen`]
//! with a function that opens the same store again. Checks use short real delays (never paused time: backends run threads and
//! servers), and never assert on how long anything took.

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use crate::log::{
    Delivery, EventLog, GroupConfig, LogError, NackOutcome, ReadQuery, StartPosition,
};
use crate::{Event, Pattern};

/// Generates one `#[tokio::test]` per contract check for the log made by `$make`, an async
/// expression returning `(log, guard)`.
#[macro_export]
macro_rules! event_log_contract {
    ($make:expr) => {
        $crate::event_log_contract!(@each $make;
            append_assigns_increasing_offsets,
            append_is_all_or_nothing,
            append_sets_missing_time,
            duplicate_ids_return_the_original_offset,
            a_batch_that_repeats_an_id_is_refused,
            read_pages_and_filters,
            watch_reports_appends,
            concurrent_appends_get_distinct_offsets,
            group_delivers_each_event_once,
            group_starting_at_latest_skips_history,
            group_receives_only_its_pattern,
            group_keeps_order_per_subject,
            nack_redelivers_after_the_delay,
            max_deliver_dead_letters_with_the_error,
            redrive_hands_a_dead_letter_back,
            unacknowledged_deliveries_are_redelivered,
            ensure_group_keeps_the_position,
            joining_with_another_pattern_is_a_conflict,
            a_join_applies_the_delivery_settings,
            set_group_pattern_changes_what_the_group_receives,
            unknown_and_invalid_groups_are_errors
        );
    };
    (@each $make:expr; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let (log, _guard) = $make.await;
                $crate::contract::$check(&log).await;
            }
        )*
    };
}

fn event(ty: &str, subject: Option<&str>) -> Event {
    let mut event = Event::new(ty.to_owned());
    event.subject = subject.map(str::to_owned);
    event
}

fn group_config(pattern: &str) -> GroupConfig {
    let mut config =
        GroupConfig::new(Pattern::parse(pattern).expect("contract patterns are valid"));
    config.ack_wait = Duration::from_secs(30);
    config
}

async fn fetch_all<L: EventLog>(log: &L, group: &str) -> Vec<Delivery> {
    log.fetch_wait(group, 1000, Duration::from_millis(200))
        .await
        .expect("fetch")
}

fn offsets(deliveries: &[Delivery]) -> Vec<u64> {
    deliveries.iter().map(|d| d.event.offset).collect()
}

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

/// A group hands out each event once; acks advance the committed offset.
pub async fn group_delivers_each_event_once<L: EventLog>(log: &L) {
    log.append((0..5).map(|_| event("a.b", None)).collect())
        .await
        .unwrap();
    let info = log
        .ensure_group("workers", group_config("a.>"))
        .await
        .unwrap();
    assert_eq!((info.name.as_str(), info.committed), ("workers", 0));
    let first = log.fetch("workers", 2).await.unwrap();
    let rest = fetch_all(log, "workers").await;
    assert_eq!(offsets(&first), vec![1, 2]);
    assert_eq!(offsets(&rest), vec![3, 4, 5]);
    assert!(first.iter().chain(&rest).all(|d| d.attempt == 1));
    assert!(
        log.fetch("workers", 10).await.unwrap().is_empty(),
        "nothing is handed out twice"
    );
    log.ack("workers", &[1, 2, 4]).await.unwrap();
    log.ack("workers", &[1, 99]).await.unwrap();
    let group = &log.groups().await.unwrap()[0];
    assert_eq!((group.committed, group.pending), (2, 2));
    log.ack("workers", &[3, 5]).await.unwrap();
    log.append(vec![event("a.b", None)]).await.unwrap();
    assert_eq!(offsets(&fetch_all(log, "workers").await), vec![6]);
    log.ack("workers", &[6]).await.unwrap();
    assert_eq!(log.groups().await.unwrap()[0].committed, 6);
}

/// A group created at `latest` sees only events appended afterwards.
pub async fn group_starting_at_latest_skips_history<L: EventLog>(log: &L) {
    log.append(vec![event("a.b", None), event("a.b", None)])
        .await
        .unwrap();
    let mut config = group_config("a.>");
    config.start = StartPosition::Latest;
    assert_eq!(log.ensure_group("late", config).await.unwrap().committed, 2);
    assert!(log.fetch("late", 10).await.unwrap().is_empty());
    log.append(vec![event("a.b", None)]).await.unwrap();
    assert_eq!(offsets(&fetch_all(log, "late").await), vec![3]);
}

/// Events of other types are skipped and do not hold the committed offset back.
pub async fn group_receives_only_its_pattern<L: EventLog>(log: &L) {
    log.append(vec![
        event("health.reading.hr", None),
        event("billing.paid", None),
        event("health.reading.bp", None),
        event("billing.paid", None),
    ])
    .await
    .unwrap();
    log.ensure_group("health", group_config("health.>"))
        .await
        .unwrap();
    let deliveries = fetch_all(log, "health").await;
    assert_eq!(offsets(&deliveries), vec![1, 3]);
    log.ack("health", &[1, 3]).await.unwrap();
    assert!(fetch_all(log, "health").await.is_empty());
    assert_eq!(log.groups().await.unwrap()[0].committed, 4);
}

/// An event waits while an earlier event of its subject is unacknowledged; other
/// subjects go on.
pub async fn group_keeps_order_per_subject<L: EventLog>(log: &L) {
    log.append(vec![
        event("a.b", Some("alice")),
        event("a.b", Some("alice")),
        event("a.b", Some("bob")),
        event("a.b", Some("alice")),
    ])
    .await
    .unwrap();
    log.ensure_group("ordered", group_config("a.>"))
        .await
        .unwrap();
    assert_eq!(offsets(&fetch_all(log, "ordered").await), vec![1, 3]);
    log.ack("ordered", &[1]).await.unwrap();
    assert_eq!(offsets(&fetch_all(log, "ordered").await), vec![2]);
    assert_eq!(
        log.nack("ordered", 2, Duration::ZERO, "retry")
            .await
            .unwrap(),
        NackOutcome::Redeliver
    );
    let again = fetch_all(log, "ordered").await;
    assert_eq!(
        (offsets(&again), again[0].attempt),
        (vec![2], 2),
        "offset 4 waits for 2"
    );
    log.ack("ordered", &[2]).await.unwrap();
    assert_eq!(offsets(&fetch_all(log, "ordered").await), vec![4]);
}

/// A nacked event comes back after its delay, not before, with the attempt counted.
pub async fn nack_redelivers_after_the_delay<L: EventLog>(log: &L) {
    log.append(vec![event("a.b", None)]).await.unwrap();
    log.ensure_group("retry", group_config("a.>"))
        .await
        .unwrap();
    assert_eq!(fetch_all(log, "retry").await.len(), 1);
    let outcome = log
        .nack("retry", 1, Duration::from_secs(3600), "later")
        .await
        .unwrap();
    assert_eq!(outcome, NackOutcome::Redeliver);
    assert!(
        log.fetch("retry", 10).await.unwrap().is_empty(),
        "not before the delay"
    );
    let mut config = group_config("a.>");
    config.max_deliver = 5;
    log.append(vec![event("a.c", None)]).await.unwrap();
    log.ensure_group("soon", config).await.unwrap();
    let first = fetch_all(log, "soon").await;
    assert_eq!(offsets(&first), vec![1, 2]);
    log.nack("soon", 1, Duration::from_millis(50), "soon")
        .await
        .unwrap();
    let again = log
        .fetch_wait("soon", 10, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!((offsets(&again), again[0].attempt), (vec![1], 2));
    assert!(matches!(
        log.nack("soon", 77, Duration::ZERO, "x").await,
        Err(LogError::UnknownDelivery { offset: 77, .. })
    ));
}

/// The `max_deliver`-th failure dead-letters the event with the error text and count.
pub async fn max_deliver_dead_letters_with_the_error<L: EventLog>(log: &L) {
    log.append(vec![event("a.b", Some("s")), event("a.b", Some("s"))])
        .await
        .unwrap();
    let mut config = group_config("a.>");
    config.max_deliver = 2;
    log.ensure_group("fragile", config).await.unwrap();
    assert_eq!(offsets(&fetch_all(log, "fragile").await), vec![1]);
    assert_eq!(
        log.nack("fragile", 1, Duration::ZERO, "first")
            .await
            .unwrap(),
        NackOutcome::Redeliver
    );
    assert_eq!(offsets(&fetch_all(log, "fragile").await), vec![1]);
    let NackOutcome::DeadLettered(id) = log
        .nack("fragile", 1, Duration::ZERO, "db timeout")
        .await
        .unwrap()
    else {
        panic!("the second failure dead-letters");
    };
    let letters = log.dead_letters(Some("fragile"), 0, 10).await.unwrap();
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(
        (letter.id, letter.group.as_str(), letter.event.offset),
        (id, "fragile", 1)
    );
    assert_eq!((letter.error.as_str(), letter.attempts), ("db timeout", 2));
    assert!(letter.first_failure <= letter.last_failure);
    assert!(log
        .dead_letters(Some("other"), 0, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(log.dead_letters(None, id, 10).await.unwrap().is_empty());
    assert_eq!(
        offsets(&fetch_all(log, "fragile").await),
        vec![2],
        "the subject moves on"
    );
    log.ack("fragile", &[2]).await.unwrap();
    assert_eq!(log.groups().await.unwrap()[0].committed, 2);
}

/// A redriven dead letter is delivered again and leaves the store once acknowledged.
pub async fn redrive_hands_a_dead_letter_back<L: EventLog>(log: &L) {
    log.append(vec![event("a.b", None)]).await.unwrap();
    let mut config = group_config("a.>");
    config.max_deliver = 1;
    log.ensure_group("redo", config).await.unwrap();
    fetch_all(log, "redo").await;
    let NackOutcome::DeadLettered(id) = log.nack("redo", 1, Duration::ZERO, "bad").await.unwrap()
    else {
        panic!("max_deliver 1 dead-letters at once");
    };
    assert!(matches!(
        log.redrive(id + 100).await,
        Err(LogError::UnknownDeadLetter(_))
    ));
    log.redrive(id).await.unwrap();
    let again = fetch_all(log, "redo").await;
    assert_eq!(offsets(&again), vec![1]);
    log.ack("redo", &[1]).await.unwrap();
    assert!(log.dead_letters(None, 0, 10).await.unwrap().is_empty());
    assert!(fetch_all(log, "redo").await.is_empty());
}

/// A delivery neither acked nor nacked within the ack wait is delivered again.
pub async fn unacknowledged_deliveries_are_redelivered<L: EventLog>(log: &L) {
    log.append(vec![event("a.b", None)]).await.unwrap();
    let mut config = group_config("a.>");
    config.ack_wait = Duration::from_millis(100);
    log.ensure_group("slow", config).await.unwrap();
    assert_eq!(fetch_all(log, "slow").await[0].attempt, 1);
    let again = log
        .fetch_wait("slow", 10, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!((offsets(&again), again[0].attempt), (vec![1], 2));
}

/// Ensuring an existing group keeps its position and pending events.
pub async fn ensure_group_keeps_the_position<L: EventLog>(log: &L) {
    log.append(vec![event("a.b", None), event("a.b", None)])
        .await
        .unwrap();
    log.ensure_group("g", group_config("a.>")).await.unwrap();
    fetch_all(log, "g").await;
    log.ack("g", &[1]).await.unwrap();
    let mut config = group_config("a.>");
    config.start = StartPosition::Latest;
    let info = log.ensure_group("g", config).await.unwrap();
    assert_eq!(info.committed, 1);
    log.ack("g", &[2]).await.unwrap();
    assert_eq!(log.groups().await.unwrap()[0].committed, 2);
}

/// A group's pattern is part of the group: joining it with another pattern is a typed
/// conflict naming both, and changes neither its pattern nor what it delivers.
pub async fn joining_with_another_pattern_is_a_conflict<L: EventLog>(log: &L) {
    log.append(vec![
        event("billing.invoice", None),
        event("health.reading.hr", None),
    ])
    .await
    .unwrap();
    log.ensure_group("billing", group_config("billing.>"))
        .await
        .unwrap();
    match log
        .ensure_group("billing", group_config("health.reading.>"))
        .await
    {
        Err(LogError::GroupPatternConflict {
            group,
            existing,
            requested,
        }) => {
            assert_eq!(group, "billing");
            assert_eq!(existing.as_str(), "billing.>");
            assert_eq!(requested.as_str(), "health.reading.>");
        }
        other => panic!("expected a pattern conflict, got {other:?}"),
    }
    let groups = log.groups().await.unwrap();
    assert_eq!(groups[0].pattern.as_str(), "billing.>");
    let deliveries = fetch_all(log, "billing").await;
    assert_eq!(offsets(&deliveries), vec![1], "still only billing events");
    let info = log
        .ensure_group("billing", group_config("billing.>"))
        .await
        .unwrap();
    assert_eq!(info.pattern.as_str(), "billing.>", "the same pattern joins");
}

/// A join keeps the pattern and position but applies its `max_deliver` (and `ack_wait`).
pub async fn a_join_applies_the_delivery_settings<L: EventLog>(log: &L) {
    log.append(vec![event("a.b", None)]).await.unwrap();
    let mut config = group_config("a.>");
    config.max_deliver = 5;
    log.ensure_group("tuned", config.clone()).await.unwrap();
    assert_eq!(fetch_all(log, "tuned").await.len(), 1);
    config.max_deliver = 1;
    config.start = StartPosition::Latest;
    let info = log.ensure_group("tuned", config).await.unwrap();
    assert_eq!(info.committed, 0, "the position is kept");
    assert!(matches!(
        log.nack("tuned", 1, Duration::ZERO, "bad").await.unwrap(),
        NackOutcome::DeadLettered(_)
    ));
}

/// The operator's action changes a group's pattern, keeping its position; a backend
/// that cannot says so with `Unsupported`.
pub async fn set_group_pattern_changes_what_the_group_receives<L: EventLog>(log: &L) {
    log.append(vec![event("a.x", None)]).await.unwrap();
    log.ensure_group("moving", group_config("a.>"))
        .await
        .unwrap();
    assert_eq!(offsets(&fetch_all(log, "moving").await), vec![1]);
    log.ack("moving", &[1]).await.unwrap();
    let info = match log
        .set_group_pattern("moving", Pattern::parse("b.>").unwrap())
        .await
    {
        Ok(info) => info,
        Err(LogError::Unsupported(_)) => return,
        Err(other) => panic!("set_group_pattern failed: {other:?}"),
    };
    assert_eq!((info.pattern.as_str(), info.committed), ("b.>", 1));
    assert!(matches!(
        log.set_group_pattern("nobody", Pattern::parse("b.>").unwrap())
            .await,
        Err(LogError::UnknownGroup(_))
    ));
    log.append(vec![event("a.y", None), event("b.y", None)])
        .await
        .unwrap();
    assert_eq!(offsets(&fetch_all(log, "moving").await), vec![3]);
    assert!(matches!(
        log.ensure_group("moving", group_config("a.>")).await,
        Err(LogError::GroupPatternConflict { .. })
    ));
    let info = log
        .ensure_group("moving", group_config("b.>"))
        .await
        .unwrap();
    assert_eq!(info.pattern.as_str(), "b.>");
    assert_eq!(log.groups().await.unwrap()[0].pattern.as_str(), "b.>");
}

/// Using a group that does not exist, or a bad group name, is an error.
pub async fn unknown_and_invalid_groups_are_errors<L: EventLog>(log: &L) {
    assert!(matches!(
        log.fetch("nobody", 1).await,
        Err(LogError::UnknownGroup(_))
    ));
    assert!(matches!(
        log.ack("nobody", &[1]).await,
        Err(LogError::UnknownGroup(_))
    ));
    assert!(matches!(
        log.nack("nobody", 1, Duration::ZERO, "x").await,
        Err(LogError::UnknownGroup(_))
    ));
    for bad in ["", "has space", "dot.ted", &"x".repeat(65)] {
        assert!(
            matches!(
                log.ensure_group(bad, group_config(">")).await,
                Err(LogError::InvalidGroup(_))
            ),
            "{bad:?}"
        );
    }
}

/// For durable backends: `open` opens the same store each time. Events and group
/// positions survive closing and reopening; a group resumes after its committed offset.
pub async fn resumes_after_reopen<L, F, Fut>(open: F)
where
    L: EventLog,
    F: Fn() -> Fut,
    Fut: Future<Output = L>,
{
    {
        let log = open().await;
        log.append(
            (0..4)
                .map(|i| event("a.b", None).with_id(format!("e{i}")))
                .collect(),
        )
        .await
        .unwrap();
        log.ensure_group("g", group_config("a.>")).await.unwrap();
        assert_eq!(fetch_all(&log, "g").await.len(), 4);
        log.ack("g", &[1, 2]).await.unwrap();
        log.flush().await.unwrap();
    }
    let log = open().await;
    assert_eq!(log.last_offset().await.unwrap(), 4);
    let again = log
        .append(vec![event("a.b", None).with_id("e0")])
        .await
        .unwrap();
    assert_eq!(
        (again[0].offset, again[0].duplicate),
        (1, true),
        "dedup survives a reopen"
    );
    let info = log.ensure_group("g", group_config("a.>")).await.unwrap();
    assert_eq!(info.committed, 2);
    assert_eq!(
        offsets(&fetch_all(&log, "g").await),
        vec![3, 4],
        "unacknowledged events come back"
    );
}

/// For durable backends: `open` opens the same store each time. The attempt count of a
/// failed delivery survives closing and reopening, so `max_deliver` counts deliveries
/// across restarts, not since the last one: nack, reopen, fetch again → attempt 2; the
/// `max_deliver`-th failure after two reopenings dead-letters with every attempt counted.
pub async fn attempts_survive_reopen<L, F, Fut>(open: F)
where
    L: EventLog,
    F: Fn() -> Fut,
    Fut: Future<Output = L>,
{
    let mut config = group_config("a.>");
    config.max_deliver = 3;
    {
        let log = open().await;
        log.append(vec![event("a.b", Some("s")).with_id("t1")])
            .await
            .unwrap();
        log.ensure_group("tries", config.clone()).await.unwrap();
        let first = fetch_all(&log, "tries").await;
        assert_eq!(
            (offsets(&first), first.first().map(|d| d.attempt)),
            (vec![1], Some(1))
        );
        let outcome = log
            .nack("tries", 1, Duration::ZERO, "first failure")
            .await
            .unwrap();
        assert_eq!(outcome, NackOutcome::Redeliver);
        log.flush().await.unwrap();
    }
    {
        let log = open().await;
        log.ensure_group("tries", config.clone()).await.unwrap();
        let again = log
            .fetch_wait("tries", 10, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(
            (offsets(&again), again.first().map(|d| d.attempt)),
            (vec![1], Some(2)),
            "the failed delivery before the reopen is counted"
        );
        log.nack("tries", 1, Duration::ZERO, "second failure")
            .await
            .unwrap();
        log.flush().await.unwrap();
    }
    let log = open().await;
    log.ensure_group("tries", config).await.unwrap();
    let third = log
        .fetch_wait("tries", 10, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(
        (offsets(&third), third.first().map(|d| d.attempt)),
        (vec![1], Some(3)),
        "both failed deliveries are counted"
    );
    let NackOutcome::DeadLettered(id) = log
        .nack("tries", 1, Duration::ZERO, "third failure")
        .await
        .unwrap()
    else {
        panic!("the third failure of max_deliver 3 dead-letters, across reopenings");
    };
    let letters = log.dead_letters(Some("tries"), 0, 10).await.unwrap();
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(
        (letter.id, letter.event.offset, letter.attempts),
        (id, 1, 3)
    );
    assert_eq!(letter.error, "third failure");
    assert!(fetch_all(&log, "tries").await.is_empty());
}
