//! NATS JetStream peer of `pulse bench log`: publishers with a window of outstanding
//! acks publish to a file-backed stream; prints throughput and publish -> ack latency
//! with the same JSON keys as `pulse bench log`.
//!
//! Usage: pulse-log-peers [--url nats://127.0.0.1:4222] [--events N] [--publishers P]
//!        [--in-flight W] [--payload-bytes B]
//! The stream is named after the process id and deleted at the end.

use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};

struct Args {
    url: String,
    events: u64,
    publishers: u64,
    in_flight: usize,
    payload_bytes: usize,
}

fn parse_args() -> Args {
    let mut args = Args {
        url: "nats://127.0.0.1:4222".into(),
        events: 200_000,
        publishers: 4,
        in_flight: 256,
        payload_bytes: 256,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => args.url = value,
            "--events" => args.events = value.parse().expect("--events"),
            "--publishers" => args.publishers = value.parse().expect("--publishers"),
            "--in-flight" => args.in_flight = value.parse().expect("--in-flight"),
            "--payload-bytes" => args.payload_bytes = value.parse().expect("--payload-bytes"),
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args = parse_args();
    let client = async_nats::connect(&args.url).await?;
    let js = async_nats::jetstream::new(client);
    let name = format!("PULSE_LOG_BENCH_{}", std::process::id());
    let subject_root = format!("pulsebench.{}", std::process::id());
    let _ = js.delete_stream(&name).await;
    js.create_stream(async_nats::jetstream::stream::Config {
        name: name.clone(),
        subjects: vec![format!("{subject_root}.>")],
        storage: async_nats::jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await?;
    let payload = bytes::Bytes::from(
        (0..args.payload_bytes)
            .map(|i| b'a' + (i % 26) as u8)
            .collect::<Vec<u8>>(),
    );
    let per_publisher = args.events / args.publishers;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..args.publishers {
        let (js, payload, subject) = (js.clone(), payload.clone(), format!("{subject_root}.p{p}"));
        let window = args.in_flight;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_publisher as usize);
            let mut pending = FuturesUnordered::new();
            for _ in 0..per_publisher {
                if pending.len() >= window {
                    let micros: u64 = pending.next().await.expect("a pending ack")?;
                    latencies.push(micros);
                }
                let sent = Instant::now();
                let ack = js.publish(subject.clone(), payload.clone()).await?;
                pending.push(async move {
                    ack.await?;
                    Ok::<_, async_nats::Error>(sent.elapsed().as_micros() as u64)
                });
            }
            while let Some(micros) = pending.next().await {
                latencies.push(micros?);
            }
            Ok::<_, async_nats::Error>(latencies)
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    let seconds = started.elapsed().as_secs_f64();
    let stored = js.get_stream(&name).await?.info().await?.state.messages;
    js.delete_stream(&name).await?;
    all.sort_unstable();
    let q = |q: f64| all[((all.len() as f64 * q).ceil() as usize).clamp(1, all.len()) - 1];
    let report = serde_json::json!({
        "peer": "nats-jetstream-file",
        "events": all.len(),
        "stored": stored,
        "publishers": args.publishers,
        "in_flight": args.in_flight,
        "payload_bytes": args.payload_bytes,
        "seconds": seconds,
        "events_per_s": all.len() as f64 / seconds,
        "p50_us": q(0.5),
        "p99_us": q(0.99),
        "p999_us": q(0.999),
    });
    println!("{report}");
    tokio::time::sleep(Duration::from_millis(10)).await;
    Ok(())
}
