//! What the tests of `pulse serve` share: a server process on a free loopback port,
//! killed when dropped, and the removal of a test's PostgreSQL schema or NATS log when the
//! test ends, however it ends.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A free TCP port on loopback.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `pulse serve` process in a directory of its own (config, data, log lines), killed
/// when dropped.
pub(crate) struct Server {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub(crate) base: String,
    /// `ws://127.0.0.1:<port>`.
    pub(crate) ws: String,
    /// The name the test gave it.
    pub(crate) name: String,
    stderr: PathBuf,
    data_dir: PathBuf,
    /// Holds its config, log lines and (unless the test gave one) data; removed on drop.
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts `pulse serve` with `config` (TOML) and waits until it is healthy.
    pub(crate) async fn start(name: &str, config: &str) -> Self {
        Self::launch(name, config, None).await
    }

    /// Starts `pulse serve` with `config` on the data directory `data_dir` (a log the test
    /// made) and waits until it is healthy.
    pub(crate) async fn start_on(name: &str, config: &str, data_dir: &std::path::Path) -> Self {
        Self::launch(name, config, Some(data_dir.to_owned())).await
    }

    async fn launch(name: &str, config: &str, data_dir: Option<PathBuf>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = data_dir.unwrap_or_else(|| dir.path().join("data"));
        let config_path = dir.path().join("pulse.toml");
        std::fs::write(&config_path, config).unwrap();
        let stderr = dir.path().join("stderr.log");
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_pulse"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--config")
            .arg(&config_path)
            .arg("--data-dir")
            .arg(&data_dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        // Killed and waited for by the drop, also when it never becomes healthy.
        let mut server = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            ws: format!("ws://127.0.0.1:{port}"),
            name: name.to_owned(),
            stderr,
            data_dir,
            _dir: dir,
        };
        for _ in 0..1500 {
            if let Ok(r) = reqwest::get(format!("{}/healthz", server.base)).await {
                if r.status() == 200 {
                    return server;
                }
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "pulse serve {name} exited: {status}\n{}",
                    server.log_lines()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("pulse serve {name} did not become healthy");
    }

    /// Kills the process with SIGKILL and reaps it.
    pub(crate) fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// What the process has logged so far.
    pub(crate) fn log_lines(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The value of the unlabelled metric `name` on its `/metrics`, if it shows one.
    pub(crate) async fn metric(&self, name: &str) -> Option<f64> {
        let text = reqwest::get(format!("{}/metrics", self.base))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|value| value.trim().parse().ok())
    }

    /// The `--data-dir` it was started with (the SQLite log lives there).
    pub(crate) fn data_dir(&self) -> PathBuf {
        self.data_dir.clone()
    }
}

/// Publishes events `e-<i>` (type `health.reading.hr`, data `i`) for every `i` of `ids`
/// through `server` in one batch.
pub(crate) async fn publish_numbered(server: &Server, ids: std::ops::Range<u64>) {
    let events: Vec<serde_json::Value> = ids
        .map(|i| serde_json::json!({"specversion": "1.0", "id": format!("e-{i}"), "source": "test", "type": "health.reading.hr", "data": i}))
        .collect();
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/events", server.base))
        .header("content-type", "application/cloudevents-batch+json")
        .body(serde_json::Value::Array(events).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `[log]` table of an instance named `name` on PostgreSQL schema `schema`.
/// The URL in the environment variable `var` (`PULSE_TEST_POSTGRES_URL`, ...), or `None`
/// after printing that `test` is skipped because it is not set.
pub(crate) fn server_url(var: &str, test: &str) -> Option<String> {
    let url = std::env::var(var).ok();
    if url.is_none() {
        println!("skipped {test}: {var} is not set");
    }
    url
}

/// A plain connection to the PostgreSQL server at `url`, driven on its own task; panics
/// when the server cannot be reached.
pub(crate) async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
    tokio::spawn(connection);
    client
}

pub(crate) fn postgres_log(url: &str, schema: &str, name: &str) -> String {
    format!(
        "[log]\nbackend = \"postgres\"\nurl = \"{url}\"\nschema = \"{schema}\"\ninstance = \"{name}\"\n"
    )
}

/// The `[log]` table of an instance on the NATS log of `prefix`.
pub(crate) fn nats_log(url: &str, prefix: &str) -> String {
    format!("[log]\nbackend = \"nats\"\nurl = \"{url}\"\nschema = \"{prefix}\"\n")
}

/// A random-enough suffix for schema, prefix and stream names.
pub(crate) fn unique() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    (nanos ^ u64::from(std::process::id()).rotate_left(32)) >> 16
}

/// Runs `work` to completion on a runtime of its own, from a drop.
fn in_own_runtime<F: std::future::Future + 'static>(work: impl FnOnce() -> F + Send + 'static) {
    let _ = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        runtime.block_on(work());
        Some(())
    })
    .join();
}

/// Drops the test's PostgreSQL schema at the end.
pub(crate) struct DropSchema {
    pub(crate) url: String,
    pub(crate) name: String,
}

impl Drop for DropSchema {
    fn drop(&mut self) {
        let (url, sql) = (
            self.url.clone(),
            format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name),
        );
        in_own_runtime(move || async move {
            let Ok((client, connection)) =
                tokio_postgres::connect(&url, tokio_postgres::NoTls).await
            else {
                return;
            };
            tokio::spawn(connection);
            let _ = client.batch_execute(&sql).await;
        });
    }
}

/// Deletes the test's NATS streams and buckets at the end.
pub(crate) struct DropNatsLog(pub(crate) String, pub(crate) pulse_nats::NatsOptions);

impl Drop for DropNatsLog {
    fn drop(&mut self) {
        let (url, options) = (self.0.clone(), self.1.clone());
        in_own_runtime(move || async move {
            let _ = pulse_nats::delete_log(&url, &options).await;
        });
    }
}
