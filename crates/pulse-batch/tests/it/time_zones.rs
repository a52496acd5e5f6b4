//! Calendar-day windows in a time zone: day boundaries at local midnight, and DST days
//! of 23 and 25 hours, checked end to end through the output rows.

use crate::common::*;

fn day_rows(tz: &str, readings: &[(&str, &str)]) -> Vec<serde_json::Value> {
    let dir = tmp();
    let input = path(&dir, "in.csv");
    let output = path(&dir, "out.jsonl");
    let mut text = HEADER.to_owned();
    for (value, at) in readings {
        text.push_str(&csv_line("u1", "heart_rate", value, "bpm", at));
    }
    write(&input, &text);
    run(&job(&s(&input), "1d", tz, &s(&output)));
    rows(&output)
}

fn hours(row: &serde_json::Value) -> i64 {
    let t = |k: &str| {
        pulse_batch::time::parse_rfc3339(row[k].as_str().unwrap_or_default().as_bytes())
            .unwrap_or(0)
    };
    (t("window_end") - t("window_start")) / 3_600_000_000
}

#[test]
fn shanghai_days_split_at_16_utc() {
    let rows = day_rows(
        "Asia/Shanghai",
        &[
            ("60", "2025-11-24T15:59:59Z"),
            ("70", "2025-11-24T23:59:59+08:00"),
            ("80", "2025-11-24T16:00:00Z"),
            ("90", "2025-11-25T00:00:00+08:00"),
        ],
    );
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["window_start"], "2025-11-23T16:00:00Z");
    assert_eq!(rows[0]["window_end"], "2025-11-24T16:00:00Z");
    assert_eq!(rows[0]["count"], 2);
    assert_eq!(rows[0]["max"], 70.0);
    assert_eq!(rows[1]["window_start"], "2025-11-24T16:00:00Z");
    assert_eq!(rows[1]["count"], 2);
    assert_eq!(rows[1]["min"], 80.0);
    assert!(rows.iter().all(|r| hours(r) == 24));
}

#[test]
fn new_york_spring_forward_day_has_23_hours() {
    let rows = day_rows(
        "America/New_York",
        &[
            ("60", "2025-03-09T00:00:00-05:00"),
            ("61", "2025-03-09T01:59:59-05:00"),
            ("62", "2025-03-09T03:00:00-04:00"),
            ("63", "2025-03-09T23:59:59-04:00"),
            ("64", "2025-03-10T00:00:00-04:00"),
        ],
    );
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["window_start"], "2025-03-09T05:00:00Z");
    assert_eq!(rows[0]["window_end"], "2025-03-10T04:00:00Z");
    assert_eq!(hours(&rows[0]), 23);
    assert_eq!(rows[0]["count"], 4);
    assert_eq!(rows[1]["count"], 1);
    assert_eq!(hours(&rows[1]), 24);
}

#[test]
fn new_york_fall_back_day_has_25_hours() {
    let rows = day_rows(
        "America/New_York",
        &[
            ("60", "2025-11-02T00:00:00-04:00"),
            ("61", "2025-11-02T01:30:00-04:00"),
            ("62", "2025-11-02T01:30:00-05:00"),
            ("63", "2025-11-02T23:59:59-05:00"),
        ],
    );
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["window_start"], "2025-11-02T04:00:00Z");
    assert_eq!(rows[0]["window_end"], "2025-11-03T05:00:00Z");
    assert_eq!(hours(&rows[0]), 25);
    assert_eq!(rows[0]["count"], 4);
}

#[test]
fn berlin_dst_days_and_fixed_windows_ignore_the_zone() {
    let dir = tmp();
    let input = path(&dir, "in.csv");
    let output = path(&dir, "out.jsonl");
    let mut text = HEADER.to_owned();
    for at in [
        "2025-03-30T01:59:00+01:00",
        "2025-03-30T03:00:00+02:00",
        "2025-10-26T02:30:00+02:00",
        "2025-10-26T02:30:00+01:00",
    ] {
        text.push_str(&csv_line("u1", "heart_rate", "70", "", at));
    }
    write(&input, &text);
    run(&job(&s(&input), "1h,1d", "Europe/Berlin", &s(&output)));
    let rows = rows(&output);
    let days: Vec<_> = rows.iter().filter(|r| r["window"] == "1d").collect();
    assert_eq!(days.len(), 2);
    assert_eq!(hours(days[0]), 23);
    assert_eq!(hours(days[1]), 25);
    // 01:59+01:00 and 03:00+02:00 are one UTC hour apart: 00:59Z and 01:00Z.
    let hourly: Vec<_> = rows.iter().filter(|r| r["window"] == "1h").collect();
    assert_eq!(hourly.len(), 4);
    assert!(hourly.iter().all(|r| hours(r) == 1));
    assert_eq!(hourly[0]["window_start"], "2025-03-30T00:00:00Z");
    assert_eq!(hourly[1]["window_start"], "2025-03-30T01:00:00Z");
}
