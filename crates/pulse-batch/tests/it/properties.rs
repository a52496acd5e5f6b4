//! Aggregates against a naive reference on random readings: count, sum, min and max
//! exact, avg within 1e-9, quantiles within the sketch's bound of an allowed order
//! statistic, and merging partial tables equal to aggregating the union.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::TimeZone;
use proptest::prelude::*;
use pulse_batch::time::{format_rfc3339, MICROS_PER_SEC};
use pulse_batch::AggTable;
use pulse_batch::Aggregator;
use pulse_batch::Stats;
use pulse_batch::WindowSet;
use pulse_batch::{Position, RejectLog};
use pulse_batch::{RawReading, RawValue};

use crate::common::*;

/// 2025-03-08T00:00:00Z: the span covers the New York spring-forward of 2025-03-09.
const BASE: i64 = 1_741_392_000;
const USERS: [&str; 4] = ["alice", "bob", "carol", "zoë"];
const METRICS: [(&str, &str, f64, f64); 3] = [
    ("heart_rate", "bpm", 40.0, 200.0),
    ("steps", "count", 0.0, 400.0),
    ("spo2", "%", 85.0, 100.0),
];

#[derive(Clone, Debug)]
struct R {
    user: usize,
    metric: usize,
    /// Quarter units: sums of multiples of 0.25 are exact in f64, in any order.
    quarters: u32,
    secs: i64,
    millis: i64,
}

impl R {
    fn value(&self) -> f64 {
        let (_, _, lo, hi) = METRICS[self.metric];
        (lo + f64::from(self.quarters) * 0.25).min(hi)
    }
    fn at(&self) -> i64 {
        (BASE + self.secs) * MICROS_PER_SEC + self.millis * 1000
    }
    fn time_text(&self) -> String {
        format_rfc3339(self.at())
    }
}

fn reading() -> impl Strategy<Value = R> {
    (
        0..USERS.len(),
        0..METRICS.len(),
        0u32..600,
        0i64..3 * 86_400,
        0i64..1000,
    )
        .prop_map(|(user, metric, quarters, secs, millis)| R {
            user,
            metric,
            quarters,
            secs,
            millis,
        })
}

fn readings() -> impl Strategy<Value = Vec<R>> {
    // Clustered times so that windows hold several readings.
    (
        prop::collection::vec(reading(), 1..250),
        0i64..3 * 86_400,
        prop::bool::ANY,
    )
        .prop_map(|(mut rs, center, cluster)| {
            if cluster {
                for r in &mut rs {
                    r.secs = (center + r.secs % 1800).min(3 * 86_400 - 1);
                }
            }
            rs
        })
}

type Key = (String, String, String, String);

fn window_start(set: &WindowSet, w: usize, t: i64) -> (i64, i64) {
    use pulse_batch::WindowKind;
    match set.windows()[w].kind() {
        WindowKind::Fixed { seconds } => {
            let len = seconds * MICROS_PER_SEC;
            let start = t.div_euclid(len) * len;
            (start, start + len)
        }
        WindowKind::Day => {
            let tz = set.tz();
            let local = tz.timestamp_micros(t).single().map(|d| d.date_naive());
            let midnight = |d: chrono::NaiveDate| {
                tz.from_local_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default())
                    .earliest()
                    .map_or(0, |x| x.timestamp_micros())
            };
            let day = local.unwrap_or_default();
            (midnight(day), midnight(day.succ_opt().unwrap_or(day)))
        }
    }
}

fn reference(rs: &[R], set: &WindowSet) -> BTreeMap<Key, (Vec<f64>, String)> {
    let mut groups: BTreeMap<Key, (Vec<f64>, String)> = BTreeMap::new();
    for r in rs {
        for (w, window) in set.windows().iter().enumerate() {
            let (start, end) = window_start(set, w, r.at());
            let key = (
                USERS[r.user].to_owned(),
                METRICS[r.metric].0.to_owned(),
                window.label().to_owned(),
                format_rfc3339(start),
            );
            let entry = groups
                .entry(key)
                .or_insert_with(|| (Vec::new(), format_rfc3339(end)));
            entry.0.push(r.value());
        }
    }
    groups
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()).max(1e-9)
}

fn quantile_ok(sorted: &[f64], q: f64, estimate: f64) -> bool {
    let pos = q * (sorted.len() - 1) as f64;
    [pos.floor() as usize, pos.ceil() as usize]
        .iter()
        .any(|&r| (estimate - sorted[r]).abs() <= 0.01 * sorted[r].abs())
}

fn check_stats(values: &[f64], stats: &Stats) -> Result<(), TestCaseError> {
    let n = values.len();
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let sum: f64 = values.iter().sum();
    let mean = sum / n as f64;
    prop_assert_eq!(stats.count, n as u64);
    prop_assert_eq!(stats.sum, sum);
    prop_assert_eq!(stats.min, sorted[0]);
    prop_assert_eq!(stats.max, sorted[n - 1]);
    prop_assert!(
        close(stats.avg, mean, 1e-9),
        "avg {} vs {}",
        stats.avg,
        mean
    );
    if n < 2 {
        prop_assert_eq!(stats.stddev, None);
    } else {
        let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1) as f64;
        let sd = stats.stddev.unwrap_or(f64::NAN);
        prop_assert!(
            (sd - var.sqrt()).abs() <= 1e-9 * var.sqrt().max(1.0),
            "sd {} vs {}",
            sd,
            var.sqrt()
        );
    }
    for (q, est) in [(0.5, stats.p50), (0.95, stats.p95), (0.99, stats.p99)] {
        prop_assert!(
            quantile_ok(&sorted, q, est),
            "q{} = {} for {:?}",
            q,
            est,
            sorted
        );
    }
    Ok(())
}

fn stats_of(row: &serde_json::Value) -> Stats {
    let f = |k: &str| row[k].as_f64().unwrap_or(f64::NAN);
    Stats {
        count: row["count"].as_u64().unwrap_or(0),
        sum: f("sum"),
        avg: f("avg"),
        min: f("min"),
        max: f("max"),
        stddev: row["stddev"].as_f64(),
        p50: f("p50"),
        p95: f("p95"),
        p99: f("p99"),
    }
}

fn to_csv(rs: &[R]) -> String {
    let mut text = HEADER.to_owned();
    for r in rs {
        let (metric, unit, _, _) = METRICS[r.metric];
        text.push_str(&csv_line(
            USERS[r.user],
            metric,
            &r.value().to_string(),
            unit,
            &r.time_text(),
        ));
    }
    text
}

fn push_all(agg: &mut Aggregator<'_>, rs: &[R]) {
    for r in rs {
        let (metric, unit, _, _) = METRICS[r.metric];
        let value = r.value().to_string();
        let at = r.time_text();
        let raw = RawReading {
            user_id: Some(USERS[r.user].as_bytes()),
            metric: Some(metric.as_bytes()),
            value: Some(RawValue::Text(value.as_bytes())),
            unit: Some(unit.as_bytes()),
            recorded_at: Some(at.as_bytes()),
            source: None,
        };
        let pushed = agg.push(&raw, Position::Byte(0), String::new);
        assert!(pushed.is_ok());
    }
}

fn table_rows(table: &AggTable) -> Vec<(Key, Stats, String)> {
    let mut out = Vec::new();
    let _ = table.for_each_sorted(|row, _| {
        out.push((
            (
                row.user_id.to_owned(),
                row.metric.name().to_owned(),
                row.window.to_owned(),
                format_rfc3339(row.window_start),
            ),
            row.stats,
            format_rfc3339(row.window_end),
        ));
        Ok::<_, ()>(())
    });
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn end_to_end_matches_the_reference(rs in readings()) {
        let dir = tmp();
        let input = path(&dir, "in.csv");
        let output = path(&dir, "out.jsonl");
        write(&input, &to_csv(&rs));
        let job = job(&s(&input), "5m,1h,1d", "America/New_York", &s(&output));
        let summary = run(&job);
        prop_assert_eq!(summary.counts.rows, rs.len() as u64);
        prop_assert_eq!(summary.counts.rejected_total(), 0);
        let expected = reference(&rs, &job.windows);
        let got = rows(&output);
        prop_assert_eq!(got.len(), expected.len());
        let keys: Vec<Key> = got
            .iter()
            .map(|r| {
                let t = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
                (t("user_id"), t("metric"), t("window"), t("window_start"))
            })
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        prop_assert_eq!(&keys, &sorted, "rows are not in key order");
        for (key, row) in keys.iter().zip(&got) {
            let Some((values, end)) = expected.get(key) else {
                return Err(TestCaseError::fail(format!("unexpected row {key:?}")));
            };
            prop_assert_eq!(row["window_end"].as_str(), Some(end.as_str()));
            prop_assert!(row["window_end"].as_str().is_some_and(|e| e.ends_with('Z')));
            check_stats(values, &stats_of(row))?;
        }
    }

    #[test]
    fn merging_parts_equals_aggregating_the_union(rs in readings(), cut in 0usize..250) {
        let windows = Arc::new(WindowSet::parse("5m,1d", "Asia/Shanghai").unwrap_or_else(|e| panic!("{e}")));
        let rejects = RejectLog::none();
        let cut = cut.min(rs.len());
        let mut whole = Aggregator::new(AggTable::new(Arc::clone(&windows)), &rejects);
        push_all(&mut whole, &rs);
        let mut left = Aggregator::new(AggTable::new(Arc::clone(&windows)), &rejects);
        push_all(&mut left, &rs[..cut]);
        let mut right = Aggregator::new(AggTable::new(Arc::clone(&windows)), &rejects);
        // The right part sees users in another order, so its ids differ and must be remapped.
        let mut reversed = rs[cut..].to_vec();
        reversed.reverse();
        push_all(&mut right, &reversed);
        let mut merged = left.table;
        prop_assert!(merged.merge(right.table).is_ok());
        let a = table_rows(&whole.table);
        let b = table_rows(&merged);
        prop_assert_eq!(a.len(), b.len());
        for ((ka, sa, ea), (kb, sb, eb)) in a.iter().zip(&b) {
            prop_assert_eq!(ka, kb);
            prop_assert_eq!(ea, eb);
            prop_assert_eq!(sa.count, sb.count);
            prop_assert_eq!(sa.sum, sb.sum);
            prop_assert_eq!(sa.min, sb.min);
            prop_assert_eq!(sa.max, sb.max);
            prop_assert!(close(sa.avg, sb.avg, 1e-9));
            prop_assert_eq!((sa.p50, sa.p95, sa.p99), (sb.p50, sb.p95, sb.p99));
        }
        let expected = reference(&rs, &windows);
        for (key, stats, _) in &b {
            let Some((values, _)) = expected.get(key) else {
                return Err(TestCaseError::fail(format!("unexpected key {key:?}")));
            };
            check_stats(values, stats)?;
        }
    }
}

#[test]
fn two_workers_give_the_same_rows_as_one() {
    use pulse_batch::synth::{generate, GenConfig};
    use pulse_batch::FileFormat;
    let dir = tmp();
    let input = path(&dir, "big.csv");
    let cfg = GenConfig {
        users: 6,
        days: 2,
        seed: 3,
        start_day: 20_100,
        format: FileFormat::Csv,
    };
    let mut file = std::fs::File::create(&input).unwrap_or_else(|e| panic!("{e}"));
    let n = generate(&cfg, &mut file).unwrap_or_else(|e| panic!("{e}"));
    drop(file);
    assert!(
        std::fs::metadata(&input).map(|m| m.len()).unwrap_or(0) > 1 << 20,
        "needs a file big enough to split"
    );
    let mut outputs = Vec::new();
    for threads in [1, 2] {
        let output = path(&dir, &format!("out{threads}.jsonl"));
        let mut job = job(&s(&input), "5m,1h,1d", "Europe/Berlin", &s(&output));
        job.threads = threads;
        let summary = run(&job);
        assert_eq!(summary.counts.rows, n);
        outputs.push(std::fs::read_to_string(&output).unwrap_or_default());
    }
    // Sums may differ in the last bit with the order of additions; everything else is exact.
    let a = outputs[0]
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap_or_default());
    let b: Vec<_> = outputs[1]
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap_or_default())
        .collect();
    assert_eq!(outputs[0].lines().count(), b.len());
    for (x, y) in a.zip(&b) {
        for k in [
            "user_id",
            "metric",
            "window",
            "window_start",
            "window_end",
            "count",
            "min",
            "max",
            "p50",
            "p95",
            "p99",
        ] {
            assert_eq!(x[k], y[k], "{k} differs: {x} vs {y}");
        }
        for k in ["sum", "avg"] {
            assert!(
                close(
                    x[k].as_f64().unwrap_or(0.0),
                    y[k].as_f64().unwrap_or(1.0),
                    1e-12
                ),
                "{k}: {x} vs {y}"
            );
        }
    }
}
