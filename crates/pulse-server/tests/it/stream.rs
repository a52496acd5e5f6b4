//! `GET /v1/stream`: Server-Sent Events, read with a real HTTP client.

use futures::StreamExt;
use serde_json::{json, Value};

use crate::support::*;

/// Reads SSE frames from a response body.
pub(crate) struct SseReader {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: String,
}

/// One SSE event.
#[derive(Debug)]
pub(crate) struct SseFrame {
    pub(crate) id: Option<String>,
    pub(crate) event: Option<String>,
    pub(crate) data: String,
}

impl SseReader {
    pub(crate) async fn open(url: &str, last_event_id: Option<&str>) -> Self {
        let mut req = client().get(url);
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let resp = req.send().await.expect("stream opens");
        assert_eq!(resp.status(), 200);
        assert!(resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        Self {
            body: resp.bytes_stream().boxed(),
            buffer: String::new(),
        }
    }

    /// The next event frame (comments and keep-alives skipped).
    pub(crate) async fn next(&mut self) -> SseFrame {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut frame = SseFrame {
                    id: None,
                    event: None,
                    data: String::new(),
                };
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        frame.id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        frame.event = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        frame.data.push_str(v.trim_start());
                    }
                }
                if frame.event.is_some() || !frame.data.is_empty() {
                    return frame;
                }
                continue;
            }
            let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), self.body.next())
                .await
                .expect("an SSE frame arrives")
                .expect("the stream stays open")
                .expect("the stream reads");
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

#[tokio::test]
async fn tail_streams_with_offsets_and_resumes_with_last_event_id() {
    let server = TestServer::start("").await;
    publish(
        &server,
        (1..=3)
            .map(|i| event(&format!("s-{i}"), "health.reading.hr", json!(i)))
            .collect(),
    )
    .await;
    publish(&server, vec![event("other", "billing.x", json!(0))]).await;

    let mut sse = SseReader::open(&server.url("/v1/stream?type=health.>&after=0"), None).await;
    for want in 1..=3u64 {
        let f = sse.next().await;
        assert_eq!(f.id.as_deref(), Some(want.to_string().as_str()));
        assert_eq!(f.event.as_deref(), Some("cloudevent"));
        let e: Value = serde_json::from_str(&f.data).unwrap();
        assert_eq!(e["data"], want);
    }
    // Live: published after the stream opened.
    publish(&server, vec![event("s-5", "health.reading.hr", json!(5))]).await;
    let f = sse.next().await;
    assert_eq!(
        f.id.as_deref(),
        Some("5"),
        "billing.x at offset 4 is filtered out"
    );
    drop(sse);

    let mut resumed =
        SseReader::open(&server.url("/v1/stream?type=health.>&after=0"), Some("2")).await;
    assert_eq!(
        resumed.next().await.id.as_deref(),
        Some("3"),
        "Last-Event-ID wins over after"
    );
    drop(resumed);
    server.stop().await;
}

#[tokio::test]
async fn group_stream_acknowledges_what_it_sent() {
    let server = TestServer::start("").await;
    publish(
        &server,
        (1..=4)
            .map(|i| event(&format!("g-{i}"), "health.reading.hr", json!(i)))
            .collect(),
    )
    .await;
    let mut sse = SseReader::open(&server.url("/v1/stream?type=health.>&group=dash"), None).await;
    for want in 1..=4u64 {
        assert_eq!(sse.next().await.id.unwrap(), want.to_string());
    }
    publish(&server, vec![event("g-5", "health.reading.hr", json!(5))]).await;
    assert_eq!(sse.next().await.id.as_deref(), Some("5"));
    // Taking offset 5 means 1..4 were written out and are acknowledged.
    let committed = eventually(10, || async {
        let (_, body) = get(&server.url("/v1/groups"), None).await;
        let g = body["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == "dash")
            .cloned()?;
        (g["committed"].as_u64()? >= 4).then_some(g["committed"].as_u64()?)
    })
    .await;
    assert!(committed >= 4);
    drop(sse);
    server.stop().await;
}

#[tokio::test]
async fn stream_errors_are_http_errors() {
    let server = TestServer::start("").await;
    let (s, b) = get(&server.url("/v1/stream?type=a..b"), None).await;
    assert_error(s, &b, 400, "invalid_pattern");
    let (s, b) = get(&server.url("/v1/stream?group=nobody"), None).await;
    assert_error(s, &b, 404, "unknown_group");
    let (s, b) = get(&server.url("/v1/stream?type=a.b&group=bad%20name"), None).await;
    assert_error(s, &b, 400, "invalid_parameter");
    let resp = client()
        .get(server.url("/v1/stream?type=a.b"))
        .header("last-event-id", "seven")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    server.stop().await;
}
