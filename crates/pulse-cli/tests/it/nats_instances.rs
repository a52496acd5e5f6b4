//! Three `pulse serve` processes on loopback sharing NATS JetStream (`[log] backend =
//! "nats"`): events published through one and consumed through the others by one group
//! are each handled exactly once; after one instance is killed with SIGKILL mid-stream,
//! nothing is lost (its unacknowledged events go to the survivors). Skipped, saying so,
//! when `PULSE_TEST_NATS_URL` is unset.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::support::{nats_log, server_url, unique, DropNatsLog, Server};

/// Reads a group's SSE stream from `base`, recording the offset of every event and
/// acknowledging it to the same instance.
fn consume(
    base: &str,
    seen: Arc<Mutex<HashMap<u64, Vec<usize>>>>,
    who: usize,
) -> tokio::task::JoinHandle<()> {
    let url = format!("{base}/v1/stream?type=health.%3E&group=cluster");
    let base = base.to_owned();
    tokio::spawn(async move {
        let Ok(response) = reqwest::get(url).await else {
            return;
        };
        let client = reqwest::Client::new();
        let ack_url = format!("{base}/v1/groups/cluster/ack");
        let mut body = response.bytes_stream();
        let mut text = String::new();
        while let Some(Ok(chunk)) = body.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = text.find("\n\n") {
                let frame: String = text.drain(..end + 2).collect();
                let offset = frame
                    .lines()
                    .find_map(|l| l.strip_prefix("id:"))
                    .and_then(|id| id.trim().parse::<u64>().ok());
                if let Some(offset) = offset {
                    seen.lock().entry(offset).or_default().push(who);
                    let acked = client
                        .post(&ack_url)
                        .json(&json!({ "offsets": [offset] }))
                        .send()
                        .await;
                    if !acked.is_ok_and(|r| r.status() == 204) {
                        return; // the instance is gone
                    }
                }
            }
        }
    })
}

async fn publish(base: &str, tag: &str, n: usize) {
    let client = reqwest::Client::new();
    for chunk in 0..n / 50 {
        let events: Vec<Value> = (0..50)
            .map(|i| {
                let i = chunk * 50 + i;
                json!({"specversion": "1.0", "id": format!("{tag}-{i}"), "source": "test",
                       "type": "health.reading.hr", "subject": format!("user-{}", i % 7), "data": i})
            })
            .collect();
        let response = client
            .post(format!("{base}/v1/events"))
            .header("content-type", "application/cloudevents-batch+json")
            .body(Value::Array(events).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202, "{:?}", response.text().await);
    }
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..1200 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_a_group_and_survive_a_sigkill() {
    let Some(url) = server_url(
        "PULSE_TEST_NATS_URL",
        "three_instances_share_a_group_and_survive_a_sigkill",
    ) else {
        return;
    };
    let prefix = format!("pulsetest-cluster-{:012x}", unique());
    let _cleanup = DropNatsLog(url.clone(), pulse_nats::NatsOptions::new(prefix.clone()));
    // Four partitions instead of the default 16, so the config key is exercised too.
    let config = format!("{}partitions = 4\n", nats_log(&url, &prefix));
    let a = Server::start("a", &config).await;
    let b = Server::start("b", &config).await;
    let mut c = Server::start("c", &config).await;

    let seen: Arc<Mutex<HashMap<u64, Vec<usize>>>> = Arc::default();
    let _on_b = consume(&b.base, seen.clone(), 1);
    let on_c = consume(&c.base, seen.clone(), 2);
    // Both subscriptions have joined before anything is published.
    tokio::time::sleep(Duration::from_millis(1000)).await;

    publish(&a.base, "first", 300).await;
    wait_until("all 300 events are handled", || seen.lock().len() >= 300).await;
    {
        let seen = seen.lock();
        assert!(
            seen.values().all(|who| who.len() == 1),
            "an event was handled twice in one group"
        );
        let by_c = seen.values().filter(|who| who[0] == 2).count();
        println!("instance b handled {}, instance c {by_c}", 300 - by_c);
    }

    // Second round: kill instance c with SIGKILL while events flow.
    let publisher = {
        let base = a.base.clone();
        tokio::spawn(async move { publish(&base, "second", 300).await })
    };
    wait_until("the second round is under way", || seen.lock().len() >= 330).await;
    c.kill();
    on_c.abort();
    publisher.await.unwrap();
    wait_until("every event of both rounds is handled", || {
        seen.lock().len() >= 600
    })
    .await;
    let mut offsets: Vec<u64> = seen.lock().keys().copied().collect();
    offsets.sort_unstable();
    assert_eq!(offsets, (1..=600).collect::<Vec<_>>(), "nothing was lost");
    let groups: Value = reqwest::get(format!("{}/v1/groups", b.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(groups["groups"][0]["name"], "cluster", "{groups}");
    // The stream was made with the configured partitions: a log expecting the default
    // number is refused.
    let default_partitions = pulse_nats::NatsOptions::new(prefix.clone());
    assert_ne!(default_partitions.partitions, 4);
    let refused = pulse_nats::NatsLog::connect(&url, default_partitions).await;
    assert!(
        matches!(refused, Err(pulse_core::LogError::Incompatible(_))),
        "{:?}",
        refused.err()
    );
    drop(c);
}
