//! Groups, dead letters and the operations endpoints.

use serde_json::{json, Value};

use crate::support::*;

#[tokio::test]
async fn groups_report_committed_and_lag() {
    let server = TestServer::start("").await;
    publish(
        &server,
        (1..=3)
            .map(|i| event(&format!("l-{i}"), "health.reading.hr", json!(i)))
            .collect(),
    )
    .await;
    publish(&server, vec![event("x", "billing.x", json!(0))]).await;
    let mut config = pulse_core::GroupConfig::new(pulse_core::Pattern::parse("health.>").unwrap());
    config.max_deliver = 3;
    server.log.ensure_group("lagging", config).await.unwrap();
    let d = server.log.fetch("lagging", 1).await.unwrap();
    server
        .log
        .ack("lagging", &[d[0].event.offset])
        .await
        .unwrap();
    let (s, body) = get(&server.url("/v1/groups"), None).await;
    assert_eq!(s, 200, "{body}");
    let g = body["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "lagging")
        .unwrap();
    assert_eq!(g["pattern"], "health.>");
    assert_eq!(g["committed"], 1);
    assert_eq!(g["lag_events"], 2, "only matching events count");
    assert!(g["lag_seconds"].as_f64().unwrap() >= 0.0);
    let (_, metrics) = get(&server.url("/metrics"), None).await;
    let text = metrics.as_str().unwrap();
    assert!(
        text.contains("pulse_consumer_lag_events{group=\"lagging\"} 2"),
        "{text}"
    );
    server.stop().await;
}

#[tokio::test]
async fn dead_letter_errors() {
    let server = TestServer::start("").await;
    let (s, b) = get(&server.url("/v1/dlq?group=ghost"), None).await;
    assert_error(s, &b, 404, "unknown_group");
    let (s, b) = post(
        &server.url("/v1/dlq/77/redrive"),
        "application/json",
        String::new(),
        None,
    )
    .await;
    assert_error(s, &b, 404, "unknown_dead_letter");
    let (s, b) = post(
        &server.url("/v1/dlq/abc/redrive"),
        "application/json",
        String::new(),
        None,
    )
    .await;
    assert_error(s, &b, 400, "invalid_parameter");
    let (s, b) = get(&server.url("/v1/dlq?limit=0"), None).await;
    assert_error(s, &b, 400, "invalid_parameter");
    let (s, b) = get(&server.url("/v1/dlq"), None).await;
    assert_eq!(s, 200);
    assert_eq!(b, json!({"dead_letters": [], "next_after": 0}));
    server.stop().await;
}

#[tokio::test]
async fn operations_endpoints() {
    let server = TestServer::start("").await;
    assert_eq!(
        get(&server.url("/healthz"), None).await,
        (200, json!({"status": "ok"}))
    );
    assert_eq!(
        get(&server.url("/readyz"), None).await,
        (200, json!({"status": "ready"}))
    );
    publish(&server, vec![event("m", "a.b", json!(1))]).await;
    let (s, metrics) = get(&server.url("/metrics"), None).await;
    assert_eq!(s, 200);
    let text = metrics.as_str().unwrap();
    for name in [
        "pulse_events_published_total",
        "pulse_http_requests_total",
        "pulse_http_request_duration_seconds",
    ] {
        assert!(text.contains(name), "{name} missing from\n{text}");
    }
    assert!(text.contains("route=\"/v1/events\""), "{text}");
    let (s, spec) = get(&server.url("/openapi.json"), None).await;
    assert_eq!(s, 200);
    assert_eq!(spec["openapi"].as_str().map(|v| &v[..3]), Some("3.1"));
    let paths = spec["paths"].as_object().unwrap();
    for path in [
        "/v1/events",
        "/v1/stream",
        "/v1/ws",
        "/v1/subscriptions",
        "/v1/subscriptions/{id}",
        "/v1/groups",
        "/v1/groups/{group}",
        "/v1/dlq",
        "/v1/dlq/{id}/redrive",
        "/v1/aggregates",
        "/v1/jobs",
        "/v1/jobs/{name}/run",
        "/v1/jobs/{name}/runs",
        "/metrics",
        "/healthz",
        "/readyz",
        "/openapi.json",
    ] {
        assert!(paths.contains_key(path), "{path} is not documented");
    }
    let _: &Value = &spec["components"];
    server.stop().await;
}
