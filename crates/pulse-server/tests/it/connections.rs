//! Idle clients cannot starve the server: thousands of sockets that sent half a request
//! or sit idle on keep-alive do not keep `/healthz`, `/readyz` or a publish from being
//! answered, and the server closes them once their timeout has passed — while a
//! stream (SSE) that outlives every timeout keeps running.

use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::stream::SseReader;
use crate::support::*;

const HALF: usize = 2_000;
const IDLE: usize = 2_000;
const SILENT: usize = 100;

/// A socket that sent the first half of a request head and then nothing.
async fn half_request(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nuser-agent: half")
        .await
        .unwrap();
    s
}

/// A socket that made one keep-alive request, read its answer, and now sits idle.
async fn idle_keep_alive(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut chunk = [0u8; 1024];
    while !answer.ends_with(b"\"ok\"}") {
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the keep-alive request is answered");
        answer.extend_from_slice(&chunk[..n]);
    }
    s
}

/// A socket that connected and never sent a byte.
async fn silent(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.unwrap()
}

async fn open_many<F, Fut>(count: usize, open: F) -> Vec<TcpStream>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = TcpStream>,
{
    futures::stream::iter((0..count).map(|_| open()))
        .buffer_unordered(64)
        .collect()
        .await
}

/// Waits until the server closes `socket` (end of stream or reset).
async fn closed_by_server(mut socket: TcpStream) {
    let mut chunk = [0u8; 1024];
    loop {
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            // Whatever the server says before it closes (nothing is expected) is skipped.
            Ok(_) => {}
        }
    }
}

fn probe_client() -> reqwest::Client {
    // Generous, and no timing assertion: a probe stuck behind idle sockets never answers.
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_and_publishes_get_through_thousands_of_idle_sockets() {
    // Timeouts far beyond the test: only making room by closing idle connections lets a
    // new client in while 4,000 sockets are held against a limit of 1,024.
    let server = TestServer::start(
        "[limits]\nheader_read_timeout = \"10m\"\nidle_timeout = \"10m\"\nmax_connections = 1024",
    )
    .await;
    let addr = server.addr;
    let half = open_many(HALF, || half_request(addr)).await;
    let idle = open_many(IDLE, || idle_keep_alive(addr)).await;

    let probe = probe_client();
    let healthz = probe.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(healthz.status(), 200);
    let readyz = probe.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(readyz.status(), 200);
    let published = probe
        .post(server.url("/v1/events"))
        .header("content-type", STRUCTURED)
        .body(event("dos-1", "health.reading.hr", json!(61)).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 202);

    // The sockets that made room were closed by the server: at most the limit stay open.
    let closed = futures::stream::iter(half.into_iter().chain(idle))
        .map(|s| async move {
            tokio::time::timeout(Duration::from_millis(200), closed_by_server(s))
                .await
                .is_ok()
        })
        .buffer_unordered(512)
        .filter(|closed| std::future::ready(*closed))
        .count()
        .await;
    assert!(
        closed >= HALF + IDLE - 1024,
        "only {closed} sockets were closed"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_requests_and_idle_keep_alives_are_closed_after_their_timeouts() {
    // Room enough that nothing is closed to make room: only the timeouts close sockets.
    let server = TestServer::start(
        "[limits]\nheader_read_timeout = \"1s\"\nidle_timeout = \"2s\"\nmax_connections = 10000",
    )
    .await;
    let addr = server.addr;
    // A stream in flight is not idle, however long it runs.
    let mut sse = SseReader::open(&server.url("/v1/stream?type=health.>"), None).await;
    let half = open_many(HALF, || half_request(addr)).await;
    let idle = open_many(IDLE, || idle_keep_alive(addr)).await;
    let quiet = open_many(SILENT, || silent(addr)).await;
    // A client trickling its head a byte at a time is cut off by the header timeout.
    let mut trickle = TcpStream::connect(addr).await.unwrap();
    let trickled = async move {
        for byte in b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: "
            .iter()
            .cycle()
        {
            if trickle.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };

    let all = futures::future::join_all(
        half.into_iter()
            .chain(idle)
            .chain(quiet)
            .map(closed_by_server),
    );
    tokio::time::timeout(Duration::from_secs(60), async {
        tokio::join!(all, trickled);
    })
    .await
    .expect("the server closes every idle socket after its timeout");

    // The stream outlived both timeouts and still delivers.
    publish(
        &server,
        vec![event("late-1", "health.reading.hr", json!(1))],
    )
    .await;
    let frame = sse.next().await;
    assert_eq!(frame.id.as_deref(), Some("1"));
    // And a new client is served as ever.
    assert_eq!(get(&server.url("/healthz"), None).await.0, 200);
    server.stop().await;
}
