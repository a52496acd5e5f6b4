//! Three `pulse serve` processes sharing one PostgreSQL log (`[log] backend = "postgres"`):
//! events published through one instance and consumed through the two others by one
//! consumer group are each handled once; an instance killed with SIGKILL mid-stream loses
//! nothing, its unacknowledged deliveries going to the surviving instance.
//!
//! Runs when `PULSE_TEST_POSTGRES_URL` names a server; works in a schema of its own.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use pulse_core::EventLog;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::support::{postgres_log, server_url, unique, DropSchema, Server};

const TOTAL: u64 = 300;
const SUBJECTS: u64 = 50;

/// What one WebSocket consumer saw: (offset, attempt) in arrival order, and what it acked.
#[derive(Default)]
struct Seen {
    received: Vec<(u64, u64)>,
    acked: HashSet<u64>,
}

/// Consumes group `g` through `ws_base`, acking everything until it has received
/// `ack_until` events, then holding what it gets without acking (the instance is about to
/// be killed). Ends when `done` says so or the connection breaks.
async fn consume(
    ws_base: String,
    ack_until: usize,
    seen: Arc<parking_lot::Mutex<Seen>>,
    done: Arc<AtomicBool>,
) {
    let url = format!("{ws_base}/v1/ws?type=health.%3E&group=g&max_unacked=16");
    let (mut socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("ws connects");
    while !done.load(Ordering::SeqCst) {
        let frame = match tokio::time::timeout(Duration::from_millis(200), socket.next()).await {
            Err(_) => continue,
            Ok(Some(Ok(Message::Text(text)))) => text,
            Ok(Some(Ok(_))) => continue,
            Ok(None | Some(Err(_))) => return,
        };
        let v: Value = serde_json::from_str(frame.as_str()).unwrap();
        if v["kind"] != "event" {
            continue;
        }
        let offset = v["offset"].as_u64().unwrap();
        let attempt = v["attempt"].as_u64().unwrap();
        let ack = {
            let mut s = seen.lock();
            s.received.push((offset, attempt));
            s.received.len() <= ack_until
        };
        if ack {
            let op = json!({"op": "ack", "offsets": [offset]}).to_string();
            if socket.send(Message::Text(op.into())).await.is_err() {
                return;
            }
            seen.lock().acked.insert(offset);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_a_group_and_survive_a_kill() {
    let Some(url) = server_url(
        "PULSE_TEST_POSTGRES_URL",
        "three_instances_share_a_group_and_survive_a_kill",
    ) else {
        return;
    };
    let schema = format!("pulse_t_serve3_{:012x}", unique());
    let _guard = DropSchema {
        url: url.clone(),
        name: schema.clone(),
    };
    let publisher = Server::start("node-1", &postgres_log(&url, &schema, "node-1")).await;
    let mut doomed = Server::start("node-2", &postgres_log(&url, &schema, "node-2")).await;
    let survivor = Server::start("node-3", &postgres_log(&url, &schema, "node-3")).await;

    let seen_doomed = Arc::new(parking_lot::Mutex::new(Seen::default()));
    let seen_survivor = Arc::new(parking_lot::Mutex::new(Seen::default()));
    let done = Arc::new(AtomicBool::new(false));
    let doomed_task = tokio::spawn(consume(
        doomed.ws.clone(),
        40,
        seen_doomed.clone(),
        done.clone(),
    ));
    let survivor_task = tokio::spawn(consume(
        survivor.ws.clone(),
        usize::MAX,
        seen_survivor.clone(),
        done.clone(),
    ));

    // More subjects than both consumers may hold unacknowledged together (16 each): with
    // one event per subject in flight, a consumer holding every subject's next event would
    // leave the other nothing, and the doomed one must get deliveries to hold.
    let client = reqwest::Client::new();
    for chunk in 0..TOTAL / 100 {
        let events: Vec<Value> = (chunk * 100..(chunk + 1) * 100)
            .map(|i| {
                json!({"specversion": "1.0", "id": format!("e-{i}"), "source": "test",
                "type": "health.reading.hr", "subject": format!("user-{}", i % SUBJECTS), "data": i})
            })
            .collect();
        let resp = client
            .post(format!("{}/v1/events", publisher.base))
            .header("content-type", "application/cloudevents-batch+json")
            .body(Value::Array(events).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            202,
            "{}",
            resp.text().await.unwrap_or_default()
        );
    }

    // Once the doomed instance's consumer holds unacknowledged deliveries, kill it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen_doomed.lock().received.len() <= 40 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the doomed instance got no deliveries to hold"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    doomed.kill();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let acked: HashSet<u64> = seen_survivor
            .lock()
            .acked
            .union(&seen_doomed.lock().acked)
            .copied()
            .collect();
        if acked.len() as u64 == TOTAL {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {TOTAL} events were handled",
            acked.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    done.store(true, Ordering::SeqCst);
    let _ = doomed_task.await;
    survivor_task.await.unwrap();

    let doomed_seen = std::mem::take(&mut *seen_doomed.lock());
    let survivor_seen = std::mem::take(&mut *seen_survivor.lock());
    let all: HashSet<u64> = doomed_seen
        .acked
        .union(&survivor_seen.acked)
        .copied()
        .collect();
    assert_eq!(
        all,
        (1..=TOTAL).collect(),
        "every event was handled: nothing lost"
    );
    let mut deliveries: HashMap<u64, usize> = HashMap::new();
    for (offset, _) in doomed_seen.received.iter().chain(&survivor_seen.received) {
        *deliveries.entry(*offset).or_default() += 1;
    }
    let held: HashSet<u64> = doomed_seen
        .received
        .iter()
        .map(|&(o, _)| o)
        .filter(|o| !doomed_seen.acked.contains(o))
        .collect();
    assert!(!held.is_empty());
    for (offset, count) in &deliveries {
        if *count > 1 {
            assert!(
                doomed_seen.received.iter().any(|&(o, _)| o == *offset),
                "offset {offset} was delivered {count} times without the killed instance ever holding it"
            );
        }
    }
    let redelivered: HashSet<u64> = survivor_seen
        .received
        .iter()
        .filter(|&&(_, attempt)| attempt > 1)
        .map(|&(o, _)| o)
        .collect();
    assert!(
        held.is_subset(&redelivered),
        "what the killed instance held came back to the survivor: held {held:?}, redelivered {redelivered:?}"
    );

    // The group's position is shared: every instance sees it committed once the last acks,
    // which a WebSocket client sends without waiting for an answer, have been applied.
    let mut options = pulse_postgres::PostgresOptions::new(schema.clone());
    options.pool_size = 1;
    let log = pulse_postgres::PostgresLog::connect(&url, options)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let group = log
            .groups()
            .await
            .unwrap()
            .into_iter()
            .find(|g| g.name == "g")
            .unwrap();
        if (group.committed, group.pending) == (TOTAL, 0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the group's position stayed at committed {}, pending {}",
            group.committed,
            group.pending
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(publisher);
}
