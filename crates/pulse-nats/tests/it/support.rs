//! Test harness: every test gets its own prefix (so its own streams and buckets),
//! deleted at the end even when the test fails; logs opened on it act as instances.

use std::time::Duration;

use pulse_nats::{NatsLog, NatsOptions};

/// The server named by `PULSE_TEST_NATS_URL`, or `None` (after saying the test is
/// skipped) when it is unset.
pub(crate) fn url(test: &str) -> Option<String> {
    match std::env::var("PULSE_TEST_NATS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            println!("skipped {test}: PULSE_TEST_NATS_URL is not set");
            None
        }
    }
}

/// A prefix of its own for one test; its streams and buckets are deleted on drop.
pub(crate) struct Prefix {
    pub(crate) url: String,
    pub(crate) options: NatsOptions,
}

impl Prefix {
    /// A fresh, unique prefix on the test server (created by the first log).
    pub(crate) fn new(url: String, test: &str) -> Self {
        let short: String = test
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(16)
            .collect();
        let prefix = format!("pulsetest-{short}-{:012x}", fastrand::u64(..) >> 16);
        let mut options = NatsOptions::new(prefix);
        // Generous for a loaded machine; file storage, as in production.
        options.request_timeout = Duration::from_secs(10);
        options.connect_timeout = Duration::from_secs(10);
        options.watch_interval = Duration::from_millis(50);
        Self { url, options }
    }

    /// Opens one more instance on the prefix; fails the test if the server is unreachable.
    pub(crate) async fn open(&self) -> NatsLog {
        self.open_with(self.options.clone()).await
    }

    /// Opens an instance with the given options.
    pub(crate) async fn open_with(&self, options: NatsOptions) -> NatsLog {
        NatsLog::connect(&self.url, options)
            .await
            .unwrap_or_else(|e| panic!("cannot open the NATS log at {}: {e}", self.url))
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        let url = self.url.clone();
        let options = self.options.clone();
        // Drop runs inside the test's runtime, which cannot be blocked on: use a thread
        // with a runtime of its own.
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime
                .block_on(pulse_nats::delete_log(&url, &options))
                .map_err(|e| e.to_string())
        })
        .join();
        if !matches!(deleted, Ok(Ok(()))) {
            eprintln!(
                "could not delete the test streams of {}",
                self.options.prefix
            );
        }
    }
}

/// Opens a log on a fresh prefix, for the contract suite; when no server is configured,
/// says so and ends the test process successfully (nextest runs one test per process).
pub(crate) async fn contract_log() -> (NatsLog, Prefix) {
    let Some(url) = url("the NATS contract suite") else {
        std::process::exit(0);
    };
    let prefix = Prefix::new(url, "contract");
    (prefix.open().await, prefix)
}

/// A TCP forwarder between a client and the NATS server that the test can cut (every
/// connection closed, new ones refused) and restore, to play a lost network or a dead
/// instance without touching the shared server.
pub(crate) struct Proxy {
    addr: std::net::SocketAddr,
    links: std::sync::Arc<parking_lot::Mutex<Links>>,
    accept: tokio::task::JoinHandle<()>,
}

/// The forwarded connections, and whether new ones are taken: one lock for both, so that
/// a connection is either refused or closed by the cut.
#[derive(Default)]
struct Links {
    cut: bool,
    running: Vec<tokio::task::JoinHandle<()>>,
}

impl Proxy {
    /// Starts forwarding a fresh loopback port to the server of `url`.
    pub(crate) async fn start(url: &str) -> Self {
        let hostport = url
            .trim_start_matches("nats://")
            .split(',')
            .next()
            .unwrap_or_default()
            .to_owned();
        let target = tokio::net::lookup_host(&hostport)
            .await
            .unwrap_or_else(|e| panic!("cannot resolve {hostport}: {e}"))
            .next()
            .expect("the NATS address resolves");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("a bound address");
        let links: std::sync::Arc<parking_lot::Mutex<Links>> = std::sync::Arc::default();
        let links2 = links.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut links = links2.lock();
                if links.cut {
                    continue; // dropped: the client sees the connection close at once
                }
                links.running.push(tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                }));
            }
        });
        Self {
            addr,
            links,
            accept,
        }
    }

    /// The URL clients use to go through the proxy.
    pub(crate) fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// Refuses new connections and returns once every proxied connection is closed, so
    /// that nothing sent afterwards reaches the server.
    pub(crate) async fn cut(&self) {
        for link in self.refuse_and_abort() {
            let _ = link.await;
        }
    }

    fn refuse_and_abort(&self) -> Vec<tokio::task::JoinHandle<()>> {
        let mut links = self.links.lock();
        links.cut = true;
        let running = std::mem::take(&mut links.running);
        for link in &running {
            link.abort();
        }
        running
    }

    /// Accepts connections again.
    pub(crate) fn restore(&self) {
        self.links.lock().cut = false;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.refuse_and_abort();
        self.accept.abort();
    }
}

/// Events of type `ty`, with ids `<tag>-<i>` and subjects spread over `subjects`.
pub(crate) fn events(tag: &str, n: usize, subjects: usize) -> Vec<pulse_core::Event> {
    (0..n)
        .map(|i| {
            pulse_core::Event::new("health.reading.hr")
                .with_id(format!("{tag}-{i}"))
                .with_subject(format!("user-{}", i % subjects.max(1)))
        })
        .collect()
}
