//! End-to-end figures of the PostgreSQL backend with several instances (handles) on one
//! schema: persistent append throughput, and how long a consumer group takes to hand a
//! dead instance's in-flight work to another instance.
//!
//! `PULSE_BENCH_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!  cargo bench -p pulse-postgres --bench instances`
//! (falls back to `PULSE_TEST_POSTGRES_URL`). `PULSE_BENCH_SECONDS` sets each
//! throughput phase's length (default 8). Works in a fresh schema and drops it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pulse_core::{Event, EventLog, GroupConfig, Pattern};
use pulse_postgres::{PostgresLog, PostgresOptions};

const INSTANCES: usize = 3;

fn reading(i: u64) -> Event {
    Event::new("health.reading.heart_rate")
        .with_source("bench")
        .with_subject(format!("user-{}", i % 1000))
        .with_json(&serde_json::json!({
            "user_id": format!("user-{}", i % 1000),
            "metric": "heart_rate",
            "value": 60 + (i % 40),
            "unit": "/min",
            "recorded_at": "2026-11-25T12:00:00Z",
        }))
        .unwrap_or_else(|_| Event::new("health.reading.heart_rate"))
}

/// Appends from `publishers` tasks per instance, `batch` events per call, for `secs`.
async fn throughput(logs: &[PostgresLog], publishers: usize, batch: usize, secs: u64) -> f64 {
    let stored = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (n, log) in logs.iter().enumerate() {
        for p in 0..publishers {
            let log = log.clone();
            let stored = Arc::clone(&stored);
            tasks.push(tokio::spawn(async move {
                let mut i = ((n * publishers + p) as u64) << 32;
                while Instant::now() < deadline {
                    let events: Vec<Event> = (0..batch)
                        .map(|_| {
                            i += 1;
                            reading(i)
                        })
                        .collect();
                    let appended = log.append(events).await.expect("append");
                    stored.fetch_add(appended.len() as u64, Ordering::Relaxed);
                }
            }));
        }
    }
    for task in tasks {
        task.await.expect("publisher");
    }
    stored.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// One consumer group over every instance, each fetching up to 256 at a time and
/// acking what it got, until the `count` events appended before are handled.
async fn consume(logs: &[PostgresLog], count: u64) -> f64 {
    let mut config = GroupConfig::new(Pattern::parse("consume.>").expect("pattern"));
    config.start = pulse_core::StartPosition::Latest;
    for log in logs {
        log.ensure_group("consumers", config.clone())
            .await
            .expect("group");
    }
    let events: Vec<Event> = (0..count)
        .map(|i| {
            let mut e = reading(i);
            e.ty = "consume.reading".into();
            e
        })
        .collect();
    for chunk in events.chunks(1000) {
        logs[0].append(chunk.to_vec()).await.expect("append");
    }
    let handled = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for log in logs {
        let (log, handled) = (log.clone(), Arc::clone(&handled));
        tasks.push(tokio::spawn(async move {
            while handled.load(Ordering::Relaxed) < count {
                let batch = log
                    .fetch_wait("consumers", 256, Duration::from_millis(100))
                    .await
                    .expect("fetch");
                let offsets: Vec<u64> = batch.iter().map(|d| d.event.offset).collect();
                log.ack("consumers", &offsets).await.expect("ack");
                handled.fetch_add(offsets.len() as u64, Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        task.await.expect("consumer");
    }
    count as f64 / started.elapsed().as_secs_f64()
}

/// An instance holding `held` deliveries dies; returns how long until another instance
/// has all of them back.
async fn handoff(url: &str, schema: &str, held: usize, clean: bool) -> Duration {
    let group = if clean {
        "handoff_clean"
    } else {
        "handoff_crash"
    };
    let options = PostgresOptions::new(schema);
    let dying = PostgresLog::connect(url, options.clone())
        .await
        .expect("connect");
    let taker = PostgresLog::connect(url, options).await.expect("connect");
    let mut config = GroupConfig::new(Pattern::parse("handoff.>").expect("pattern"));
    config.ack_wait = Duration::from_secs(300);
    config.start = pulse_core::StartPosition::Latest;
    dying
        .ensure_group(group, config.clone())
        .await
        .expect("group");
    taker.ensure_group(group, config).await.expect("group");
    let events: Vec<Event> = (0..held)
        .map(|i| Event::new("handoff.x").with_subject(format!("s{i}")))
        .collect();
    dying.append(events).await.expect("append");
    let mut got = 0;
    while got < held {
        got += dying.fetch(group, held).await.expect("fetch").len();
    }
    let died = Instant::now();
    if clean {
        dying.close().await.expect("close");
    }
    drop(dying);
    let mut back = 0;
    while back < held {
        let batch = taker
            .fetch_wait(group, held, Duration::from_millis(500))
            .await
            .expect("fetch");
        let offsets: Vec<u64> = batch.iter().map(|d| d.event.offset).collect();
        back += batch.len();
        taker.ack(group, &offsets).await.expect("ack");
    }
    died.elapsed()
}

#[tokio::main]
async fn main() {
    let Ok(url) = std::env::var("PULSE_BENCH_POSTGRES_URL")
        .or_else(|_| std::env::var("PULSE_TEST_POSTGRES_URL"))
    else {
        println!("skipped: set PULSE_BENCH_POSTGRES_URL (or PULSE_TEST_POSTGRES_URL)");
        return;
    };
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` probes bench targets: nothing to run then
    }
    let secs: u64 = std::env::var("PULSE_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let schema = format!("pulse_bench_{:08x}", fastrand::u32(..));
    let mut logs = Vec::new();
    for _ in 0..INSTANCES {
        let mut options = PostgresOptions::new(schema.clone());
        options.pool_size = 4;
        logs.push(PostgresLog::connect(&url, options).await.expect("connect"));
    }
    println!("postgres backend, {INSTANCES} instances on schema {schema}, {secs} s per phase");
    for (publishers, batch) in [(256, 1), (32, 100)] {
        let rate = throughput(&logs, publishers, batch, secs).await;
        println!(
            "append: {INSTANCES} instances x {publishers} publishers, {batch} event(s) per call: {rate:.0} events/s"
        );
    }
    let total = logs[0].last_offset().await.expect("last offset");
    println!("stored {total} events");
    let rate = consume(&logs[..1], 20_000).await;
    println!("consume: one group on 1 instance, fetch 256 + ack: {rate:.0} events/s");
    let rate = consume(&logs, 20_000).await;
    println!("consume: one group over {INSTANCES} instances, fetch 256 + ack: {rate:.0} events/s");
    for clean in [false, true] {
        let took = handoff(&url, &schema, 100, clean).await;
        let how = if clean {
            "clean close"
        } else {
            "crash (heartbeat 1 s, instance timeout 3 s)"
        };
        println!(
            "group handoff of 100 in-flight events after {how}: {:.2} s",
            took.as_secs_f64()
        );
    }
    drop(logs);
    if let Ok((client, connection)) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
        tokio::spawn(connection);
        let _ = client
            .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
            .await;
    }
}
