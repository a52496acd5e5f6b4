//! Test harness: a fresh schema per test, dropped at the end (also when the test fails),
//! and logs opened on it as separate "instances".

use std::time::Duration;

use pulse_postgres::{PostgresLog, PostgresOptions};

/// The server named by `PULSE_TEST_POSTGRES_URL`, or `None` (after saying the test is
/// skipped) when it is unset.
pub(crate) fn url(test: &str) -> Option<String> {
    match std::env::var("PULSE_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            println!("skipped {test}: PULSE_TEST_POSTGRES_URL is not set");
            None
        }
    }
}

/// A schema of its own for one test; dropped with everything in it when this is dropped.
pub(crate) struct Schema {
    pub(crate) url: String,
    pub(crate) name: String,
}

impl Schema {
    /// A fresh, unique schema name on the test server (created by the first log).
    pub(crate) fn new(url: String, test: &str) -> Self {
        let short: String = test
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(24)
            .collect();
        let name = format!(
            "pulse_t_{}_{:012x}",
            short.to_ascii_lowercase(),
            fastrand::u64(..) >> 16
        );
        Self { url, name }
    }

    /// Options for an instance on this schema, with generous timeouts for a loaded machine.
    pub(crate) fn options(&self) -> PostgresOptions {
        let mut options = PostgresOptions::new(self.name.clone());
        options.pool_size = 4;
        options.connect_timeout = Duration::from_secs(20);
        options.heartbeat = Duration::from_millis(500);
        options.instance_timeout = Duration::from_secs(30);
        options
    }

    /// Opens one more instance on the schema; fails the test if the server is unreachable.
    pub(crate) async fn open(&self) -> PostgresLog {
        self.open_with(self.options()).await
    }

    /// Opens an instance with the given options.
    pub(crate) async fn open_with(&self, options: PostgresOptions) -> PostgresLog {
        PostgresLog::connect(&self.url, options)
            .await
            .unwrap_or_else(|e| panic!("cannot open the postgres log at {}: {e}", self.url))
    }

    /// A plain admin connection to the test server.
    pub(crate) async fn admin(&self) -> tokio_postgres::Client {
        admin(&self.url).await
    }
}

/// A plain connection to the server at `url`, driven on its own task.
pub(crate) async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
    tokio::spawn(connection);
    client
}

impl Drop for Schema {
    fn drop(&mut self) {
        let url = self.url.clone();
        let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name);
        // Drop runs inside the test's runtime, which cannot be blocked on: use a thread
        // with a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let (client, connection) =
                    tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
                tokio::spawn(connection);
                client.batch_execute(&sql).await
            })?;
            Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test schema {}", self.name);
        }
    }
}

/// Opens a log on a fresh schema, for the contract suite; when no server is configured,
/// says so and ends the test process successfully (nextest runs one test per process).
pub(crate) async fn contract_log() -> (PostgresLog, Schema) {
    let Some(url) = url("the PostgreSQL contract suite") else {
        std::process::exit(0);
    };
    let schema = Schema::new(url, "contract");
    (schema.open().await, schema)
}

/// Polls `check` until it holds (background work such as retention), failing after a
/// generous bound; never asserts on how long it took.
pub(crate) async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..1200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not happen");
}
