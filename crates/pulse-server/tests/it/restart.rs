//! A server restart during a WebSocket group subscription, on the embedded SQLite log:
//! acknowledged events are not delivered again, unacknowledged ones are.

use std::collections::BTreeSet;
use std::sync::Arc;

use pulse_core::EventLog;
use pulse_sqlite::SqliteLog;
use serde_json::json;

use crate::support::*;
use crate::ws::{connect, next_json, send};

/// Sends a frame the server rejects and reads up to its error answer: every event frame
/// read meanwhile is returned, and every message sent before has been applied.
async fn sync(ws: &mut crate::ws::Socket) -> Vec<u64> {
    send(ws, json!({"op": "sync"})).await;
    let mut offsets = Vec::new();
    loop {
        let frame = next_json(ws).await;
        if frame["kind"] == "error" {
            return offsets;
        }
        offsets.push(frame["offset"].as_u64().unwrap());
    }
}

#[tokio::test]
async fn restart_keeps_acks_and_redelivers_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Arc::new(SqliteLog::open(dir.path()).await.unwrap());
    let server = TestServer::start_with(
        "",
        sqlite.clone() as Arc<dyn EventLog>,
        Some(dir.path().to_owned()),
    )
    .await;
    let events = (1..=10)
        .map(|i| {
            let mut e = event(&format!("rs-{i}"), "health.reading.hr", json!(i));
            e["subject"] = json!(format!("user-{i}"));
            e
        })
        .collect();
    publish(&server, events).await;
    let mut ws = connect(&server.ws_url("/v1/ws?type=health.>&group=restart")).await;
    let mut got = BTreeSet::new();
    while got.len() < 10 {
        got.insert(next_json(&mut ws).await["offset"].as_u64().unwrap());
    }
    assert_eq!(got, (1..=10).collect());
    send(&mut ws, json!({"op": "ack", "offsets": [1, 2, 3, 4, 5, 6]})).await;
    assert!(sync(&mut ws).await.is_empty());

    // Stop while the subscription is open, close the log, open everything again.
    server.stop().await;
    drop(ws);
    sqlite.close().await.unwrap();
    drop(sqlite);
    let sqlite = Arc::new(SqliteLog::open(dir.path()).await.unwrap());
    let server = TestServer::start_with(
        "",
        sqlite.clone() as Arc<dyn EventLog>,
        Some(dir.path().to_owned()),
    )
    .await;
    let committed = sqlite
        .groups()
        .await
        .unwrap()
        .into_iter()
        .find(|g| g.name == "restart")
        .unwrap()
        .committed;
    assert_eq!(committed, 6, "the acknowledged prefix survived the restart");

    let mut ws = connect(&server.ws_url("/v1/ws?group=restart")).await;
    let mut again = BTreeSet::new();
    while again.len() < 4 {
        again.insert(next_json(&mut ws).await["offset"].as_u64().unwrap());
    }
    let extra = sync(&mut ws).await;
    assert!(extra.iter().all(|o| (7..=10).contains(o)), "{extra:?}");
    assert_eq!(
        again,
        (7..=10).collect(),
        "exactly the unacknowledged events come back"
    );
    send(&mut ws, json!({"op": "ack", "offsets": [7, 8, 9, 10]})).await;
    assert!(sync(&mut ws).await.is_empty());
    drop(ws);
    server.stop().await;
    sqlite.close().await.unwrap();
}
