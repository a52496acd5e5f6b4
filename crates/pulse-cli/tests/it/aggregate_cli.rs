//! `pulse gen readings` and `pulse aggregate` end to end, run as real processes:
//! generated files aggregate into well-formed, sorted rows that account for every
//! reading; bad arguments fail with exit code 2 and one line; a process that crashes
//! inside its commit or is killed at any moment never counts a reading twice.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn pulse(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pulse"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run pulse: {e}"))
}

fn ok(args: &[&str]) -> String {
    let out = pulse(args);
    assert!(
        out.status.success(),
        "pulse {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"))
}

fn p(dir: &tempfile::TempDir, name: &str) -> String {
    dir.path().join(name).display().to_string()
}

fn rows(path: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {path}: {e}"))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad row {l}: {e}")))
        .collect()
}

fn key(r: &serde_json::Value) -> (String, String, String, String) {
    let t = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
    (t("user_id"), t("metric"), t("window"), t("window_start"))
}

fn generate(dir: &tempfile::TempDir, name: &str, users: &str, days: &str) -> (String, u64) {
    let file = p(dir, name);
    let out = ok(&[
        "gen", "readings", "--users", users, "--days", days, "--output", &file, "--seed", "7",
    ]);
    let n = out
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected gen output {out:?}"));
    (file, n)
}

/// Sums of `count` per window label.
fn counts_per_window(rows: &[serde_json::Value]) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for r in rows {
        *out.entry(r["window"].as_str().unwrap_or_default().to_owned())
            .or_insert(0) += r["count"].as_u64().unwrap_or(0);
    }
    out
}

#[test]
fn generated_readings_aggregate_into_sorted_complete_rows() {
    let dir = tmp();
    let (csv, n) = generate(&dir, "r.csv", "4", "2");
    let (jsonl, n2) = generate(&dir, "r.jsonl", "4", "2");
    assert_eq!(n, n2);
    let again = p(&dir, "again.csv");
    ok(&[
        "gen", "readings", "--users", "4", "--days", "2", "--output", &again, "--seed", "7",
    ]);
    assert_eq!(
        std::fs::read(&csv).ok(),
        std::fs::read(&again).ok(),
        "same seed, same file"
    );

    let out = p(&dir, "out.jsonl");
    let summary = ok(&[
        "aggregate",
        "--input",
        &csv,
        "--window",
        "5m,1h,1d",
        "--tz",
        "Asia/Shanghai",
        "--output",
        &out,
    ]);
    assert_eq!(summary.lines().count(), 1, "{summary}");
    assert!(
        summary.starts_with(&format!("read {n} rows, rejected 0,")),
        "{summary}"
    );
    let rows = rows(&out);
    assert!(!rows.is_empty());
    let keys: Vec<_> = rows.iter().map(key).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(keys, sorted, "rows are sorted by key and unique");
    let columns = [
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
    for r in &rows {
        let obj = r
            .as_object()
            .unwrap_or_else(|| panic!("not an object: {r}"));
        assert_eq!(obj.len(), columns.len(), "{r}");
        for c in columns {
            assert!(obj.contains_key(c), "{c} missing in {r}");
        }
        for t in ["window_start", "window_end"] {
            assert!(
                r[t].as_str()
                    .is_some_and(|s| s.ends_with('Z') && s.len() == 20),
                "{r}"
            );
        }
        let count = r["count"].as_u64().unwrap_or(0);
        assert!(count >= 1);
        assert_eq!(r["stddev"].is_null(), count < 2, "{r}");
        let (min, max) = (
            r["min"].as_f64().unwrap_or(f64::NAN),
            r["max"].as_f64().unwrap_or(f64::NAN),
        );
        for q in ["avg", "p50", "p95", "p99"] {
            let v = r[q].as_f64().unwrap_or(f64::NAN);
            assert!(min <= v && v <= max, "{q} outside [min, max] in {r}");
        }
    }
    // Every reading is in exactly one window of each size.
    for (window, total) in counts_per_window(&rows) {
        assert_eq!(total, n, "window {window}");
    }
    let units: BTreeMap<String, String> = rows
        .iter()
        .map(|r| {
            (
                r["metric"].as_str().unwrap_or_default().to_owned(),
                r["unit"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(units.get("heart_rate").map(String::as_str), Some("/min"));
    assert_eq!(
        units.get("blood_glucose").map(String::as_str),
        Some("mmol/L")
    );
    assert_eq!(units.get("steps").map(String::as_str), Some("{steps}"));

    // The JSONL input gives the same rows, and a CSV output the same rows as CSV.
    let out2 = p(&dir, "out2.jsonl");
    ok(&[
        "aggregate",
        "--input",
        &jsonl,
        "--window",
        "5m,1h,1d",
        "--tz",
        "Asia/Shanghai",
        "--output",
        &out2,
    ]);
    assert_eq!(self::rows(&out2).iter().map(key).collect::<Vec<_>>(), keys);
    let out3 = p(&dir, "out.csv");
    ok(&[
        "aggregate",
        "--input",
        &csv,
        "--window",
        "5m,1h,1d",
        "--tz",
        "Asia/Shanghai",
        "--output",
        &out3,
    ]);
    let text = std::fs::read_to_string(&out3).unwrap_or_default();
    assert_eq!(text.lines().next(), Some(columns.join(",").as_str()));
    assert_eq!(text.lines().count(), rows.len() + 1);
}

#[test]
fn bad_arguments_and_inputs_exit_2_with_one_line() {
    let dir = tmp();
    let (csv, _) = generate(&dir, "r.csv", "1", "1");
    let out = p(&dir, "out.jsonl");
    let not_csv = p(&dir, "bad.csv");
    std::fs::write(&not_csv, "a,b\n1,2\n").unwrap_or_else(|e| panic!("{e}"));
    let cases: Vec<Vec<&str>> = vec![
        vec![
            "aggregate",
            "--input",
            "missing.csv",
            "--window",
            "5m",
            "--output",
            &out,
        ],
        vec![
            "aggregate",
            "--input",
            &csv,
            "--window",
            "5x",
            "--output",
            &out,
        ],
        vec![
            "aggregate",
            "--input",
            &csv,
            "--window",
            "5m,5m",
            "--output",
            &out,
        ],
        vec![
            "aggregate",
            "--input",
            &csv,
            "--window",
            "5m",
            "--tz",
            "Mars/Base",
            "--output",
            &out,
        ],
        vec![
            "aggregate",
            "--input",
            "r.parquet",
            "--window",
            "5m",
            "--output",
            &out,
        ],
        vec![
            "aggregate",
            "--input",
            &csv,
            "--window",
            "5m",
            "--output",
            "out.txt",
        ],
        vec![
            "aggregate",
            "--input",
            &csv,
            "--window",
            "5m",
            "--output",
            &out,
            "--state",
            "state.db",
        ],
        vec![
            "aggregate",
            "--input",
            "sqlite:nope.db?table=readings",
            "--window",
            "5m",
            "--output",
            &out,
        ],
        vec![
            "aggregate",
            "--input",
            "sqlite:x.db?table=a;b",
            "--window",
            "5m",
            "--output",
            &out,
        ],
        vec![
            "aggregate",
            "--input",
            &not_csv,
            "--window",
            "5m",
            "--output",
            &out,
        ],
        vec![
            "aggregate",
            "--input",
            &csv,
            "--window",
            "5m",
            "--output",
            "/nonexistent-dir/out.jsonl",
        ],
        vec![
            "gen", "readings", "--users", "0", "--days", "1", "--output", &out,
        ],
        vec![
            "gen",
            "readings",
            "--users",
            "1",
            "--days",
            "1",
            "--output",
            "r.parquet",
        ],
    ];
    for args in cases {
        let result = pulse(&args);
        assert_eq!(result.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
    }
    assert!(!Path::new(&out).exists(), "no output after a failed run");
    // clap's own errors (missing or unknown flags) also exit 2.
    for args in [
        vec!["aggregate", "--input", csv.as_str()],
        vec!["aggregate", "--bogus"],
    ] {
        let result = pulse(&args);
        assert_eq!(result.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&result.stderr).starts_with("error: "));
    }
}

fn assert_same_aggregates(a: &str, b: &str) {
    let (ra, rb) = (rows(a), rows(b));
    assert_eq!(ra.len(), rb.len());
    for (x, y) in ra.iter().zip(&rb) {
        for k in [
            "user_id",
            "metric",
            "window",
            "window_start",
            "count",
            "min",
            "max",
            "p50",
            "p95",
            "p99",
        ] {
            assert_eq!(x[k], y[k], "{k}: {x} vs {y}");
        }
        let (sx, sy) = (
            x["sum"].as_f64().unwrap_or(0.0),
            y["sum"].as_f64().unwrap_or(1.0),
        );
        assert!((sx - sy).abs() <= 1e-9 * sx.abs().max(1.0), "{x} vs {y}");
    }
}

fn state_checkpoints(db: &str) -> i64 {
    rusqlite::Connection::open(db)
        .and_then(|c| {
            c.query_row("SELECT count(*) FROM pulse_batch_checkpoints", [], |r| {
                r.get(0)
            })
        })
        .unwrap_or(-1)
}

#[test]
fn a_crash_inside_the_commit_loses_the_run_and_the_rerun_counts_once() {
    let dir = tmp();
    let (csv, n) = generate(&dir, "r.csv", "2", "1");
    let state = p(&dir, "state.db");
    let out = p(&dir, "out.jsonl");
    let state_arg = format!("sqlite:{state}");
    let args = [
        "aggregate",
        "--input",
        &csv,
        "--window",
        "5m,1d",
        "--output",
        &out,
        "--state",
        &state_arg,
    ];
    let crashed = Command::new(env!("CARGO_BIN_EXE_pulse"))
        .args(args)
        .env("PULSE_BATCH_FAILPOINT", "batch.before_commit")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !crashed.status.success(),
        "the failpoint aborts the process"
    );
    assert_eq!(state_checkpoints(&state), 0, "nothing committed");
    assert!(!Path::new(&out).exists());
    let summary = ok(&args);
    assert!(summary.starts_with(&format!("read {n} rows")), "{summary}");
    let summary = ok(&args);
    assert!(summary.starts_with("read 0 rows"), "{summary}");
    let fresh = p(&dir, "fresh.jsonl");
    ok(&[
        "aggregate",
        "--input",
        &csv,
        "--window",
        "5m,1d",
        "--output",
        &fresh,
    ]);
    assert_same_aggregates(&out, &fresh);
}

#[test]
fn killing_a_run_at_any_moment_never_double_counts() {
    let dir = tmp();
    let (csv, _) = generate(&dir, "r.csv", "30", "1");
    let state = p(&dir, "state.db");
    let out = p(&dir, "out.jsonl");
    let state_arg = format!("sqlite:{state}");
    let args = [
        "aggregate",
        "--input",
        &csv,
        "--window",
        "5m,1h",
        "--output",
        &out,
        "--state",
        &state_arg,
    ];
    // Kill at a spread of moments: before, during and possibly after the commit. The
    // assertion holds whichever point each kill lands on.
    for delay_ms in [5u64, 60, 200, 500, 900] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pulse"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"));
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
    }
    ok(&args);
    let fresh = p(&dir, "fresh.jsonl");
    ok(&[
        "aggregate",
        "--input",
        &csv,
        "--window",
        "5m,1h",
        "--output",
        &fresh,
    ]);
    assert_same_aggregates(&out, &fresh);
}
