//! `GET /v1/ws`: WebSocket subscriptions through a consumer group (acks, nacks with
//! delay, the bound on unacknowledged deliveries, redelivery after a disconnect) and
//! live tails with memory events.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

pub(crate) type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub(crate) async fn connect(url: &str) -> Socket {
    tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket connects")
        .0
}

/// The next JSON text frame.
pub(crate) async fn next_json(socket: &mut Socket) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a frame arrives")
            .expect("socket open")
            .expect("frame reads");
        if let Message::Text(t) = msg {
            return serde_json::from_str(t.as_str()).unwrap();
        }
    }
}

pub(crate) async fn send(socket: &mut Socket, v: Value) {
    socket
        .send(Message::Text(v.to_string().into()))
        .await
        .unwrap();
}

#[tokio::test]
async fn group_delivery_ack_nack_and_bound() {
    let server = TestServer::start("").await;
    let events = (1..=5)
        .map(|i| {
            let mut e = event(&format!("w-{i}"), "health.reading.hr", json!(i));
            e["subject"] = json!(format!("user-{i}"));
            e
        })
        .collect();
    publish(&server, events).await;
    let mut ws = connect(&server.ws_url("/v1/ws?type=health.>&group=g1&max_unacked=2")).await;
    let a = next_json(&mut ws).await;
    let b = next_json(&mut ws).await;
    assert_eq!(
        (
            a["kind"].as_str(),
            a["offset"].as_u64(),
            a["attempt"].as_u64()
        ),
        (Some("event"), Some(1), Some(1))
    );
    assert_eq!(b["offset"], 2);
    assert_eq!(a["event"]["data"], 1);
    // The bound holds: the next frame answers a message sent after the two arrived,
    // so a third delivery would have come before it.
    send(&mut ws, json!({"op": "dance"})).await;
    let frame = next_json(&mut ws).await;
    assert_eq!(frame["kind"], "error", "{frame}");
    assert_eq!(frame["error"]["code"], "malformed_json");

    send(&mut ws, json!({"op": "ack", "offsets": [1]})).await;
    assert_eq!(next_json(&mut ws).await["offset"], 3);
    send(
        &mut ws,
        json!({"op": "nack", "offset": 2, "delay_ms": 50, "error": "try later"}),
    )
    .await;
    // Offset 2 comes back with attempt 2; 4 may come first.
    let mut seen = Vec::new();
    while !seen.iter().any(|f: &Value| f["offset"] == 2) {
        let f = next_json(&mut ws).await;
        seen.push(f.clone());
        send(&mut ws, json!({"op": "ack", "offsets": [f["offset"]]})).await;
    }
    let again = seen.iter().find(|f| f["offset"] == 2).unwrap();
    assert_eq!(again["attempt"], 2);

    drop(ws);
    server.stop().await;
}

#[tokio::test]
async fn unacked_deliveries_go_to_the_next_connection() {
    let server = TestServer::start("").await;
    publish(
        &server,
        vec![event("r-1", "a.b", json!(1)), event("r-2", "a.b", json!(2))],
    )
    .await;
    let mut first = connect(&server.ws_url("/v1/ws?type=a.>&group=g2")).await;
    let one = next_json(&mut first).await;
    assert_eq!(one["offset"], 1);
    send(&mut first, json!({"op": "ack", "offsets": [1]})).await;
    // Offset 2 shares the subject, so it follows the ack.
    assert_eq!(next_json(&mut first).await["offset"], 2);
    first.close(None).await.unwrap();
    drop(first);

    let mut second = connect(&server.ws_url("/v1/ws?group=g2")).await;
    let f = next_json(&mut second).await;
    assert_eq!(
        f["offset"], 2,
        "the unacknowledged event is redelivered, the acked one is not"
    );
    assert!(f["attempt"].as_u64().unwrap() >= 2);
    drop(second);
    server.stop().await;
}

#[tokio::test]
async fn tail_gets_persistent_and_memory_events() {
    let server =
        TestServer::start("[[durability]]\npattern = \"debug.trace\"\nmode = \"memory\"\n").await;
    publish(&server, vec![event("old", "debug.persist", json!(0))]).await;
    let mut ws = connect(&server.ws_url("/v1/ws?type=debug.>")).await;
    let first = wait_until_tailing(&server, &mut ws).await;
    assert_ne!(
        first["event"]["id"], "old",
        "a tail starts at the current end"
    );
    let (s, _) = post(
        &server.url("/v1/events"),
        STRUCTURED,
        event("mem-1", "debug.trace", json!("x")).to_string(),
        None,
    )
    .await;
    assert_eq!(s, 202);
    let mut frame = next_json(&mut ws).await;
    while frame["event"]["id"] != "mem-1" {
        frame = next_json(&mut ws).await;
    }
    assert_eq!(frame["offset"], Value::Null);
    drop(ws);
    server.stop().await;
}

#[tokio::test]
async fn websocket_request_errors_are_http_errors() {
    let server = TestServer::start("").await;
    for (path, status) in [
        ("/v1/ws?group=missing", 404),
        ("/v1/ws?type=a..b", 400),
        ("/v1/ws?type=a.b&max_unacked=0", 400),
    ] {
        match tokio_tungstenite::connect_async(server.ws_url(path)).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status().as_u16(), status, "{path}")
            }
            other => panic!(
                "{path}: expected an HTTP error, got {:?}",
                other.map(|_| ())
            ),
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn slow_tail_is_told_how_many_memory_events_it_missed() {
    let config = "[[durability]]\npattern = \"debug.trace\"\nmode = \"memory\"\n";
    let server = TestServer::start(config).await;
    let mut ws = connect(&server.ws_url("/v1/ws?type=debug.>")).await;
    wait_until_tailing(&server, &mut ws).await;
    const PUBLISHED: u64 = 40_000;
    // The reader reads nothing while everything is published.
    crate::stream::publish_bulky_memory_events(&server, PUBLISHED as usize).await;
    let (mut received, mut missed, mut missed_frames) = (0u64, 0u64, 0u64);
    while received + missed < PUBLISHED {
        let frame = next_json(&mut ws).await;
        match frame["kind"].as_str() {
            // A late probe (persistent, with an offset) is not one of the memory events.
            Some("event") if frame["offset"].is_u64() => {}
            Some("event") => {
                assert_eq!(frame["event"]["type"], "debug.trace");
                received += 1;
            }
            Some("missed") => {
                missed += frame["missed"].as_u64().unwrap();
                missed_frames += 1;
            }
            _ => panic!("unexpected frame {frame}"),
        }
    }
    assert_eq!(
        received + missed,
        PUBLISHED,
        "what was received and missed is what was published"
    );
    assert!(
        missed_frames > 0 && missed > 0,
        "the slow reader fell behind and was told"
    );
    drop(ws);
    server.stop().await;
}

/// Publishes persistent `debug.persist` probes until one arrives on the tail `ws`, so the tail
/// is known to be subscribed; returns that first frame.
async fn wait_until_tailing(server: &TestServer, ws: &mut Socket) -> Value {
    let mut n = 0;
    loop {
        n += 1;
        let probe = event(&format!("probe-{n}"), "debug.persist", json!(n));
        let (s, _) = post(
            &server.url("/v1/events"),
            STRUCTURED,
            probe.to_string(),
            None,
        )
        .await;
        assert_eq!(s, 202);
        if let Ok(Some(Ok(Message::Text(t)))) =
            tokio::time::timeout(Duration::from_millis(500), ws.next()).await
        {
            return serde_json::from_str::<Value>(t.as_str()).unwrap();
        }
    }
}
