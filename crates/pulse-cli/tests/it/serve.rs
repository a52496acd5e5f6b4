//! `pulse serve` as a real process: SIGTERM drains it, commits group offsets and exits 0;
//! a bad configuration exits 2 naming the key; `--listen` takes a host name; a busy port
//! fails before anything is created.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::StreamExt;
use pulse_core::EventLog;
use serde_json::{json, Value};

use crate::support::free_port;

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_healthy(base: &str) {
    for _ in 0..500 {
        if let Ok(r) = reqwest::get(format!("{base}/healthz")).await {
            if r.status() == 200 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("pulse serve did not become healthy");
}

#[tokio::test]
async fn sigterm_drains_commits_offsets_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_pulse"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--log-format",
            "json",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Running(child);
    wait_healthy(&base).await;

    let events: Vec<Value> = (1..=5)
        .map(|i| json!({"specversion": "1.0", "id": format!("t-{i}"), "source": "test", "type": "health.reading.hr", "data": i}))
        .collect();
    let resp = reqwest::Client::new()
        .post(format!("{base}/v1/events"))
        .header("content-type", "application/cloudevents-batch+json")
        .body(Value::Array(events).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);

    // An SSE group subscription, whose reader acknowledges what it got; keep it open
    // during SIGTERM.
    let stream = reqwest::get(format!("{base}/v1/stream?type=health.%3E&group=drain"))
        .await
        .unwrap();
    let mut body = stream.bytes_stream();
    let mut text = String::new();
    while text.matches("event: cloudevent").count() < 5 {
        let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let acked = reqwest::Client::new()
        .post(format!("{base}/v1/groups/drain/ack"))
        .json(&json!({"offsets": [1, 2, 3, 4, 5]}))
        .send()
        .await
        .unwrap();
    assert_eq!(acked.status(), 204);
    for _ in 0..500 {
        let groups: Value = reqwest::get(format!("{base}/v1/groups"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if groups["groups"][0]["committed"] == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let pid = child.0.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    // The open stream ends: the server closes it while draining.
    let rest = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(chunk) = body.next().await {
            if chunk.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(rest.is_ok(), "the stream was closed by the drain");
    let exit = tokio::task::spawn_blocking(move || {
        let status = child.0.wait().unwrap();
        let mut stderr = String::new();
        std::io::Read::read_to_string(child.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
        (status, stderr)
    })
    .await
    .unwrap();
    assert_eq!(exit.0.code(), Some(0), "stderr: {}", exit.1);
    for line in exit.1.lines() {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not a JSON log line: {line}"));
        assert!(v["level"].is_string());
    }
    assert!(exit.1.contains("SIGTERM"), "{}", exit.1);

    let log = pulse_sqlite::SqliteLog::open(dir.path()).await.unwrap();
    let groups = log.groups().await.unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(
        groups[0].committed, 5,
        "offsets were committed by the drain"
    );
    log.close().await.unwrap();
}

#[test]
fn bad_configuration_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pulse.toml");
    std::fs::write(&config, "[limits]\nmax_body = 10\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pulse"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("max_body"), "{stderr}");
}

#[tokio::test]
async fn keys_and_health_values_never_reach_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pulse.toml");
    std::fs::write(
        &config,
        "[[api_keys]]\nname = \"ingest\"\nkey_env = \"PULSE_TEST_KEY\"\npublish = [\"health.>\"]\nsubscribe = [\"health.>\"]\n",
    )
    .unwrap();
    let secret = "s3cret-key-never-logged-4711";
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_pulse"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path())
        .env("PULSE_TEST_KEY", secret)
        .env("RUST_LOG", "trace")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Running(child);
    wait_healthy(&base).await;
    let client = reqwest::Client::new();
    let reading = json!({"specversion": "1.0", "id": "v-1", "source": "watch", "type": "health.reading.glucose",
        "subject": "patient-0815", "data": {"value": 987.654321}});
    for key in [secret, "wrong-key-0123456789"] {
        let _ = client
            .post(format!("{base}/v1/events"))
            .bearer_auth(key)
            .header("content-type", "application/cloudevents+json")
            .body(reading.to_string())
            .send()
            .await
            .unwrap();
    }
    let bad = event_with_bad_type();
    let _ = client
        .post(format!("{base}/v1/events"))
        .bearer_auth(secret)
        .header("content-type", "application/cloudevents+json")
        .body(bad)
        .send()
        .await
        .unwrap();
    let _ = client
        .get(format!("{base}/v1/events?type=health.%3E&api_key={secret}"))
        .send()
        .await
        .unwrap();
    let _ = client
        .get(format!("{base}/v1/events?type=health.%3E"))
        .bearer_auth(secret)
        .send()
        .await
        .unwrap();

    Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    let stderr = tokio::task::spawn_blocking(move || {
        child.0.wait().unwrap();
        let mut stderr = String::new();
        std::io::Read::read_to_string(child.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
        stderr
    })
    .await
    .unwrap();
    assert!(
        stderr.contains("listening"),
        "the log was captured: {stderr}"
    );
    for secret_text in [secret, "987.654321", "wrong-key-0123456789"] {
        assert!(
            !stderr.contains(secret_text),
            "{secret_text:?} reached the log:\n{stderr}"
        );
    }
}

#[tokio::test]
async fn listen_takes_a_host_name() {
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_pulse"))
        .args(["serve", "--listen", "localhost:0", "--log-format", "json"])
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Running(child);
    // The log line names the port picked for `:0`; the rest of the log is read until the end
    // so that the server never blocks on a full pipe.
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
            let Ok(line) = line else { break };
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if v["fields"]["message"] == "pulse serve listening" {
                let _ = tx.send(v["fields"]["addr"].as_str().unwrap_or_default().to_owned());
            }
        }
    });
    let addr = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(60)))
        .await
        .unwrap()
        .expect("pulse serve says where it listens");
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    assert!(addr.ip().is_loopback(), "{addr}");
    assert_ne!(addr.port(), 0);
    wait_healthy(&format!("http://{addr}")).await;
    let _ = child.0.kill();
}

#[test]
fn a_busy_port_fails_at_once_saying_so_once() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let os_error = std::net::TcpListener::bind(addr).unwrap_err().to_string();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = Command::new(env!("CARGO_BIN_EXE_pulse"))
        .args(["serve", "--listen", &addr.to_string()])
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&addr.to_string()), "{stderr}");
    assert_eq!(stderr.matches(&os_error).count(), 1, "{stderr}");
    assert!(!data.exists(), "no data directory is created");
}

fn event_with_bad_type() -> String {
    json!({"specversion": "1.0", "id": "v-2", "source": "watch", "type": "health..glucose", "data": {"value": 987.654321}})
        .to_string()
}
