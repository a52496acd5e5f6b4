//! The child process of the crash test (`tests/it/crash.rs`): appends persistent events
//! and consumes them in a group, printing what it was told is durable, until killed.
//!
//! Usage: `pulse-sqlite-crash-child <data-dir> <round>`. Output lines, each flushed:
//! - `ready <last-offset> <committed>` once the log is open;
//! - `A <offset> <id>` after an append returned (the event is acknowledged as stored);
//! - `K <offset>` just before the group acknowledges a delivered event.

use std::io::Write;
use std::time::Duration;

use pulse_core::{Event, EventLog, GroupConfig, Pattern};
use pulse_sqlite::SqliteLog;

const PUBLISHERS: usize = 4;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(round)) = (args.next(), args.next()) else {
        eprintln!("usage: pulse-sqlite-crash-child <data-dir> <round>");
        std::process::exit(2);
    };
    let log = match SqliteLog::open(&dir).await {
        Ok(log) => log,
        Err(err) => {
            eprintln!("error: {err}");
            std::process::exit(1);
        }
    };
    let config = GroupConfig::new(Pattern::parse("crash.>").expect("a valid pattern"));
    let info = log
        .ensure_group("crash", config)
        .await
        .expect("the group can be created");
    let last = log.last_offset().await.expect("the last offset");
    say(format!("ready {last} {}", info.committed));
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
                match log.append(batch).await {
                    Ok(appended) => {
                        let lines: String = appended
                            .iter()
                            .zip(ids)
                            .map(|(a, id)| format!("A {} {id}\n", a.offset))
                            .collect();
                        say_raw(&lines);
                    }
                    Err(err) => {
                        eprintln!("append failed: {err}");
                        std::process::exit(1);
                    }
                }
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
        say_raw(&lines);
        log.ack("crash", &offsets).await.expect("ack");
    }
}

fn say(line: String) {
    say_raw(&format!("{line}\n"));
}

fn say_raw(text: &str) {
    let mut out = std::io::stdout().lock();
    if out
        .write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .is_err()
    {
        std::process::exit(1);
    }
}
