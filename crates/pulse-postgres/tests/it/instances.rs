//! One consumer group spread over several instances (several handles on one schema).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use pulse_core::{Event, EventLog, GroupConfig, Pattern};
use pulse_postgres::PostgresLog;

use crate::support::{self, Schema};

fn config(ack_wait: Duration) -> GroupConfig {
    let mut config = GroupConfig::new(Pattern::parse("work.>").unwrap());
    config.ack_wait = ack_wait;
    config
}

async fn append_work(log: &PostgresLog, count: usize, subjects: usize) {
    let events: Vec<Event> = (0..count)
        .map(|i| Event::new("work.item").with_subject(format!("s{}", i % subjects)))
        .collect();
    for chunk in events.chunks(100) {
        log.append(chunk.to_vec()).await.unwrap();
    }
}

#[derive(Default)]
struct Ledger {
    /// Subject → the offset being handled now, by whichever instance.
    busy: HashMap<String, u64>,
    /// Subject → the last offset handled.
    last: HashMap<String, u64>,
    /// Offset → how many times it was handled to completion.
    handled: HashMap<u64, usize>,
}

/// Consumes from `log` until `ledger` counts `total` events, checking that no two
/// instances handle one subject at once and that each subject goes in offset order.
async fn consume(log: PostgresLog, ledger: Arc<Mutex<Ledger>>, total: usize) -> usize {
    let mut mine = 0;
    loop {
        if ledger.lock().handled.len() >= total {
            return mine;
        }
        let batch = log
            .fetch_wait("workers", 8, Duration::from_millis(200))
            .await
            .expect("fetch");
        for delivery in &batch {
            let subject = delivery.event.event.subject.clone().expect("subject");
            let offset = delivery.event.offset;
            {
                let mut l = ledger.lock();
                if let Some(other) = l.busy.insert(subject.clone(), offset) {
                    panic!("{subject}: {offset} handed out while {other} was in flight");
                }
                if let Some(&before) = l.last.get(&subject) {
                    assert!(before < offset, "{subject}: {offset} after {before}");
                }
            }
            tokio::task::yield_now().await;
            {
                let mut l = ledger.lock();
                l.busy.remove(&subject);
                l.last.insert(subject, offset);
                *l.handled.entry(offset).or_default() += 1;
            }
            log.ack("workers", &[offset]).await.expect("ack");
            mine += 1;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_group_over_three_instances_handles_each_event_once() {
    let Some(url) = support::url("one_group_over_three_instances_handles_each_event_once") else {
        return;
    };
    let schema = Schema::new(url, "group3");
    let mut logs = Vec::new();
    for _ in 0..3 {
        let log = schema.open().await;
        log.ensure_group("workers", config(Duration::from_secs(60)))
            .await
            .unwrap();
        logs.push(log);
    }
    const TOTAL: usize = 600;
    append_work(&logs[0], TOTAL, 25).await;
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let consumers: Vec<_> = logs
        .iter()
        .map(|log| tokio::spawn(consume(log.clone(), Arc::clone(&ledger), TOTAL)))
        .collect();
    let mut shares = Vec::new();
    for consumer in consumers {
        shares.push(consumer.await.expect("consumer"));
    }
    println!("events handled per instance: {shares:?}");
    let handled = std::mem::take(&mut ledger.lock().handled);
    assert_eq!(handled.len(), TOTAL);
    assert!(
        handled.values().all(|&n| n == 1),
        "every event handled exactly once"
    );
    assert_eq!(shares.iter().sum::<usize>(), TOTAL);
    let info = &logs[1].groups().await.unwrap()[0];
    assert_eq!((info.committed, info.pending), (TOTAL as u64, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_instances_deliveries_go_to_the_others() {
    let Some(url) = support::url("a_dead_instances_deliveries_go_to_the_others") else {
        return;
    };
    let schema = Schema::new(url, "handoff");
    let mut options = schema.options();
    options.heartbeat = Duration::from_millis(200);
    options.instance_timeout = Duration::from_secs(2);
    // The ack wait is far longer than the test: only the missing heartbeat can free
    // the dead instance's work.
    let ack_wait = Duration::from_secs(600);
    let doomed = schema.open_with(options.clone()).await;
    let survivor = schema.open_with(options.clone()).await;
    let closing = schema.open_with(options).await;
    for log in [&doomed, &survivor, &closing] {
        log.ensure_group("workers", config(ack_wait)).await.unwrap();
    }
    append_work(&survivor, 60, 60).await;

    let held_by_dead: HashSet<u64> = doomed
        .fetch("workers", 20)
        .await
        .unwrap()
        .iter()
        .map(|d| d.event.offset)
        .collect();
    let held_by_closing: HashSet<u64> = closing
        .fetch("workers", 20)
        .await
        .unwrap()
        .iter()
        .map(|d| d.event.offset)
        .collect();
    assert_eq!((held_by_dead.len(), held_by_closing.len()), (20, 20));
    drop(doomed); // a crash: no goodbye, the heartbeat just stops
    closing.close().await.unwrap(); // a clean shutdown hands its work over at once

    let mut redelivered = HashSet::new();
    let mut handled = HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while handled.len() < 60 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of 60 events came through",
            handled.len()
        );
        for d in survivor
            .fetch_wait("workers", 100, Duration::from_millis(200))
            .await
            .unwrap()
        {
            if d.attempt > 1 {
                redelivered.insert(d.event.offset);
            }
            assert!(handled.insert(d.event.offset), "handled twice");
            survivor.ack("workers", &[d.event.offset]).await.unwrap();
        }
    }
    let expected: HashSet<u64> = held_by_dead.union(&held_by_closing).copied().collect();
    assert_eq!(
        redelivered, expected,
        "exactly the abandoned deliveries came back"
    );
    assert_eq!(survivor.groups().await.unwrap()[0].committed, 60);
}

/// On its last attempt, a delivery whose lease runs out or whose instance dies becomes a
/// dead letter saying which; a redriven letter that runs out again is the same letter,
/// updated, not a second one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_attempt_expiring_dead_letters_with_the_reason() {
    let Some(url) = support::url("the_last_attempt_expiring_dead_letters_with_the_reason") else {
        return;
    };
    let schema = Schema::new(url, "expirydl");
    let mut options = schema.options();
    options.heartbeat = Duration::from_millis(200);
    options.instance_timeout = Duration::from_secs(1);
    let mut doomed_options = options.clone();
    doomed_options.instance = Some("doomed-instance".to_owned());
    let survivor = schema.open_with(options).await;
    let doomed = schema.open_with(doomed_options).await;
    let mut lease = config(Duration::from_millis(300));
    lease.max_deliver = 1;
    let mut crash = config(Duration::from_secs(600));
    crash.max_deliver = 1;
    for log in [&survivor, &doomed] {
        log.ensure_group("lease", lease.clone()).await.unwrap();
        log.ensure_group("crash", crash.clone()).await.unwrap();
    }
    append_work(&survivor, 2, 2).await;

    // "lease": offset 1 is never acked; "crash": offset 2 is held by an instance that dies.
    let held = survivor.fetch("lease", 1).await.unwrap();
    assert_eq!((held[0].event.offset, held[0].attempt), (1, 1));
    let held = doomed.fetch("crash", 10).await.unwrap();
    assert_eq!(held.len(), 2);
    doomed.ack("crash", &[1]).await.unwrap();
    drop(doomed);

    let letters = |group: &'static str| {
        let survivor = survivor.clone();
        async move { survivor.dead_letters(Some(group), 0, 10).await.unwrap() }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while letters("lease").await.is_empty() || letters("crash").await.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no dead letters");
        for group in ["lease", "crash"] {
            let got = survivor.fetch(group, 10).await.unwrap();
            assert!(
                got.iter().all(|d| d.event.offset == 2 && group == "lease"),
                "a last attempt was handed out again: {group} {:?}",
                got.iter().map(|d| d.event.offset).collect::<Vec<_>>()
            );
            if !got.is_empty() {
                survivor.ack(group, &[2]).await.unwrap();
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let by_lease = letters("lease").await;
    assert_eq!(
        (
            by_lease.len(),
            by_lease[0].event.offset,
            by_lease[0].attempts
        ),
        (1, 1, 1)
    );
    assert_eq!(
        by_lease[0].error,
        "not acknowledged within the ack wait of 300ms"
    );
    let by_crash = letters("crash").await;
    assert_eq!((by_crash.len(), by_crash[0].event.offset), (1, 2));
    assert_eq!(
        by_crash[0].error,
        "instance doomed-instance stopped before acknowledging"
    );

    // Redriven and left to run out again: still one letter, with the latest failure.
    let first = by_lease[0].clone();
    survivor.redrive(first.id).await.unwrap();
    let again = survivor.fetch("lease", 10).await.unwrap();
    assert_eq!(
        again.iter().map(|d| d.event.offset).collect::<Vec<_>>(),
        [1]
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(survivor.fetch("lease", 10).await.unwrap().is_empty());
    let after = letters("lease").await;
    assert_eq!(
        after.len(),
        1,
        "the redriven letter is updated, not doubled"
    );
    assert_eq!(after[0].id, first.id);
    assert!(after[0].last_failure > first.last_failure);
    assert_eq!(survivor.groups().await.unwrap().len(), 2);
}

/// Three survivors race to take over a dead instance's deliveries: each fetch hands back
/// expired rows without waiting for the others, and every event is handled exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn survivors_racing_for_a_dead_instances_work_each_take_a_share_once() {
    let Some(url) = support::url("survivors_racing_for_a_dead_instances_work") else {
        return;
    };
    let schema = Schema::new(url, "takeover");
    let mut options = schema.options();
    options.heartbeat = Duration::from_millis(200);
    options.instance_timeout = Duration::from_secs(1);
    let doomed = schema.open_with(options.clone()).await;
    doomed
        .ensure_group("workers", config(Duration::from_secs(600)))
        .await
        .unwrap();
    const TOTAL: usize = 400;
    append_work(&doomed, TOTAL, TOTAL).await;
    let held = doomed.fetch("workers", TOTAL).await.unwrap();
    assert_eq!(held.len(), TOTAL);
    drop(doomed);

    let handled = Arc::new(Mutex::new(HashMap::<u64, u32>::new()));
    let mut survivors = Vec::new();
    for _ in 0..3 {
        let log = schema.open_with(options.clone()).await;
        let handled = Arc::clone(&handled);
        survivors.push(tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            while handled.lock().len() < TOTAL && tokio::time::Instant::now() < deadline {
                let batch = log
                    .fetch_wait("workers", 25, Duration::from_millis(200))
                    .await
                    .expect("fetch");
                let offsets: Vec<u64> = batch.iter().map(|d| d.event.offset).collect();
                for d in &batch {
                    assert_eq!(d.attempt, 2, "offset {} came back once", d.event.offset);
                    *handled.lock().entry(d.event.offset).or_default() += 1;
                }
                log.ack("workers", &offsets).await.expect("ack");
            }
            log
        }));
    }
    let mut logs = Vec::new();
    for survivor in survivors {
        logs.push(survivor.await.expect("survivor"));
    }
    let handled = std::mem::take(&mut *handled.lock());
    assert_eq!(handled.len(), TOTAL, "every held event came back");
    assert!(handled.values().all(|&n| n == 1), "each exactly once");
    let info = &logs[0].groups().await.unwrap()[0];
    assert_eq!((info.committed, info.pending), (TOTAL as u64, 0));
}
