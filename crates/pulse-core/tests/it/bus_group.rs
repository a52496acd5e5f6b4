//! Group subscriptions: an in-process member of a log's consumer group gets what every
//! consumer of the log gets — at least once, redelivery after a handler error with the
//! retry policy's delay, dead letters of the log after `max_attempts` deliveries, the
//! group's position after reopening the log, order per subject at any concurrency.
//!
//! Every test runs on the in-memory log and on pulse-sqlite in a temporary directory.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use pulse_core::bus::{Bus, BusError, HandlerError, HandlerResult, RetryPolicy, SubscribeOptions};
use pulse_core::memory::MemoryLog;
use pulse_core::{Event, EventLog, LogError, Pattern, ReadQuery, StartPosition};
use pulse_sqlite::{FsyncPolicy, SqliteLog, SqliteOptions};

use crate::bus_support::{eventually, numbered, recorder, recv_n, seq};

/// Where a test's log lives, so that it can be closed and opened again.
enum Host {
    Memory(Arc<MemoryLog>),
    Sqlite {
        dir: tempfile::TempDir,
        log: SqliteLog,
    },
}

impl Host {
    fn memory() -> Self {
        Self::Memory(Arc::new(MemoryLog::new()))
    }

    async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = SqliteLog::open_with(dir.path(), fast()).await.unwrap();
        Self::Sqlite { dir, log }
    }

    fn log(&self) -> Arc<dyn EventLog> {
        match self {
            Self::Memory(log) => log.clone(),
            Self::Sqlite { log, .. } => Arc::new(log.clone()),
        }
    }

    /// A bus on this log whose type `metrics.>` is memory-only.
    fn bus(&self) -> Bus {
        Bus::builder()
            .log(self.log())
            .memory_only(Pattern::parse("metrics.>").unwrap())
            .build()
    }

    /// Closes the log and opens it again (the in-memory log outlives its buses instead).
    /// The file stays locked until every handle is dropped, which the tasks of a bus that
    /// was stopped at its deadline do a moment later.
    async fn reopen(&mut self) {
        if let Self::Sqlite { dir, log } = self {
            log.close().await.unwrap();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            *log = loop {
                match SqliteLog::open_with(dir.path(), fast()).await {
                    Ok(log) => break log,
                    Err(LogError::Unavailable(_)) if tokio::time::Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err(err) => panic!("reopening the log failed: {err}"),
                }
            };
        }
    }
}

fn fast() -> SqliteOptions {
    SqliteOptions::default().with_fsync(FsyncPolicy::Never)
}

/// Quick retries without jitter, `max_attempts` deliveries in all.
fn retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        jitter: 0.0,
        ..RetryPolicy::default()
    }
}

/// Attempts per event `seq`, and the `seq`s handled successfully in order.
#[derive(Default)]
struct Seen {
    attempts: Mutex<HashMap<u64, u32>>,
    handled: Mutex<Vec<u64>>,
}

impl Seen {
    /// A handler failing the first `failures(seq)` attempts of each event.
    fn handler(
        self: &Arc<Self>,
        failures: impl Fn(u64) -> u32 + Send + Sync + 'static,
    ) -> impl pulse_core::bus::Handler {
        let seen = Arc::clone(self);
        let failures = Arc::new(failures);
        move |event: Arc<Event>| {
            let seen = Arc::clone(&seen);
            let failures = Arc::clone(&failures);
            async move {
                let n = seq(&event);
                let attempt = {
                    let mut attempts = seen.attempts.lock();
                    let a = attempts.entry(n).or_default();
                    *a += 1;
                    *a
                };
                if attempt <= failures(n) {
                    return Err(HandlerError::msg(format!("store unavailable (seq {n})")));
                }
                seen.handled.lock().push(n);
                HandlerResult::Ok(())
            }
        }
    }

    fn handled(&self) -> Vec<u64> {
        self.handled.lock().clone()
    }
}

async fn committed(log: &dyn EventLog, group: &str) -> u64 {
    log.groups()
        .await
        .unwrap()
        .into_iter()
        .find(|g| g.name == group)
        .map_or(0, |g| g.committed)
}

async fn redelivers_after_a_handler_error(host: Host) {
    let bus = host.bus();
    let seen = Arc::new(Seen::default());
    let sub = bus
        .subscribe_group(
            "alerts",
            "health.>",
            seen.handler(|n| u32::from(n == 1)),
            SubscribeOptions::new().retry(retry(3)),
        )
        .await
        .unwrap();
    for i in 0..3 {
        let published = bus.publish(numbered("health.reading", i)).await.unwrap();
        assert_eq!(published.offset, Some(i + 1));
    }
    eventually(|| seen.handled().len() == 3).await;
    let mut handled = seen.handled();
    handled.sort_unstable();
    assert_eq!(handled, [0, 1, 2]);
    assert_eq!(
        seen.attempts.lock()[&1],
        2,
        "redelivered once after the error"
    );
    let log = host.log();
    for _ in 0..1000 {
        if committed(&*log, "alerts").await == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(committed(&*log, "alerts").await, 3);
    let stats = sub.stats();
    assert_eq!(
        (
            stats.delivered,
            stats.failures,
            stats.retries,
            stats.dead_lettered
        ),
        (3, 1, 1, 0)
    );
    assert!(log.dead_letters(None, 0, 10).await.unwrap().is_empty());
    let report = bus.shutdown(Duration::from_secs(5)).await;
    assert!(report.completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_log_redelivers_after_a_handler_error() {
    redelivers_after_a_handler_error(Host::memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_log_redelivers_after_a_handler_error() {
    redelivers_after_a_handler_error(Host::sqlite().await).await;
}

async fn dead_letters_after_max_attempts_into_the_log(host: Host) {
    let bus = host.bus();
    let seen = Arc::new(Seen::default());
    let sub = bus
        .subscribe_group(
            "billing",
            "orders.>",
            seen.handler(|n| if n == 0 { u32::MAX } else { 0 }),
            SubscribeOptions::new().retry(retry(3)),
        )
        .await
        .unwrap();
    let poisoned = numbered("orders.placed", 0).with_subject("user-1");
    let poisoned_id = poisoned.id.clone();
    bus.publish(poisoned).await.unwrap();
    bus.publish(numbered("orders.placed", 1).with_subject("user-1"))
        .await
        .unwrap();
    eventually(|| seen.handled() == [1]).await;

    let log = host.log();
    let letters = log.dead_letters(Some("billing"), 0, 10).await.unwrap();
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter.event.event.id, poisoned_id);
    assert_eq!(letter.event.offset, 1);
    assert_eq!(letter.attempts, 3);
    assert_eq!(letter.error, "store unavailable (seq 0)");
    assert_eq!(seen.attempts.lock()[&0], 3);
    let stats = sub.stats();
    assert_eq!(
        (
            stats.delivered,
            stats.failures,
            stats.retries,
            stats.dead_lettered
        ),
        (1, 3, 2, 1)
    );
    assert!(
        bus.dead_letters().records().is_empty(),
        "a group's dead letters are the log's"
    );

    // Redriven from the log's dead letters, it reaches the member again.
    log.redrive(letter.id).await.unwrap();
    eventually(|| seen.attempts.lock()[&0] == 4).await;
    bus.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_log_dead_letters_after_max_attempts_into_the_log() {
    dead_letters_after_max_attempts_into_the_log(Host::memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_log_dead_letters_after_max_attempts_into_the_log() {
    dead_letters_after_max_attempts_into_the_log(Host::sqlite().await).await;
}

async fn resumes_after_reopening(mut host: Host) {
    let options = || {
        SubscribeOptions::new()
            .retry(retry(5))
            .ack_wait(Duration::from_millis(200))
    };
    let bus = host.bus();
    let seen = Arc::new(Seen::default());
    let stuck = Arc::new(AtomicUsize::new(0));
    let member = {
        let seen = Arc::clone(&seen);
        let stuck = Arc::clone(&stuck);
        let handler = Arc::new(seen.handler(|_| 0));
        move |event: Arc<Event>| {
            let stuck = Arc::clone(&stuck);
            let handler = Arc::clone(&handler);
            async move {
                if seq(&event) == 9 {
                    // Never settled: the bus is stopped while this runs.
                    stuck.fetch_add(1, Ordering::SeqCst);
                    std::future::pending::<()>().await;
                }
                pulse_core::bus::Handler::handle(&*handler, event).await
            }
        }
    };
    let sub = bus
        .subscribe_group("audit", "audit.>", member, options())
        .await
        .unwrap();
    for i in 0..5 {
        bus.publish(numbered("audit.entry", i)).await.unwrap();
    }
    eventually(|| seen.handled().len() == 5).await;
    bus.publish(numbered("audit.entry", 9)).await.unwrap();
    eventually(|| stuck.load(Ordering::SeqCst) == 1).await;
    let report = bus.shutdown(Duration::from_millis(100)).await;
    assert!(!report.completed, "the stuck handler was abandoned");
    drop(sub);
    drop(bus);
    // Appended while no member runs.
    let log = host.log();
    log.append((5..8).map(|i| numbered("audit.entry", i)).collect())
        .await
        .unwrap();
    drop(log);

    host.reopen().await;
    let bus = host.bus();
    let again = Arc::new(Seen::default());
    let _sub = bus
        .subscribe_group("audit", "audit.>", again.handler(|_| 0), options())
        .await
        .unwrap();
    eventually(|| again.handled().len() == 4).await;
    let mut handled = again.handled();
    handled.sort_unstable();
    assert_eq!(
        handled,
        [5, 6, 7, 9],
        "acknowledged events stay acknowledged, the unsettled one is redelivered"
    );
    let report = bus.shutdown(Duration::from_secs(5)).await;
    assert!(report.completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_log_group_resumes_after_a_restart() {
    resumes_after_reopening(Host::memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_log_group_resumes_after_reopening() {
    resumes_after_reopening(Host::sqlite().await).await;
}

/// Records, per subject, the order of handled events and whether two ran at once.
#[derive(Default)]
struct Ordered {
    in_flight: Mutex<HashSet<String>>,
    overlaps: AtomicUsize,
    running: AtomicUsize,
    max_running: AtomicUsize,
    order: Mutex<HashMap<String, Vec<u64>>>,
    failed_once: Mutex<HashSet<(String, u64)>>,
    handled: AtomicUsize,
}

async fn keeps_order_per_subject(host: Host) {
    let bus = host.bus();
    let observed = Arc::new(Ordered::default());
    let handler = {
        let observed = Arc::clone(&observed);
        move |event: Arc<Event>| {
            let observed = Arc::clone(&observed);
            async move {
                let subject = event.subject.clone().expect("subject");
                let n = seq(&event);
                if !observed.in_flight.lock().insert(subject.clone()) {
                    observed.overlaps.fetch_add(1, Ordering::SeqCst);
                }
                let running = observed.running.fetch_add(1, Ordering::SeqCst) + 1;
                observed.max_running.fetch_max(running, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_micros(fastrand::u64(1..=500))).await;
                observed.running.fetch_sub(1, Ordering::SeqCst);
                observed.in_flight.lock().remove(&subject);
                // Every seventh event fails once: its subject waits for the redelivery.
                if n % 7 == 3 && observed.failed_once.lock().insert((subject.clone(), n)) {
                    return Err(HandlerError::msg("try again"));
                }
                observed.order.lock().entry(subject).or_default().push(n);
                observed.handled.fetch_add(1, Ordering::SeqCst);
                HandlerResult::Ok(())
            }
        }
    };
    let _sub = bus
        .subscribe_group(
            "steps",
            "health.>",
            handler,
            SubscribeOptions::new().concurrency(4).retry(retry(5)),
        )
        .await
        .unwrap();
    let subjects = 6;
    let per_subject = 30_u64;
    for chunk in (0..per_subject).collect::<Vec<_>>().chunks(10) {
        let events = chunk
            .iter()
            .flat_map(|&i| {
                (0..subjects).map(move |s| {
                    numbered("health.reading.steps", i).with_subject(format!("user-{s}"))
                })
            })
            .collect();
        bus.publish_batch(events).await.unwrap();
    }
    let total = subjects * per_subject as usize;
    eventually(|| observed.handled.load(Ordering::SeqCst) == total).await;
    assert_eq!(observed.overlaps.load(Ordering::SeqCst), 0);
    assert!(observed.max_running.load(Ordering::SeqCst) <= 4);
    bus.shutdown(Duration::from_secs(5)).await;
    let order = observed.order.lock();
    assert_eq!(order.len(), subjects);
    for (subject, seqs) in order.iter() {
        assert_eq!(
            seqs,
            &(0..per_subject).collect::<Vec<_>>(),
            "order of {subject}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_log_group_keeps_order_per_subject() {
    keeps_order_per_subject(Host::memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_log_group_keeps_order_per_subject() {
    keeps_order_per_subject(Host::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_gets_persistent_events_of_any_publisher_and_a_live_subscription_gets_memory_ones()
{
    let host = Host::memory();
    let log = host.log();
    // Stored before the group exists and outside the bus: a group starts at the earliest.
    log.append(vec![numbered("health.reading", 0)])
        .await
        .unwrap();
    let bus = host.bus();
    let seen = Arc::new(Seen::default());
    let _group = bus
        .subscribe_group("all", ">", seen.handler(|_| 0), SubscribeOptions::new())
        .await
        .unwrap();
    let (live, mut live_rx) = recorder();
    let _live = bus.subscribe(">", live, SubscribeOptions::new()).unwrap();
    bus.publish(numbered("metrics.cpu", 1)).await.unwrap();
    bus.publish_memory(numbered("health.reading", 2))
        .await
        .unwrap();
    bus.publish(numbered("health.reading", 3)).await.unwrap();

    let live_seqs: Vec<u64> = recv_n(&mut live_rx, 3)
        .await
        .iter()
        .map(|e| seq(e))
        .collect();
    assert_eq!(
        live_seqs,
        [1, 2, 3],
        "live: this bus's events, memory ones included"
    );
    eventually(|| seen.handled().len() == 2).await;
    assert_eq!(seen.handled(), [0, 3], "group: the log's events only");
    let stored = log.read(ReadQuery::after(0, 10)).await.unwrap();
    assert_eq!(stored.len(), 2);
    bus.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_group_needs_a_log_and_a_valid_name() {
    let (handler, _rx) = recorder();
    let err = Bus::new()
        .subscribe_group("g", ">", handler, SubscribeOptions::new())
        .await
        .unwrap_err();
    assert!(matches!(err, BusError::NoLog));

    let bus = Host::memory().bus();
    let (handler, _rx) = recorder();
    let err = bus
        .subscribe_group("no spaces", ">", handler, SubscribeOptions::new())
        .await
        .unwrap_err();
    assert!(matches!(err, BusError::Log(LogError::InvalidGroup(_))));
    let (handler, _rx) = recorder();
    let member = bus
        .subscribe_group(
            "late",
            ">",
            handler,
            SubscribeOptions::new()
                .start(StartPosition::Latest)
                .retry(retry(7)),
        )
        .await
        .unwrap();
    assert_eq!(member.name(), "late");
    let groups = bus.log().unwrap().groups().await.unwrap();
    assert_eq!(groups[0].name, "late");
    assert_eq!(member.unsubscribe().await.delivered, 0);
}
