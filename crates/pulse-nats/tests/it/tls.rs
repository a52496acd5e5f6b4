//! TLS to NATS: with `tls_ca`, the log talks to the server only over TLS and only when
//! the server's certificate is signed by that authority. The test runs a `nats-server` of
//! its own with a `tls` block (the shared test server has none).

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pulse_core::{Event, EventLog, ReadQuery};
use pulse_nats::{NatsLog, NatsOptions};

use crate::support;

/// A `nats-server` with JetStream and TLS on a free port, stopped on drop.
struct TlsServer {
    child: Child,
    port: u16,
}

impl TlsServer {
    fn start(dir: &Path, cert: &Path, key: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir.join("jetstream"))
            .arg("--tls")
            .arg("--tlscert")
            .arg(cert)
            .arg("--tlskey")
            .arg(key)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start nats-server (needed with PULSE_TEST_NATS_URL): {e}")
            });
        let server = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a self-signed certificate for `localhost` and its key; returns their paths.
fn certificate(dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}-key.pem")),
    );
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.key_pair.serialize_pem()).unwrap();
    (cert, key)
}

fn options(ca: Option<&Path>) -> NatsOptions {
    let mut options = NatsOptions::new(format!("pulsetest-tls-{:012x}", fastrand::u64(..) >> 16));
    options.connect_timeout = Duration::from_secs(5);
    options.request_timeout = Duration::from_secs(10);
    options.tls_ca = ca.map(Path::to_owned);
    options
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tls_ca_the_log_talks_only_tls_to_a_server_that_authority_signed() {
    let Some(shared) =
        support::url("with_tls_ca_the_log_talks_only_tls_to_a_server_that_authority_signed")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path(), "server");
    let (stranger, _) = certificate(dir.path(), "stranger");
    let server = TlsServer::start(dir.path(), &cert, &key);
    let url = format!("tls://localhost:{}", server.port);

    let trusted = options(Some(&cert));
    let log = NatsLog::connect(&url, trusted.clone())
        .await
        .unwrap_or_else(|e| panic!("cannot open the log over TLS: {e}"));
    let appended = log
        .append(vec![Event::new("health.reading").with_subject("user-1")])
        .await
        .unwrap();
    let read = log.read(ReadQuery::after(0, 10)).await.unwrap();
    assert_eq!(
        read.iter().map(|e| e.offset).collect::<Vec<_>>(),
        [appended[0].offset]
    );
    log.close().await;
    pulse_nats::delete_log(&url, &trusted).await.unwrap();

    // The server's certificate is not signed by the system's authorities, nor by another.
    for ca in [None, Some(stranger.as_path())] {
        let err = NatsLog::connect(&url, options(ca)).await.unwrap_err();
        assert!(
            matches!(err, pulse_core::LogError::Unavailable(_)),
            "{ca:?}: {err}"
        );
    }
    // A server without TLS is refused rather than sent anything in the clear.
    let err = NatsLog::connect(&shared, options(Some(&cert)))
        .await
        .unwrap_err();
    assert!(matches!(err, pulse_core::LogError::Unavailable(_)), "{err}");
}
