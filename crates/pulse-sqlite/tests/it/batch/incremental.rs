//! Incremental runs: checkpoints commit with the aggregates, new data merges into stored
//! state, late readings re-open only their keys, a run with no new data changes nothing,
//! a failed commit leaves everything as it was, and a changed input is refused.

use std::collections::BTreeMap;

use pulse_batch::BatchError;
use rusqlite::Connection;

use super::common::*;

fn hr(user: &str, value: u32, at: &str) -> String {
    csv_line(user, "heart_rate", &value.to_string(), "bpm", at)
}

/// Rows of a JSONL output, keyed, without the float sums (compared separately).
fn keyed(path: &std::path::Path) -> BTreeMap<String, serde_json::Value> {
    rows(path)
        .into_iter()
        .map(|r| {
            let key = format!(
                "{} {} {} {}",
                r["user_id"], r["metric"], r["window"], r["window_start"]
            );
            (key, r)
        })
        .collect()
}

fn blobs(db: &std::path::Path) -> BTreeMap<String, Vec<u8>> {
    let conn = Connection::open(db).unwrap_or_else(|e| panic!("{e}"));
    let mut stmt = conn
        .prepare(r#"SELECT user_id || ' ' || metric || ' ' || "window" || ' ' || window_start, state FROM aggregates"#)
        .unwrap_or_else(|e| panic!("{e}"));
    let rows = stmt
        .query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
        })
        .unwrap_or_else(|e| panic!("{e}"));
    rows.map(|r| r.unwrap_or_else(|e| panic!("{e}"))).collect()
}

fn checkpoints(db: &std::path::Path) -> Vec<(String, String, String)> {
    let conn = Connection::open(db).unwrap_or_else(|e| panic!("{e}"));
    let mut stmt = conn
        .prepare("SELECT source, position, updated_at FROM pulse_batch_checkpoints ORDER BY source")
        .unwrap_or_else(|e| panic!("{e}"));
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap_or_else(|e| panic!("{e}"));
    rows.map(|r| r.unwrap_or_else(|e| panic!("{e}"))).collect()
}

#[test]
fn appended_and_late_data_merge_into_stored_state() {
    let dir = tmp();
    let input = path(&dir, "in.csv");
    let output = path(&dir, "out.jsonl");
    let state = path(&dir, "state.db");
    let mut first = HEADER.to_owned();
    for m in 0..30 {
        first.push_str(&hr("a", 60 + m, &format!("2025-06-01T10:{m:02}:00Z")));
        first.push_str(&hr("b", 90 - m, &format!("2025-06-01T10:{m:02}:30Z")));
    }
    write(&input, &first);
    let mut inc = job(&s(&input), "5m,1h", "UTC", &s(&output));
    inc.state = Some(state.clone());
    let s1 = run(&inc);
    assert_eq!(s1.counts.rows, 60);
    let before = blobs(&state);
    assert_eq!(before.len(), 2 * (6 + 1));

    // New data, plus one late reading for a:10:05-10:10 (already aggregated).
    let second = format!(
        "{}{}{}",
        hr("a", 100, "2025-06-01T10:31:00Z"),
        hr("a", 120, "2025-06-01T10:07:30Z"),
        hr("c", 70, "2025-06-01T11:00:00Z"),
    );
    append(&input, &second);
    let s2 = run(&inc);
    assert_eq!(s2.counts.rows, 3, "only the appended rows are read");
    let after = blobs(&state);
    let changed: Vec<&String> = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(*v))
        .map(|(k, _)| k)
        .collect();
    // a 10:05 (late), a 10:30 (new), a 10:00h (both), c 11:00 5m and 1h.
    assert_eq!(changed.len(), 5, "{changed:?}");
    assert!(
        changed.iter().all(|k| !k.starts_with("b ")),
        "b's keys were not touched"
    );
    assert_eq!(s2.keys_updated, 5);

    // The incremental result equals a full recomputation.
    let full_out = path(&dir, "full.jsonl");
    run(&job(&s(&input), "5m,1h", "UTC", &s(&full_out)));
    let inc_rows = keyed(&output);
    let full_rows = keyed(&full_out);
    assert_eq!(inc_rows.len(), full_rows.len());
    for (k, a) in &inc_rows {
        let b = &full_rows[k];
        for f in [
            "count",
            "min",
            "max",
            "p50",
            "p95",
            "p99",
            "window_end",
            "unit",
        ] {
            assert_eq!(a[f], b[f], "{k} {f}");
        }
        for f in ["sum", "avg", "stddev"] {
            let (x, y) = (a[f].as_f64().unwrap_or(0.0), b[f].as_f64().unwrap_or(0.0));
            assert!(
                (x - y).abs() <= 1e-9 * x.abs().max(1.0),
                "{k} {f}: {x} vs {y}"
            );
        }
    }
    let late = inc_rows.values().find(|r| {
        r["user_id"] == "a" && r["window"] == "5m" && r["window_start"] == "2025-06-01T10:05:00Z"
    });
    assert_eq!(late.and_then(|r| r["count"].as_u64()), Some(6));
    assert_eq!(late.and_then(|r| r["max"].as_f64()), Some(120.0));

    // A run with no new data changes nothing, not even the checkpoint's timestamp.
    let cp = checkpoints(&state);
    let s3 = run(&inc);
    assert_eq!(s3.counts.rows, 0);
    assert_eq!(s3.keys_updated, 0);
    assert_eq!(blobs(&state), after);
    assert_eq!(checkpoints(&state), cp);
    assert_eq!(keyed(&output).len(), inc_rows.len());
}

#[test]
fn a_partial_last_line_waits_for_the_next_run() {
    let dir = tmp();
    let input = path(&dir, "in.csv");
    let output = path(&dir, "out.jsonl");
    let mut inc = job(&s(&input), "1h", "UTC", &s(&output));
    inc.state = Some(path(&dir, "state.db"));
    write(
        &input,
        &format!(
            "{HEADER}{}u1,heart_rate,7",
            hr("u1", 70, "2025-06-01T10:00:00Z")
        ),
    );
    assert_eq!(run(&inc).counts.rows, 1);
    append(&input, "5,bpm,2025-06-01T10:30:00Z\n");
    let s2 = run(&inc);
    assert_eq!((s2.counts.rows, s2.counts.rejected_total()), (1, 0));
    assert_eq!(rows(&output)[0]["sum"], 145.0);
}

#[test]
fn a_rewritten_input_is_refused_until_full() {
    let dir = tmp();
    let input = path(&dir, "in.csv");
    let output = path(&dir, "out.jsonl");
    let mut inc = job(&s(&input), "1h", "UTC", &s(&output));
    inc.state = Some(path(&dir, "state.db"));
    write(
        &input,
        &format!("{HEADER}{}", hr("u1", 70, "2025-06-01T10:00:00Z")),
    );
    run(&inc);
    write(
        &input,
        &format!("{HEADER}{}", hr("u2", 80, "2025-06-01T10:00:00Z")),
    );
    let err = pulse_batch::run(&inc, &pulse_batch::Progress::new()).err();
    assert!(
        matches!(err, Some(BatchError::InputChanged { .. })),
        "{err:?}"
    );
    write(&input, "user_id,metric,value,recorded_at\n");
    let err = pulse_batch::run(&inc, &pulse_batch::Progress::new()).err();
    assert!(
        matches!(err, Some(BatchError::InputChanged { .. })),
        "{err:?}"
    );
    write(
        &input,
        &format!("{HEADER}{}", hr("u2", 80, "2025-06-01T10:00:00Z")),
    );
    inc.full = true;
    let s = run(&inc);
    assert_eq!(s.counts.rows, 1);
    let out = rows(&output);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["user_id"], "u2");
}

#[test]
fn other_windows_are_refused_without_full() {
    let dir = tmp();
    let input = path(&dir, "in.csv");
    write(
        &input,
        &format!("{HEADER}{}", hr("u1", 70, "2025-06-01T10:00:00Z")),
    );
    let db = format!("sqlite:{}", s(&path(&dir, "agg.db")));
    run(&job(&s(&input), "5m", "UTC", &db));
    let mut other = job(&s(&input), "1h", "UTC", &db);
    let err = pulse_batch::run(&other, &pulse_batch::Progress::new()).err();
    assert!(matches!(err, Some(BatchError::State { .. })), "{err:?}");
    other.full = true;
    assert_eq!(run(&other).keys_updated, 1);
}

#[test]
fn a_failed_commit_changes_nothing_and_the_rerun_counts_once() {
    let dir = tmp();
    let input = path(&dir, "in.csv");
    let db_path = path(&dir, "agg.db");
    let db = format!("sqlite:{}", s(&db_path));
    let mut text = HEADER.to_owned();
    for m in 0..10 {
        text.push_str(&hr("a", 60 + m, &format!("2025-06-01T10:{m:02}:00Z")));
        text.push_str(&hr("b", 60 + m, &format!("2025-06-01T10:{m:02}:00Z")));
    }
    write(&input, &text);
    let job = job(&s(&input), "5m", "UTC", &db);
    run(&job);
    let before = blobs(&db_path);
    let cp = checkpoints(&db_path);
    // Damage the stored state of b's second window: the next commit fails on that key,
    // after it has already written a's keys inside the transaction.
    let conn = Connection::open(&db_path).unwrap_or_else(|e| panic!("{e}"));
    conn.execute(
        "UPDATE aggregates SET state = x'00' WHERE user_id = 'b' AND window_start = '2025-06-01T10:05:00Z'",
        [],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let damaged = blobs(&db_path);
    append(
        &input,
        &format!(
            "{}{}",
            hr("a", 99, "2025-06-01T10:01:00Z"),
            hr("b", 99, "2025-06-01T10:06:00Z")
        ),
    );
    let err = pulse_batch::run(&job, &pulse_batch::Progress::new()).err();
    assert!(matches!(err, Some(BatchError::State { .. })), "{err:?}");
    assert_eq!(
        blobs(&db_path),
        damaged,
        "the failed transaction left nothing behind"
    );
    assert_eq!(checkpoints(&db_path), cp, "the checkpoint did not move");
    // Repair and rerun: the appended rows are counted exactly once.
    let repaired = before[&"b heart_rate 5m 2025-06-01T10:05:00Z".to_owned()].clone();
    conn.execute(
        "UPDATE aggregates SET state = ?1 WHERE user_id = 'b' AND window_start = '2025-06-01T10:05:00Z'",
        [repaired],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run(&job).counts.rows, 2);
    assert_eq!(run(&job).counts.rows, 0);
    let counts: Vec<i64> = conn
        .prepare("SELECT count FROM aggregates ORDER BY user_id, window_start")
        .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
        .unwrap_or_default();
    assert_eq!(counts, vec![6, 5, 5, 6]);
}

#[test]
fn a_sqlite_table_source_resumes_after_its_last_rowid() {
    let dir = tmp();
    let src = path(&dir, "src.db");
    let conn = Connection::open(&src).unwrap_or_else(|e| panic!("{e}"));
    conn.execute_batch(
        "CREATE TABLE readings (user_id TEXT, metric TEXT, value, unit TEXT, recorded_at TEXT)",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let insert = |user: &str, value: f64, at: &str| {
        conn.execute(
            "INSERT INTO readings VALUES (?1, 'body_weight', ?2, 'kg', ?3)",
            rusqlite::params![user, value, at],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    };
    insert("u1", 70.0, "2025-06-01T07:00:00Z");
    insert("u1", 71.0, "2025-06-02T07:00:00Z");
    conn.execute(
        "INSERT INTO readings VALUES (42, 'body_weight', '72.5', NULL, '2025-06-01T07:00:00Z')",
        [],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    conn.execute(
        "INSERT INTO readings VALUES ('u1', 'body_weight', 'heavy', 'kg', '2025-06-01T07:00:00Z')",
        [],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out_db = path(&dir, "agg.db");
    let job = job(
        &format!("sqlite:{}?table=readings", s(&src)),
        "1d",
        "Europe/London",
        &format!("sqlite:{}", s(&out_db)),
    );
    let s1 = run(&job);
    assert_eq!(
        (s1.counts.rows, s1.counts.rejected_total(), s1.keys_updated),
        (4, 1, 3)
    );
    insert("u1", 69.0, "2025-06-01T19:00:00Z");
    let s2 = run(&job);
    assert_eq!((s2.counts.rows, s2.keys_updated), (1, 1));
    assert_eq!(run(&job).counts.rows, 0);
    let out = Connection::open(&out_db).unwrap_or_else(|e| panic!("{e}"));
    let row: (i64, f64, f64, String) = out
        .query_row(
            r#"SELECT count, min, max, window_start FROM aggregates WHERE user_id = 'u1' AND "window" = '1d' ORDER BY window_start LIMIT 1"#,
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(row, (2, 69.0, 70.0, "2025-05-31T23:00:00Z".to_owned()));
    let missing = pulse_batch::run(
        &super::common::job(
            &format!("sqlite:{}?table=nope", s(&src)),
            "1d",
            "UTC",
            &s(&path(&dir, "o.jsonl")),
        ),
        &pulse_batch::Progress::new(),
    )
    .err();
    assert!(
        matches!(missing, Some(BatchError::InvalidInput { .. })),
        "{missing:?}"
    );
}
