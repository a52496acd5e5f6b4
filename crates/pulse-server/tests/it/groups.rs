//! Consumer groups and rights: a group's pattern is part of the group, so a key that may
//! subscribe to other types cannot join it with its own pattern and take its deliveries
//! (SSE, WebSocket, webhooks); an administrator changes the pattern with
//! `PUT /v1/groups/{group}`.

use serde_json::{json, Value};

use crate::support::*;
use crate::ws::{connect, next_json, send};

const CONFIG: &str = r#"
[[api_keys]]
name = "billing"
key = "billing-key-0123456789"
subscribe = ["billing.>"]

[[api_keys]]
name = "dashboard"
key = "dashboard-key-0123456789"
subscribe = ["health.reading.>"]

[[api_keys]]
name = "ingest"
key = "ingest-key-0123456789"
publish = [">"]

[[api_keys]]
name = "ops"
key = "ops-key-0123456789ab"
admin = true
"#;

const BILLING: &str = "billing-key-0123456789";
const DASHBOARD: &str = "dashboard-key-0123456789";
const INGEST: Option<&str> = Some("ingest-key-0123456789");
const OPS: Option<&str> = Some("ops-key-0123456789ab");

/// The status and JSON body a WebSocket upgrade was refused with.
async fn ws_refusal(url: &str) -> (u16, Value) {
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let body = resp
                .body()
                .as_deref()
                .map(|b| serde_json::from_slice(b).unwrap_or(Value::Null))
                .unwrap_or(Value::Null);
            (resp.status().as_u16(), body)
        }
        Ok(_) => panic!("{url}: the upgrade was accepted"),
        Err(other) => panic!("{url}: expected an HTTP refusal, got {other}"),
    }
}

async fn put_json(url: &str, body: Value, key: Option<&str>) -> (u16, Value) {
    let mut req = client().put(url).json(&body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.expect("request is sent");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn group_pattern(server: &TestServer, name: &str) -> String {
    let (status, body) = get(&server.url("/v1/groups"), OPS).await;
    assert_eq!(status, 200, "{body}");
    body["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == name)
        .unwrap_or_else(|| panic!("group {name} is listed: {body}"))["pattern"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn a_subscribe_key_cannot_take_over_another_group() {
    let server = TestServer::start(CONFIG).await;
    let invoice = event("inv-1", "billing.invoice", json!({"amount": 120}));
    let (s, b) = post(
        &server.url("/v1/events"),
        STRUCTURED,
        invoice.to_string(),
        INGEST,
    )
    .await;
    assert_eq!(s, 202, "{b}");

    // The billing service makes its group and holds the invoice without acking it.
    let mut billing = connect(&server.ws_url(&format!(
        "/v1/ws?group=billing&type=billing.>&api_key={BILLING}"
    )))
    .await;
    let frame = next_json(&mut billing).await;
    assert_eq!(frame["event"]["id"], "inv-1", "{frame}");
    drop(billing);

    // SSE without a pattern: the rights are the group's.
    let (s, b) = get(
        &server.url(&format!("/v1/stream?group=billing&api_key={DASHBOARD}")),
        None,
    )
    .await;
    assert_error(s, &b, 403, "forbidden");
    // With the dashboard's own pattern, on SSE and on WebSocket: a conflict naming both.
    let (s, b) = get(
        &server.url(&format!(
            "/v1/stream?group=billing&type=health.reading.%3E&api_key={DASHBOARD}"
        )),
        None,
    )
    .await;
    assert_error(s, &b, 409, "conflict");
    let (s, b) = ws_refusal(&server.ws_url(&format!(
        "/v1/ws?group=billing&type=health.reading.%3E&api_key={DASHBOARD}"
    )))
    .await;
    assert_error(s, &b, 409, "conflict");
    assert!(
        message(&b).contains("billing.>") && message(&b).contains("health.reading.>"),
        "{b}"
    );
    // With the group's pattern, or none: the dashboard lacks the right to it.
    for path in [
        format!("/v1/ws?group=billing&type=billing.>&api_key={DASHBOARD}"),
        format!("/v1/ws?group=billing&api_key={DASHBOARD}"),
    ] {
        let (s, b) = ws_refusal(&server.ws_url(&path)).await;
        assert_error(s, &b, 403, "forbidden");
    }
    assert_eq!(group_pattern(&server, "billing").await, "billing.>");

    // The billing service still gets its invoice, with its data, and acks it.
    let mut billing =
        connect(&server.ws_url(&format!("/v1/ws?group=billing&api_key={BILLING}"))).await;
    let frame = next_json(&mut billing).await;
    assert_eq!(
        (&frame["event"]["id"], &frame["event"]["data"]["amount"]),
        (&json!("inv-1"), &json!(120)),
        "{frame}"
    );
    send(
        &mut billing,
        json!({"op": "ack", "offsets": [frame["offset"]]}),
    )
    .await;
    drop(billing);
    server.stop().await;
}

#[tokio::test]
async fn a_webhooks_group_cannot_be_re_pointed() {
    let server = TestServer::start(CONFIG).await;
    let (s, b) = post(
        &server.url("/v1/subscriptions"),
        "application/json",
        json!({"pattern": "billing.>", "group": "invoices", "url": "http://127.0.0.1:9/hook"})
            .to_string(),
        OPS,
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = ws_refusal(&server.ws_url(&format!(
        "/v1/ws?group=invoices&type=health.reading.%3E&api_key={DASHBOARD}"
    )))
    .await;
    assert_error(s, &b, 409, "conflict");
    let (s, b) = get(
        &server.url(&format!(
            "/v1/stream?group=invoices&type=health.reading.%3E&api_key={DASHBOARD}"
        )),
        None,
    )
    .await;
    assert_error(s, &b, 409, "conflict");
    assert_eq!(group_pattern(&server, "invoices").await, "billing.>");
    server.stop().await;

    // On a group made by a subscriber, a webhook with another pattern is a conflict.
    let server = TestServer::start(CONFIG).await;
    let ws = connect(&server.ws_url(&format!(
        "/v1/ws?group=dash&type=health.reading.>&api_key={DASHBOARD}"
    )))
    .await;
    drop(ws);
    let (s, b) = post(
        &server.url("/v1/subscriptions"),
        "application/json",
        json!({"pattern": ">", "group": "dash", "url": "http://127.0.0.1:9/hook"}).to_string(),
        OPS,
    )
    .await;
    assert_error(s, &b, 409, "conflict");
    assert_eq!(group_pattern(&server, "dash").await, "health.reading.>");
    server.stop().await;
}

#[tokio::test]
async fn an_administrator_changes_a_groups_pattern() {
    let server = TestServer::start(CONFIG).await;
    let ws = connect(&server.ws_url(&format!(
        "/v1/ws?group=shared&type=billing.>&api_key={BILLING}"
    )))
    .await;
    drop(ws);
    let url = server.url("/v1/groups/shared");
    let (s, b) = put_json(
        &url,
        json!({"pattern": "health.reading.>"}),
        Some(DASHBOARD),
    )
    .await;
    assert_error(s, &b, 403, "forbidden");
    let (s, b) = put_json(&url, json!({"pattern": "a..b"}), OPS).await;
    assert_error(s, &b, 400, "invalid_pattern");
    let (s, b) = put_json(
        &server.url("/v1/groups/nobody"),
        json!({"pattern": "a.>"}),
        OPS,
    )
    .await;
    assert_error(s, &b, 404, "unknown_group");
    let (s, b) = put_json(&url, json!({"pattern": "health.reading.>"}), OPS).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["pattern"], "health.reading.>");

    // Now the dashboard may use it, and billing no longer.
    let (s, b) = ws_refusal(&server.ws_url(&format!(
        "/v1/ws?group=shared&type=billing.>&api_key={BILLING}"
    )))
    .await;
    assert_error(s, &b, 409, "conflict");
    let (s, b) = post(
        &server.url("/v1/events"),
        STRUCTURED,
        event("hr-1", "health.reading.hr", json!(61)).to_string(),
        INGEST,
    )
    .await;
    assert_eq!(s, 202, "{b}");
    let mut dashboard =
        connect(&server.ws_url(&format!("/v1/ws?group=shared&api_key={DASHBOARD}"))).await;
    assert_eq!(next_json(&mut dashboard).await["event"]["id"], "hr-1");
    drop(dashboard);

    // A webhook's group: its subscription follows the change.
    let (s, b) = post(
        &server.url("/v1/subscriptions"),
        "application/json",
        json!({"pattern": "billing.>", "group": "hooked", "url": "http://127.0.0.1:9/hook"})
            .to_string(),
        OPS,
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = put_json(
        &server.url("/v1/groups/hooked"),
        json!({"pattern": "billing.invoice.>"}),
        OPS,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let (_, subs) = get(&server.url("/v1/subscriptions"), OPS).await;
    assert_eq!(
        subs["subscriptions"][0]["pattern"], "billing.invoice.>",
        "{subs}"
    );
    server.stop().await;
}
