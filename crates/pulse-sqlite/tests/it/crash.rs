//! Crash safety with a real process: a child appends and consumes until it is killed
//! with SIGKILL at a random moment, many times over the same log. After every restart
//! each event the child was told is stored is there exactly once, in order, and the
//! consumer group resumes without skipping an event it had not acknowledged.
//!
//! The child is this test binary itself, run again with only the ignored test
//! [`crash_child`] selected and the log's directory in [`CHILD_DIR`]: the crate ships no
//! helper binary that `cargo run` or an install could pick up.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use pulse_core::{Event, EventLog, GroupConfig, Pattern, ReadQuery};
use pulse_sqlite::SqliteLog;

const ROUNDS: usize = 20;

/// Set in the child's environment: the log's directory. Without it [`crash_child`] does
/// nothing, so running the ignored tests by hand is harmless.
const CHILD_DIR: &str = "PULSE_SQLITE_CRASH_CHILD_DIR";
/// Set in the child's environment: the round, which keeps event ids unique across rounds.
const CHILD_ROUND: &str = "PULSE_SQLITE_CRASH_CHILD_ROUND";
/// Concurrent appenders in the child.
const PUBLISHERS: usize = 4;

/// What the children reported, over every round.
#[derive(Default)]
struct Reported {
    /// Offset → id of every append the child was told is stored.
    appended: BTreeMap<u64, String>,
    /// Offsets the group acknowledged (printed just before the ack call).
    acked: BTreeSet<u64>,
}

impl Reported {
    fn take(&mut self, line: &str) {
        let mut parts = line.split(' ');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("A"), Some(offset), Some(id)) => {
                let offset: u64 = offset.parse().unwrap();
                if let Some(previous) = self.appended.insert(offset, id.to_owned()) {
                    panic!("offset {offset} acknowledged for {previous} and {id}");
                }
            }
            (Some("K"), Some(offset), None) => {
                self.acked.insert(offset.parse().unwrap());
            }
            _ => {}
        }
    }

    /// The committed offset may only cover acknowledged events.
    fn check_committed(&self, committed: u64, round: usize) {
        if let Some(skipped) = (1..=committed).find(|o| !self.acked.contains(o)) {
            panic!("round {round}: committed offset {committed} skips unacknowledged {skipped}");
        }
    }
}

#[test]
fn acknowledged_events_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut reported = Reported::default();
    for round in 0..ROUNDS {
        // Only `crash_child`, its output not captured; `-q` keeps the harness from
        // writing anything on the lines the child prints.
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "crash::crash_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "-q",
            ])
            .args(["--test-threads", "1"])
            .env(CHILD_DIR, dir.path())
            .env(CHILD_ROUND, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the crash child starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // The test harness prints its own header first.
        let ready = loop {
            let line = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("the child reports that it is ready");
            if line.starts_with("ready ") {
                break line;
            }
        };
        let mut parts = ready.split(' ').skip(1);
        let last: u64 = parts.next().unwrap().parse().unwrap();
        let committed: u64 = parts.next().unwrap().parse().unwrap();
        let max_acked = reported.appended.keys().next_back().copied().unwrap_or(0);
        assert!(
            last >= max_acked,
            "round {round}: the log ends at {last}, acknowledged up to {max_acked}"
        );
        reported.check_committed(committed, round);
        std::thread::sleep(Duration::from_millis(fastrand::u64(30..250)));
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        reader.join().unwrap();
        for line in rx.try_iter() {
            reported.take(&line);
        }
    }
    assert!(
        reported.appended.len() > ROUNDS * 10,
        "the children appended too little to test anything: {}",
        reported.appended.len()
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let log = SqliteLog::open(dir.path()).await.unwrap();
        let mut stored = Vec::new();
        let mut after = 0;
        loop {
            let page = log.read(ReadQuery::after(after, 10_000)).await.unwrap();
            let Some(last) = page.last() else { break };
            after = last.offset;
            stored.extend(page.into_iter().map(|s| (s.offset, s.event.id)));
        }
        assert!(
            stored.windows(2).all(|w| w[0].0 < w[1].0),
            "offsets in order"
        );
        let ids: HashSet<&str> = stored.iter().map(|(_, id)| id.as_str()).collect();
        assert_eq!(
            ids.len(),
            stored.len(),
            "every event is stored exactly once"
        );
        let by_offset: BTreeMap<u64, &str> =
            stored.iter().map(|(o, id)| (*o, id.as_str())).collect();
        for (offset, id) in &reported.appended {
            assert_eq!(
                by_offset.get(offset).copied(),
                Some(id.as_str()),
                "acknowledged event {id} at offset {offset}"
            );
        }

        let info = log
            .ensure_group(
                "crash",
                GroupConfig::new(Pattern::parse("crash.>").unwrap()),
            )
            .await
            .unwrap();
        reported.check_committed(info.committed, ROUNDS);
        let mut delivered = BTreeSet::new();
        loop {
            let batch = log
                .fetch_wait("crash", 1000, Duration::from_millis(200))
                .await
                .unwrap();
            if batch.is_empty() {
                break;
            }
            let offsets: Vec<u64> = batch.iter().map(|d| d.event.offset).collect();
            delivered.extend(offsets.iter().copied());
            log.ack("crash", &offsets).await.unwrap();
        }
        let expected: BTreeSet<u64> = stored
            .iter()
            .map(|(o, _)| *o)
            .filter(|&o| o > info.committed)
            .collect();
        assert_eq!(
            delivered, expected,
            "the group resumes after its committed offset"
        );
    });
}

/// The child process of [`acknowledged_events_survive_sigkill`] (a no-op unless
/// [`CHILD_DIR`] is set): appends persistent events from several tasks and consumes them in
/// a group, printing what it was told is durable, until it is killed. Lines, each flushed:
/// - `ready <last-offset> <committed>` once the log is open;
/// - `A <offset> <id>` after an append returned (the event is acknowledged as stored);
/// - `K <offset>` just before the group acknowledges a delivered event.
#[test]
#[ignore = "the child process of acknowledged_events_survive_sigkill"]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let round = std::env::var(CHILD_ROUND).unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let log = SqliteLog::open(&dir).await.expect("the log opens");
        let config = GroupConfig::new(Pattern::parse("crash.>").unwrap());
        let info = log
            .ensure_group("crash", config)
            .await
            .expect("the group can be created");
        let last = log.last_offset().await.expect("the last offset");
        say(&format!("ready {last} {}\n", info.committed));
        for publisher in 0..PUBLISHERS {
            let log = log.clone();
            let round = round.clone();
            tokio::spawn(async move {
                for i in 0u64.. {
                    let size = 1 + (i % 7) as usize;
                    let batch: Vec<Event> = (0..size)
                        .map(|j| {
                            Event::new("crash.event")
                                .with_id(format!("r{round}-p{publisher}-{i}-{j}"))
                                .with_subject(format!("s{}", (i + j as u64) % 5))
                        })
                        .collect();
                    let ids: Vec<String> = batch.iter().map(|e| e.id.clone()).collect();
                    let appended = log.append(batch).await.unwrap_or_else(|err| {
                        eprintln!("append failed: {err}");
                        std::process::exit(1)
                    });
                    let lines: String = appended
                        .iter()
                        .zip(ids)
                        .map(|(a, id)| format!("A {} {id}\n", a.offset))
                        .collect();
                    say(&lines);
                }
            });
        }
        loop {
            let deliveries = log
                .fetch_wait("crash", 64, Duration::from_millis(20))
                .await
                .expect("fetch");
            if deliveries.is_empty() {
                continue;
            }
            let offsets: Vec<u64> = deliveries.iter().map(|d| d.event.offset).collect();
            let lines: String = offsets.iter().map(|o| format!("K {o}\n")).collect();
            say(&lines);
            log.ack("crash", &offsets).await.expect("ack");
        }
    });
}

/// Writes `text` to stdout and flushes it, so that what the parent reads was said before
/// the kill; exits when the parent is gone.
fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    if out
        .write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .is_err()
    {
        std::process::exit(1);
    }
}
