//! An output row — one window of one user's metric — and its JSONL and CSV encodings.
//!
//! The row shape is the contract of `pulse aggregate`: `user_id, metric, unit, window,
//! window_start, window_end, count, sum, avg, min, max, stddev, p50, p95, p99`, times in
//! RFC 3339 UTC ending in `Z`, values in the metric's canonical unit, `stddev` null below
//! two readings. Encoding is hand-written into a reused `String` because it runs once per
//! window and serde's generic path costs more than the aggregation itself.

use std::fmt::Write as _;

use crate::catalog::Metric;
use crate::state::Stats;
use crate::time::{push_rfc3339, Micros};

/// The CSV header, in column order.
pub const COLUMNS: [&str; 15] = [
    "user_id",
    "metric",
    "unit",
    "window",
    "window_start",
    "window_end",
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "stddev",
    "p50",
    "p95",
    "p99",
];

/// One output row.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Row<'a> {
    /// The user.
    pub user_id: &'a str,
    /// The metric (its canonical unit is the row's unit).
    pub metric: Metric,
    /// The window label as given, e.g. `"5m"`.
    pub window: &'a str,
    /// Start (inclusive).
    pub window_start: Micros,
    /// End (exclusive).
    pub window_end: Micros,
    /// The statistics.
    pub stats: Stats,
}

fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn push_num(out: &mut String, v: f64) {
    // Every value is finite (validation guarantees it); ryu prints the shortest
    // representation that reads back to the same f64, twice as fast as `Display`.
    let mut buf = ryu::Buffer::new();
    out.push_str(buf.format_finite(v));
}

fn push_csv_field(out: &mut String, s: &str) {
    if s.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

impl Row<'_> {
    /// Appends the row as one JSON object and a newline.
    pub fn push_json(&self, out: &mut String) {
        out.push_str("{\"user_id\":");
        push_json_str(out, self.user_id);
        out.push_str(",\"metric\":\"");
        out.push_str(self.metric.name());
        out.push_str("\",\"unit\":");
        push_json_str(out, self.metric.unit());
        out.push_str(",\"window\":");
        push_json_str(out, self.window);
        out.push_str(",\"window_start\":\"");
        push_rfc3339(out, self.window_start);
        out.push_str("\",\"window_end\":\"");
        push_rfc3339(out, self.window_end);
        let s = &self.stats;
        let _ = write!(out, "\",\"count\":{}", s.count);
        for (name, v) in [
            ("sum", s.sum),
            ("avg", s.avg),
            ("min", s.min),
            ("max", s.max),
        ] {
            out.push_str(",\"");
            out.push_str(name);
            out.push_str("\":");
            push_num(out, v);
        }
        out.push_str(",\"stddev\":");
        match s.stddev {
            Some(v) => push_num(out, v),
            None => out.push_str("null"),
        }
        for (name, v) in [("p50", s.p50), ("p95", s.p95), ("p99", s.p99)] {
            out.push_str(",\"");
            out.push_str(name);
            out.push_str("\":");
            push_num(out, v);
        }
        out.push_str("}\n");
    }

    /// Appends the row as one CSV record (null as an empty field) and a newline.
    pub fn push_csv(&self, out: &mut String) {
        push_csv_field(out, self.user_id);
        out.push(',');
        out.push_str(self.metric.name());
        out.push(',');
        out.push_str(self.metric.unit());
        out.push(',');
        push_csv_field(out, self.window);
        out.push(',');
        push_rfc3339(out, self.window_start);
        out.push(',');
        push_rfc3339(out, self.window_end);
        let s = &self.stats;
        let _ = write!(out, ",{}", s.count);
        for v in [s.sum, s.avg, s.min, s.max] {
            out.push(',');
            push_num(out, v);
        }
        out.push(',');
        if let Some(v) = s.stddev {
            push_num(out, v);
        }
        for v in [s.p50, s.p95, s.p99] {
            out.push(',');
            push_num(out, v);
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(user: &str, stddev: Option<f64>) -> Row<'_> {
        Row {
            user_id: user,
            metric: Metric::HeartRate,
            window: "5m",
            window_start: 0,
            window_end: 300_000_000,
            stats: Stats {
                count: 2,
                sum: 150.0,
                avg: 75.0,
                min: 70.0,
                max: 80.0,
                stddev,
                p50: 70.2,
                p95: 79.9,
                p99: 80.0,
            },
        }
    }

    #[test]
    fn json_is_valid_and_complete() {
        let mut out = String::new();
        row("u\"1\\\n", Some(7.5)).push_json(&mut out);
        assert!(out.ends_with("}\n"));
        let value: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        assert_eq!(value["user_id"], "u\"1\\\n");
        assert_eq!(value["unit"], "/min");
        assert_eq!(value["window_start"], "1970-01-01T00:00:00Z");
        assert_eq!(value["window_end"], "1970-01-01T00:05:00Z");
        assert_eq!(value["count"], 2);
        assert_eq!(value["stddev"], 7.5);
        let keys: Vec<&str> = value
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let mut expected = COLUMNS.to_vec();
        expected.sort_unstable();
        let mut keys = keys;
        keys.sort_unstable();
        assert_eq!(keys, expected);
        let mut out = String::new();
        row("u", None).push_json(&mut out);
        assert!(out.contains("\"stddev\":null"));
    }

    #[test]
    fn csv_quotes_when_needed() {
        let mut out = String::new();
        row("a,\"b\"", None).push_csv(&mut out);
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(out.as_bytes());
        let record = reader
            .records()
            .next()
            .and_then(Result::ok)
            .unwrap_or_default();
        assert_eq!(record.len(), COLUMNS.len());
        assert_eq!(&record[0], "a,\"b\"");
        assert_eq!(&record[11], "");
        assert_eq!(&record[6], "2");
    }
}
