//! `pulse serve`'s aggregation jobs record the `pulse_batch_*` metrics, as
//! `pulse aggregate` does: one runner serves both, and `/metrics` of a real server shows
//! what its job runs read, rejected and wrote.

use serde_json::{json, Value};

use crate::support::Server;

const CONFIG: &str = "[[jobs]]\nname = \"hourly\"\nschedule = \"every 1d\"\n\
    windows = [\"5m\", \"1h\"]\ntz = \"UTC\"\nsource_pattern = \"health.reading.>\"\n";

fn reading(id: &str, user: &str, value: f64, at: &str) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "test", "type": "health.reading.hr",
        "data": {"user_id": user, "metric": "heart_rate", "value": value, "unit": "bpm",
                 "recorded_at": at}})
}

/// Every line of `/metrics` that starts with `name`, as (labels, value).
async fn samples(server: &Server, name: &str) -> Vec<(String, f64)> {
    let text = reqwest::get(format!("{}/metrics", server.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (labels, value) = rest.rsplit_once(' ')?;
            Some((labels.to_owned(), value.parse().ok()?))
        })
        .collect()
}

#[tokio::test]
async fn job_runs_of_pulse_serve_show_on_metrics() {
    let server = Server::start("metrics", CONFIG).await;
    let client = reqwest::Client::new();
    let events = vec![
        reading("r1", "u1", 60.0, "2026-03-01T10:01:00Z"),
        reading("r2", "u1", 70.0, "2026-03-01T10:02:00Z"),
        reading("r3", "u2", 80.0, "2026-03-01T10:07:00Z"),
        // Out of the plausible range: rejected with its reason, and counted.
        reading("bad", "u2", 900.0, "2026-03-01T10:08:00Z"),
    ];
    let resp = client
        .post(format!("{}/v1/events", server.base))
        .header("content-type", "application/cloudevents-batch+json")
        .body(Value::Array(events).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let run: Value = loop {
        let resp = client
            .post(format!("{}/v1/jobs/hourly/run", server.base))
            .send()
            .await
            .unwrap();
        if resp.status() == 409 {
            // A scheduled run is in progress; ask again.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        }
        assert_eq!(resp.status(), 202);
        break resp.json::<Value>().await.unwrap()["run"].clone();
    };
    assert_eq!(run["status"], "ok", "{run}");
    assert_eq!(run["rows_read"], 4, "{run}");
    assert_eq!(run["rejected"], 1, "{run}");

    // Whether or not a scheduled tick also ran, the metrics are the sum of every run.
    let runs: Value = reqwest::get(format!("{}/v1/jobs/hourly/runs?limit=100", server.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let runs = runs["runs"].as_array().unwrap().clone();
    let sum = |key: &str| runs.iter().map(|r| r[key].as_f64().unwrap()).sum::<f64>();
    assert_eq!(
        sum("rows_read"),
        4.0,
        "one run read the four readings: {runs:?}"
    );
    assert_eq!(
        server.metric("pulse_batch_rows_read_total").await,
        Some(sum("rows_read"))
    );
    assert_eq!(
        server.metric("pulse_batch_windows_written_total").await,
        Some(sum("windows_written"))
    );
    assert_eq!(
        sum("windows_written"),
        4.0,
        "two 5m and two 1h windows: {runs:?}"
    );
    assert_eq!(
        samples(&server, "pulse_batch_rows_rejected_total").await,
        vec![("{reason=\"implausible_value\"}".to_owned(), 1.0)]
    );
    let finished = runs.iter().filter(|r| r["status"] == "ok").count() as f64;
    assert_eq!(
        server.metric("pulse_batch_run_seconds_count").await,
        Some(finished)
    );
}
