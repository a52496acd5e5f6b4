//! Retention by count and by stored age: small background steps, one instance at a time,
//! offsets never reused, groups continuing from the oldest kept event. Retention by
//! stored size is in `retention_bytes`.

use std::time::Duration;

use pulse_core::{Event, EventLog, GroupConfig, NackOutcome, Pattern, ReadQuery};
use pulse_postgres::{PostgresLog, PostgresOptions};

use crate::support::{self, eventually, Schema};

/// Options with retention: `interval` between background passes, small steps so that a
/// pass takes several of them.
pub(crate) fn limited(schema: &Schema, interval: Duration) -> PostgresOptions {
    let mut options = schema.options();
    options.prune_interval = interval;
    options.prune_batch = 30;
    options
}

/// Background passes that never come during a test: the test applies retention itself.
pub(crate) const NEVER: Duration = Duration::from_secs(3600);

pub(crate) async fn offsets(log: &PostgresLog) -> Vec<u64> {
    log.read(ReadQuery::after(0, 10_000))
        .await
        .unwrap()
        .iter()
        .map(|s| s.offset)
        .collect()
}

async fn append_numbered(log: &PostgresLog, ty: &str, from: usize, count: usize) {
    let events: Vec<Event> = (from..from + count)
        .map(|i| Event::new(ty.to_owned()).with_id(format!("e{i}")))
        .collect();
    for chunk in events.chunks(100) {
        log.append(chunk.to_vec()).await.unwrap();
    }
}

/// Makes the events up to `through` look stored two days ago.
async fn age(schema: &Schema, through: i64) {
    schema
        .admin()
        .await
        .execute(
            &format!(
                "UPDATE \"{}\".events SET stored_at = now() - interval '2 days' WHERE \"offset\" <= $1",
                schema.name
            ),
            &[&through],
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_events_keeps_the_newest_and_offsets_continue() {
    let Some(url) = support::url("max_events_keeps_the_newest_and_offsets_continue") else {
        return;
    };
    let schema = Schema::new(url, "retcount");
    let mut options = limited(&schema, Duration::from_millis(50));
    options.retention.max_events = Some(100);
    let log = schema.open_with(options).await;
    append_numbered(&log, "a.b", 0, 500).await;
    eventually("the background task pruning down to 100 events", || async {
        offsets(&log).await.len() == 100
    })
    .await;
    assert_eq!(offsets(&log).await, (401..=500).collect::<Vec<_>>());
    assert_eq!(log.last_offset().await.unwrap(), 500);
    let reader = log.read(ReadQuery::after(7, 3)).await.unwrap();
    assert_eq!(
        reader.iter().map(|s| s.offset).collect::<Vec<_>>(),
        [401, 402, 403],
        "reading after a pruned offset starts with the oldest kept"
    );

    let next = log.append(vec![Event::new("a.b")]).await.unwrap();
    assert_eq!(next[0].offset, 501);
    // Dedup covers stored events: the id of a pruned event is new again.
    let again = log
        .append(vec![Event::new("a.b").with_id("e0")])
        .await
        .unwrap();
    assert_eq!((again[0].offset, again[0].duplicate), (502, false));
    let kept = log
        .append(vec![Event::new("a.b").with_id("e499")])
        .await
        .unwrap();
    assert_eq!((kept[0].offset, kept[0].duplicate), (500, true));
    log.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_age_goes_by_stored_time_and_never_reuses_offsets() {
    let Some(url) = support::url("max_age_goes_by_stored_time_and_never_reuses_offsets") else {
        return;
    };
    let schema = Schema::new(url, "retage");
    let mut options = limited(&schema, Duration::from_millis(50));
    options.retention.max_age = Some(Duration::from_secs(3600));
    let log = schema.open_with(options.clone()).await;
    // The events' own time is old, which does not matter: retention goes by stored time.
    let old = chrono::Utc::now() - chrono::Duration::days(30);
    log.append((0..40).map(|_| Event::new("a.b").with_time(old)).collect())
        .await
        .unwrap();
    age(&schema, 25).await;
    eventually("pruning the events stored two days ago", || async {
        offsets(&log).await.first() == Some(&26)
    })
    .await;
    assert_eq!(offsets(&log).await, (26..=40).collect::<Vec<_>>());

    // Everything expires: the log is empty and its last offset stays.
    age(&schema, 40).await;
    eventually("pruning every event", || async {
        offsets(&log).await.is_empty()
    })
    .await;
    assert_eq!(log.last_offset().await.unwrap(), 40);
    log.close().await.unwrap();
    let reopened = schema.open().await;
    assert_eq!(reopened.last_offset().await.unwrap(), 40);
    let appended = reopened.append(vec![Event::new("a.b")]).await.unwrap();
    assert_eq!(appended[0].offset, 41, "offsets are never reused");
    reopened.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_behind_the_pruned_range_continues_with_the_oldest_kept_event() {
    let Some(url) = support::url("a_group_behind_the_pruned_range_continues") else {
        return;
    };
    let schema = Schema::new(url, "retgroup");
    let mut options = limited(&schema, NEVER);
    options.retention.max_events = Some(10);
    let log = schema.open_with(options).await;
    let mut config = GroupConfig::new(Pattern::parse("a.>").unwrap());
    config.max_deliver = 1;
    log.ensure_group("slow", config.clone()).await.unwrap();
    log.ensure_group("failing", config.clone()).await.unwrap();
    append_numbered(&log, "a.b", 0, 100).await;

    // "slow" has offset 1 in flight and 2..=100 admitted; "failing" dead-letters 1.
    let in_flight = log.fetch("slow", 1).await.unwrap();
    assert_eq!(in_flight[0].event.offset, 1);
    let failed = log.fetch("failing", 1).await.unwrap();
    assert_eq!(failed[0].event.offset, 1);
    let outcome = log
        .nack("failing", 1, Duration::ZERO, "broken")
        .await
        .unwrap();
    let NackOutcome::DeadLettered(letter) = outcome else {
        panic!("expected a dead letter, got {outcome:?}");
    };

    assert_eq!(log.apply_retention().await.unwrap(), 89);
    let kept = offsets(&log).await;
    assert_eq!(
        kept,
        [1].into_iter().chain(91..=100).collect::<Vec<_>>(),
        "the dead-lettered event is kept with the newest 10"
    );
    let letters = log.dead_letters(None, 0, 10).await.unwrap();
    assert_eq!(
        letters[0].event.offset, 1,
        "the dead letter keeps its event"
    );

    // The pruned delivery is gone: its ack changes nothing, the group goes on at 91.
    log.ack("slow", &[1]).await.unwrap();
    let info = log.groups().await.unwrap();
    let slow = info.iter().find(|g| g.name == "slow").unwrap();
    assert_eq!(slow.committed, 90);
    let next: Vec<u64> = log
        .fetch("slow", 5)
        .await
        .unwrap()
        .iter()
        .map(|d| d.event.offset)
        .collect();
    assert_eq!(next, [91, 92, 93, 94, 95]);
    // A group created now from the earliest event starts at the oldest kept one too.
    log.ensure_group("late", config).await.unwrap();
    let first = log.fetch("late", 1).await.unwrap();
    assert_eq!(first[0].event.offset, 91);
    let failing: Vec<u64> = log
        .fetch("failing", 1)
        .await
        .unwrap()
        .iter()
        .map(|d| d.event.offset)
        .collect();
    assert_eq!(failing, [91]);

    // Once its dead letter is settled, the held event goes at the next step.
    log.redrive(letter).await.unwrap();
    log.ack("failing", &[91]).await.unwrap();
    let redriven = log.fetch("failing", 10).await.unwrap();
    let redriven: Vec<u64> = redriven.iter().map(|d| d.event.offset).collect();
    assert!(redriven.contains(&1), "redriven: {redriven:?}");
    log.ack("failing", &redriven).await.unwrap();
    assert!(log.dead_letters(None, 0, 10).await.unwrap().is_empty());
    append_numbered(&log, "a.b", 100, 1).await;
    assert_eq!(log.apply_retention().await.unwrap(), 2);
    assert_eq!(offsets(&log).await, (92..=101).collect::<Vec<_>>());
    log.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_sharing_a_schema_prune_each_event_once() {
    let Some(url) = support::url("instances_sharing_a_schema_prune_each_event_once") else {
        return;
    };
    let schema = Schema::new(url, "retshared");
    let mut options = limited(&schema, NEVER);
    options.retention.max_events = Some(50);
    let a = schema.open_with(options.clone()).await;
    let b = schema.open_with(options.clone()).await;
    let (x, y) = tokio::join!(
        append_numbered(&a, "a.b", 0, 300),
        append_numbered(&b, "a.b", 300, 300)
    );
    let ((), ()) = (x, y);
    let (pruned_a, pruned_b) = tokio::join!(a.apply_retention(), b.apply_retention());
    let (pruned_a, pruned_b) = (pruned_a.unwrap(), pruned_b.unwrap());
    assert_eq!(pruned_a + pruned_b, 550, "{pruned_a} + {pruned_b}");
    assert_eq!(offsets(&a).await, (551..=600).collect::<Vec<_>>());
    a.close().await.unwrap();
    b.close().await.unwrap();

    // Both background tasks running, consumers fetching meanwhile: the same end state.
    options.prune_interval = Duration::from_millis(20);
    let a = schema.open_with(options.clone()).await;
    let b = schema.open_with(options).await;
    let group = GroupConfig::new(Pattern::parse("a.>").unwrap());
    a.ensure_group("g", group).await.unwrap();
    // A consumer of the group runs throughout; it ends with the last event, which
    // retention keeps.
    let consumer = {
        let b = b.clone();
        tokio::spawn(async move {
            loop {
                let batch = b.fetch_wait("g", 16, Duration::from_millis(100)).await?;
                let offsets: Vec<u64> = batch.iter().map(|d| d.event.offset).collect();
                b.ack("g", &offsets).await?;
                if offsets.contains(&1200) {
                    return Ok::<(), pulse_core::LogError>(());
                }
            }
        })
    };
    let (x, y) = tokio::join!(
        append_numbered(&a, "a.b", 600, 300),
        append_numbered(&b, "a.b", 900, 300)
    );
    let ((), ()) = (x, y);
    eventually("both pruners down to the newest 50", || async {
        offsets(&a).await == (1151..=1200).collect::<Vec<_>>()
    })
    .await;
    consumer.await.unwrap().unwrap();
    assert_eq!(b.last_offset().await.unwrap(), 1200);
    a.close().await.unwrap();
    b.close().await.unwrap();
}
