//! `pulse aggregate --input postgres://...` end to end, as a user runs it: a readings
//! table with good and bad rows aggregates into exactly the rows the same readings give
//! as a CSV file, with the same rejections; with `--state` a second run reads only the
//! rows added since and ends where a one-shot run over everything ends; the database
//! gains no tables; bad names and unreachable servers fail with exit code 2 and one line.
//!
//! The table tests run when `PULSE_TEST_POSTGRES_URL` names a server (and fail when it
//! cannot be reached); each works in a schema of its own, dropped at the end.

use std::process::{Command, Output};

use chrono::{Duration, TimeZone, Utc};

use crate::support::{free_port, server_url, unique, DropSchema};

fn pulse(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pulse"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run pulse: {e}"))
}

/// Runs `pulse aggregate` with `args` and returns its summary without the time taken.
fn aggregate(args: &[&str]) -> String {
    let mut all = vec!["aggregate"];
    all.extend_from_slice(args);
    let out = pulse(&all);
    assert!(
        out.status.success(),
        "pulse {all:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    match stdout.rsplit_once(" in ") {
        Some((summary, _seconds)) => summary.to_owned(),
        None => panic!("unexpected summary {stdout:?}"),
    }
}

/// Runs `pulse aggregate` with `args`, expecting exit code 2 and one line of error.
fn refused(args: &[&str]) -> String {
    let mut all = vec!["aggregate"];
    all.extend_from_slice(args);
    let out = pulse(&all);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{all:?}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{all:?}: {stderr}");
    assert!(stderr.starts_with("error: "), "{all:?}: {stderr}");
    stderr
}

/// One reading as both inputs spell it: the value is text PostgreSQL's float8 and Rust's
/// float parser read alike (`NaN`, `Infinity` included); `None` is a NULL / empty unit.
struct Reading {
    user: String,
    metric: &'static str,
    value: String,
    unit: Option<&'static str>,
    at: String,
}

/// What the readings should be rejected for, by reason code.
#[derive(Debug, Default, PartialEq)]
struct Expected {
    unknown_metric: u64,
    non_finite_value: u64,
    implausible_value: u64,
}

/// `n` readings from `first` on, a few of every kind, bad ones included; `late` moves
/// every fourth reading an hour back, into windows earlier rows already filled.
fn readings(first: u64, n: u64, late: bool, expected: &mut Expected) -> Vec<Reading> {
    let start = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
    let mut seed = 0x2545_f491_4f6c_dd1d_u64 ^ first;
    let mut next = move |bound: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % bound
    };
    (first..first + n)
        .map(|i| {
            let mut at = start + Duration::seconds(i as i64 * 37);
            if late && i % 4 == 0 {
                at -= Duration::hours(1);
            }
            let user = format!("user-{}", i % 5);
            let frac = next(100) as f64 / 100.0;
            let (metric, value, unit) = match i % 9 {
                _ if i % 23 == 0 => {
                    expected.unknown_metric += 1;
                    ("warp_speed", "9".to_owned(), None)
                }
                _ if i % 29 == 0 => {
                    expected.non_finite_value += 1;
                    ("heart_rate", "NaN".to_owned(), Some("/min"))
                }
                _ if i % 31 == 0 => {
                    expected.non_finite_value += 1;
                    ("spo2", "Infinity".to_owned(), Some("%"))
                }
                _ if i % 19 == 0 => {
                    expected.implausible_value += 1;
                    ("heart_rate", "900".to_owned(), Some("/min"))
                }
                0 | 1 => (
                    "heart_rate",
                    (50.0 + next(80) as f64 + frac).to_string(),
                    Some(if i % 2 == 0 { "/min" } else { "bpm" }),
                ),
                2 => ("steps", next(3000).to_string(), None),
                3 => (
                    "blood_glucose",
                    (70.0 + next(110) as f64 + frac).to_string(),
                    Some("mg/dL"),
                ),
                4 => (
                    "blood_glucose",
                    (4.0 + next(6) as f64 + frac).to_string(),
                    Some("mmol/L"),
                ),
                5 => ("spo2", (90 + next(10)).to_string(), Some("%")),
                6 => (
                    "body_temperature",
                    (36.0 + next(2) as f64 + frac).to_string(),
                    Some("Cel"),
                ),
                7 => (
                    "blood_pressure_systolic",
                    (100 + next(50)).to_string(),
                    None,
                ),
                _ => ("sleep_duration", next(500).to_string(), Some("min")),
            };
            Reading {
                user,
                metric,
                value,
                unit,
                at: at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            }
        })
        .collect()
}

fn write_csv(path: &str, readings: &[Reading]) {
    let mut text = String::from("user_id,metric,value,unit,recorded_at\n");
    for r in readings {
        text.push_str(&format!(
            "{},{},{},{},{}\n",
            r.user,
            r.metric,
            r.value,
            r.unit.unwrap_or(""),
            r.at
        ));
    }
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {path}: {e}"));
}

fn insert_sql(schema: &str, readings: &[Reading]) -> String {
    let values: Vec<String> = readings
        .iter()
        .map(|r| {
            let unit = r.unit.map_or("NULL".to_owned(), |u| format!("'{u}'"));
            format!(
                "('{}', '{}', '{}'::float8, {unit}, '{}'::timestamptz)",
                r.user, r.metric, r.value, r.at
            )
        })
        .collect();
    format!(
        "INSERT INTO \"{schema}\".readings (user_id, metric, value, unit, recorded_at) VALUES {}",
        values.join(", ")
    )
}

/// The output rows of a run, parsed.
fn rows(path: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {path}: {e}"))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad row {l}: {e}")))
        .collect()
}

/// The same rows, allowing for rounding where merged states and one pass sum in a
/// different order.
fn assert_same_rows(a: &str, b: &str) {
    let (ra, rb) = (rows(a), rows(b));
    assert_eq!(ra.len(), rb.len(), "{a} vs {b}");
    for (x, y) in ra.iter().zip(&rb) {
        let (ox, oy) = (x.as_object().unwrap(), y.as_object().unwrap());
        assert_eq!(ox.keys().collect::<Vec<_>>(), oy.keys().collect::<Vec<_>>());
        for (k, vx) in ox {
            let vy = &oy[k];
            match (vx.as_f64(), vy.as_f64()) {
                (Some(fx), Some(fy)) => assert!(
                    (fx - fy).abs() <= 1e-9 * fx.abs().max(1.0),
                    "{k}: {x} vs {y}"
                ),
                _ => assert_eq!(vx, vy, "{k}: {x} vs {y}"),
            }
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// An admin connection; panics when the server named by the environment is unreachable.
fn admin(runtime: &tokio::runtime::Runtime, url: &str) -> tokio_postgres::Client {
    runtime.block_on(crate::support::admin(url))
}

fn execute(runtime: &tokio::runtime::Runtime, client: &tokio_postgres::Client, sql: &str) {
    runtime
        .block_on(client.batch_execute(sql))
        .unwrap_or_else(|e| panic!("{sql:.200}: {e}"));
}

/// `postgres://...?table=T&schema=S` for the server in `url`.
fn input(url: &str, schema: &str, table: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}table={table}&schema={schema}")
}

#[test]
fn a_postgres_table_aggregates_like_the_same_csv_and_incrementally() {
    let Some(url) = server_url(
        "PULSE_TEST_POSTGRES_URL",
        "a_postgres_table_aggregates_like_the_same_csv_and_incrementally",
    ) else {
        return;
    };
    let schema = format!("pulse_t_pgin_{:012x}", unique());
    let rt = runtime();
    let client = admin(&rt, &url);
    let _drop_schema = DropSchema {
        url: url.clone(),
        name: schema.clone(),
    };
    execute(
        &rt,
        &client,
        &format!(
            "CREATE SCHEMA \"{schema}\";
             CREATE TABLE \"{schema}\".readings (id bigserial PRIMARY KEY, user_id text, \
             metric text, value double precision, unit text, recorded_at timestamptz)"
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    let mut expected = Expected::default();
    let first = readings(0, 240, false, &mut expected);
    let mut expected_late = Expected::default();
    let second = readings(240, 90, true, &mut expected_late);
    assert!(expected.unknown_metric > 0 && expected.non_finite_value > 1);
    assert!(expected.implausible_value > 0);
    execute(&rt, &client, &insert_sql(&schema, &first));
    let table = input(&url, &schema, "readings");
    let windows = ["--window", "5m,1h,1d", "--tz", "Asia/Shanghai"];

    // One shot: the same rows and the same rejections as the same readings in a CSV file
    // (read on one thread, so every state sees its readings in the same order).
    let csv = path("first.csv");
    write_csv(&csv, &first);
    let (from_pg, from_csv) = (path("pg.jsonl"), path("csv.jsonl"));
    let (rejects_pg, rejects_csv) = (path("pg-rejects.jsonl"), path("csv-rejects.jsonl"));
    let summary_pg = aggregate(
        &[
            &["--input", &table, "--output", &from_pg][..],
            &windows,
            &["--rejects", &rejects_pg],
        ]
        .concat(),
    );
    let summary_csv = aggregate(
        &[
            &["--input", &csv, "--output", &from_csv, "--threads", "1"][..],
            &windows,
            &["--rejects", &rejects_csv],
        ]
        .concat(),
    );
    assert_eq!(summary_pg, summary_csv);
    let rejected = expected.unknown_metric + expected.non_finite_value + expected.implausible_value;
    assert!(
        summary_pg.starts_with(&format!(
            "read 240 rows, rejected {rejected} (unknown_metric {}, non_finite_value {}, implausible_value {}), wrote ",
            expected.unknown_metric, expected.non_finite_value, expected.implausible_value
        )),
        "{summary_pg}"
    );
    assert_eq!(
        std::fs::read_to_string(&from_pg).unwrap(),
        std::fs::read_to_string(&from_csv).unwrap(),
        "identical aggregates"
    );
    assert!(!rows(&from_pg).is_empty());
    // Over TLS checked against the server's certificate (named `localhost`), when the
    // server offers TLS: the same rows.
    let ssl: String = rt
        .block_on(client.query_one("SHOW ssl", &[]))
        .unwrap()
        .get(0);
    if ssl == "on" {
        let cert: String = rt
            .block_on(client.query_one("SHOW ssl_cert_file", &[]))
            .unwrap()
            .get(0);
        let verified = format!(
            "{}?sslmode=verify-full&sslrootcert={cert}",
            url.split('?')
                .next()
                .unwrap()
                .replace("127.0.0.1", "localhost")
        );
        let over_tls = path("tls.jsonl");
        let table = input(&verified, &schema, "readings");
        aggregate(&[&["--input", &table, "--output", &over_tls][..], &windows].concat());
        assert_eq!(
            std::fs::read_to_string(&over_tls).unwrap(),
            std::fs::read_to_string(&from_pg).unwrap()
        );
    }
    let reject_reasons = |file: &str| -> Vec<serde_json::Value> {
        rows(file).iter().map(|r| r["reason"].clone()).collect()
    };
    assert_eq!(rows(&rejects_pg).len() as u64, rejected);
    assert_eq!(reject_reasons(&rejects_pg), reject_reasons(&rejects_csv));

    // Incremental: the first run reads everything, the second only what was added since
    // (late readings included), and together they end where one pass over all ends.
    let state = "sqlite:".to_owned() + &path("state.db");
    let merged = path("merged.jsonl");
    let incremental = [
        &["--input", &table, "--output", &merged, "--state", &state][..],
        &windows,
    ]
    .concat();
    assert!(aggregate(&incremental).starts_with("read 240 rows, "));
    execute(&rt, &client, &insert_sql(&schema, &second));
    let summary = aggregate(&incremental);
    let late_rejected = expected_late.unknown_metric
        + expected_late.non_finite_value
        + expected_late.implausible_value;
    assert!(
        summary.starts_with(&format!("read 90 rows, rejected {late_rejected}")),
        "only the new rows are read: {summary}"
    );
    assert!(aggregate(&incremental).starts_with("read 0 rows, rejected 0, "));

    let all: Vec<Reading> = first.into_iter().chain(second).collect();
    let all_csv = path("all.csv");
    write_csv(&all_csv, &all);
    let (once_pg, once_csv) = (path("once-pg.jsonl"), path("once-csv.jsonl"));
    let summary_pg =
        aggregate(&[&["--input", &table, "--output", &once_pg][..], &windows].concat());
    let summary_csv = aggregate(
        &[
            &["--input", &all_csv, "--output", &once_csv, "--threads", "1"][..],
            &windows,
        ]
        .concat(),
    );
    assert_eq!(summary_pg, summary_csv);
    assert!(summary_pg.starts_with(&format!(
        "read 330 rows, rejected {}",
        rejected + late_rejected
    )));
    assert_eq!(
        std::fs::read_to_string(&once_pg).unwrap(),
        std::fs::read_to_string(&once_csv).unwrap()
    );
    assert_same_rows(&merged, &once_pg);

    // Reading left the database as it was: no Pulse tables next to the readings.
    let tables: Vec<String> = rt
        .block_on(client.query(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1",
            &[&schema],
        ))
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(tables, ["readings"]);
}

#[test]
fn a_missing_table_or_schema_exits_2_with_one_line() {
    let Some(url) = server_url(
        "PULSE_TEST_POSTGRES_URL",
        "a_missing_table_or_schema_exits_2_with_one_line",
    ) else {
        return;
    };
    let schema = format!("pulse_t_pgbad_{:012x}", unique());
    let rt = runtime();
    let client = admin(&rt, &url);
    let _drop_schema = DropSchema {
        url: url.clone(),
        name: schema.clone(),
    };
    execute(
        &rt,
        &client,
        &format!(
            "CREATE SCHEMA \"{schema}\";
             CREATE TABLE \"{schema}\".no_id (user_id text, metric text, value float8, recorded_at timestamptz)"
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl").display().to_string();
    for (table, schema, says) in [
        ("nothing_here", schema.as_str(), "no such table"),
        ("readings", "pulse_t_no_such_schema", "no such table"),
        ("no_id", schema.as_str(), "no `id` column"),
    ] {
        let error = refused(&[
            "--input",
            &input(&url, schema, table),
            "--window",
            "5m",
            "--output",
            &out,
        ]);
        assert!(error.contains(says), "{error}");
    }
    assert!(
        !std::path::Path::new(&out).exists(),
        "no output after a failed run"
    );
}

#[test]
fn bad_postgres_inputs_and_unreachable_servers_exit_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl").display().to_string();
    let closed = format!("postgres://pulse:secret@127.0.0.1:{}/health", free_port());
    for (spec, says) in [
        ("postgres://127.0.0.1/health".to_owned(), "no table"),
        (
            "postgresql://127.0.0.1/health?table=Readings".to_owned(),
            "table name",
        ),
        (
            "postgres://127.0.0.1/health?table=r;drop".to_owned(),
            "table name",
        ),
        (
            "postgres://127.0.0.1/health?table=r&schema=a.b".to_owned(),
            "schema name",
        ),
        (
            "postgres://127.0.0.1/health?table=r&table=s".to_owned(),
            "twice",
        ),
        (
            "postgres://127.0.0.1:port/health?table=r".to_owned(),
            "invalid",
        ),
        (format!("{closed}?table=readings"), "cannot read input"),
        (
            format!("{closed}?table=readings&connect_timeout=2"),
            "cannot read input",
        ),
    ] {
        let error = refused(&["--input", &spec, "--window", "5m", "--output", &out]);
        assert!(error.contains(says), "{spec}: {error}");
        assert!(!error.contains("secret"), "{error}");
    }
    assert!(
        !std::path::Path::new(&out).exists(),
        "no output after a failed run"
    );
}
