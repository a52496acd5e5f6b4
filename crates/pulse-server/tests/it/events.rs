//! `POST /v1/events` in all three modes and `GET /v1/events`, with every error path.

use serde_json::{json, Value};

use crate::support::*;

#[tokio::test]
async fn structured_publish_is_stored_and_replayed() {
    let server = TestServer::start("").await;
    let e = event("e-1", "health.reading.heart_rate", json!({"value": 72}));
    let (status, body) = post(&server.url("/v1/events"), STRUCTURED, e.to_string(), None).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["events"][0]["id"], "e-1");
    assert_eq!(body["events"][0]["offset"], 1);
    assert_eq!(body["events"][0]["duplicate"], false);

    // The same id again is a duplicate with the original offset.
    let (status, body) = post(&server.url("/v1/events"), STRUCTURED, e.to_string(), None).await;
    assert_eq!(status, 202);
    assert_eq!(body["events"][0]["offset"], 1);
    assert_eq!(body["events"][0]["duplicate"], true);

    let (status, page) = get(&server.url("/v1/events?type=health.>&after=0"), None).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["next_after"], 1);
    let got = &page["events"][0];
    assert_eq!(got["offset"], 1);
    assert_eq!(got["event"]["data"]["value"], 72);
    assert_eq!(got["event"]["subject"], "user-1");
    assert!(got["event"]["time"].is_string(), "the log sets the time");
    server.stop().await;
}

#[tokio::test]
async fn batch_is_all_or_nothing_and_pages() {
    let server = TestServer::start("").await;
    let mut batch: Vec<Value> = (0..5)
        .map(|i| event(&format!("b-{i}"), "a.b", json!(i)))
        .collect();
    batch[3]["type"] = json!("a..b");
    let (status, body) = post(
        &server.url("/v1/events"),
        BATCH,
        Value::Array(batch.clone()).to_string(),
        None,
    )
    .await;
    assert_error(status, &body, 422, "invalid_event");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("event 3"), "{message}");
    let (_, page) = get(&server.url("/v1/events"), None).await;
    assert_eq!(
        page["events"].as_array().unwrap().len(),
        0,
        "nothing stored"
    );

    batch[3]["type"] = json!("a.b");
    let offsets = publish(&server, batch).await;
    assert_eq!(offsets, vec![1, 2, 3, 4, 5]);
    let (_, page) = get(&server.url("/v1/events?after=1&limit=2"), None).await;
    let got: Vec<u64> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(got, vec![2, 3]);
    assert_eq!(page["next_after"], 3);
    let (_, page) = get(&server.url("/v1/events?after=5"), None).await;
    assert_eq!(page["next_after"], 5, "an empty page keeps the given after");
    let (_, page) = get(
        &server.url("/v1/events?since=2000-01-01T00:00:00Z&type=a.*"),
        None,
    )
    .await;
    assert_eq!(page["events"].as_array().unwrap().len(), 5);
    let (_, page) = get(&server.url("/v1/events?since=2999-01-01T00:00:00Z"), None).await;
    assert_eq!(page["events"].as_array().unwrap().len(), 0);
    server.stop().await;
}

#[tokio::test]
async fn binary_mode_keeps_headers_and_body() {
    let server = TestServer::start("").await;
    let resp = client()
        .post(server.url("/v1/events"))
        .header("content-type", "application/json")
        .header("ce-specversion", "1.0")
        .header("ce-id", "bin-1")
        .header("ce-source", "device-7")
        .header("ce-type", "health.reading.spo2")
        .header("ce-subject", "user-9")
        .header("ce-time", "2026-01-02T03:04:05Z")
        .header("ce-traceparent", "00-abc")
        .body(r#"{"value":97}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let (_, page) = get(&server.url("/v1/events"), None).await;
    let e = &page["events"][0]["event"];
    assert_eq!(e["id"], "bin-1");
    assert_eq!(e["source"], "device-7");
    assert_eq!(e["subject"], "user-9");
    assert_eq!(e["time"], "2026-01-02T03:04:05Z");
    assert_eq!(e["traceparent"], "00-abc");
    assert_eq!(e["data"]["value"], 97);
    server.stop().await;
}

#[tokio::test]
async fn every_publish_error_has_its_status_and_code() {
    let server = TestServer::start("[limits]\nmax_body_bytes = 2000\n").await;
    let url = server.url("/v1/events");
    let (s, b) = post(&url, STRUCTURED, "{\"specversion\": ".into(), None).await;
    assert_error(s, &b, 400, "malformed_json");
    let (s, b) = post(&url, BATCH, "{}".into(), None).await;
    assert_error(s, &b, 400, "malformed_json");
    let missing = json!({"specversion": "1.0", "id": "x", "type": "a.b"});
    let (s, b) = post(&url, STRUCTURED, missing.to_string(), None).await;
    assert_error(s, &b, 422, "invalid_event");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("source"),
        "{b}"
    );
    let bad_type = event("y", "a b", json!(1));
    let (s, b) = post(&url, STRUCTURED, bad_type.to_string(), None).await;
    assert_error(s, &b, 422, "invalid_event");
    let (s, b) = post(&url, "text/plain", "hello".into(), None).await;
    assert_error(s, &b, 415, "unsupported_media_type");
    let big = event("z", "a.b", json!("x".repeat(5000)));
    let (s, b) = post(&url, STRUCTURED, big.to_string(), None).await;
    assert_error(s, &b, 413, "payload_too_large");
    let (s, b) = post(&url, BATCH, "[]".into(), None).await;
    assert_error(s, &b, 422, "invalid_event");
    // Nothing of the above was stored.
    let (_, page) = get(&server.url("/v1/events"), None).await;
    assert_eq!(page["events"].as_array().unwrap().len(), 0);
    server.stop().await;
}

#[tokio::test]
async fn every_read_error_has_its_status_and_code() {
    let server = TestServer::start("").await;
    let cases = [
        ("/v1/events?type=a..b", 400, "invalid_pattern"),
        ("/v1/events?type=a.>.b", 400, "invalid_pattern"),
        ("/v1/events?limit=0", 400, "invalid_parameter"),
        ("/v1/events?limit=many", 400, "invalid_parameter"),
        ("/v1/events?after=-1", 400, "invalid_parameter"),
        ("/v1/events?since=yesterday", 400, "invalid_parameter"),
        ("/v1/events?colour=red", 400, "invalid_parameter"),
        ("/v1/nothing", 404, "not_found"),
    ];
    for (path, status, code) in cases {
        let (s, b) = get(&server.url(path), None).await;
        assert_error(s, &b, status, code);
    }
    server.stop().await;
}

#[tokio::test]
async fn memory_events_are_answered_without_offset_and_not_stored() {
    let server =
        TestServer::start("[[durability]]\npattern = \"debug.>\"\nmode = \"memory\"\n").await;
    let batch = vec![
        event("m-1", "debug.trace", json!(1)),
        event("p-1", "health.x", json!(2)),
    ];
    let (s, b) = post(
        &server.url("/v1/events"),
        BATCH,
        Value::Array(batch).to_string(),
        None,
    )
    .await;
    assert_eq!(s, 202, "{b}");
    assert_eq!(b["events"][0]["offset"], Value::Null);
    assert_eq!(b["events"][1]["offset"], 1);
    let (_, page) = get(&server.url("/v1/events"), None).await;
    let types: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, vec!["health.x"]);
    server.stop().await;
}

#[tokio::test]
async fn a_batch_that_repeats_an_id_is_refused_naming_both() {
    let server =
        TestServer::start("[[durability]]\npattern = \"debug.>\"\nmode = \"memory\"\n").await;
    let batch = vec![
        event("m-1", "debug.trace", json!(1)),
        event("inv-1", "billing.invoice", json!({"amount": 1})),
        event("p-2", "billing.paid", json!(2)),
        event("inv-1", "billing.invoice", json!({"amount": 2})),
    ];
    let (s, b) = post(
        &server.url("/v1/events"),
        BATCH,
        Value::Array(batch).to_string(),
        None,
    )
    .await;
    assert_error(s, &b, 422, "invalid_event");
    let message = b["error"]["message"].as_str().unwrap();
    assert!(message.contains("events 1 and 3"), "{b}");
    // Memory events count too: the index is the request's.
    let (s, b) = post(
        &server.url("/v1/events"),
        BATCH,
        json!([
            event("m-1", "debug.trace", json!(1)),
            event("m-1", "debug.trace", json!(2))
        ])
        .to_string(),
        None,
    )
    .await;
    assert_error(s, &b, 422, "invalid_event");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("events 0 and 1"),
        "{b}"
    );
    let (_, page) = get(&server.url("/v1/events"), None).await;
    assert_eq!(page["events"], json!([]), "nothing was stored");
    // Sent again one at a time, the repeat is the usual duplicate.
    let first = event("inv-1", "billing.invoice", json!({"amount": 1})).to_string();
    let (s, b) = post(&server.url("/v1/events"), STRUCTURED, first.clone(), None).await;
    assert_eq!(
        (s, &b["events"][0]["duplicate"]),
        (202, &json!(false)),
        "{b}"
    );
    let (s, b) = post(&server.url("/v1/events"), STRUCTURED, first, None).await;
    assert_eq!(
        (s, &b["events"][0]["duplicate"]),
        (202, &json!(true)),
        "{b}"
    );
    server.stop().await;
}
