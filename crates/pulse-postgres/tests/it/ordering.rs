//! The sequence-versus-commit-order gap: many writers on several instances append while a
//! reader pages by "after the last offset I saw". The reader must see every committed
//! event exactly once, in offset order, and never a gap that a late commit would fill.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pulse_core::{Event, EventLog, ReadQuery};

use crate::support::{self, Schema};

const INSTANCES: usize = 3;
const TASKS_PER_INSTANCE: usize = 4;
const BATCHES_PER_TASK: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_never_let_a_reader_skip_an_event() {
    let Some(url) = support::url("concurrent_writers_never_let_a_reader_skip_an_event") else {
        return;
    };
    let schema = Schema::new(url, "gap");
    let mut writers = Vec::new();
    for _ in 0..INSTANCES {
        writers.push(schema.open().await);
    }
    let reader = schema.open().await;
    let done = Arc::new(AtomicBool::new(false));

    let reading = tokio::spawn({
        let done = Arc::clone(&done);
        async move {
            let mut seen: Vec<(u64, String)> = Vec::new();
            let mut after = 0;
            let mut appends = reader.watch_appends();
            loop {
                let finished = done.load(Ordering::SeqCst);
                let page = reader
                    .read(ReadQuery::after(after, 300))
                    .await
                    .expect("read");
                for stored in &page {
                    assert_eq!(
                        stored.offset,
                        after + 1,
                        "offset {} became visible while {} was not",
                        stored.offset,
                        after + 1
                    );
                    after = stored.offset;
                    seen.push((stored.offset, stored.event.id.clone()));
                }
                if page.is_empty() {
                    if finished {
                        return seen;
                    }
                    let _ =
                        tokio::time::timeout(Duration::from_millis(20), appends.changed()).await;
                }
            }
        }
    });

    let mut tasks = Vec::new();
    for (w, log) in writers.iter().enumerate() {
        for t in 0..TASKS_PER_INSTANCE {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                let mut stored = Vec::new();
                for b in 0..BATCHES_PER_TASK {
                    let size = 1 + fastrand::usize(..12);
                    let batch: Vec<Event> = (0..size)
                        .map(|i| Event::new("gap.test").with_id(format!("{w}-{t}-{b}-{i}")))
                        .collect();
                    let ids: Vec<String> = batch.iter().map(|e| e.id.clone()).collect();
                    let appended = log.append(batch).await.expect("append");
                    for (a, id) in appended.iter().zip(ids) {
                        assert!(!a.duplicate);
                        stored.push((a.offset, id));
                    }
                }
                stored
            }));
        }
    }
    let mut expected: HashMap<u64, String> = HashMap::new();
    for task in tasks {
        for (offset, id) in task.await.expect("writer task") {
            assert!(expected.insert(offset, id).is_none(), "offset given twice");
        }
    }
    done.store(true, Ordering::SeqCst);
    let seen = reading.await.expect("reader task");

    assert_eq!(
        seen.len(),
        expected.len(),
        "the reader saw every event once"
    );
    for (offset, id) in &seen {
        assert_eq!(
            expected.get(offset),
            Some(id),
            "offset {offset} holds its writer's event"
        );
    }
    let last = writers[0].last_offset().await.unwrap();
    assert_eq!(last, expected.len() as u64, "offsets are dense");
}
