//! Hot-path micro benchmarks: time parsing, sketch inserts, and validation plus
//! aggregation of in-memory readings (what each worker does per row, without I/O).

use std::sync::Arc;

use criterion::{criterion_main, BenchmarkId, Criterion, Throughput};
use pulse_batch::sketch::Sketch;
use pulse_batch::time::{format_rfc3339, parse_rfc3339};
use pulse_batch::AggTable;
use pulse_batch::Aggregator;
use pulse_batch::WindowSet;
use pulse_batch::{Position, RejectLog};
use pulse_batch::{RawReading, RawValue};

struct Row {
    user: String,
    value: String,
    at: String,
}

fn rows(n: usize) -> Vec<Row> {
    (0..n)
        .map(|i| Row {
            user: format!("user-{:05}", i % 100),
            value: (60 + i % 40).to_string(),
            at: format_rfc3339((1_736_000_000 + (i / 100) as i64 * 60) * 1_000_000 + 123_000),
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let input = rows(100_000);
    let mut group = c.benchmark_group("batch");
    group.throughput(Throughput::Elements(input.len() as u64));
    group.bench_function("parse_rfc3339", |b| {
        b.iter(|| {
            input
                .iter()
                .filter_map(|r| parse_rfc3339(r.at.as_bytes()))
                .sum::<i64>()
        })
    });
    group.bench_function("sketch_insert", |b| {
        b.iter(|| {
            let mut s = Sketch::default();
            for (i, _) in input.iter().enumerate() {
                s.insert(40.0 + (i % 160) as f64);
            }
            s.count()
        })
    });
    for windows in ["5m", "5m,1h,1d"] {
        let set =
            Arc::new(WindowSet::parse(windows, "Europe/Berlin").unwrap_or_else(|e| panic!("{e}")));
        group.bench_with_input(
            BenchmarkId::new("validate_aggregate", windows),
            &set,
            |b, set| {
                b.iter(|| {
                    let rejects = RejectLog::none();
                    let mut agg = Aggregator::new(AggTable::new(Arc::clone(set)), &rejects);
                    for r in &input {
                        let raw = RawReading {
                            user_id: Some(r.user.as_bytes()),
                            metric: Some(b"heart_rate"),
                            value: Some(RawValue::Text(r.value.as_bytes())),
                            unit: Some(b"bpm"),
                            recorded_at: Some(r.at.as_bytes()),
                            source: None,
                        };
                        let _ = agg.push(&raw, Position::Byte(0), String::new);
                    }
                    agg.table.len()
                })
            },
        );
    }
    group.finish();
}

// The macro generates an undocumented function; the lint has nothing to say about it.
#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::bench);
}
criterion_main!(group::benches);
