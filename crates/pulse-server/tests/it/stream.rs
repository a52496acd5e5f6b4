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

/// Acknowledges `offsets` of `group` over HTTP, as an SSE consumer does.
pub(crate) async fn ack(server: &TestServer, group: &str, offsets: &[u64]) {
    let (status, body) = post(
        &server.url(&format!("/v1/groups/{group}/ack")),
        "application/json",
        json!({ "offsets": offsets }).to_string(),
        None,
    )
    .await;
    assert_eq!(status, 204, "{body}");
}

async fn committed(server: &TestServer, group: &str) -> Option<u64> {
    let (_, body) = get(&server.url("/v1/groups"), None).await;
    body["groups"]
        .as_array()?
        .iter()
        .find(|g| g["name"] == group)?["committed"]
        .as_u64()
}

/// Events on distinct subjects, so a group may hand out all of them at once.
fn spread(prefix: &str, n: u64) -> Vec<Value> {
    (1..=n)
        .map(|i| {
            let mut e = event(&format!("{prefix}-{i}"), "health.reading.hr", json!(i));
            e["subject"] = json!(format!("user-{i}"));
            e
        })
        .collect()
}

#[tokio::test]
async fn group_stream_redelivers_what_the_client_did_not_acknowledge() {
    let server = TestServer::start("").await;
    for chunk in spread("g", 2000).chunks(500) {
        publish(&server, chunk.to_vec()).await;
    }
    let url = server.url("/v1/stream?type=health.>&group=dash&max_unacked=1000");
    let mut sse = SseReader::open(&url, None).await;
    let mut seen = Vec::new();
    while seen.len() < 204 {
        seen.push(sse.next().await.id.unwrap().parse::<u64>().unwrap());
    }
    // Writing to the socket acknowledges nothing: only what the client acks is done.
    ack(&server, "dash", &seen[..100]).await;
    let acked: std::collections::BTreeSet<u64> = seen[..100].iter().copied().collect();
    assert_eq!(committed(&server, "dash").await, Some(100));
    // The reader crashes: the connection is reset with 104 events read and not acked.
    drop(sse);

    let mut resumed = SseReader::open(&url, Some(&seen[203].to_string())).await;
    let mut again = std::collections::BTreeSet::new();
    while again.len() < 1900 {
        let f = resumed.next().await;
        assert_eq!(f.event.as_deref(), Some("cloudevent"));
        let offset: u64 = f.id.unwrap().parse().unwrap();
        assert!(
            !acked.contains(&offset),
            "acknowledged offset {offset} came back"
        );
        again.insert(offset);
        if again.len() % 500 == 0 {
            let window: Vec<u64> = again.iter().copied().collect();
            ack(&server, "dash", &window).await;
        }
    }
    let expected: std::collections::BTreeSet<u64> =
        (1..=2000).filter(|o| !acked.contains(o)).collect();
    assert_eq!(
        again, expected,
        "every unacknowledged event is delivered again, none lost"
    );
    ack(&server, "dash", &again.iter().copied().collect::<Vec<_>>()).await;
    assert_eq!(committed(&server, "dash").await, Some(2000));
    drop(resumed);
    server.stop().await;
}

#[tokio::test]
async fn group_stream_holds_at_most_max_unacked_and_nack_redelivers() {
    let server = TestServer::start("").await;
    publish(&server, spread("m", 5)).await;
    let url = server.url("/v1/stream?type=health.>&group=few&max_unacked=2");
    let mut sse = SseReader::open(&url, None).await;
    let first = [sse.next().await.id.unwrap(), sse.next().await.id.unwrap()];
    assert_eq!(first, ["1".to_owned(), "2".to_owned()]);
    // Room for one more once one is acknowledged, and the nacked one comes back.
    ack(&server, "few", &[1]).await;
    assert_eq!(sse.next().await.id.as_deref(), Some("3"));
    let (status, body) = post(
        &server.url("/v1/groups/few/nack"),
        "application/json",
        json!({"offset": 2, "error": "try again"}).to_string(),
        None,
    )
    .await;
    assert_eq!(
        (status, &body["outcome"]),
        (200, &json!("redeliver")),
        "{body}"
    );
    let mut rest = std::collections::BTreeSet::new();
    while rest.len() < 3 {
        let offset: u64 = sse.next().await.id.unwrap().parse().unwrap();
        rest.insert(offset);
        ack(&server, "few", &[offset]).await;
    }
    assert_eq!(rest, [2, 4, 5].into_iter().collect());
    ack(&server, "few", &[3]).await;
    assert_eq!(committed(&server, "few").await, Some(5));

    let (status, body) = post(
        &server.url("/v1/groups/nobody/ack"),
        "application/json",
        json!({"offsets": [1]}).to_string(),
        None,
    )
    .await;
    assert_error(status, &body, 404, "unknown_group");
    let (status, body) = post(
        &server.url("/v1/groups/few/ack"),
        "application/json",
        json!({"offset": 1}).to_string(),
        None,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = get(&server.url("/v1/stream?group=few&max_unacked=0"), None).await;
    assert_error(status, &body, 400, "invalid_parameter");
    drop(sse);
    server.stop().await;
}

/// Publishes `n` memory events of about 1 KB each, in batches of 500, so that a reader that
/// does not read fills the socket buffers and falls behind the server's memory channel.
pub(crate) async fn publish_bulky_memory_events(server: &TestServer, n: usize) {
    let pad = "x".repeat(1000);
    let events: Vec<Value> = (0..n)
        .map(|i| {
            event(
                &format!("mem-{i}"),
                "debug.trace",
                json!({"i": i, "pad": pad}),
            )
        })
        .collect();
    for batch in events.chunks(500) {
        let (status, body) = post(
            &server.url("/v1/events"),
            BATCH,
            Value::Array(batch.to_vec()).to_string(),
            None,
        )
        .await;
        assert_eq!(status, 202, "{body}");
    }
}

const MEMORY_CONFIG: &str = "[[durability]]\npattern = \"debug.>\"\nmode = \"memory\"\n";

#[tokio::test]
async fn slow_tail_is_told_how_many_memory_events_it_missed() {
    let server = TestServer::start(MEMORY_CONFIG).await;
    let mut sse = SseReader::open(&server.url("/v1/stream?type=debug.>"), None).await;
    const PUBLISHED: u64 = 40_000;
    // The reader reads nothing while everything is published.
    publish_bulky_memory_events(&server, PUBLISHED as usize).await;
    let (mut received, mut missed, mut missed_frames) = (0u64, 0u64, 0u64);
    while received + missed < PUBLISHED {
        let f = sse.next().await;
        match f.event.as_deref() {
            Some("cloudevent") => {
                assert!(f.id.is_none(), "memory events have no offset");
                received += 1;
            }
            Some("missed") => {
                let body: Value = serde_json::from_str(&f.data).unwrap();
                missed += body["missed"].as_u64().unwrap();
                missed_frames += 1;
            }
            other => panic!("unexpected frame {other:?}: {}", f.data),
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
