//! Webhook subscriptions: CRUD, delivery to a real axum receiver that is down and comes
//! back, dead letters after `max_deliver` and redrive, persistence across restarts.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::routing::post as route_post;
use axum::Router;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::support::*;

/// A webhook receiver: records bodies; answers `status` (changeable).
#[derive(Clone)]
struct Receiver {
    got: Arc<Mutex<Vec<Value>>>,
    status: Arc<Mutex<StatusCode>>,
}

impl Receiver {
    fn new(status: StatusCode) -> Self {
        Self {
            got: Arc::default(),
            status: Arc::new(Mutex::new(status)),
        }
    }

    /// Serves on `listener` until the returned handle is aborted.
    fn serve(&self, listener: TcpListener) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        let app = Router::new().route(
            "/hook",
            route_post(move |headers: axum::http::HeaderMap, body: String| {
                let me = me.clone();
                async move {
                    assert_eq!(headers["content-type"], "application/cloudevents+json");
                    me.got.lock().push(serde_json::from_str(&body).unwrap());
                    *me.status.lock()
                }
            }),
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        })
    }

    fn ids(&self) -> Vec<String> {
        self.got
            .lock()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect()
    }
}

async fn subscribe(server: &TestServer, body: Value) -> (u16, Value) {
    post(
        &server.url("/v1/subscriptions"),
        "application/json",
        body.to_string(),
        None,
    )
    .await
}

#[tokio::test]
async fn receiver_down_then_back_gets_the_event() {
    // Reserve a port, then close it: the receiver is down.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = TestServer::start("").await;
    let (s, sub) = subscribe(
        &server,
        json!({"pattern": "health.>", "group": "hook1", "url": format!("http://127.0.0.1:{port}/hook"),
               "max_deliver": 50, "backoff_ms": [50, 100]}),
    )
    .await;
    assert_eq!(s, 201, "{sub}");
    assert_eq!(sub["group"], "hook1");
    assert_eq!(sub["max_deliver"], 50);
    publish(&server, vec![event("wh-1", "health.reading.hr", json!(70))]).await;
    // At least two failed attempts before the receiver comes up.
    eventually(10, || async {
        let (_, m) = get(&server.url("/metrics"), None).await;
        let text = m.as_str()?.to_owned();
        let failures = text
            .lines()
            .find(|l| l.starts_with("pulse_webhook_failures_total"))?
            .rsplit(' ')
            .next()?
            .parse::<f64>()
            .ok()?;
        (failures >= 2.0).then_some(())
    })
    .await;
    let receiver = Receiver::new(StatusCode::OK);
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("port is free again");
    let handle = receiver.serve(listener);
    let ids = eventually(10, || async {
        let ids = receiver.ids();
        (!ids.is_empty()).then_some(ids)
    })
    .await;
    assert_eq!(ids, vec!["wh-1"]);
    assert_eq!(receiver.got.lock()[0]["data"], 70);
    let committed = eventually(10, || async {
        let g = server
            .log
            .groups()
            .await
            .unwrap()
            .into_iter()
            .find(|g| g.name == "hook1")?;
        (g.committed == 1).then_some(g.committed)
    })
    .await;
    assert_eq!(committed, 1);
    handle.abort();
    server.stop().await;
}

#[tokio::test]
async fn failing_receiver_dead_letters_then_redrive_delivers() {
    let receiver = Receiver::new(StatusCode::INTERNAL_SERVER_ERROR);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = receiver.serve(listener);
    let server = TestServer::start("").await;
    let (s, _) = subscribe(
        &server,
        json!({"pattern": "a.>", "group": "hook2", "url": format!("http://127.0.0.1:{port}/hook"),
               "max_deliver": 3, "backoff_ms": [10]}),
    )
    .await;
    assert_eq!(s, 201);
    publish(&server, vec![event("dl-1", "a.b", json!(1))]).await;
    let letters = eventually(10, || async {
        let (_, body) = get(&server.url("/v1/dlq?group=hook2"), None).await;
        let letters = body["dead_letters"].as_array()?.clone();
        (!letters.is_empty()).then_some(letters)
    })
    .await;
    assert_eq!(
        receiver.ids().len(),
        3,
        "three attempts, then dead-lettered"
    );
    let dl = &letters[0];
    assert_eq!(dl["group"], "hook2");
    assert_eq!(dl["offset"], 1);
    assert_eq!(dl["attempts"], 3);
    assert_eq!(dl["event"]["id"], "dl-1");
    assert!(dl["error"].as_str().unwrap().contains("500"), "{dl}");

    *receiver.status.lock() = StatusCode::NO_CONTENT;
    let id = dl["id"].as_u64().unwrap();
    let (s, body) = post(
        &server.url(&format!("/v1/dlq/{id}/redrive")),
        "application/json",
        String::new(),
        None,
    )
    .await;
    assert_eq!(s, 202, "{body}");
    assert_eq!(body["redriven"], id);
    eventually(10, || async { (receiver.ids().len() == 4).then_some(()) }).await;
    eventually(10, || async {
        let (_, body) = get(&server.url("/v1/dlq?group=hook2"), None).await;
        body["dead_letters"].as_array()?.is_empty().then_some(())
    })
    .await;
    handle.abort();
    server.stop().await;
}

#[tokio::test]
async fn subscriptions_crud_errors_and_persistence() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn pulse_core::EventLog> = Arc::new(pulse_core::memory::MemoryLog::new());
    let server = TestServer::start_with("", log.clone(), Some(dir.path().to_owned())).await;
    let url = "http://127.0.0.1:9/hook";
    let (s, created) = subscribe(
        &server,
        json!({"pattern": "a.>", "group": "keep", "url": url}),
    )
    .await;
    assert_eq!(s, 201, "{created}");
    assert_eq!(created["backoff_ms"], json!([1000, 5000, 30000]));
    let (s, b) = subscribe(
        &server,
        json!({"pattern": "b.>", "group": "keep", "url": url}),
    )
    .await;
    assert_error(s, &b, 409, "group_in_use");
    let (s, b) = subscribe(&server, json!({"pattern": "a..b", "url": url})).await;
    assert_error(s, &b, 400, "invalid_pattern");
    let (s, b) = subscribe(
        &server,
        json!({"pattern": "a.b", "url": "file:///etc/passwd"}),
    )
    .await;
    assert_error(s, &b, 400, "invalid_parameter");
    let (s, b) = subscribe(&server, json!({"pattern": "a.b"})).await;
    assert_error(s, &b, 400, "malformed_json");
    let (s, b) = post(
        &server.url("/v1/subscriptions"),
        "text/plain",
        "{}".into(),
        None,
    )
    .await;
    assert_error(s, &b, 415, "unsupported_media_type");
    let (s, temp) = subscribe(&server, json!({"pattern": "c.>", "url": url})).await;
    assert_eq!(s, 201);
    let temp_id = temp["id"].as_str().unwrap();
    let resp = client()
        .delete(server.url(&format!("/v1/subscriptions/{temp_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let resp = client()
        .delete(server.url(&format!("/v1/subscriptions/{temp_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    server.stop().await;

    // After a restart on the same data directory the subscription is still there.
    let server = TestServer::start_with("", log, Some(dir.path().to_owned())).await;
    let (s, list) = get(&server.url("/v1/subscriptions"), None).await;
    assert_eq!(s, 200);
    let subs = list["subscriptions"].as_array().unwrap();
    assert_eq!(subs.len(), 1, "{list}");
    assert_eq!(subs[0]["id"], created["id"]);
    assert_eq!(subs[0]["group"], "keep");
    server.stop().await;
}

#[tokio::test]
async fn configured_webhooks_deliver_and_cannot_be_deleted() {
    let receiver = Receiver::new(StatusCode::OK);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = receiver.serve(listener);
    let config = format!(
        "[[webhooks]]\nname = \"audit\"\npattern = \"audit.>\"\nurl = \"http://127.0.0.1:{port}/hook\"\nbackoff_ms = [10]\n"
    );
    let server = TestServer::start(&config).await;
    publish(
        &server,
        vec![
            event("cfg-1", "audit.login", json!({"ok": true})),
            event("cfg-2", "other.x", json!(0)),
        ],
    )
    .await;
    eventually(10, || async {
        (receiver.ids() == vec!["cfg-1"]).then_some(())
    })
    .await;
    let (_, list) = get(&server.url("/v1/subscriptions"), None).await;
    assert_eq!(list["subscriptions"][0]["id"], "audit");
    assert_eq!(list["subscriptions"][0]["group"], "webhook-audit");
    assert_eq!(list["subscriptions"][0]["from_config"], true);
    let resp = client()
        .delete(server.url("/v1/subscriptions/audit"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    handle.abort();
    server.stop().await;
}

/// Opens the SQLite log in `dir` and a server on it that keeps its webhooks there too.
async fn start_on_sqlite(dir: &std::path::Path) -> (TestServer, Arc<pulse_sqlite::SqliteLog>) {
    let log = Arc::new(pulse_sqlite::SqliteLog::open(dir).await.unwrap());
    let server = TestServer::start_with(
        "",
        log.clone() as Arc<dyn pulse_core::EventLog>,
        Some(dir.to_owned()),
    )
    .await;
    (server, log)
}

/// Stops the server and closes its log, as a process exit does.
async fn stop_on_sqlite(server: TestServer, log: Arc<pulse_sqlite::SqliteLog>) {
    server.stop().await;
    log.close().await.unwrap();
}

#[tokio::test]
async fn max_deliver_counts_attempts_across_server_restarts() {
    let receiver = Receiver::new(StatusCode::INTERNAL_SERVER_ERROR);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = receiver.serve(listener);
    let dir = tempfile::tempdir().unwrap();
    let (server, log) = start_on_sqlite(dir.path()).await;
    // An hour between attempts: only a restart brings the event back sooner.
    let (s, body) = subscribe(
        &server,
        json!({"pattern": "a.>", "group": "hook-restart", "url": format!("http://127.0.0.1:{port}/hook"),
               "max_deliver": 3, "backoff_ms": [3_600_000]}),
    )
    .await;
    assert_eq!(s, 201, "{body}");
    publish(&server, vec![event("rs-1", "a.b", json!(1))]).await;
    eventually(10, || async { (receiver.ids().len() == 1).then_some(()) }).await;
    stop_on_sqlite(server, log).await;

    // Attempt 2 after the first restart, attempt 3 after the second: dead-lettered.
    let (server, log) = start_on_sqlite(dir.path()).await;
    eventually(10, || async { (receiver.ids().len() == 2).then_some(()) }).await;
    stop_on_sqlite(server, log).await;
    let (server, log) = start_on_sqlite(dir.path()).await;
    let letters = eventually(10, || async {
        let (_, body) = get(&server.url("/v1/dlq?group=hook-restart"), None).await;
        let letters = body["dead_letters"].as_array()?.clone();
        (!letters.is_empty()).then_some(letters)
    })
    .await;
    assert_eq!(receiver.ids(), vec!["rs-1"; 3], "three attempts in all");
    assert_eq!(letters[0]["attempts"], 3, "{}", letters[0]);
    assert_eq!(letters[0]["event"]["id"], "rs-1");
    handle.abort();
    stop_on_sqlite(server, log).await;
}
