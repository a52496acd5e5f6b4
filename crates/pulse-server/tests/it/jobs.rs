//! Aggregation jobs: a scheduled job aggregates readings published as events, queried
//! through `/v1/aggregates`; run-now, job listing and their errors.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use pulse_batch::BatchError;
use pulse_batch::Merged;
use pulse_batch::RejectLog;
use pulse_batch::WindowSet;
use pulse_batch::{run_log, LogJob};
use pulse_batch::{AggregateQuery, AggregateStore, Checkpoint, StoredRow};
use pulse_core::{Event, EventLog};
use pulse_server::jobs::{Jobs, SharedJobs};
use pulse_sqlite::LocalStore;
use serde_json::{json, Value};

use crate::support::*;

const CONFIG: &str = r#"
[[jobs]]
name = "readings"
schedule = "every 1s"
windows = ["5m", "1h"]
tz = "Europe/Berlin"
source_pattern = "health.reading.>"
"#;

fn reading(id: &str, user: &str, value: f64, at: &str) -> Value {
    event(
        id,
        "health.reading.heart_rate",
        json!({"user_id": user, "metric": "heart_rate", "value": value, "unit": "/min", "recorded_at": at}),
    )
}

#[tokio::test]
async fn scheduled_job_aggregates_published_readings() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(pulse_core::memory::MemoryLog::new());
    let server = TestServer::start_with(CONFIG, log, Some(dir.path().to_owned())).await;
    publish(
        &server,
        vec![
            reading("r1", "u1", 60.0, "2026-03-01T10:01:00Z"),
            reading("r2", "u1", 80.0, "2026-03-01T10:02:00Z"),
            reading("r3", "u1", 100.0, "2026-03-01T10:07:00Z"),
            reading("r4", "u2", 50.0, "2026-03-01T10:01:00Z"),
            event("noise", "billing.x", json!({"value": 1})),
        ],
    )
    .await;
    let url = server.url("/v1/aggregates?user_id=u1&metric=heart_rate&window=5m");
    // The scheduler runs the job every second; wait for a run that saw the readings.
    let rows = eventually(20, || async {
        let (s, body) = get(&url, None).await;
        assert_eq!(s, 200, "{body}");
        let rows = body["aggregates"].as_array()?.clone();
        (rows.len() == 2).then_some(rows)
    })
    .await;
    assert_eq!(rows[0]["window_start"], "2026-03-01T10:00:00Z");
    assert_eq!(rows[0]["window_end"], "2026-03-01T10:05:00Z");
    assert_eq!(rows[0]["count"], 2);
    assert_eq!(rows[0]["avg"], 70.0);
    assert_eq!(rows[0]["min"], 60.0);
    assert_eq!(rows[0]["max"], 80.0);
    assert_eq!(rows[0]["unit"], "/min");
    assert_eq!(rows[1]["count"], 1);
    let (_, hourly) = get(
        &server.url("/v1/aggregates?user_id=u1&metric=heart_rate&window=1h"),
        None,
    )
    .await;
    assert_eq!(hourly["aggregates"][0]["count"], 3);
    let (_, ranged) = get(
        &server.url("/v1/aggregates?user_id=u1&metric=heart_rate&window=5m&from=2026-03-01T10:05:00Z&to=2026-03-01T11:00:00Z"),
        None,
    )
    .await;
    assert_eq!(ranged["aggregates"].as_array().unwrap().len(), 1);

    // A late reading and a bad one; a run now picks them up.
    publish(
        &server,
        vec![
            reading("r5", "u1", 70.0, "2026-03-01T10:03:00Z"),
            reading("bad", "u1", 900.0, "2026-03-01T10:03:00Z"),
        ],
    )
    .await;
    let run = loop {
        let (s, body) = post(
            &server.url("/v1/jobs/readings/run"),
            "application/json",
            String::new(),
            None,
        )
        .await;
        if s == 409 {
            // A scheduled run is in progress; ask again.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        }
        assert_eq!(s, 202, "{body}");
        break body["run"].clone();
    };
    assert_eq!(run["status"], "ok", "{run}");
    let (_, body) = get(&url, None).await;
    assert_eq!(
        body["aggregates"][0]["count"], 3,
        "the late reading joined its window"
    );
    assert_eq!(body["aggregates"][0]["avg"], 70.0);
    assert_eq!(
        body["aggregates"][0]["max"], 80.0,
        "the implausible 900/min was rejected"
    );

    let (s, jobs) = get(&server.url("/v1/jobs"), None).await;
    assert_eq!(s, 200);
    let job = &jobs["jobs"][0];
    assert_eq!(job["name"], "readings");
    assert_eq!(job["schedule"], "every 1s");
    assert_eq!(job["windows"], json!(["5m", "1h"]));
    assert_eq!(job["tz"], "Europe/Berlin");
    assert_eq!(job["source_pattern"], "health.reading.>");
    assert!(job["last_run"]["status"].is_string(), "{job}");
    let (s, runs) = get(&server.url("/v1/jobs/readings/runs?limit=100"), None).await;
    assert_eq!(s, 200);
    let runs = runs["runs"].as_array().unwrap();
    assert!(
        runs.iter()
            .any(|r| r["trigger"] == "manual" && r["scheduled_at"].is_null()),
        "{runs:?}"
    );
    assert!(runs
        .iter()
        .filter(|r| r["trigger"] == "scheduled")
        .all(|r| r["scheduled_at"].is_string()));
    server.stop().await;
}

#[tokio::test]
async fn job_and_aggregate_errors() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(pulse_core::memory::MemoryLog::new());
    let server = TestServer::start_with(CONFIG, log, Some(dir.path().to_owned())).await;
    let (s, b) = post(
        &server.url("/v1/jobs/nope/run"),
        "application/json",
        String::new(),
        None,
    )
    .await;
    assert_error(s, &b, 404, "unknown_job");
    let (s, b) = get(&server.url("/v1/jobs/nope/runs"), None).await;
    assert_error(s, &b, 404, "unknown_job");
    let (s, b) = get(&server.url("/v1/jobs/readings/runs?limit=0"), None).await;
    assert_error(s, &b, 400, "invalid_parameter");
    let (s, b) = get(
        &server.url("/v1/aggregates?user_id=u1&metric=heart_rate"),
        None,
    )
    .await;
    assert_error(s, &b, 400, "invalid_parameter");
    let (s, b) = get(
        &server.url("/v1/aggregates?user_id=u1&metric=heart_rate&window=7m"),
        None,
    )
    .await;
    assert_error(s, &b, 400, "invalid_parameter");
    let (s, b) = get(
        &server.url("/v1/aggregates?user_id=u1&metric=heart_rate&window=5m&from=noon"),
        None,
    )
    .await;
    assert_error(s, &b, 400, "invalid_parameter");
    let (s, b) = get(
        &server.url("/v1/aggregates?user_id=u9&metric=heart_rate&window=5m"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(b, json!({"aggregates": []}));
    server.stop().await;
}

/// A real local store in which another instance's run commits the job's new readings
/// between this run reading its checkpoint and committing.
struct CommittedMeanwhile {
    inner: LocalStore,
    log: Arc<dyn EventLog>,
    job: LogJob,
    raced: AtomicBool,
}

#[async_trait::async_trait]
impl AggregateStore for CommittedMeanwhile {
    async fn checkpoint(&self, job: &str, windows: &WindowSet) -> Result<Checkpoint, BatchError> {
        let seen = self.inner.checkpoint(job, windows).await?;
        if !self.raced.swap(true, Ordering::SeqCst) {
            run_log(
                self.log.as_ref(),
                &self.job,
                &self.inner,
                &RejectLog::none(),
            )
            .await?;
        }
        Ok(seen)
    }

    async fn commit(
        &self,
        job: &str,
        delta: Merged,
        from: u64,
        to: u64,
    ) -> Result<u64, BatchError> {
        self.inner.commit(job, delta, from, to).await
    }

    async fn query(&self, job: &str, query: &AggregateQuery) -> Result<Vec<StoredRow>, BatchError> {
        self.inner.query(job, query).await
    }
}

#[tokio::test]
async fn a_run_another_instance_committed_first_is_superseded_and_counts_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(pulse_core::memory::MemoryLog::new());
    let readings = [
        (60.0, "2026-03-01T10:01:00Z"),
        (80.0, "2026-03-01T10:02:00Z"),
    ];
    for (value, at) in readings {
        let data = json!({"user_id": "u1", "metric": "heart_rate", "value": value, "unit": "/min", "recorded_at": at});
        let event = Event::new("health.reading.heart_rate")
            .with_json(&data)
            .unwrap();
        log.append(vec![event]).await.unwrap();
    }
    let mut specs = pulse_server::Config::parse(CONFIG).unwrap().jobs;
    // Run only on demand: the test triggers both runs.
    specs[0].schedule = "every 1d".parse().unwrap();
    let spec = &specs[0];
    let store = Arc::new(CommittedMeanwhile {
        inner: LocalStore::new(dir.path()),
        log: log.clone(),
        job: LogJob::new(
            spec.name.clone(),
            spec.source_pattern.clone(),
            spec.windows.clone(),
        ),
        raced: AtomicBool::new(false),
    });
    let shared = SharedJobs {
        lease: Arc::new(pulse_scheduler::AlwaysAcquire),
        store: store.clone(),
    };
    let jobs = Jobs::start(specs, log, None, Some(shared)).await.unwrap();

    let first = jobs.run("readings").await.unwrap();
    assert_eq!(first["status"], "superseded", "{first}");
    let error = first["error"].as_str().unwrap();
    assert!(error.contains("another run committed first"), "{error}");
    let second = jobs.run("readings").await.unwrap();
    assert_eq!(
        (&second["status"], &second["rows_read"]),
        (&json!("ok"), &json!(0))
    );
    let statuses: Vec<Value> = jobs
        .runs("readings", 10)
        .await
        .unwrap()
        .iter()
        .map(|r| r["status"].clone())
        .collect();
    assert_eq!(statuses, [json!("ok"), json!("superseded")], "newest first");

    let query = AggregateQuery {
        user_id: "u1".into(),
        metric: "heart_rate".into(),
        window: "5m".into(),
        from_us: i64::MIN,
        to_us: i64::MAX,
        limit: 10,
    };
    let rows = store.query("readings", &query).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].stats.count, 2, "each reading counted once");
    jobs.shutdown().await;
}
