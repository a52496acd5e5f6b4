//! The log file itself: migration from the previous schema, refusing files that are not
//! Pulse logs (left byte for byte unchanged), a read-only directory, a full disk, and a
//! second writer.

use std::path::{Path, PathBuf};
use std::process::Command;

use pulse_core::{Event, EventLog, GroupConfig, LogError, Pattern, ReadQuery};
use pulse_sqlite::{SqliteLog, PULSE_APPLICATION_ID, SCHEMA_VERSION};

use crate::support::{fast, V1_SCHEMA};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_log_is_migrated_and_keeps_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pulse.db");
    {
        let conn = rusqlite::Connection::open(&file).unwrap();
        conn.execute_batch(V1_SCHEMA).unwrap();
        conn.execute_batch(&format!(
            "PRAGMA application_id = {PULSE_APPLICATION_ID}; PRAGMA user_version = 1;"
        ))
        .unwrap();
        for seq in 1..=3i64 {
            conn.execute(
                "INSERT INTO events (seq, id, type, source, time, datacontenttype, data) \
                 VALUES (?1, ?2, 'health.reading.hr', 'app', ?3, 'application/json', ?4)",
                rusqlite::params![
                    seq,
                    format!("old-{seq}"),
                    1_600_000_000_000_000_000i64 + seq * 1_000_000_000,
                    format!("{{\"value\":{seq}}}").into_bytes()
                ],
            )
            .unwrap();
        }
        conn.execute_batch(
            "INSERT INTO log_meta VALUES ('last_seq', 3); \
             INSERT INTO consumer_groups VALUES ('billing', 'health.>', 2);",
        )
        .unwrap();
    }
    let log = SqliteLog::open_with(dir.path(), fast()).await.unwrap();
    let read = log.read(ReadQuery::after(0, 10)).await.unwrap();
    assert_eq!(read.len(), 3);
    assert_eq!(read[2].event.id, "old-3");
    assert_eq!(
        read[2].event.json::<serde_json::Value>().unwrap()["value"],
        3
    );
    let groups = log.groups().await.unwrap();
    assert_eq!(
        (groups[0].name.as_str(), groups[0].committed),
        ("billing", 2)
    );
    // The group keeps defaults for the columns version 2 added, and resumes at 3.
    let deliveries = log.fetch("billing", 10).await.unwrap();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].event.offset, 3);
    // Version 2 features work on the migrated file: the time index and dead letters.
    let since = read[1].event.time.unwrap();
    assert_eq!(log.first_offset_since(since).await.unwrap(), Some(2));
    log.nack("billing", 3, std::time::Duration::ZERO, "x")
        .await
        .unwrap();
    let appended = log.append(vec![Event::new("a.b")]).await.unwrap();
    assert_eq!(appended[0].offset, 4);
    log.close().await.unwrap();
    drop(log);
    let conn = rusqlite::Connection::open(&file).unwrap();
    let version: u32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
}

/// Opens `file` and expects it to be refused as incompatible without a byte changed.
async fn assert_refused_untouched(file: &Path, what: &str) {
    let before = std::fs::read(file).unwrap();
    let err = SqliteLog::open_with(file, fast()).await.unwrap_err();
    assert!(
        matches!(err, LogError::Incompatible(_)),
        "{what}: expected Incompatible, got {err:?}"
    );
    assert_eq!(
        std::fs::read(file).unwrap(),
        before,
        "{what}: the file was modified"
    );
    let err = SqliteLog::open_with(file, fast().read_only())
        .await
        .unwrap_err();
    assert!(matches!(err, LogError::Incompatible(_)), "{what}: {err:?}");
    assert_eq!(
        std::fs::read(file).unwrap(),
        before,
        "{what}: the file was modified"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_corrupt_and_newer_files_are_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();

    let garbage = dir.path().join("garbage.db");
    std::fs::write(
        &garbage,
        (0..8192).map(|i| (i * 7 % 251) as u8).collect::<Vec<_>>(),
    )
    .unwrap();
    assert_refused_untouched(&garbage, "random bytes").await;

    let foreign = dir.path().join("foreign.db");
    {
        let conn = rusqlite::Connection::open(&foreign).unwrap();
        conn.execute_batch("CREATE TABLE accounts (id INTEGER); INSERT INTO accounts VALUES (1);")
            .unwrap();
    }
    assert_refused_untouched(&foreign, "another application's database").await;

    let newer = dir.path().join("newer.db");
    {
        let log = SqliteLog::open_with(&newer, fast()).await.unwrap();
        log.append(vec![Event::new("a.b")]).await.unwrap();
        log.close().await.unwrap();
    }
    {
        let conn = rusqlite::Connection::open(&newer).unwrap();
        conn.execute_batch(&format!("PRAGMA user_version = {};", SCHEMA_VERSION + 1))
            .unwrap();
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .unwrap();
    }
    assert_refused_untouched(&newer, "a log from a newer Pulse").await;

    let corrupt = dir.path().join("corrupt.db");
    {
        let log = SqliteLog::open_with(&corrupt, fast()).await.unwrap();
        log.append((0..100).map(|_| Event::new("a.b")).collect())
            .await
            .unwrap();
        log.close().await.unwrap();
    }
    let mut bytes = std::fs::read(&corrupt).unwrap();
    // Page 1 holds the schema after the 100-byte header: scribble over it.
    bytes[100..1024].fill(0xA5);
    std::fs::write(&corrupt, &bytes).unwrap();
    assert_refused_untouched(&corrupt, "a log with a damaged schema page").await;
}

/// A tmpfs mounted for one test, unmounted when dropped.
struct Mount(PathBuf);

impl Mount {
    /// Mounts a tmpfs with `options` at a new directory, or `None` when this user may
    /// not mount (the caller then says the test is skipped). With `CI` set, where the
    /// tests run as root, failing to mount fails the test instead.
    fn tmpfs(options: &str) -> Option<(Self, tempfile::TempDir)> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            mounted || std::env::var_os("CI").is_none(),
            "CI is set but a tmpfs cannot be mounted (this test needs root)"
        );
        mounted.then(|| (Self(dir.path().to_owned()), dir))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_directory_is_a_clear_error() {
    let Some((mount, _dir)) = Mount::tmpfs("ro,size=1m") else {
        println!("skipped: cannot mount a read-only tmpfs here (needs root)");
        return;
    };
    let err = SqliteLog::open(mount.0.join("data")).await.unwrap_err();
    match &err {
        LogError::Storage(message) => assert!(
            message.contains("read-only"),
            "the message names the cause: {message}"
        ),
        other => panic!("expected a storage error, got {other:?}"),
    }
    let err = SqliteLog::open(&mount.0).await.unwrap_err();
    assert!(
        matches!(err, LogError::Storage(ref m) if m.contains("read-only")),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_appends_and_keeps_what_was_stored() {
    let Some((mount, _dir)) = Mount::tmpfs("size=2m") else {
        println!("skipped: cannot mount a small tmpfs here (needs root)");
        return;
    };
    let log = SqliteLog::open(&mount.0).await.unwrap();
    let payload = vec![b'x'; 4096];
    let mut stored = 0u64;
    let err = loop {
        let batch = (0..16)
            .map(|_| Event::new("a.b").with_data("application/octet-stream", payload.clone()))
            .collect();
        match log.append(batch).await {
            Ok(appended) => stored = appended.last().unwrap().offset,
            Err(err) => break err,
        }
        assert!(stored < 10_000, "the disk never filled up");
    };
    assert!(
        matches!(err, LogError::StorageFull(ref m) if m.contains("disk is full")),
        "{err:?}"
    );
    assert!(stored > 0);
    // Nothing half-written: the log still answers and holds exactly what was acknowledged.
    assert_eq!(log.last_offset().await.unwrap(), stored);
    let mut count = 0;
    let mut after = 0;
    loop {
        let page = log.read(ReadQuery::after(after, 100)).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.offset;
        count += page.len() as u64;
    }
    assert_eq!(count, stored);
    // Group bookkeeping still works on a full disk for what needs no new pages.
    log.ensure_group("g", GroupConfig::new(Pattern::parse("a.>").unwrap()))
        .await
        .ok();
    log.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_writer_is_refused_while_the_first_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let first = SqliteLog::open_with(dir.path(), fast()).await.unwrap();
    let err = SqliteLog::open_with(dir.path(), fast()).await.unwrap_err();
    assert!(matches!(err, LogError::Unavailable(_)), "{err:?}");
    // Readers are welcome.
    let reader = SqliteLog::open_with(dir.path(), fast().read_only())
        .await
        .unwrap();
    first.append(vec![Event::new("a.b")]).await.unwrap();
    assert_eq!(reader.last_offset().await.unwrap(), 1);
    assert!(matches!(
        reader.append(vec![Event::new("a.b")]).await,
        Err(LogError::Storage(_))
    ));
    first.close().await.unwrap();
    drop(first);
    SqliteLog::open_with(dir.path(), fast()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fsync_policy_stores_and_reopens() {
    use pulse_sqlite::{FsyncPolicy, SqliteOptions};
    for fsync in [
        FsyncPolicy::Always,
        FsyncPolicy::Interval(std::time::Duration::from_millis(5)),
        FsyncPolicy::Never,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteOptions::default().with_fsync(fsync);
        let log = SqliteLog::open_with(dir.path(), options.clone())
            .await
            .unwrap();
        for _ in 0..5 {
            log.append((0..20).map(|_| Event::new("a.b")).collect())
                .await
                .unwrap();
        }
        log.flush().await.unwrap();
        log.close().await.unwrap();
        drop(log);
        let log = SqliteLog::open_with(dir.path(), options).await.unwrap();
        assert_eq!(log.last_offset().await.unwrap(), 100, "{fsync:?}");
        assert_eq!(
            log.read(ReadQuery::after(0, 1000)).await.unwrap().len(),
            100
        );
    }
}
