//! `[retention]` reaches the PostgreSQL log of `pulse serve`: two instances sharing one
//! schema, both pruning, keep the newest `max_events` events without an error in their
//! logs, and offsets continue after the pruned range.
//!
//! Runs when `PULSE_TEST_POSTGRES_URL` names a server; works in a schema of its own.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

/// A `pulse serve` process writing its log lines to a file, killed when dropped.
struct Instance {
    child: Child,
    base: String,
    stderr: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Instance {
    async fn start(url: &str, schema: &str, name: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("pulse.toml");
        std::fs::write(
            &config,
            format!(
                "[log]\nbackend = \"postgres\"\nurl = \"{url}\"\nschema = \"{schema}\"\ninstance = \"{name}\"\n\
                 [retention]\nmax_events = 10\n"
            ),
        )
        .unwrap();
        let stderr = dir.path().join("stderr.log");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_pulse"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let instance = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            stderr,
            _dir: dir,
        };
        for _ in 0..1500 {
            if let Ok(r) = reqwest::get(format!("{}/healthz", instance.base)).await {
                if r.status() == 200 {
                    return instance;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("pulse serve {name} did not become healthy");
    }

    async fn publish(&self, ids: std::ops::Range<u64>) {
        let events: Vec<Value> = ids
            .map(|i| json!({"specversion": "1.0", "id": format!("e-{i}"), "source": "test", "type": "health.reading.hr", "data": i}))
            .collect();
        let resp = reqwest::Client::new()
            .post(format!("{}/v1/events", self.base))
            .header("content-type", "application/cloudevents-batch+json")
            .body(Value::Array(events).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
    }

    fn log_lines(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain connection to the test server, driven on its own task.
async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
    tokio::spawn(connection);
    client
}

/// (count, lowest, highest) offset of the stored events.
async fn stored(client: &tokio_postgres::Client, schema: &str) -> (i64, Option<i64>, Option<i64>) {
    let row = client
        .query_one(
            &format!("SELECT count(*), min(\"offset\"), max(\"offset\") FROM \"{schema}\".events"),
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_applies_retention_to_the_postgres_log() {
    let Ok(url) = std::env::var("PULSE_TEST_POSTGRES_URL") else {
        println!("skipped serve_applies_retention_to_the_postgres_log: PULSE_TEST_POSTGRES_URL is not set");
        return;
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    let schema = format!("pulse_t_serveret_{:012x}", nanos >> 16);
    let client = admin(&url).await;
    let _drop_schema = DropSchema {
        url: url.clone(),
        name: schema.clone(),
    };
    let one = Instance::start(&url, &schema, "node-1").await;
    let two = Instance::start(&url, &schema, "node-2").await;
    one.publish(0..30).await;
    two.publish(30..50).await;

    // The default pass interval is a few seconds: wait for one, however long it takes.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while stored(&client, &schema).await != (10, Some(41), Some(50)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "retention did not keep the newest 10: {:?}",
            stored(&client, &schema).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    one.publish(50..51).await;
    assert_eq!(
        stored(&client, &schema).await.2,
        Some(51),
        "offsets continue after the pruned range"
    );
    for instance in [&one, &two] {
        let lines = instance.log_lines();
        assert!(!lines.contains("retention pass failed"), "{lines}");
        assert!(!lines.contains("not applied"), "{lines}");
    }
}

/// Drops the test's schema at the end, also when the test fails.
struct DropSchema {
    url: String,
    name: String,
}

impl Drop for DropSchema {
    fn drop(&mut self) {
        let (url, sql) = (
            self.url.clone(),
            format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name),
        );
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .ok()?;
                tokio::spawn(connection);
                client.batch_execute(&sql).await.ok()
            })
        })
        .join();
    }
}
