//! Criterion benchmarks of the SQLite log's hot paths: a group-committed append of a
//! batch, and reading a page back. End-to-end figures with concurrent publishers come
//! from `pulse bench log`.

#![allow(missing_docs)] // criterion_group! generates an undocumented function.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use pulse_core::{Event, EventLog, ReadQuery};
use pulse_sqlite::{FsyncPolicy, SqliteLog, SqliteOptions};

fn events(n: usize) -> Vec<Event> {
    let payload = bytes::Bytes::from(vec![b'x'; 256]);
    (0..n)
        .map(|i| {
            Event::new("bench.log.event")
                .with_subject(format!("user-{}", i % 1000))
                .with_data("application/octet-stream", payload.clone())
        })
        .collect()
}

fn append(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut group = c.benchmark_group("append");
    for (name, fsync) in [
        ("fsync_never", FsyncPolicy::Never),
        ("fsync_always", FsyncPolicy::Always),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let log = runtime
            .block_on(SqliteLog::open_with(
                dir.path(),
                SqliteOptions::default().with_fsync(fsync),
            ))
            .unwrap();
        group.throughput(Throughput::Elements(1000));
        group.bench_function(format!("batch_1000_{name}"), |b| {
            b.to_async(&runtime).iter_batched(
                || events(1000),
                |batch| {
                    let log = log.clone();
                    async move { log.append(batch).await.unwrap() }
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn read(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = runtime
        .block_on(SqliteLog::open_with(
            dir.path(),
            SqliteOptions::default().with_fsync(FsyncPolicy::Never),
        ))
        .unwrap();
    runtime.block_on(async {
        for _ in 0..20 {
            log.append(events(1000)).await.unwrap();
        }
    });
    let mut group = c.benchmark_group("read");
    group.throughput(Throughput::Elements(10_000));
    group.bench_function("page_10000", |b| {
        b.to_async(&runtime)
            .iter(|| async { log.read(ReadQuery::after(5_000, 10_000)).await.unwrap() })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default();
    targets = append, read
}
criterion_main!(benches);
