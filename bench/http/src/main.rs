//! Load generator for `pulse serve` and the NATS JetStream peer.
//!
//! ```text
//! pulse-http-bench batch  URL SECONDS CONNS EVENTS_PER_REQUEST
//! pulse-http-bench single URL SECONDS CONNS
//! pulse-http-bench ws     URL SECONDS RATE EVENTS_PER_POST
//! pulse-http-bench nats   NATS_URL SECONDS WINDOW
//! ```
//! Every run prints one JSON object. Bounded in time; talks to loopback only.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

type Http = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

fn http() -> Http {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1024)
        .build_http()
}

fn event(id: &str, ty: &str, subject: usize, data: &str) -> String {
    format!(
        r#"{{"specversion":"1.0","id":"{id}","source":"bench","type":"{ty}","subject":"user-{subject}","datacontenttype":"application/json","data":{data}}}"#
    )
}

async fn post(client: &Http, url: &str, content_type: &str, body: String) -> u16 {
    let req = hyper::Request::post(url)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("request builds");
    match client.request(req).await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let _ = resp.into_body().collect().await;
            status
        }
        Err(_) => 0,
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1e6
}

async fn publish_load(url: String, seconds: u64, conns: usize, per_request: usize) -> Value {
    let client = http();
    let run = format!("{}", std::process::id());
    let events = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..conns {
        let (client, url, run, events, errors) =
            (client.clone(), url.clone(), run.clone(), events.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut seq = 0u64;
            while Instant::now() < deadline {
                let (ct, body) = if per_request == 1 {
                    seq += 1;
                    let body = event(&format!("s-{run}-{c}-{seq}"), "health.reading.heart_rate", seq as usize % 1000, &format!(r#"{{"value":{}}}"#, seq % 200));
                    ("application/cloudevents+json", body)
                } else {
                    let mut body = String::with_capacity(per_request * 200);
                    body.push('[');
                    for i in 0..per_request {
                        seq += 1;
                        if i > 0 {
                            body.push(',');
                        }
                        body.push_str(&event(&format!("b-{run}-{c}-{seq}"), "health.reading.heart_rate", seq as usize % 1000, &format!(r#"{{"value":{}}}"#, seq % 200)));
                    }
                    body.push(']');
                    ("application/cloudevents-batch+json", body)
                };
                let t = Instant::now();
                if post(&client, &url, ct, body).await == 202 {
                    events.fetch_add(per_request as u64, Ordering::Relaxed);
                    latencies.push(t.elapsed().as_nanos() as u64);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.expect("publisher task"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let n = events.load(Ordering::Relaxed);
    json!({
        "mode": if per_request == 1 { "single" } else { "batch" },
        "connections": conns, "events_per_request": per_request, "seconds": elapsed,
        "events": n, "events_per_s": n as f64 / elapsed,
        "requests_per_s": latencies.len() as f64 / elapsed,
        "errors": errors.load(Ordering::Relaxed),
        "request_p50_ms": percentile(&latencies, 0.5), "request_p99_ms": percentile(&latencies, 0.99),
    })
}

/// Publishes `rate` events per second (`per_post` per POST) and measures, in a
/// WebSocket group subscriber that acks, the time from the start of the POST to receipt.
async fn ws_latency(base: String, seconds: u64, rate: u64, per_post: u64) -> Value {
    let run = std::process::id();
    let ws_url = format!(
        "{}/v1/ws?type=lat.{run}.%3E&group=lat-{run}&max_unacked=5000&start=latest",
        base.replacen("http://", "ws://", 1)
    );
    let (ws, _) = tokio_tungstenite::connect_async(ws_url).await.expect("websocket connects");
    let (mut tx, mut rx) = ws.split();
    let origin = Instant::now();
    let warmup = Duration::from_secs(1);
    let received = tokio::spawn(async move {
        let mut lat = Vec::new();
        let mut pending = Vec::new();
        let mut last_ack = Instant::now();
        while let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_secs(3), rx.next()).await {
            let Message::Text(text) = msg else { continue };
            let now = origin.elapsed().as_nanos() as u64;
            let v: Value = serde_json::from_str(text.as_str()).expect("frame is JSON");
            let sent = v["event"]["data"]["sent_ns"].as_u64().unwrap_or(0);
            if sent >= warmup.as_nanos() as u64 {
                lat.push(now.saturating_sub(sent));
            }
            pending.push(v["offset"].as_u64().unwrap_or(0));
            if pending.len() >= 64 || last_ack.elapsed() > Duration::from_millis(5) {
                let ack = json!({"op": "ack", "offsets": pending}).to_string();
                if tx.send(Message::Text(ack.into())).await.is_err() {
                    break;
                }
                pending = Vec::new();
                last_ack = Instant::now();
            }
        }
        lat
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let client = http();
    let url = format!("{base}/v1/events");
    // One publisher: a POST of `per_post` events every `per_post / rate` seconds, each
    // POST in its own task so that a slow one does not hold the pace.
    let period = Duration::from_nanos(1_000_000_000 * per_post / rate);
    let deadline = Instant::now() + Duration::from_secs(seconds) + warmup;
    let sent = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    {
        let (client, url, sent) = (client.clone(), url.clone(), sent.clone());
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut seq = 0u64;
            while Instant::now() < deadline {
                tick.tick().await;
                let sent_ns = origin.elapsed().as_nanos() as u64;
                let mut events = Vec::with_capacity(per_post as usize);
                for _ in 0..per_post {
                    seq += 1;
                    events.push(event(&format!("l-{run}-{seq}"), &format!("lat.{run}.x"), seq as usize, &format!(r#"{{"sent_ns":{sent_ns}}}"#)));
                }
                let (ct, body) = if per_post == 1 {
                    ("application/cloudevents+json", events.pop().unwrap_or_default())
                } else {
                    ("application/cloudevents-batch+json", format!("[{}]", events.join(",")))
                };
                let (client, url, sent) = (client.clone(), url.clone(), sent.clone());
                tokio::spawn(async move {
                    if post(&client, &url, ct, body).await == 202 {
                        sent.fetch_add(per_post, Ordering::Relaxed);
                    }
                });
            }
        }));
    }
    for t in tasks {
        t.await.expect("publisher");
    }
    let mut lat = received.await.expect("subscriber");
    lat.sort_unstable();
    json!({
        "mode": "ws_latency", "target_rate": rate, "events_per_post": per_post, "seconds": seconds,
        "published": sent.load(Ordering::Relaxed), "measured": lat.len(),
        "p50_ms": percentile(&lat, 0.5), "p90_ms": percentile(&lat, 0.9),
        "p99_ms": percentile(&lat, 0.99), "max_ms": lat.last().map_or(0.0, |v| *v as f64 / 1e6),
    })
}

/// JetStream file stream, async publish with acks (at most `window` unacknowledged).
async fn nats(url: String, seconds: u64, window: usize) -> Value {
    let client = async_nats::connect(url).await.expect("nats connects");
    let js = async_nats::jetstream::new(client);
    let name = format!("PULSEBENCH_{}", std::process::id());
    let subject = format!("pulsebench.{}.reading", std::process::id());
    js.create_stream(async_nats::jetstream::stream::Config {
        name: name.clone(),
        subjects: vec![format!("pulsebench.{}.>", std::process::id())],
        storage: async_nats::jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await
    .expect("stream created");
    let payload = Bytes::from(event("x", "health.reading.heart_rate", 1, r#"{"value":70}"#));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut acks = futures::stream::FuturesUnordered::new();
    let mut done = 0u64;
    while Instant::now() < deadline {
        while acks.len() < window {
            acks.push(std::future::IntoFuture::into_future(js.publish(subject.clone(), payload.clone()).await.expect("published")));
        }
        if let Some(ack) = acks.next().await {
            ack.expect("acked");
            done += 1;
        }
    }
    while let Some(ack) = acks.next().await {
        ack.expect("acked");
        done += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    js.delete_stream(&name).await.expect("stream deleted");
    json!({"mode": "nats_jetstream_file", "window": window, "seconds": elapsed, "messages": done, "messages_per_s": done as f64 / elapsed})
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).cloned().unwrap_or_else(|| panic!("missing argument {i}; see the module doc"));
    let num = |i: usize| arg(i).parse::<u64>().expect("a number");
    let out = match arg(1).as_str() {
        "batch" => publish_load(format!("{}/v1/events", arg(2)), num(3), num(4) as usize, num(5) as usize).await,
        "single" => publish_load(format!("{}/v1/events", arg(2)), num(3), num(4) as usize, 1).await,
        "ws" => ws_latency(arg(2), num(3), num(4), num(5)).await,
        "nats" => nats(arg(2), num(3), num(4) as usize).await,
        other => panic!("unknown mode {other}"),
    };
    println!("{out}");
}
