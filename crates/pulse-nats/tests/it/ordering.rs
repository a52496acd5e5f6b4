//! Order per subject across instances: several instances consume one group; whatever
//! instance handles an event, events of one subject are handled one at a time, in
//! offset order, while different subjects run concurrently.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use pulse_core::{Delivery, EventLog, GroupConfig, NackOutcome, Pattern};

use crate::support::{self, events, Prefix};

const EVENTS: usize = 480;
const SUBJECTS: usize = 40;
const INSTANCES: usize = 3;

/// What the handlers of every instance saw, shared by all of them.
#[derive(Default)]
struct Record {
    /// Per subject, its offsets in append order.
    expected: HashMap<String, Vec<u64>>,
    /// Per subject, how many of its events were acknowledged.
    done: HashMap<String, usize>,
    /// Per subject, the offset being handled right now.
    running: HashMap<String, u64>,
    /// Handlings in progress, and the most seen at once.
    in_flight: usize,
    most_in_flight: usize,
    /// Handling starts per offset, and acks per offset.
    starts: HashMap<u64, usize>,
    acks: HashMap<u64, usize>,
    nacks: usize,
    violations: Vec<String>,
}

impl Record {
    fn start(&mut self, d: &Delivery) {
        let subject = d.event.event.subject.clone().unwrap_or_default();
        let offset = d.event.offset;
        *self.starts.entry(offset).or_default() += 1;
        if let Some(other) = self.running.insert(subject.clone(), offset) {
            self.violations
                .push(format!("{subject}: {offset} started while {other} runs"));
        }
        let done = self.done.get(&subject).copied().unwrap_or(0);
        let next = self.expected[&subject].get(done).copied();
        if next != Some(offset) {
            self.violations.push(format!(
                "{subject}: {offset} started, the next in offset order is {next:?}"
            ));
        }
        self.in_flight += 1;
        self.most_in_flight = self.most_in_flight.max(self.in_flight);
    }

    /// Ends a handling; `acked` when it succeeded.
    fn end(&mut self, d: &Delivery, acked: bool) {
        let subject = d.event.event.subject.clone().unwrap_or_default();
        self.running.remove(&subject);
        self.in_flight -= 1;
        if acked {
            *self.done.entry(subject).or_default() += 1;
            *self.acks.entry(d.event.offset).or_default() += 1;
        } else {
            self.nacks += 1;
        }
    }

    fn acked(&self) -> usize {
        self.acks.len()
    }
}

async fn handle(log: &pulse_nats::NatsLog, record: &Mutex<Record>, d: Delivery) {
    record.lock().start(&d);
    tokio::time::sleep(Duration::from_millis(fastrand::u64(0..4))).await;
    // Some first attempts fail; the partition waits for their redelivery.
    let fail = d.attempt == 1 && fastrand::u8(0..10) == 0;
    // The end is recorded before the ack reaches the server: the next event of the
    // subject cannot be handed out before that.
    record.lock().end(&d, !fail);
    if fail {
        let delay = Duration::from_millis(fastrand::u64(0..20));
        let outcome = log
            .nack("ordered", d.event.offset, delay, "flaky")
            .await
            .unwrap();
        assert_eq!(outcome, NackOutcome::Redeliver);
    } else {
        log.ack("ordered", &[d.event.offset]).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subjects_keep_their_order_across_instances() {
    let Some(url) = support::url("subjects_keep_their_order_across_instances") else {
        return;
    };
    let prefix = Prefix::new(url, "order");
    let mut logs = Vec::new();
    for _ in 0..INSTANCES {
        logs.push(Arc::new(prefix.open().await));
    }
    let mut config = GroupConfig::new(Pattern::parse("health.>").unwrap());
    config.ack_wait = Duration::from_secs(60);
    config.max_deliver = 100;
    logs[0].ensure_group("ordered", config).await.unwrap();
    let appended = logs[1].append(events("o", EVENTS, SUBJECTS)).await.unwrap();
    let record = Arc::new(Mutex::new(Record::default()));
    {
        let mut record = record.lock();
        for (i, a) in appended.iter().enumerate() {
            record
                .expected
                .entry(format!("user-{}", i % SUBJECTS))
                .or_default()
                .push(a.offset);
        }
    }
    let workers = logs.iter().cloned().map(|log| {
        let record = record.clone();
        tokio::spawn(async move {
            // A guard against a hang, not a timing assertion: the checks below say what
            // was missing.
            for _ in 0..2000 {
                if record.lock().acked() >= EVENTS {
                    break;
                }
                let batch = log
                    .fetch_wait("ordered", 16, Duration::from_millis(200))
                    .await
                    .unwrap();
                // Every event of a batch is handled concurrently.
                let handlers = batch.into_iter().map(|d| handle(&log, &record, d));
                futures::future::join_all(handlers).await;
            }
        })
    });
    for worker in workers.collect::<Vec<_>>() {
        worker.await.unwrap();
    }
    {
        let record = record.lock();
        check(&record);
    }
    let group = &logs[2].groups().await.unwrap()[0];
    assert_eq!((group.committed, group.pending), (EVENTS as u64, 0));
}

fn check(record: &Record) {
    assert!(record.violations.is_empty(), "{:#?}", record.violations);
    assert_eq!(record.acked(), EVENTS, "every event handled");
    assert!(
        record.acks.values().all(|&n| n == 1),
        "no event acknowledged twice"
    );
    let starts: usize = record.starts.values().sum();
    assert_eq!(
        starts,
        EVENTS + record.nacks,
        "every event handled once, plus once per nack"
    );
    assert!(record.nacks > 0, "some handlings failed");
    assert!(
        record.most_in_flight >= 2,
        "different subjects ran concurrently"
    );
}
