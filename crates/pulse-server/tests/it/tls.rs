//! HTTPS with rustls when a certificate and key are configured.

use std::sync::Arc;

use pulse_server::{Config, Server, ServerError, ServerOptions};

use crate::support::*;

#[tokio::test]
async fn serves_https_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let config = format!("[tls]\ncert = {:?}\nkey = {:?}\n", cert_path, key_path);
    let server = TestServer::start(&config).await;
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let url = format!("https://localhost:{}/healthz", server.addr.port());
    let resp = client.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        client.get(server.url("/healthz")).send().await.is_err(),
        "plain HTTP is not served"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_missing_certificate_is_a_start_error() {
    let config =
        Config::parse("[tls]\ncert = \"/nonexistent/cert.pem\"\nkey = \"/nonexistent/key.pem\"\n")
            .unwrap();
    let options = ServerOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: None,
        shared_jobs: None,
    };
    let log = Arc::new(pulse_core::memory::MemoryLog::new());
    match Server::bind(config, log, options).await {
        Err(ServerError::Tls(reason)) => {
            assert!(reason.contains("/nonexistent/cert.pem"), "{reason}")
        }
        Err(other) => panic!("expected a TLS error, got {other}"),
        Ok(_) => panic!("expected a TLS error"),
    }
}
