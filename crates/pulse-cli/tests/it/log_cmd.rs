//! `pulse log ...` on a real SQLite log made through the library.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use pulse_core::{Event, EventLog, GroupConfig, NackOutcome, Pattern};
use pulse_sqlite::SqliteLog;

fn pulse(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pulse"))
        .args(args)
        .env("PULSE_DATA_DIR", dir)
        .output()
        .expect("pulse runs")
}

fn stdout_lines(output: &Output) -> Vec<serde_json::Value> {
    assert!(
        output.status.success(),
        "pulse failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A log with 20 events (every 4th a billing event, times one minute apart from
/// 2024-01-01T00:00Z) and one dead letter in group `g`.
fn make_log(dir: &Path) -> u64 {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let log = SqliteLog::open(dir).await.unwrap();
        let base: chrono::DateTime<chrono::Utc> = "2024-01-01T00:00:00Z".parse().unwrap();
        let events = (0..20)
            .map(|i| {
                let ty = if i % 4 == 0 {
                    "billing.paid"
                } else {
                    "health.reading.hr"
                };
                Event::new(ty)
                    .with_time(base + chrono::Duration::minutes(i))
                    .with_json(&serde_json::json!({"i": i}))
                    .unwrap()
            })
            .collect();
        log.append(events).await.unwrap();
        let mut config = GroupConfig::new(Pattern::parse("billing.>").unwrap());
        config.max_deliver = 1;
        log.ensure_group("g", config).await.unwrap();
        let d = log.fetch("g", 1).await.unwrap();
        let NackOutcome::DeadLettered(id) = log
            .nack("g", d[0].event.offset, Duration::ZERO, "card declined")
            .await
            .unwrap()
        else {
            panic!("max_deliver 1 dead-letters");
        };
        log.close().await.unwrap();
        id
    })
}

#[test]
fn stats_replay_tail_and_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let id = make_log(dir.path());

    let stats = &stdout_lines(&pulse(dir.path(), &["log", "stats", "--json"]))[0];
    assert_eq!(stats["events"], 20);
    assert_eq!(stats["last_offset"], 20);
    assert_eq!(stats["dead_letters"], 1);
    assert!(stats["stored_bytes"].as_u64().unwrap() > 20 * 20, "{stats}");
    assert_eq!(stats["groups"][0]["name"], "g");

    let replay = stdout_lines(&pulse(
        dir.path(),
        &["log", "replay", "--from-offset", "5", "--type", "billing.>"],
    ));
    let offsets: Vec<u64> = replay
        .iter()
        .map(|l| l["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, vec![5, 9, 13, 17]);
    assert_eq!(replay[0]["event"]["type"], "billing.paid");
    assert_eq!(replay[0]["event"]["data"]["i"], 4);

    let since = stdout_lines(&pulse(
        dir.path(),
        &[
            "log",
            "replay",
            "--since",
            "2024-01-01T00:15:00Z",
            "--to-offset",
            "18",
        ],
    ));
    let offsets: Vec<u64> = since
        .iter()
        .map(|l| l["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, vec![16, 17, 18]);

    let tail = stdout_lines(&pulse(dir.path(), &["log", "tail", "health.>", "-n", "2"]));
    let offsets: Vec<u64> = tail.iter().map(|l| l["offset"].as_u64().unwrap()).collect();
    assert_eq!(offsets, vec![19, 20]);

    let letters = stdout_lines(&pulse(dir.path(), &["log", "dlq", "list", "--json"]));
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0]["id"], id);
    assert_eq!(letters[0]["error"], "card declined");
    assert_eq!(letters[0]["offset"], 1);

    let redrive = pulse(dir.path(), &["log", "dlq", "redrive", &id.to_string()]);
    assert!(
        redrive.status.success(),
        "{}",
        String::from_utf8_lossy(&redrive.stderr)
    );
    // The group gets the event back when it next runs.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let log = SqliteLog::open(dir.path()).await.unwrap();
        let d = log.fetch("g", 10).await.unwrap();
        assert_eq!(d[0].event.offset, 1);
    });
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    make_log(dir.path());
    for args in [
        vec![
            "log",
            "replay",
            "--from-offset",
            "1",
            "--type",
            "bad..pattern",
        ],
        vec!["log", "replay", "--since", "last tuesday"],
        vec!["log", "dlq", "redrive", "999"],
    ] {
        let output = pulse(dir.path(), &args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
    }
    let missing = dir.path().join("nothing-here");
    let output = pulse(&missing, &["log", "stats"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no event log"));
    assert!(!missing.exists(), "a read command creates nothing");
}

/// `log stats` counts a group's lag as the server does (`/v1/groups`,
/// `pulse_consumer_lag_events`): the events after its committed offset that its pattern
/// matches, not every later offset.
#[tokio::test]
async fn stats_lag_counts_only_events_the_group_receives() {
    let dir = tempfile::tempdir().unwrap();
    // 30 events, every 3rd a billing event; group `billing` handles the first 4 of its 10.
    let log = SqliteLog::open(dir.path()).await.unwrap();
    let events = (0..30)
        .map(|i| {
            let ty = if i % 3 == 0 {
                "billing.paid"
            } else {
                "health.reading.hr"
            };
            Event::new(ty).with_subject(format!("s{i}"))
        })
        .collect();
    log.append(events).await.unwrap();
    let billing = GroupConfig::new(Pattern::parse("billing.>").unwrap());
    log.ensure_group("billing", billing).await.unwrap();
    let handled = log.fetch("billing", 4).await.unwrap();
    let offsets: Vec<u64> = handled.iter().map(|d| d.event.offset).collect();
    assert_eq!(offsets, vec![1, 4, 7, 10]);
    log.ack("billing", &offsets).await.unwrap();
    log.close().await.unwrap();

    let stats = &stdout_lines(&pulse(dir.path(), &["log", "stats", "--json"]))[0];
    let group = &stats["groups"][0];
    assert_eq!(group["name"], "billing");
    let committed = group["committed"].as_u64().unwrap();
    assert!((10..13).contains(&committed), "{stats}");
    assert_eq!(group["lag"], 6, "{stats}");
    let text = pulse(dir.path(), &["log", "stats"]);
    assert!(text.status.success());
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains(&format!(
            "group          billing (billing.>) committed {committed} lag 6\n"
        )),
        "{text}"
    );

    // The server on the same log says the same.
    let server = crate::support::Server::start_on("lag", "", dir.path()).await;
    let groups: serde_json::Value = reqwest::get(format!("{}/v1/groups", server.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(groups["groups"][0]["name"], "billing");
    assert_eq!(groups["groups"][0]["lag_events"], 6, "{groups}");
    let gauge = server
        .metric("pulse_consumer_lag_events{group=\"billing\"}")
        .await;
    assert_eq!(gauge, Some(6.0));
    let beside = &stdout_lines(&pulse(dir.path(), &["log", "stats", "--json"]))[0];
    assert_eq!(beside["groups"][0]["lag"], 6, "{beside}");
}
