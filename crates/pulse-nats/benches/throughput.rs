//! End-to-end figures of the NATS backend against a real server (`PULSE_TEST_NATS_URL`,
//! default `nats://127.0.0.1:4222`), run with
//! `cargo bench -p pulse-nats --bench throughput`:
//!
//! - persistent publish throughput with three handles ("instances", one connection
//!   each) appending concurrently, next to raw async-nats JetStream publishing the same
//!   number of messages of the same size (the peer ceiling) in the same run;
//! - consumer-group handoff: an instance holding fetched events (the head of each
//!   partition) loses its connection for good (as when its process is killed); how long
//!   until another instance has them.
//!
//! Everything it creates is deleted at the end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use pulse_core::{Event, EventLog, GroupConfig, Pattern};
use pulse_nats::{NatsLog, NatsOptions};

const INSTANCES: usize = 3;
const TASKS_PER_INSTANCE: usize = 4;
const BATCH: usize = 1000;
const EVENTS: usize = 300_000;

fn reading(i: usize) -> Event {
    Event::new("health.reading.heart_rate")
        .with_source("bench")
        .with_subject(format!("user-{}", i % 1000))
        .with_json(
            &serde_json::json!({"metric": "heart_rate", "value": 60 + i % 40, "unit": "/min"}),
        )
        .expect("a JSON payload")
}

async fn publish_pulse(url: &str, options: &NatsOptions) -> (f64, usize) {
    let mut logs = Vec::new();
    for _ in 0..INSTANCES {
        logs.push(Arc::new(
            NatsLog::connect(url, options.clone())
                .await
                .expect("connect"),
        ));
    }
    let per_task = EVENTS / (INSTANCES * TASKS_PER_INSTANCE);
    // Events are made before the clock starts, as the raw baseline's messages are.
    let mut work: Vec<Vec<Vec<Event>>> = (0..INSTANCES * TASKS_PER_INSTANCE)
        .map(|t| {
            (0..per_task)
                .step_by(BATCH)
                .map(|s| {
                    (s..(s + BATCH).min(per_task))
                        .map(|i| reading(t * per_task + i))
                        .collect()
                })
                .collect()
        })
        .collect();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for log in &logs {
        for _ in 0..TASKS_PER_INSTANCE {
            let log = log.clone();
            let batches = work.pop().unwrap_or_default();
            tasks.push(tokio::spawn(async move {
                let mut done = 0;
                for batch in batches {
                    done += batch.len();
                    log.append(batch).await.expect("append");
                }
                done
            }));
        }
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.expect("publisher");
    }
    let elapsed = start.elapsed().as_secs_f64();
    let size = reading(0).to_json_string().len();
    // The envelope is smaller than the CloudEvents JSON: the raw baseline sends the JSON
    // size, so it moves at least as many bytes.
    (total as f64 / elapsed, size)
}

/// Three instances drain one group over what `publish_pulse` stored: fetch up to 1,000,
/// ack them all (confirmed by the server), repeat.
async fn consume_pulse(url: &str, options: &NatsOptions, stored: usize) -> f64 {
    let mut logs = Vec::new();
    for _ in 0..INSTANCES {
        logs.push(Arc::new(
            NatsLog::connect(url, options.clone())
                .await
                .expect("connect"),
        ));
    }
    let config = GroupConfig::new(Pattern::parse("health.>").expect("pattern"));
    logs[0].ensure_group("drain", config).await.expect("group");
    let handled = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for log in &logs {
        let (log, handled) = (log.clone(), handled.clone());
        tasks.push(tokio::spawn(async move {
            use std::sync::atomic::Ordering;
            while handled.load(Ordering::Relaxed) < stored {
                let batch = log
                    .fetch_wait("drain", 1000, Duration::from_millis(200))
                    .await
                    .expect("fetch");
                let offsets: Vec<u64> = batch.iter().map(|d| d.event.offset).collect();
                log.ack("drain", &offsets).await.expect("ack");
                handled.fetch_add(offsets.len(), Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        task.await.expect("consumer");
    }
    handled.load(std::sync::atomic::Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

async fn publish_raw(url: &str, size: usize) -> f64 {
    let subject_prefix = format!("pulsebench-raw-{:08x}", fastrand::u32(..));
    let name = subject_prefix.replace('-', "_");
    let client = async_nats::connect(url).await.expect("connect");
    let js = jetstream::new(client);
    js.create_stream(stream::Config {
        name: name.clone(),
        subjects: vec![format!("{subject_prefix}.>")],
        ..Default::default()
    })
    .await
    .expect("raw stream");
    let payload = bytes::Bytes::from(vec![b'x'; size]);
    let per_task = EVENTS / (INSTANCES * TASKS_PER_INSTANCE);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..INSTANCES {
        let client = async_nats::connect(url).await.expect("connect");
        let js = jetstream::ContextBuilder::new()
            .max_ack_inflight(1 << 16)
            .build(client);
        for _ in 0..TASKS_PER_INSTANCE {
            let (js, payload, subject) = (
                js.clone(),
                payload.clone(),
                format!("{subject_prefix}.health.reading"),
            );
            tasks.push(tokio::spawn(async move {
                let mut done = 0;
                while done < per_task {
                    let n = BATCH.min(per_task - done);
                    let mut acks = Vec::with_capacity(n);
                    for i in 0..n {
                        let message = jetstream::message::PublishMessage::build()
                            .payload(payload.clone())
                            .message_id(format!("{done}-{i}-{:x}", fastrand::u64(..)));
                        acks.push(
                            js.send_publish(subject.clone(), message)
                                .await
                                .expect("publish"),
                        );
                    }
                    for ack in acks {
                        ack.await.expect("ack");
                    }
                    done += n;
                }
                done
            }));
        }
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.expect("publisher");
    }
    let rate = total as f64 / start.elapsed().as_secs_f64();
    let _ = js.delete_stream(&name).await;
    rate
}

/// A loopback forwarder that can be cut for good (an instance's death, as the server
/// sees it).
async fn proxy(target: &str) -> (String, tokio::sync::watch::Sender<bool>) {
    let target = tokio::net::lookup_host(target.trim_start_matches("nats://"))
        .await
        .expect("resolve")
        .next()
        .expect("an address");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let (cut, watch) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let mut watch = watch.clone();
            tokio::spawn(async move {
                let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                    return;
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    _ = watch.wait_for(|&c| c) => {}
                }
            });
        }
    });
    (format!("nats://{addr}"), cut)
}

async fn handoff(url: &str, options: &NatsOptions) -> (Duration, Duration, usize) {
    let (proxy_url, cut) = proxy(url).await;
    let doomed = NatsLog::connect(&proxy_url, options.clone())
        .await
        .expect("connect");
    let survivor = NatsLog::connect(url, options.clone())
        .await
        .expect("connect");
    let config = GroupConfig::new(Pattern::parse("health.>").expect("pattern"));
    doomed.ensure_group("handoff", config).await.expect("group");
    doomed
        .append((0..1000).map(reading).collect())
        .await
        .expect("append");
    // The doomed instance takes what it can: at most one event per partition (the
    // head of each), plus events without a subject (none here).
    let held: std::collections::HashSet<u64> = doomed
        .fetch_wait("handoff", 500, Duration::from_secs(10))
        .await
        .expect("fetch")
        .iter()
        .map(|d| d.event.offset)
        .collect();
    let died = Instant::now();
    cut.send_replace(true);
    std::mem::forget(doomed);
    // The survivor drains everything; the dead instance's partitions wait for its
    // events to come back.
    let (mut first, mut last, mut got, mut handled) = (None, Duration::ZERO, 0, 0);
    while handled < 1000 {
        let batch = survivor
            .fetch_wait("handoff", 1000, Duration::from_secs(30))
            .await
            .expect("fetch");
        if batch.is_empty() {
            break;
        }
        let offsets: Vec<u64> = batch.iter().map(|d| d.event.offset).collect();
        survivor.ack("handoff", &offsets).await.expect("ack");
        handled += offsets.len();
        let back = offsets.iter().filter(|o| held.contains(o)).count();
        if back > 0 {
            first.get_or_insert_with(|| died.elapsed());
            last = died.elapsed();
            got += back;
        }
    }
    (first.unwrap_or_default(), last, got)
}

fn main() {
    let url =
        std::env::var("PULSE_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut options = NatsOptions::new(format!("pulsebench-{:08x}", fastrand::u32(..)));
        options.request_timeout = Duration::from_secs(30);
        let (rate, size) = publish_pulse(&url, &options).await;
        println!(
            "pulse-nats publish: {EVENTS} persistent events ({size} bytes each, batches of {BATCH}), \
             {INSTANCES} instances x {TASKS_PER_INSTANCE} tasks: {rate:.0} events/s"
        );
        let consumed = consume_pulse(&url, &options, EVENTS).await;
        println!(
            "pulse-nats consumer group, {INSTANCES} instances fetching up to 1000 and acking: {consumed:.0} events/s"
        );
        let raw = publish_raw(&url, size).await;
        println!(
            "raw async-nats JetStream publish, same shape: {raw:.0} msgs/s (pulse/raw = {:.2})",
            rate / raw
        );
        pulse_nats::delete_log(&url, &options).await.expect("cleanup");
        let options = NatsOptions::new(format!("pulsebench-{:08x}", fastrand::u32(..)));
        let (first, all, got) = handoff(&url, &options).await;
        println!(
            "handoff after an instance died holding {got} events (liveness {:?}): first event after {:.2} s, all after {:.2} s",
            options.liveness,
            first.as_secs_f64(),
            all.as_secs_f64()
        );
        pulse_nats::delete_log(&url, &options).await.expect("cleanup");
    });
}
