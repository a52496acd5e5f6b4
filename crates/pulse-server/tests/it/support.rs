//! A real server on 127.0.0.1:0 in this process, and small client helpers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pulse_core::memory::MemoryLog;
use pulse_core::EventLog;
use pulse_server::{Config, Server, ServerOptions};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub(crate) const STRUCTURED: &str = "application/cloudevents+json";
pub(crate) const BATCH: &str = "application/cloudevents-batch+json";

/// A running server; stopped (drained) by [`TestServer::stop`] or on drop.
pub(crate) struct TestServer {
    pub(crate) addr: SocketAddr,
    pub(crate) log: Arc<dyn EventLog>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), pulse_server::ServerError>>>,
}

impl TestServer {
    /// A server on an in-memory log with this configuration text.
    pub(crate) async fn start(config: &str) -> Self {
        Self::start_with(config, Arc::new(MemoryLog::new()), None).await
    }

    /// A server on `log`, keeping webhooks in `data_dir`.
    pub(crate) async fn start_with(
        config: &str,
        log: Arc<dyn EventLog>,
        data_dir: Option<PathBuf>,
    ) -> Self {
        let config = Config::parse(config).expect("test config is valid");
        let options = ServerOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir,
            shared_jobs: None,
        };
        let server = Server::bind(config, log.clone(), options)
            .await
            .expect("server binds");
        let addr = server.local_addr();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = rx.await;
        }));
        Self {
            addr,
            log,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub(crate) fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path.replace('>', "%3E"))
    }

    /// Drains the server and waits for it to finish.
    pub(crate) async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("server drains in time")
                .expect("server task")
                .expect("server run");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::new()
}

/// A structured-mode CloudEvent.
pub(crate) fn event(id: &str, ty: &str, data: Value) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "test", "type": ty, "subject": "user-1", "data": data})
}

/// POSTs `body` with a content type and optional key; returns status and JSON body.
pub(crate) async fn post(
    url: &str,
    content_type: &str,
    body: String,
    key: Option<&str>,
) -> (u16, Value) {
    let mut req = client()
        .post(url)
        .header("content-type", content_type)
        .body(body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.expect("request is sent");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// GETs a JSON resource.
pub(crate) async fn get(url: &str, key: Option<&str>) -> (u16, Value) {
    let mut req = client().get(url);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.expect("request is sent");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Publishes events as a batch; panics unless accepted. Returns their offsets.
pub(crate) async fn publish(server: &TestServer, events: Vec<Value>) -> Vec<u64> {
    let (status, body) = post(
        &server.url("/v1/events"),
        BATCH,
        Value::Array(events).to_string(),
        None,
    )
    .await;
    assert_eq!(status, 202, "{body}");
    body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["offset"].as_u64().unwrap())
        .collect()
}

/// Asserts the error shape and code.
pub(crate) fn assert_error(status: u16, body: &Value, want_status: u16, code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

/// Polls `check` every 20 ms until it returns `Some`, for at most `secs` seconds.
pub(crate) async fn eventually<T, F, Fut>(secs: u64, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached within {secs} s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
