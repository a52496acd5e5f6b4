//! The edge of the HTTP API: every error the router answers is JSON (a wrong method, a
//! long URI, too many headers, a WebSocket route without an upgrade), a declared body
//! over the limit is refused before it is read, and what hyper answers itself (before the
//! router) is what the README says.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// Sends `request` as raw bytes and reads the answer until the server closes or 10 s
/// pass; returns the status and the body.
pub(crate) async fn raw(addr: std::net::SocketAddr, request: &[u8]) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&chunk[..n]),
            }
            if complete(&answer) {
                break;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server answered within 10 s");
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    (status, head.to_owned(), body.to_owned())
}

/// Whether `answer` holds a whole response with a `content-length`.
fn complete(answer: &[u8]) -> bool {
    let text = String::from_utf8_lossy(answer);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    head.lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .is_some_and(|len| body.len() >= len)
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body:?}"))
}

#[tokio::test]
async fn a_wrong_method_is_a_json_405_naming_the_methods() {
    let server = TestServer::start("").await;
    let resp = client()
        .put(server.url("/v1/events"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    let allow = resp.headers()["allow"].to_str().unwrap().to_owned();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    let body: Value = resp.json().await.unwrap();
    assert_error(405, &body, 405, "method_not_allowed");
    assert!(body["error"]["message"].as_str().unwrap().contains("PUT"));
    server.stop().await;
}

#[tokio::test]
async fn a_long_uri_is_a_json_414_up_to_what_hyper_takes() {
    let server = TestServer::start("").await;
    let long = format!("/v1/events?type={}", "a".repeat(20 * 1024));
    let (status, body) = get(&server.url(&long), None).await;
    assert_error(status, &body, 414, "uri_too_long");
    // Over 64 KiB the http crate cannot hold the URI: hyper answers before the router,
    // with an empty body (the README lists this).
    let request = format!(
        "GET /v1/events?type={} HTTP/1.1\r\nhost: x\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let (status, _, body) = raw(server.addr, request.as_bytes()).await;
    assert_eq!(status, 414);
    assert!(body.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn two_hundred_extension_headers_are_a_json_431() {
    let server = TestServer::start("").await;
    let mut req = client()
        .post(server.url("/v1/events"))
        .header("ce-specversion", "1.0")
        .header("ce-id", "h-1")
        .header("ce-source", "test")
        .header("ce-type", "health.reading.hr")
        .header("content-type", "application/json");
    for i in 0..200 {
        req = req.header(format!("ce-ext{i}"), "x");
    }
    let resp = req.body("72").send().await.unwrap();
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    assert_error(status, &body, 431, "too_many_headers");
    assert_eq!(server.log.last_offset().await.unwrap(), 0);
    server.stop().await;
}

#[tokio::test]
async fn a_websocket_route_without_an_upgrade_is_a_json_400() {
    let server = TestServer::start("").await;
    let (status, body) = get(&server.url("/v1/ws?type=health.%3E"), None).await;
    assert_error(status, &body, 400, "websocket_required");
    server.stop().await;
}

#[tokio::test]
async fn a_declared_length_over_the_limit_is_refused_before_the_body() {
    // The request timeout is far longer than the client waits: only an answer that does
    // not wait for the ten gigabytes announced can arrive in time.
    let server = TestServer::start("[limits]\nrequest_timeout = \"10m\"").await;
    let request = b"POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/cloudevents+json\r\ncontent-length: 10000000000\r\n\r\n{\"specversion\":\"1.\"";
    let (status, head, body) = raw(server.addr, request).await;
    assert_eq!(status, 413, "{head}");
    assert_error(status, &json(&body), 413, "payload_too_large");
    server.stop().await;
}

#[tokio::test]
async fn a_raw_pattern_character_in_the_query_works_as_typed() {
    let server = TestServer::start("").await;
    publish(
        &server,
        vec![
            event("q-1", "health.reading.hr", serde_json::json!(1)),
            event("q-2", "ops.tick", serde_json::json!(2)),
        ],
    )
    .await;
    // What `curl '.../v1/events?type=health.>'` sends: a raw `>`, which the http crate
    // refuses; the server encodes it before hyper parses the request line.
    for target in ["/v1/events?type=health.>", "/v1/events?type=health.%3E"] {
        let request = format!("GET {target} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        let (status, head, body) = raw(server.addr, request.as_bytes()).await;
        assert_eq!(status, 200, "{target}: {head}");
        let events = json(&body)["events"].as_array().unwrap().clone();
        assert_eq!(events.len(), 1, "{target}: {body}");
        assert_eq!(events[0]["event"]["id"], "q-1");
    }
    // Twice on one keep-alive connection: each request line is read the same way.
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    for _ in 0..2 {
        stream
            .write_all(b"GET /v1/events?type=ops.> HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let mut chunk = [0u8; 4096];
        while !complete(&answer) {
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "answered");
            answer.extend_from_slice(&chunk[..n]);
        }
        let text = String::from_utf8(answer).unwrap();
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.contains("\"q-2\""), "{text}");
    }
    // A space cannot be told from the end of the target: that stays hyper's empty 400.
    let (status, _, body) = raw(
        server.addr,
        b"GET /v1/events?type=a b HTTP/1.1\r\nhost: x\r\n\r\n",
    )
    .await;
    assert_eq!(status, 400);
    assert!(body.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn extractor_rejections_are_json() {
    let server = TestServer::start("").await;
    // A path segment that is not UTF-8: axum's own plain-text rejection, rewritten.
    let (status, body) = post(
        &server.url("/v1/jobs/%FF/run"),
        "application/json",
        String::new(),
        None,
    )
    .await;
    assert_error(status, &body, 400, "invalid_parameter");
    server.stop().await;
}
