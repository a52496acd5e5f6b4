//! Every rejection reason, through real files: counted, written to the rejects file with
//! its position, never aborting the run, and the good rows still aggregated.

use pulse_batch::RejectReason;

use crate::common::*;

const T: &str = "2025-06-01T12:00:00Z";

fn reasons_in(path: &std::path::Path) -> Vec<(String, serde_json::Value)> {
    rows(path)
        .into_iter()
        .map(|r| (r["reason"].as_str().unwrap_or_default().to_owned(), r))
        .collect()
}

#[test]
fn csv_rows_are_rejected_with_every_reason() {
    let dir = tmp();
    let input = path(&dir, "in.csv");
    let output = path(&dir, "out.jsonl");
    let rejects = path(&dir, "rejects.jsonl");
    let long_user = "x".repeat(200);
    let lines = [
        (csv_line("u1", "heart_rate", "70", "bpm", T), None),
        (
            "u1,heart_rate,71\n".to_owned(),
            Some(RejectReason::MalformedRow),
        ),
        (
            csv_line("", "heart_rate", "70", "bpm", T),
            Some(RejectReason::MissingField),
        ),
        (
            csv_line("u1", "heart_rate", "", "bpm", T),
            Some(RejectReason::MissingField),
        ),
        (
            csv_line(&long_user, "heart_rate", "70", "bpm", T),
            Some(RejectReason::BadUserId),
        ),
        (
            csv_line("u1", "mood", "3", "", T),
            Some(RejectReason::UnknownMetric),
        ),
        (
            csv_line("u1", "heart_rate", "70", "kg", T),
            Some(RejectReason::IncompatibleUnit),
        ),
        (
            csv_line("u1", "heart_rate", "seventy", "bpm", T),
            Some(RejectReason::InvalidValue),
        ),
        (
            csv_line("u1", "heart_rate", "NaN", "bpm", T),
            Some(RejectReason::NonFiniteValue),
        ),
        (
            csv_line("u1", "heart_rate", "inf", "bpm", T),
            Some(RejectReason::NonFiniteValue),
        ),
        (
            csv_line("u1", "heart_rate", "900", "bpm", T),
            Some(RejectReason::ImplausibleValue),
        ),
        (
            csv_line("u1", "heart_rate", "70", "bpm", "yesterday"),
            Some(RejectReason::UnparsableTime),
        ),
        (
            csv_line("u1", "heart_rate", "70", "bpm", "1960-01-01T00:00:00Z"),
            Some(RejectReason::TimeOutOfRange),
        ),
        (csv_line("u1", "heart_rate", "80", "beats/min", T), None),
        (csv_line("u1", "blood_glucose", "90.08", "mg/dL", T), None),
    ];
    let mut text = HEADER.to_owned();
    let mut offsets = Vec::new();
    for (line, reason) in &lines {
        offsets.push((text.len() as u64, *reason));
        text.push_str(line);
    }
    write(&input, &text);
    let mut job = job(&s(&input), "5m", "UTC", &s(&output));
    job.rejects = Some(rejects.clone());
    let summary = run(&job);
    assert_eq!(summary.counts.rows, lines.len() as u64);
    let expected_rejects = lines.iter().filter(|(_, r)| r.is_some()).count() as u64;
    assert_eq!(summary.counts.rejected_total(), expected_rejects);
    for reason in RejectReason::ALL {
        let n = lines.iter().filter(|(_, r)| *r == Some(reason)).count() as u64;
        assert!(n > 0, "no case for {reason}");
        assert_eq!(summary.counts.rejected(reason), n, "{reason}");
    }
    let written = reasons_in(&rejects);
    assert_eq!(written.len() as u64, expected_rejects);
    for (code, row) in &written {
        let byte = row["at"]["byte"].as_u64().unwrap_or(u64::MAX);
        let expected = offsets
            .iter()
            .find(|(o, _)| *o == byte)
            .and_then(|(_, r)| *r);
        assert_eq!(expected.map(|r| r.code()), Some(code.as_str()), "{row}");
        assert!(row["detail"].as_str().is_some_and(|d| !d.is_empty()));
        assert!(row["record"].as_str().is_some_and(|d| !d.is_empty()));
    }
    let out = rows(&output);
    let hr = out
        .iter()
        .find(|r| r["metric"] == "heart_rate")
        .cloned()
        .unwrap_or_default();
    assert_eq!(hr["count"], 2);
    assert_eq!(hr["sum"], 150.0);
    let glucose = out
        .iter()
        .find(|r| r["metric"] == "blood_glucose")
        .cloned()
        .unwrap_or_default();
    assert!((glucose["avg"].as_f64().unwrap_or(0.0) - 5.0).abs() < 1e-12);
    assert_eq!(glucose["unit"], "mmol/L");
}

#[test]
fn jsonl_rows_are_rejected_and_counted() {
    let dir = tmp();
    let input = path(&dir, "in.jsonl");
    let output = path(&dir, "out.jsonl");
    let rejects = path(&dir, "rejects.jsonl");
    let lines = [
        (
            r#"{"user_id":"u1","metric":"steps","value":120,"unit":"{steps}","recorded_at":"2025-06-01T12:00:00Z"}"#,
            None,
        ),
        (
            r#"{"user_id":"u1","metric":"steps","value":30,"recorded_at":"2025-06-01T12:01:00Z"}"#,
            None,
        ),
        (r#"not json"#, Some("malformed_row")),
        (r#"[1,2,3]"#, Some("malformed_row")),
        (
            r#"{"user_id":"u1","metric":"steps","value":1e999,"recorded_at":"2025-06-01T12:00:00Z"}"#,
            Some("malformed_row"),
        ),
        (
            r#"{"user_id":"u1","metric":"steps","recorded_at":"2025-06-01T12:00:00Z"}"#,
            Some("missing_field"),
        ),
        (
            r#"{"user_id":"u1","metric":"steps","value":"NaN","recorded_at":"2025-06-01T12:00:00Z"}"#,
            Some("non_finite_value"),
        ),
        (
            r#"{"user_id":"u1","metric":"steps","value":-5,"recorded_at":"2025-06-01T12:00:00Z"}"#,
            Some("implausible_value"),
        ),
        (
            r#"{"user_id":"u1","metric":"steps","value":5,"unit":"mmHg","recorded_at":"2025-06-01T12:00:00Z"}"#,
            Some("incompatible_unit"),
        ),
        (
            r#"{"user_id":"u\u0007","metric":"steps","value":5,"recorded_at":"2025-06-01T12:00:00Z"}"#,
            Some("bad_user_id"),
        ),
        (
            r#"{"user_id":"u1","metric":"steps","value":5,"recorded_at":"2025-06-01"}"#,
            Some("unparsable_time"),
        ),
    ];
    let mut text = String::new();
    for (line, _) in &lines {
        text.push_str(line);
        text.push_str("\n\n");
    }
    write(&input, &text);
    let mut job = job(&s(&input), "1h", "UTC", &s(&output));
    job.rejects = Some(rejects.clone());
    let summary = run(&job);
    assert_eq!(
        summary.counts.rows,
        lines.len() as u64,
        "blank lines are not rows"
    );
    let mut expected: Vec<&str> = lines.iter().filter_map(|(_, r)| *r).collect();
    let mut got: Vec<String> = reasons_in(&rejects).into_iter().map(|(c, _)| c).collect();
    expected.sort_unstable();
    got.sort_unstable();
    assert_eq!(got, expected);
    let out = rows(&output);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["sum"], 150.0);
    assert_eq!(out[0]["count"], 2);
}

#[test]
fn a_csv_without_required_columns_is_an_input_error() {
    let dir = tmp();
    let input = path(&dir, "in.csv");
    write(
        &input,
        "user,metric,value,recorded_at\nu1,steps,1,2025-06-01T12:00:00Z\n",
    );
    let job = job(&s(&input), "1h", "UTC", &s(&path(&dir, "out.jsonl")));
    let err = pulse_batch::run(&job, &pulse_batch::Progress::new()).err();
    assert!(
        matches!(err, Some(pulse_batch::BatchError::InvalidInput { .. })),
        "{err:?}"
    );
    assert!(
        !path(&dir, "out.jsonl").exists(),
        "nothing is written on error"
    );
}

#[test]
fn a_byte_order_mark_is_not_part_of_the_data() {
    let dir = tmp();
    let csv = path(&dir, "in.csv");
    let jsonl = path(&dir, "in.jsonl");
    write(
        &csv,
        &format!("\u{feff}{HEADER}{}", csv_line("u1", "steps", "10", "", T)),
    );
    write(
        &jsonl,
        "\u{feff}{\"user_id\":\"u1\",\"metric\":\"steps\",\"value\":10,\"recorded_at\":\"2025-06-01T12:00:00Z\"}\n",
    );
    for input in [csv, jsonl] {
        let summary = run(&job(&s(&input), "1h", "UTC", &s(&path(&dir, "out.jsonl"))));
        assert_eq!(
            (summary.counts.rows, summary.counts.rejected_total()),
            (1, 0),
            "{input:?}"
        );
    }
}
