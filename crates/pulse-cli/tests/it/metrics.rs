//! `GET /metrics` of a real `pulse serve`: on a fresh server every series the shipped alerts
//! read is there at zero, and after traffic of every kind (publish, batch, SSE, WebSocket
//! with acks and a nack to the dead-letter queue, a webhook, a job run, errors) the page
//! passes `promtool check metrics` (every series has HELP and TYPE, names follow the
//! conventions) and labels each request by the route template it matched. On PostgreSQL and
//! NATS the backend's own series are there and described too.
//!
//! promtool comes with Prometheus (`.ci/run` installs it). Without it the promtool check is
//! skipped with a line saying so, unless `CI` is set: then its absence fails the test.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use crate::support::{nats_log, postgres_log, server_url, unique, DropNatsLog, DropSchema, Server};

/// The readings the test publishes: the webhook, the job and the group streams take them.
const TYPE: &str = "health.reading.heart_rate";
/// The type of the event for the live tail: the webhook takes it too, the groups
/// (`health.reading.>`) do not, so that their counts cannot depend on when a closed
/// connection is noticed.
const NOTE: &str = "health.note.consultation";

/// A server with a webhook to `receiver_port`, a job that runs only when asked (its cron tick
/// is once a year) and groups that dead-letter at the first nack.
fn config(receiver_port: u16) -> String {
    format!(
        r#"
[groups]
max_deliver = 1

[[webhooks]]
name = "audit"
pattern = "health.>"
group = "audit-webhook"
url = "http://127.0.0.1:{receiver_port}/hook"

[[jobs]]
name = "readings"
schedule = "0 0 1 1 *"
windows = ["5m"]
source_pattern = "health.reading.>"
"#
    )
}

/// A series' labels, sorted by name.
type Labels = Vec<(String, String)>;

/// The samples of a Prometheus text page: `(name, labels, value)`.
fn samples(page: &str) -> Vec<(String, Labels, f64)> {
    let mut out = Vec::new();
    for line in page.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
        let (name, labels) = match series.split_once('{') {
            None => (series, Vec::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').unwrap_or_else(|| panic!("{line}"));
                let mut labels = Vec::new();
                // Pulse's label values hold no quotes or commas, so a plain split is enough.
                for pair in body.split(',').filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').unwrap_or_else(|| panic!("{line}"));
                    labels.push((k.to_owned(), v.trim_matches('"').to_owned()));
                }
                labels.sort();
                (name, labels)
            }
        };
        out.push((name.to_owned(), labels, value));
    }
    out
}

/// The value of the series `name{labels}` (exactly those labels), if the page shows it.
fn value(page: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut wanted: Labels = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    wanted.sort();
    samples(page)
        .into_iter()
        .find(|(n, l, _)| n == name && *l == wanted)
        .map(|(_, _, v)| v)
}

async fn metrics_page(server: &Server) -> String {
    let resp = reqwest::get(format!("{}/metrics", server.base))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap()
}

/// A webhook receiver answering 200 to every POST (keep-alive), counting them.
async fn receiver() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Arc::new(AtomicUsize::new(0));
    let count = received.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    // One request: headers, then `content-length` bytes of body.
                    let header_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        let mut chunk = [0u8; 4096];
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..header_end]).to_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    while buf.len() < header_end + length {
                        let mut chunk = [0u8; 4096];
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.drain(..header_end + length);
                    count.fetch_add(1, Ordering::SeqCst);
                    let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                    if socket.write_all(ok).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, received)
}

/// Polls `/metrics` until `done` holds for it (events are delivered by background tasks).
async fn metrics_when(server: &Server, what: &str, done: impl Fn(&str) -> bool) -> String {
    for _ in 0..1000 {
        let page = metrics_page(server).await;
        if done(&page) {
            return page;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "{what} never showed on /metrics:\n{}",
        metrics_page(server).await
    );
}

async fn publish(server: &Server, content_type: &str, body: Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/events", server.base))
        .header("content-type", content_type)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202, "{}", resp.text().await.unwrap());
}

/// A heart-rate reading of user `id` (a subject of its own, so that a group may hold several
/// of them at once: one subject is delivered one event at a time).
fn event(id: &str) -> Value {
    typed(id, TYPE)
}

fn typed(id: &str, ty: &str) -> Value {
    json!({
        "specversion": "1.0", "id": id, "source": "test", "type": ty, "subject": id,
        "data": {"user_id": id, "metric": "heart_rate", "value": 70, "unit": "/min",
                 "recorded_at": "2026-01-01T00:00:00Z"}
    })
}

#[tokio::test]
async fn a_fresh_server_shows_every_alerted_series_at_zero() {
    let (port, _received) = receiver().await;
    let server = Server::start("fresh", &config(port)).await;
    let page = metrics_page(&server).await;
    let zero = |name: &str, labels: &[(&str, &str)]| {
        assert_eq!(
            value(&page, name, labels),
            Some(0.0),
            "{name}{labels:?} is not at zero on a fresh server:\n{page}"
        );
    };
    // Processing delay (PulseProcessingDelay*): live tails over both streams, the webhook's
    // group over its transport, at the 5 s bucket the alert compares with.
    for (group, transport) in [("", "sse"), ("", "websocket"), ("audit-webhook", "webhook")] {
        for le in ["5", "30", "+Inf"] {
            zero(
                "pulse_event_processing_delay_seconds_bucket",
                &[("group", group), ("transport", transport), ("le", le)],
            );
        }
        zero(
            "pulse_event_processing_delay_seconds_count",
            &[("group", group), ("transport", transport)],
        );
    }
    // Lag and dead letters (PulseConsumer*, PulseDeadLetters) of the groups that exist.
    zero("pulse_consumer_lag_events", &[("group", "audit-webhook")]);
    zero("pulse_consumer_lag_seconds", &[("group", "audit-webhook")]);
    zero("pulse_dead_letters_total", &[("group", "audit-webhook")]);
    // Job runs (PulseJob*), every status.
    for status in ["ok", "failed", "missed", "superseded"] {
        zero(
            "pulse_job_runs_total",
            &[("job", "readings"), ("status", status)],
        );
    }
    zero("pulse_job_duration_seconds_count", &[("job", "readings")]);
    // Dashboards: published, webhooks, live drops, the log's commits.
    zero("pulse_events_published_total", &[]);
    for outcome in ["ok", "failed", "dead_lettered"] {
        zero("pulse_webhook_deliveries_total", &[("outcome", outcome)]);
    }
    zero("pulse_webhook_failures_total", &[]);
    zero("pulse_live_events_dropped_total", &[]);
    zero("pulse_sqlite_write_errors_total", &[]);
    zero("pulse_sqlite_appended_events_total", &[]);
    assert!(
        value(&page, "pulse_sqlite_commits_total", &[]).is_some(),
        "no pulse_sqlite_commits_total on a fresh server:\n{page}"
    );
    assert!(
        value(&page, "pulse_sqlite_commit_seconds_count", &[]).is_some(),
        "no pulse_sqlite_commit_seconds on a fresh server:\n{page}"
    );
}

#[tokio::test]
async fn metrics_pass_promtool_after_every_kind_of_traffic() {
    let (port, received) = receiver().await;
    let server = Server::start("traffic", &config(port)).await;
    let client = reqwest::Client::new();

    // Publish, one event and a batch.
    publish(&server, "application/cloudevents+json", event("m-1")).await;
    publish(
        &server,
        "application/cloudevents-batch+json",
        json!([event("m-2"), event("m-3")]),
    )
    .await;

    // SSE through a group, and a live tail that sees one event published after it opened.
    let sse = reqwest::get(format!(
        "{}/v1/stream?type=health.reading.%3E&group=sse-readers",
        server.base
    ))
    .await
    .unwrap();
    let mut body = sse.bytes_stream();
    let mut text = String::new();
    while text.matches("event: cloudevent").count() < 3 {
        let chunk = tokio::time::timeout(Duration::from_secs(20), body.next())
            .await
            .expect("sse events")
            .unwrap()
            .unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    drop(body);

    // WebSocket through a group: ack the first event, nack the second (max_deliver 1, so it
    // is dead-lettered), hold the third; then a live tail.
    let (mut socket, _) = tokio_tungstenite::connect_async(format!(
        "{}/v1/ws?type=health.reading.%3E&group=ws-readers",
        server.ws
    ))
    .await
    .expect("ws connects");
    let mut offsets = Vec::new();
    while offsets.len() < 3 {
        let frame = tokio::time::timeout(Duration::from_secs(20), socket.next())
            .await
            .expect("ws events")
            .unwrap()
            .unwrap();
        let Message::Text(text) = frame else { continue };
        let v: Value = serde_json::from_str(text.as_str()).unwrap();
        if v["kind"] == "event" {
            offsets.push(v["offset"].as_u64().unwrap());
        }
    }
    let ops = [
        json!({"op": "ack", "offsets": [offsets[0]]}),
        json!({"op": "nack", "offset": offsets[1], "error": "handler failed"}),
    ];
    for op in ops {
        socket
            .send(Message::Text(op.to_string().into()))
            .await
            .unwrap();
    }
    metrics_when(&server, "the websocket dead letter", |page| {
        value(page, "pulse_dead_letters_total", &[("group", "ws-readers")]) == Some(1.0)
    })
    .await;
    socket.close(None).await.unwrap();
    let (mut tail, _) =
        tokio_tungstenite::connect_async(format!("{}/v1/ws?type=health.%3E", server.ws))
            .await
            .expect("ws tail connects");
    // The tail starts after the log's end as the upgrade answered: it sees the next event.
    publish(&server, "application/cloudevents+json", typed("m-4", NOTE)).await;
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(20), tail.next())
            .await
            .expect("tail event")
            .unwrap()
            .unwrap();
        if matches!(&frame, Message::Text(t) if t.as_str().contains("\"kind\":\"event\"")) {
            break;
        }
    }
    drop(tail);

    // The webhook delivered the four events.
    metrics_when(&server, "the webhook deliveries", |page| {
        value(page, "pulse_webhook_deliveries_total", &[("outcome", "ok")]) == Some(4.0)
    })
    .await;
    assert_eq!(received.load(Ordering::SeqCst), 4);

    // A job run on request, and its history (the route that used to be labelled `other`).
    let run = client
        .post(format!("{}/v1/jobs/readings/run", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(run.status(), 202, "{}", run.text().await.unwrap());
    let runs = client
        .get(format!("{}/v1/jobs/readings/runs", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(runs.status(), 200);

    // Errors: an unknown route, a malformed body, an unknown group.
    let missing = client
        .get(format!("{}/v1/no-such-route", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let malformed = client
        .post(format!("{}/v1/events", server.base))
        .header("content-type", "application/cloudevents+json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    let unknown = client
        .get(format!("{}/v1/stream?group=nobody", server.base))
        .send()
        .await
        .unwrap();
    assert!(unknown.status().is_client_error());

    let page = metrics_page(&server).await;
    // Routes are the router's templates; the 404 fallback is `unmatched`; nothing is `other`.
    let route_count = |route: &str, status: &str| {
        value(
            &page,
            "pulse_http_requests_total",
            &[("route", route), ("status", status)],
        )
    };
    assert_eq!(
        route_count("/v1/jobs/{name}/runs", "200"),
        Some(1.0),
        "{page}"
    );
    assert_eq!(
        route_count("/v1/jobs/{name}/run", "202"),
        Some(1.0),
        "{page}"
    );
    assert_eq!(route_count("unmatched", "404"), Some(1.0), "{page}");
    assert!(!page.contains("route=\"other\""), "{page}");
    // Every delivery path recorded its delay under its group and transport.
    for (group, transport, count) in [
        ("sse-readers", "sse", 3.0),
        ("ws-readers", "websocket", 3.0),
        ("", "websocket", 1.0),
        ("audit-webhook", "webhook", 4.0),
    ] {
        assert_eq!(
            value(
                &page,
                "pulse_event_processing_delay_seconds_count",
                &[("group", group), ("transport", transport)],
            ),
            Some(count),
            "{group}/{transport}:\n{page}"
        );
    }
    assert_eq!(
        value(
            &page,
            "pulse_job_runs_total",
            &[("job", "readings"), ("status", "ok")]
        ),
        Some(1.0),
        "{page}"
    );
    assert_eq!(value(&page, "pulse_events_published_total", &[]), Some(4.0));

    promtool_check_metrics(&page);
}

/// A server on a shared log shows its backend's series from start-up (those no traffic has
/// touched at zero), each with its help text.
async fn shared_log_fresh_page(name: &str, config: &str, backend_series: &[&str]) {
    let server = Server::start(name, config).await;
    publish(&server, "application/cloudevents+json", event("s-1")).await;
    let page = metrics_page(&server).await;
    for series in backend_series {
        assert!(
            value(&page, series, &[]).is_some(),
            "{series} missing on a fresh {name} server:\n{page}"
        );
    }
    promtool_check_metrics(&page);
}

#[tokio::test]
async fn a_postgres_server_describes_its_log_metrics() {
    let Some(url) = server_url(
        "PULSE_TEST_POSTGRES_URL",
        "a_postgres_server_describes_its_log_metrics",
    ) else {
        return;
    };
    let schema = format!("pulse_t_metrics_{:012x}", unique());
    let _drop_schema = DropSchema {
        url: url.clone(),
        name: schema.clone(),
    };
    let series = [
        "pulse_postgres_appended_events_total",
        "pulse_postgres_dead_letters_total",
        "pulse_postgres_expired_deliveries_total",
        "pulse_postgres_append_batch_seconds_count",
    ];
    shared_log_fresh_page("postgres", &postgres_log(&url, &schema, "m"), &series).await;
}

#[tokio::test]
async fn a_nats_server_describes_its_log_metrics() {
    let Some(url) = server_url(
        "PULSE_TEST_NATS_URL",
        "a_nats_server_describes_its_log_metrics",
    ) else {
        return;
    };
    let prefix = format!("pulsetest-metrics-{:012x}", unique());
    let _cleanup = DropNatsLog(url.clone(), pulse_nats::NatsOptions::new(prefix.clone()));
    let series = [
        "pulse_nats_appended_events_total",
        "pulse_nats_dead_lettered_total",
        "pulse_nats_unavailable_total",
    ];
    shared_log_fresh_page("nats", &nats_log(&url, &prefix), &series).await;
}

/// Runs `promtool check metrics` on `page`; skips (saying so) when promtool is missing,
/// unless `CI` is set.
fn promtool_check_metrics(page: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            assert!(
                std::env::var_os("CI").is_none(),
                "promtool is not installed, and CI is set: install Prometheus's promtool"
            );
            println!("skipped promtool check metrics: promtool is not installed");
            return;
        }
        Err(err) => panic!("cannot run promtool: {err}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- the page:\n{page}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
