//! Crash safety with a real process: a child appends and consumes until it is killed
//! with SIGKILL at a random moment, many times over the same log. After every restart
//! each event the child was told is stored is there exactly once, in order, and the
//! consumer group resumes without skipping an event it had not acknowledged.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use pulse_core::{EventLog, GroupConfig, Pattern, ReadQuery};
use pulse_sqlite::SqliteLog;

const ROUNDS: usize = 20;

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
        let mut child = Command::new(env!("CARGO_BIN_EXE_pulse-sqlite-crash-child"))
            .arg(dir.path())
            .arg(round.to_string())
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
        let ready = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the child reports that it is ready");
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
