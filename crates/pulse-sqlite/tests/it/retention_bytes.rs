//! Retention by stored bytes: what it keeps is checked against a reference model fed with
//! sizes the test computes itself from the events it appended, alone and with the other
//! limits, across reopening and migrating a log from before the sizes.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use pulse_core::{Event, EventLog, GroupConfig, NackOutcome, Pattern, ReadQuery};
use pulse_sqlite::{Retention, SqliteLog, SqliteOptions, PULSE_APPLICATION_ID};

use crate::retention::options;
use crate::support::{fast, read_all, V1_SCHEMA, V2_CHANGES};

/// An event's stored size as `Retention::max_bytes` documents it: the byte lengths of
/// its id, type, source, subject, content type, schema, extensions (as JSON) and data.
fn size_of(event: &Event) -> u64 {
    let text = |value: Option<&str>| value.map_or(0, str::len);
    let extensions = if event.extensions.is_empty() {
        0
    } else {
        serde_json::to_string(&event.extensions).unwrap().len()
    };
    (event.id.len()
        + event.ty.len()
        + event.source.len()
        + text(event.subject.as_deref())
        + text(event.datacontenttype.as_deref())
        + text(event.dataschema.as_deref())
        + extensions
        + event.data.as_ref().map_or(0, |d| d.len())) as u64
}

/// `count` events of mixed sizes numbered from `first`: payloads of 0 to ~600 bytes,
/// multi-byte subjects, extensions on some.
fn mixed(first: usize, count: usize) -> Vec<Event> {
    (first..first + count)
        .map(|i| {
            let event = Event::new("health.reading")
                .with_id(format!("e{i}"))
                .with_subject(format!("usér-{}", i % 7))
                .with_data("application/octet-stream", vec![b'x'; (i * 7919) % 601]);
            if i % 3 == 0 {
                event.with_extension("priority", i as i64)
            } else {
                event
            }
        })
        .collect()
}

/// What the test appended: the offset and size of each stored event, oldest first.
#[derive(Default)]
struct Appended(Vec<(u64, u64)>);

impl Appended {
    /// Appends `events` and records the new ones (duplicates store nothing).
    async fn append(&mut self, log: &SqliteLog, events: Vec<Event>) {
        let sizes: Vec<u64> = events.iter().map(size_of).collect();
        let appended = log.append(events).await.unwrap();
        for (result, size) in appended.iter().zip(sizes) {
            if !result.duplicate {
                self.0.push((result.offset, size));
            }
        }
    }

    fn size(&self, offset: u64) -> u64 {
        self.0.iter().find(|(o, _)| *o == offset).unwrap().1
    }

    fn total(&self, offsets: &[u64]) -> u64 {
        offsets.iter().map(|&o| self.size(o)).sum()
    }

    /// The reference for `max_bytes`: the held offsets, and the newest others whose
    /// sizes add up to at most `budget` (stopping at the first that does not fit).
    fn kept_by_bytes(&self, budget: u64, held: &[u64]) -> Vec<u64> {
        let mut kept: BTreeSet<u64> = held.iter().copied().collect();
        let mut used = 0;
        for &(offset, size) in self.0.iter().rev() {
            if held.contains(&offset) {
                continue;
            }
            used += size;
            if used > budget {
                break;
            }
            kept.insert(offset);
        }
        kept.into_iter().collect()
    }
}

/// The offsets stored now.
async fn stored_offsets(log: &SqliteLog) -> Vec<u64> {
    read_all(log, ReadQuery::after(0, 1000))
        .await
        .iter()
        .map(|s| s.offset)
        .collect()
}

/// Waits for retention to leave exactly `expected`, then checks that further passes
/// (ten prune intervals) delete nothing more.
async fn settles_on(log: &SqliteLog, expected: &[u64]) {
    for _ in 0..500 {
        if stored_offsets(log).await == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(stored_offsets(log).await, expected);
}

fn by_bytes(max_bytes: u64) -> Retention {
    Retention {
        max_bytes: Some(max_bytes),
        ..Retention::default()
    }
}

async fn reopen(log: SqliteLog, dir: &Path, options: SqliteOptions) -> SqliteLog {
    log.close().await.unwrap();
    drop(log);
    SqliteLog::open_with(dir, options).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_bytes_keeps_the_newest_events_that_fit_in_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let log = SqliteLog::open_with(dir.path(), fast()).await.unwrap();
    let mut appended = Appended::default();
    for chunk in 0..4 {
        appended.append(&log, mixed(chunk * 50, 50)).await;
    }
    // A duplicate id stores nothing and adds no bytes, beside a new event in one commit.
    let before = log.stats().await.unwrap().stored_bytes;
    let duplicate = mixed(7, 1)
        .pop()
        .unwrap()
        .with_data("application/octet-stream", vec![0u8; 5000]);
    appended
        .append(&log, vec![duplicate, mixed(200, 1).remove(0)])
        .await;
    assert_eq!(appended.0.len(), 201);
    let stored_bytes = log.stats().await.unwrap().stored_bytes;
    assert_eq!(stored_bytes, before + appended.size(201));
    // The sizes the log counts are those of the events as stored.
    let all: Vec<u64> = appended.0.iter().map(|(o, _)| *o).collect();
    assert_eq!(stored_bytes, appended.total(&all));
    for stored in read_all(&log, ReadQuery::after(0, 1000)).await {
        assert_eq!(size_of(&stored.event), appended.size(stored.offset));
    }

    let budget = appended.total(&all) / 3;
    let log = reopen(log, dir.path(), options(by_bytes(budget))).await;
    let expected = appended.kept_by_bytes(budget, &[]);
    assert!(
        expected.len() > 10 && expected.len() < 150,
        "{}",
        expected.len()
    );
    settles_on(&log, &expected).await;
    let stats = log.stats().await.unwrap();
    assert_eq!(stats.stored_bytes, appended.total(&expected));
    assert!(stats.stored_bytes <= budget);
    assert_eq!(stats.last_offset, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_bytes_continues_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let budget = 12_000;
    let log = SqliteLog::open_with(dir.path(), options(by_bytes(budget)))
        .await
        .unwrap();
    let mut appended = Appended::default();
    appended.append(&log, mixed(0, 100)).await;
    settles_on(&log, &appended.kept_by_bytes(budget, &[])).await;

    // The total survives the restart: retention goes on from it, not from zero.
    let log = reopen(log, dir.path(), options(by_bytes(budget))).await;
    appended.append(&log, mixed(1000, 30)).await;
    let expected = appended.kept_by_bytes(budget, &[]);
    settles_on(&log, &expected).await;
    assert_eq!(
        log.stats().await.unwrap().stored_bytes,
        appended.total(&expected)
    );

    // A smaller budget after a restart.
    let log = reopen(log, dir.path(), options(by_bytes(budget / 4))).await;
    let expected = appended.kept_by_bytes(budget / 4, &[]);
    settles_on(&log, &expected).await;
    let log = reopen(log, dir.path(), fast()).await;
    assert_eq!(
        log.stats().await.unwrap().stored_bytes,
        appended.total(&expected)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_bytes_keeps_a_dead_lettered_event_without_counting_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = SqliteLog::open_with(dir.path(), fast()).await.unwrap();
    let mut appended = Appended::default();
    let big = Event::new("old.x").with_data("application/octet-stream", vec![1u8; 4000]);
    appended.append(&log, vec![big]).await;
    appended.append(&log, mixed(0, 60)).await;
    let mut config = GroupConfig::new(Pattern::parse("old.>").unwrap());
    config.max_deliver = 1;
    log.ensure_group("g", config).await.unwrap();
    assert_eq!(log.fetch("g", 1).await.unwrap()[0].event.offset, 1);
    let outcome = log.nack("g", 1, Duration::ZERO, "broken").await.unwrap();
    assert!(matches!(outcome, NackOutcome::DeadLettered(_)));

    let budget = 8_000;
    let log = reopen(log, dir.path(), options(by_bytes(budget))).await;
    let expected = appended.kept_by_bytes(budget, &[1]);
    assert_eq!(expected[0], 1);
    settles_on(&log, &expected).await;
    let letters = log.dead_letters(None, 0, 10).await.unwrap();
    assert_eq!(
        letters[0].event.offset, 1,
        "the dead letter keeps its event"
    );
    assert_eq!(
        log.stats().await.unwrap().stored_bytes,
        appended.total(&expected)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_bytes_deletes_an_event_bigger_than_the_budget_and_offsets_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let log = SqliteLog::open_with(dir.path(), options(by_bytes(2_000)))
        .await
        .unwrap();
    let mut appended = Appended::default();
    appended.append(&log, mixed(0, 30)).await;
    let too_big = Event::new("a.b").with_data("application/octet-stream", vec![0u8; 2_001]);
    appended.append(&log, vec![too_big]).await;
    assert_eq!(appended.kept_by_bytes(2_000, &[]), Vec::<u64>::new());
    settles_on(&log, &[]).await;
    let stats = log.stats().await.unwrap();
    assert_eq!((stats.events, stats.stored_bytes), (0, 0));

    let log = reopen(log, dir.path(), fast()).await;
    assert_eq!(log.last_offset().await.unwrap(), 31);
    appended.append(&log, mixed(500, 1)).await;
    assert_eq!(appended.0.last().unwrap().0, 32, "offsets are never reused");
    assert_eq!(log.stats().await.unwrap().stored_bytes, appended.size(32));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_bytes_and_max_events_keep_only_what_both_allow() {
    let mut appended = Appended::default();
    // Which limit binds depends on the case: bytes first, then count.
    for (max_events, budget) in [(150, 9_000), (20, 60_000)] {
        let dir = tempfile::tempdir().unwrap();
        let log = SqliteLog::open_with(dir.path(), fast()).await.unwrap();
        appended.0.clear();
        appended.append(&log, mixed(0, 200)).await;
        let retention = Retention {
            max_events: Some(max_events),
            max_bytes: Some(budget),
            ..Retention::default()
        };
        let log = reopen(log, dir.path(), options(retention)).await;
        let by_bytes = appended.kept_by_bytes(budget, &[]);
        let by_count: Vec<u64> = (200 - max_events + 1..=200).collect();
        let bytes_bind = by_bytes.len() < by_count.len();
        assert_eq!(
            bytes_bind,
            max_events == 150,
            "each case exercises its limit"
        );
        let expected = if bytes_bind { by_bytes } else { by_count };
        settles_on(&log, &expected).await;
        assert_eq!(
            log.stats().await.unwrap().stored_bytes,
            appended.total(&expected)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_bytes_does_not_count_events_max_age_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let log = SqliteLog::open_with(dir.path(), fast()).await.unwrap();
    let mut appended = Appended::default();
    appended.append(&log, mixed(0, 60)).await;
    // The newest offsets carry an old time: max_age deletes them, not the oldest.
    let old = Utc::now() - chrono::Duration::days(2);
    let stale = mixed(100, 20)
        .into_iter()
        .map(|e| e.with_time(old))
        .collect();
    appended.append(&log, stale).await;

    let budget = 10_000;
    let retention = Retention {
        max_age: Some(Duration::from_secs(3600)),
        max_bytes: Some(budget),
        ..Retention::default()
    };
    let log = reopen(log, dir.path(), options(retention)).await;
    appended.0.retain(|(offset, _)| *offset <= 60);
    let expected = appended.kept_by_bytes(budget, &[]);
    settles_on(&log, &expected).await;
    assert_eq!(
        log.stats().await.unwrap().stored_bytes,
        appended.total(&expected)
    );
}

/// One row as a version 2 log stored it, with its size worked out by hand below.
struct V2Row {
    id: &'static str,
    subject: Option<&'static str>,
    content_type: Option<&'static str>,
    extensions: Option<&'static str>,
    data: Option<&'static [u8]>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_2_log_is_migrated_with_the_sizes_of_its_events() {
    let rows = [
        V2Row {
            id: "old-1",
            subject: Some("usér-ü"),
            content_type: Some("application/json"),
            extensions: None,
            data: Some(b"{\"value\":1}"),
        },
        V2Row {
            id: "old-2",
            subject: None,
            content_type: None,
            extensions: Some("{\"priority\": 3}"),
            data: None,
        },
        V2Row {
            id: "old-3-😀",
            subject: Some("u"),
            content_type: Some("application/octet-stream"),
            extensions: None,
            data: Some(&[0, 0, 0, 255, 0, 7, 7, 7, 7, 7, 7, 7, 7, 7]),
        },
        V2Row {
            id: "old-4",
            subject: Some("ü"),
            content_type: Some("text/plain"),
            extensions: Some("{\"k\":\"ä\"}"),
            data: Some(&[b'x'; 300]),
        },
    ];
    let (ty, source) = ("health.reading.hr", "app");
    let sizes: Vec<u64> = rows
        .iter()
        .map(|r| {
            (r.id.len()
                + ty.len()
                + source.len()
                + r.subject.map_or(0, str::len)
                + r.content_type.map_or(0, str::len)
                + r.extensions.map_or(0, str::len)
                + r.data.map_or(0, <[u8]>::len)) as u64
        })
        .collect();
    assert_eq!(sizes, [60, 40, 69, 347], "worked out by hand");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pulse.db");
    {
        let conn = rusqlite::Connection::open(&file).unwrap();
        conn.execute_batch(V1_SCHEMA).unwrap();
        conn.execute_batch(V2_CHANGES).unwrap();
        conn.execute_batch(&format!(
            "PRAGMA application_id = {PULSE_APPLICATION_ID}; PRAGMA user_version = 2;"
        ))
        .unwrap();
        for (seq, r) in (1i64..).zip(&rows) {
            conn.execute(
                "INSERT INTO events (seq, id, type, source, subject, time, datacontenttype, \
                 extensions, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                rusqlite::params![
                    seq,
                    r.id,
                    ty,
                    source,
                    r.subject,
                    Utc::now().timestamp_nanos_opt().unwrap(),
                    r.content_type,
                    r.extensions,
                    r.data
                ],
            )
            .unwrap();
        }
        // Offset 2 is dead-lettered; 5 was appended and deleted before the upgrade.
        conn.execute_batch(
            "INSERT INTO log_meta VALUES ('last_seq', 5); \
             INSERT INTO consumer_groups (name, pattern, committed) VALUES ('g', '>', 4); \
             INSERT INTO dead_letters (grp, event_seq, error, attempts, first_failure, \
             last_failure) VALUES ('g', 2, 'broken', 1, 0, 0);",
        )
        .unwrap();
    }
    let log = SqliteLog::open_with(dir.path(), fast()).await.unwrap();
    assert_eq!(log.stats().await.unwrap().stored_bytes, 60 + 40 + 69 + 347);

    // 347 alone fits in 400, 69 + 347 does not; 2 is held and not counted.
    let log = reopen(log, dir.path(), options(by_bytes(400))).await;
    settles_on(&log, &[2, 4]).await;
    assert_eq!(log.stats().await.unwrap().stored_bytes, 40 + 347);
    let appended = log.append(vec![Event::new("a.b")]).await.unwrap();
    assert_eq!(appended[0].offset, 6);
}
