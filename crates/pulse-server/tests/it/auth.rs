//! API keys: 401 without or with a wrong key, 403 naming the missing right, open
//! operations endpoints, `?api_key=` on streaming endpoints.

use futures::StreamExt;
use serde_json::json;

use crate::support::*;

const CONFIG: &str = r#"
[[api_keys]]
name = "ingest"
key = "ingest-key-0123456789"
publish = ["health.>"]

[[api_keys]]
name = "reader"
key = "reader-key-0123456789"
subscribe = ["health.reading.*"]

[[api_keys]]
name = "ops"
key = "ops-key-0123456789ab"
admin = true
"#;

const INGEST: Option<&str> = Some("ingest-key-0123456789");
const READER: Option<&str> = Some("reader-key-0123456789");
const OPS: Option<&str> = Some("ops-key-0123456789ab");

#[tokio::test]
async fn keys_and_rights_are_enforced() {
    let server = TestServer::start(CONFIG).await;
    let url = server.url("/v1/events");
    let e = event("k-1", "health.reading.hr", json!(60)).to_string();

    let (s, b) = post(&url, STRUCTURED, e.clone(), None).await;
    assert_error(s, &b, 401, "missing_api_key");
    let (s, b) = post(&url, STRUCTURED, e.clone(), Some("not-a-key-at-all-000")).await;
    assert_error(s, &b, 401, "invalid_api_key");
    let (s, b) = post(&url, STRUCTURED, e.clone(), READER).await;
    assert_error(s, &b, 403, "forbidden");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("publish"),
        "{b}"
    );
    let other = event("k-2", "billing.invoice", json!(1)).to_string();
    let (s, b) = post(&url, STRUCTURED, other, INGEST).await;
    assert_error(s, &b, 403, "forbidden");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("billing.invoice"),
        "{b}"
    );
    let (s, _) = post(&url, STRUCTURED, e, INGEST).await;
    assert_eq!(s, 202);

    let (s, b) = get(&server.url("/v1/events?type=health.reading.hr"), INGEST).await;
    assert_error(s, &b, 403, "forbidden");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("subscribe"),
        "{b}"
    );
    let (s, b) = get(&server.url("/v1/events?type=health.>"), READER).await;
    assert_error(s, &b, 403, "forbidden");
    let (s, b) = get(&server.url("/v1/events?type=health.reading.*"), READER).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["events"].as_array().unwrap().len(), 1);

    let (s, b) = get(&server.url("/v1/groups"), READER).await;
    assert_error(s, &b, 403, "forbidden");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("admin"),
        "{b}"
    );
    let (s, _) = get(&server.url("/v1/groups"), OPS).await;
    assert_eq!(s, 200);
    let (s, b) = get(&server.url("/v1/dlq"), None).await;
    assert_error(s, &b, 401, "missing_api_key");

    for open in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        let (s, _) = get(&server.url(open), None).await;
        assert_eq!(s, 200, "{open} needs no key");
    }
    server.stop().await;
}

#[tokio::test]
async fn streams_take_the_key_in_the_query() {
    let server = TestServer::start(CONFIG).await;
    let denied = client()
        .get(server.url("/v1/stream?type=health.reading.*&after=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 401);
    let (s, _) = post(
        &server.url("/v1/events"),
        STRUCTURED,
        event("q-1", "health.reading.hr", json!(1)).to_string(),
        INGEST,
    )
    .await;
    assert_eq!(s, 202);
    let resp = client()
        .get(server.url("/v1/stream?type=health.reading.*&after=0&api_key=reader-key-0123456789"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    while !text.contains("\n\n") {
        let chunk = body.next().await.expect("stream stays open").unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(text.contains("id: 1"), "{text}");
    // The key in the query of a non-streaming endpoint is not accepted.
    let (s, b) = get(
        &server.url("/v1/events?api_key=reader-key-0123456789"),
        None,
    )
    .await;
    assert_error(s, &b, 401, "missing_api_key");
    drop(body);
    server.stop().await;
}
