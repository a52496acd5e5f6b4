//! How long the scheduler task spends computing tick times: `next_after` for an interval, a
//! cron expression in UTC and one in a DST zone, and counting the ticks of a long stall.

// `criterion_group!` generates an undocumented `pub fn benches`.
#![allow(missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use pulse_scheduler::Schedule;

fn next_after(c: &mut Criterion) {
    let start: chrono::DateTime<chrono::Utc> = "2026-03-07T12:34:56Z".parse().unwrap();
    let cases = [
        (
            "interval every 5m",
            Schedule::parse("every 5m", chrono_tz::UTC).unwrap(),
        ),
        (
            "cron */5 utc",
            Schedule::parse("*/5 * * * *", chrono_tz::UTC).unwrap(),
        ),
        (
            "cron */5 new_york",
            Schedule::parse("*/5 * * * *", chrono_tz::America::New_York).unwrap(),
        ),
        (
            "cron 30 2 utc",
            Schedule::parse("30 2 * * *", chrono_tz::UTC).unwrap(),
        ),
        (
            "cron 30 2 new_york",
            Schedule::parse("30 2 * * *", chrono_tz::America::New_York).unwrap(),
        ),
    ];
    let mut group = c.benchmark_group("next_after");
    for (name, schedule) in &cases {
        group.bench_function(*name, |b| b.iter(|| schedule.next_after(black_box(start))));
    }
    group.finish();

    let end = start + chrono::Duration::days(7);
    let mut group = c.benchmark_group("count_between_7_days");
    for (name, schedule) in &cases[..3] {
        group.bench_function(*name, |b| {
            b.iter(|| schedule.count_between(black_box(start), black_box(end), 10_000))
        });
    }
    group.finish();
}

criterion_group!(benches, next_after);
criterion_main!(benches);
