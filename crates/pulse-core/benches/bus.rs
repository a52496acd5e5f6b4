//! Criterion benchmarks of the in-process bus: pattern matching, the cached route lookup
//! (publishing with many non-matching subscriptions costs what publishing with none
//! does), and publishing with 1 and 8 no-op subscribers. Publishing is measured in
//! steady state: queues are bounded, so publishers run at the pace of the handlers.

use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_main, BatchSize, Criterion, Throughput};
use pulse_core::bus::{Bus, HandlerResult, SubscribeOptions, Subscription};
use pulse_core::{Event, Pattern};

const TYPE: &str = "health.reading.heart_rate";
const BATCH: usize = 256;

fn patterns(c: &mut Criterion) {
    let mut group = c.benchmark_group("pattern_match");
    for pattern in [
        "health.reading.heart_rate",
        "health.*.heart_rate",
        "health.>",
        "*.*.steps",
    ] {
        let parsed = Pattern::parse(pattern).unwrap();
        group.bench_function(pattern, |b| {
            b.iter(|| parsed.matches(std::hint::black_box(TYPE)))
        });
    }
    group.finish();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn events(payload: &Bytes) -> Vec<Event> {
    (0..BATCH)
        .map(|_| Event::new(TYPE).with_data("application/octet-stream", payload.clone()))
        .collect()
}

fn subscribe_noop(bus: &Bus, pattern: &str) -> Subscription {
    bus.subscribe(
        pattern,
        |_event: Arc<Event>| async { HandlerResult::Ok(()) },
        SubscribeOptions::new().capacity(8192),
    )
    .unwrap()
}

const OVERLAPPING: [&str; 8] = [
    "health.reading.heart_rate",
    "health.>",
    "health.reading.*",
    "health.*.heart_rate",
    ">",
    "*.reading.heart_rate",
    "health.reading.>",
    "*.*.*",
];

fn publish(c: &mut Criterion) {
    let rt = runtime();
    let payload = Bytes::from_static(&[b'x'; 256]);
    let mut group = c.benchmark_group("publish_batch_256");
    group.throughput(Throughput::Elements(BATCH as u64));

    // The route lookup: one matching subscription, with 0 or 1000 others that match
    // nothing. The cached route makes both cost the same.
    for idle in [0_usize, 1000] {
        let bus = Bus::new();
        let _subs: Vec<Subscription> = rt.block_on(async {
            let mut subs: Vec<Subscription> = (0..idle)
                .map(|i| subscribe_noop(&bus, &format!("idle.s{i}.>")))
                .collect();
            subs.push(subscribe_noop(&bus, TYPE));
            subs
        });
        group.bench_function(format!("1_subscriber_{idle}_idle"), |b| {
            b.to_async(&rt).iter_batched(
                || events(&payload),
                |batch| async { bus.publish_batch(batch).await.unwrap() },
                BatchSize::SmallInput,
            )
        });
    }

    let bus = Bus::new();
    let _subs: Vec<Subscription> = rt.block_on(async {
        OVERLAPPING
            .iter()
            .map(|p| subscribe_noop(&bus, p))
            .collect()
    });
    group.bench_function("8_overlapping_subscribers", |b| {
        b.to_async(&rt).iter_batched(
            || events(&payload),
            |batch| async { bus.publish_batch(batch).await.unwrap() },
            BatchSize::SmallInput,
        )
    });
    group.finish();

    let mut group = c.benchmark_group("publish_one");
    group.throughput(Throughput::Elements(1));
    let bus = Bus::new();
    let _sub = rt.block_on(async { subscribe_noop(&bus, TYPE) });
    group.bench_function("1_subscriber", |b| {
        b.to_async(&rt).iter_batched(
            || Event::new(TYPE).with_data("application/octet-stream", payload.clone()),
            |event| async { bus.publish(event).await.unwrap() },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

// The macro defines an undocumented public function.
#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::patterns, super::publish);
}
criterion_main!(group::benches);
