//! Serving one accepted connection, and the table of open ones that keeps idle clients
//! from starving the rest.
//!
//! A connection is *idle* while no request is in flight on it: before its first request
//! head is complete, between keep-alive requests, while an HTTP/2 connection has no stream,
//! during a TLS handshake. A request is in flight from the moment hyper hands it to the
//! router until its response body has been sent (so an SSE stream is in flight for as long
//! as it runs). Three rules follow, all keyed on that one notion:
//!
//! - an idle connection is closed after `idle_timeout`;
//! - an HTTP/1 request head that started arriving must be complete within
//!   `header_read_timeout` of its first byte (half a request is cut off);
//! - at `max_connections`, the connection idle the longest is closed to make room, so a
//!   probe (`/healthz`, `/readyz`) or a real client gets through however many sockets sit
//!   idle; only when every connection has a request in flight does a new one wait.
//!
//! Idle is tracked by counting requests (a guard inside the response body) rather than
//! bytes, because hyper's own `header_read_timeout` also runs while an HTTP/1 keep-alive
//! connection waits for its next request: used alone it would close keep-alive
//! connections before common clients (aiohttp keeps them 15 s) stop reusing them. It is
//! still set, to the sum of both timeouts, as a backstop.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::config::Limits;
use crate::metrics::{HTTP_CONNECTIONS_CLOSED, HTTP_CONNECTIONS_OPEN};
use crate::request_line::RequestLine;

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Header fields hyper parses before refusing a head with its own (empty) 431. Above the
/// router's limit (`MAX_HEADERS`), so that the common case is refused in JSON.
const HYPER_MAX_HEADERS: usize = 1000;
/// Header fields a request may carry; more is a JSON 431 `too_many_headers`.
pub(crate) const MAX_HEADERS: usize = 100;
/// Longest request URI (path and query) accepted; longer is a JSON 414 `uri_too_long`.
/// (hyper itself refuses URIs over 64 KiB with an empty 414, before the router.)
pub(crate) const MAX_URI_BYTES: usize = 16 * 1024;
const NONE: u64 = u64::MAX;

/// The open connections, at most `max` of them.
pub(crate) struct Connections {
    open: Mutex<BTreeMap<u64, Arc<ConnState>>>,
    next_id: AtomicU64,
    /// Signalled when a connection closes or becomes idle: room may be made now.
    room: Arc<Notify>,
    epoch: Instant,
    max: usize,
}

impl Connections {
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            open: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(0),
            room: Arc::new(Notify::new()),
            epoch: Instant::now(),
            max,
        })
    }

    /// Returns once one more connection may be served: at once below the limit; at the
    /// limit after closing the connection idle the longest, or, when none is idle, after
    /// one closes or becomes idle.
    pub(crate) async fn make_room(&self) {
        loop {
            {
                let mut open = self.open.lock();
                if open.len() < self.max {
                    return;
                }
                let victim = open
                    .iter()
                    .filter(|(_, c)| c.in_flight.load(Ordering::Acquire) == 0)
                    .min_by_key(|(_, c)| c.idle_since.load(Ordering::Relaxed))
                    .map(|(id, _)| *id);
                if let Some(conn) = victim.and_then(|id| open.remove(&id)) {
                    conn.evicted.store(true, Ordering::Release);
                    conn.wake.notify_one();
                    metrics::gauge!(HTTP_CONNECTIONS_OPEN).set(open.len() as f64);
                    return;
                }
            }
            // A notification sent after the lock was released is kept as a permit.
            self.room.notified().await;
        }
    }

    /// Adds a connection to the table; it leaves when the returned handle is dropped.
    pub(crate) fn register(self: &Arc<Self>) -> Registered {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(ConnState {
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            head_started: AtomicU64::new(NONE),
            bytes_seen: AtomicBool::new(false),
            http2: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
            new_head: AtomicBool::new(false),
            wake: Notify::new(),
            room: self.room.clone(),
            epoch: self.epoch,
        });
        conn.idle_since.store(conn.now_ms(), Ordering::Relaxed);
        let mut open = self.open.lock();
        open.insert(id, conn.clone());
        metrics::gauge!(HTTP_CONNECTIONS_OPEN).set(open.len() as f64);
        Registered {
            table: self.clone(),
            id,
            conn,
        }
    }
}

/// A connection's place in the table.
pub(crate) struct Registered {
    table: Arc<Connections>,
    id: u64,
    conn: Arc<ConnState>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut open = self.table.open.lock();
        open.remove(&self.id);
        metrics::gauge!(HTTP_CONNECTIONS_OPEN).set(open.len() as f64);
        drop(open);
        self.table.room.notify_one();
    }
}

/// What the table and the timers know about one connection. Times are milliseconds
/// since the table's epoch.
struct ConnState {
    in_flight: AtomicUsize,
    /// When the last request ended (or the connection opened).
    idle_since: AtomicU64,
    /// When the first byte of a request head arrived while idle; `NONE` when none did.
    head_started: AtomicU64,
    bytes_seen: AtomicBool,
    /// HTTP/2 sends frames between requests: its bytes do not start a request head.
    http2: AtomicBool,
    /// Closed to make room for a new connection.
    evicted: AtomicBool,
    /// The last request ended: the next bytes read start a new request head.
    new_head: AtomicBool,
    /// Signalled when the deadline may have changed or the connection was evicted.
    wake: Notify,
    room: Arc<Notify>,
    epoch: Instant,
}

#[derive(Clone, Copy)]
enum Expiry {
    Idle,
    Head,
}

impl ConnState {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// When the connection is to be closed, and why; `None` while a request is in flight.
    fn deadline(&self, limits: &Limits) -> Option<(u64, Expiry)> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let head = self.head_started.load(Ordering::Acquire);
        if head != NONE {
            return Some((
                head.saturating_add(limits.header_read_timeout.as_millis() as u64),
                Expiry::Head,
            ));
        }
        Some((
            self.idle_since
                .load(Ordering::Acquire)
                .saturating_add(limits.idle_timeout.as_millis() as u64),
            Expiry::Idle,
        ))
    }

    fn on_read(&self, bytes: &[u8]) {
        if !self.bytes_seen.swap(true, Ordering::Relaxed) && bytes.starts_with(b"PRI ") {
            self.http2.store(true, Ordering::Relaxed);
        }
        if self.http2.load(Ordering::Relaxed) || self.in_flight.load(Ordering::Acquire) > 0 {
            return;
        }
        if self
            .head_started
            .compare_exchange(NONE, self.now_ms(), Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            self.wake.notify_one();
        }
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_started.store(NONE, Ordering::Release);
        InFlight(self.clone())
    }
}

/// One request in flight; its drop (when the response body is done) may make the
/// connection idle.
struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let conn = &self.0;
        conn.idle_since.store(conn.now_ms(), Ordering::Release);
        if conn.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            conn.new_head.store(true, Ordering::Release);
            conn.wake.notify_one();
            conn.room.notify_one();
        }
    }
}

/// A response body that keeps its request in flight until it is sent or dropped.
struct TrackedBody {
    body: Body,
    _in_flight: InFlight,
}

impl hyper::body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The socket, noting when a request head starts to arrive and encoding what the
/// `http` crate refuses raw in a request target (see `crate::request_line`).
struct Tracked<S> {
    inner: S,
    conn: Arc<ConnState>,
    line: RequestLine,
    /// Rewritten bytes that did not fit into the caller's buffer, handed out next.
    spill: Vec<u8>,
}

impl<S> Tracked<S> {
    fn new(inner: S, conn: Arc<ConnState>) -> Self {
        Self {
            inner,
            conn,
            line: RequestLine::new(),
            spill: Vec::new(),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.spill.is_empty() {
            let n = this.spill.len().min(buf.remaining());
            buf.put_slice(&this.spill[..n]);
            this.spill.drain(..n);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let read = &buf.filled()[before..];
            if read.is_empty() {
                return polled;
            }
            let conn = &this.conn;
            conn.on_read(read);
            if conn.in_flight.load(Ordering::Acquire) == 0
                && conn.new_head.swap(false, Ordering::AcqRel)
            {
                this.line.restart();
            }
            if this.line.active() && !conn.http2.load(Ordering::Relaxed) {
                if let Some(rewritten) = this.line.scan(read) {
                    buf.set_filled(before);
                    let n = rewritten.len().min(buf.remaining());
                    buf.put_slice(&rewritten[..n]);
                    this.spill = rewritten[n..].to_vec();
                }
            }
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Serves one connection until it ends, times out, is evicted, or the server drains.
pub(crate) async fn serve(
    registered: Registered,
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let conn = registered.conn.clone();
    match tls {
        None => drive(Tracked::new(stream, conn), app, &limits, &shutdown).await,
        Some(acceptor) => {
            let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream));
            let tls_stream = tokio::select! {
                accepted = handshake => match accepted {
                    Ok(Ok(s)) => s,
                    _ => return,
                },
                () = evicted(&conn) => return,
                () = shutdown.cancelled() => return,
            };
            if tls_stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                conn.http2.store(true, Ordering::Relaxed);
            }
            drive(Tracked::new(tls_stream, conn), app, &limits, &shutdown).await;
        }
    }
    drop(registered);
}

async fn evicted(conn: &ConnState) {
    while !conn.evicted.load(Ordering::Acquire) {
        conn.wake.notified().await;
    }
}

async fn drive<S>(io: Tracked<S>, app: Router, limits: &Limits, shutdown: &CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = io.conn.clone();
    let service = {
        let conn = conn.clone();
        tower::service_fn(move |req: hyper::Request<Incoming>| {
            let in_flight = conn.begin();
            let app = app.clone();
            async move {
                let response = app.oneshot(req.map(Body::new)).await?;
                Ok::<_, Infallible>(response.map(|body| {
                    Body::new(TrackedBody {
                        body,
                        _in_flight: in_flight,
                    })
                }))
            }
        })
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .max_headers(HYPER_MAX_HEADERS)
        // A backstop only: hyper's clock also runs while a keep-alive connection waits.
        .header_read_timeout(limits.header_read_timeout + limits.idle_timeout);
    builder.http2().timer(TokioTimer::new());
    let served =
        builder.serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(service));
    tokio::pin!(served);
    let mut closing = false;
    loop {
        let woken = conn.wake.notified();
        let deadline = conn.deadline(limits);
        let sleep_until = deadline.map_or_else(
            || Instant::now() + limits.idle_timeout,
            |(at, _)| conn.epoch + Duration::from_millis(at),
        );
        tokio::select! {
            result = served.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(%err, "connection ended with an error");
                }
                return;
            }
            () = woken => {}
            () = tokio::time::sleep_until(sleep_until), if deadline.is_some() => {
                if let Some((at, why)) = conn.deadline(limits) {
                    if conn.now_ms() >= at {
                        // Dropping the connection closes the socket; nothing is in flight.
                        let reason = match why {
                            Expiry::Idle => "idle_timeout",
                            Expiry::Head => "header_read_timeout",
                        };
                        metrics::counter!(HTTP_CONNECTIONS_CLOSED, "reason" => reason).increment(1);
                        return;
                    }
                }
            }
            () = shutdown.cancelled(), if !closing => {
                closing = true;
                served.as_mut().graceful_shutdown();
            }
        }
        if conn.evicted.load(Ordering::Acquire) {
            if conn.in_flight.load(Ordering::Acquire) == 0 {
                metrics::counter!(HTTP_CONNECTIONS_CLOSED, "reason" => "evicted").increment(1);
                return;
            }
            if !closing {
                // A request began just as the connection was chosen: let it finish.
                closing = true;
                served.as_mut().graceful_shutdown();
            }
        }
    }
}
