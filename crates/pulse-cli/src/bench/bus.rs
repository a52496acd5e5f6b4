//! `pulse bench bus`: the in-process bus end to end, publish → handler, in this process.
//!
//! Two modes. Without `--rate`, one publisher sends `--events` events as fast as it can in
//! `publish_batch` calls of `--batch` events, and the figure is events (and deliveries)
//! per second from the first publish to the last event handled by every subscriber.
//! With `--rate`, events are published one by one at that pace and each carries its
//! intended publish time, so the latency includes any lag of the publisher (no
//! coordinated omission). Handlers are no-ops that count, and sample latency as the
//! wall-clock time from the event's publish time to the handler start: every event in
//! rate mode, one in 64 otherwise, so that the clock does not slow the hot path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use chrono::Utc;
use parking_lot::Mutex;
use pulse_core::bus::{Bus, Handler, HandlerResult, SubscribeOptions, Subscription};
use pulse_core::Event;
use tokio::sync::Notify;

/// The type every benchmark event has.
const EVENT_TYPE: &str = "health.reading.heart_rate";

/// Overlapping patterns that all match [`EVENT_TYPE`], handed out in turn.
const PATTERNS: [&str; 8] = [
    "health.reading.heart_rate",
    "health.>",
    "health.reading.*",
    "health.*.heart_rate",
    ">",
    "*.reading.heart_rate",
    "health.reading.>",
    "*.*.*",
];

/// Arguments of `pulse bench bus`.
#[derive(clap::Args, Debug)]
pub(crate) struct BusArgs {
    /// Events to publish (0 with --idle-subscriptions measures memory only).
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Subscriptions receiving every event, on overlapping patterns.
    #[arg(long, default_value_t = 1)]
    subscribers: usize,
    /// Bytes of data per event.
    #[arg(long, default_value_t = 256)]
    payload_bytes: usize,
    /// Offered load in events/s: publish one event at a time at this pace and measure
    /// latency on every event. Without it, publish as fast as possible in batches.
    #[arg(long)]
    rate: Option<u64>,
    /// Events per `publish_batch` call when no rate is given (1 = `publish` per event).
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Idle subscriptions (matching no event) to create first.
    #[arg(long, default_value_t = 0)]
    idle_subscriptions: usize,
    /// Queue capacity of each subscription.
    #[arg(long, default_value_t = 8192)]
    capacity: usize,
    /// Tokio worker threads (1 = a single-threaded runtime).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// What one run measured.
#[derive(Debug, serde::Serialize)]
struct Report {
    events_per_s: f64,
    deliveries_per_s: f64,
    p10_us: f64,
    p50_us: f64,
    p90_us: f64,
    p99_us: f64,
    p999_us: f64,
    peak_rss_mb: f64,
    rss_after_subscribe_mb: f64,
    latency_samples: usize,
    elapsed_s: f64,
    events: u64,
    subscribers: usize,
    idle_subscriptions: usize,
    payload_bytes: usize,
    rate: Option<u64>,
    batch: usize,
    threads: usize,
    mode: &'static str,
}

pub(crate) fn run(args: BusArgs) -> anyhow::Result<()> {
    if args.batch == 0 || args.threads == 0 || args.capacity == 0 {
        bail!("--batch, --threads and --capacity must be at least 1");
    }
    if args.rate == Some(0) {
        bail!("--rate must be at least 1 event/s");
    }
    if args.events > 0 && args.subscribers == 0 {
        bail!("--subscribers must be at least 1 when publishing events");
    }
    let runtime = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    }
    .context("failed to start the tokio runtime")?;
    let report = runtime.block_on(measure(&args))?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_text(&report);
    }
    Ok(())
}

/// One subscriber's counter and latency samples.
struct Probe {
    handled: AtomicU64,
    target: u64,
    sample_mask: u64,
    samples: Mutex<Vec<u64>>,
    finished_at: Mutex<Option<Instant>>,
    done: Notify,
}

struct ProbeHandler(Arc<Probe>);

impl Handler for ProbeHandler {
    async fn handle(&self, event: Arc<Event>) -> HandlerResult {
        let probe = &self.0;
        let n = probe.handled.fetch_add(1, Ordering::Relaxed) + 1;
        if n & probe.sample_mask == 0 {
            if let Some(published) = event.time {
                let nanos = (Utc::now() - published).num_nanoseconds().unwrap_or(0);
                probe.samples.lock().push(u64::try_from(nanos).unwrap_or(0));
            }
        }
        if n == probe.target {
            *probe.finished_at.lock() = Some(Instant::now());
            probe.done.notify_one();
        }
        Ok(())
    }
}

async fn measure(args: &BusArgs) -> anyhow::Result<Report> {
    let bus = Bus::new();
    let options = SubscribeOptions::new().capacity(args.capacity);
    let mut idle: Vec<Subscription> = Vec::with_capacity(args.idle_subscriptions);
    for i in 0..args.idle_subscriptions {
        idle.push(bus.subscribe(
            format!("idle.s{i}.>"),
            |_event: Arc<Event>| async { HandlerResult::Ok(()) },
            options.clone(),
        )?);
    }
    let sample_mask = if args.rate.is_some() { 0 } else { 63 };
    let probes: Vec<Arc<Probe>> = (0..args.subscribers)
        .map(|_| {
            Arc::new(Probe {
                handled: AtomicU64::new(0),
                target: args.events,
                sample_mask,
                samples: Mutex::new(Vec::new()),
                finished_at: Mutex::new(None),
                done: Notify::new(),
            })
        })
        .collect();
    let mut subscriptions = Vec::with_capacity(probes.len());
    for (i, probe) in probes.iter().enumerate() {
        subscriptions.push(bus.subscribe(
            PATTERNS[i % PATTERNS.len()],
            ProbeHandler(Arc::clone(probe)),
            options.clone().name(format!("bench-{i}")),
        )?);
    }
    let rss_after_subscribe_mb = read_status_kb("VmRSS:")? / 1024.0;

    // Static bytes: cloning them per event touches no shared reference count, which
    // would measure the benchmark's own contention rather than the bus.
    let payload = Bytes::from_static(vec![b'x'; args.payload_bytes].leak());
    let started = Instant::now();
    if args.events > 0 {
        // The publisher runs as a task, so that it shares the runtime's threads with the
        // subscribers instead of taking a core of its own.
        let publisher = {
            let bus = bus.clone();
            let (events, batch, rate) = (args.events, args.batch, args.rate);
            tokio::spawn(async move {
                match rate {
                    Some(rate) => publish_paced(&bus, events, rate, &payload).await,
                    None => publish_flat_out(&bus, events, batch, &payload).await,
                }
            })
        };
        publisher.await.context("the publisher task failed")??;
        for probe in &probes {
            loop {
                let notified = probe.done.notified();
                if probe.handled.load(Ordering::Relaxed) >= probe.target {
                    break;
                }
                tokio::time::timeout(Duration::from_secs(60), notified)
                    .await
                    .context("subscribers did not finish within 60 s")?;
            }
        }
    }
    let finished = probes
        .iter()
        .filter_map(|p| *p.finished_at.lock())
        .max()
        .unwrap_or(started);
    let elapsed = finished.duration_since(started).as_secs_f64();
    let mut samples: Vec<u64> = probes
        .iter()
        .flat_map(|p| std::mem::take(&mut *p.samples.lock()))
        .collect();
    samples.sort_unstable();
    bus.shutdown(Duration::from_secs(5)).await;
    drop(subscriptions);
    drop(idle);

    let per_s = |n: u64| {
        if elapsed > 0.0 {
            n as f64 / elapsed
        } else {
            0.0
        }
    };
    Ok(Report {
        events_per_s: per_s(args.events),
        deliveries_per_s: per_s(args.events * args.subscribers as u64),
        p10_us: percentile_us(&samples, 0.10),
        p50_us: percentile_us(&samples, 0.50),
        p90_us: percentile_us(&samples, 0.90),
        p99_us: percentile_us(&samples, 0.99),
        p999_us: percentile_us(&samples, 0.999),
        peak_rss_mb: read_status_kb("VmHWM:")? / 1024.0,
        rss_after_subscribe_mb,
        latency_samples: samples.len(),
        elapsed_s: elapsed,
        events: args.events,
        subscribers: args.subscribers,
        idle_subscriptions: args.idle_subscriptions,
        payload_bytes: args.payload_bytes,
        rate: args.rate,
        batch: if args.rate.is_some() { 1 } else { args.batch },
        threads: args.threads,
        mode: if args.rate.is_some() {
            "offered-rate"
        } else {
            "flat-out"
        },
    })
}

fn event(payload: &Bytes) -> Event {
    Event::new(EVENT_TYPE).with_data("application/octet-stream", payload.clone())
}

async fn publish_flat_out(
    bus: &Bus,
    events: u64,
    batch: usize,
    payload: &Bytes,
) -> anyhow::Result<()> {
    let mut left = events;
    if batch == 1 {
        for _ in 0..events {
            bus.publish(event(payload)).await?;
        }
        return Ok(());
    }
    while left > 0 {
        let n = left.min(batch as u64);
        let events: Vec<Event> = (0..n).map(|_| event(payload)).collect();
        bus.publish_batch(events).await?;
        left -= n;
    }
    Ok(())
}

/// Publishes one event every `1/rate` s. Each event's time is its intended publish time,
/// so a publisher falling behind shows up as latency instead of hiding it. Pacing and
/// latency both use the wall clock, so no drift between two clocks enters the figures.
async fn publish_paced(bus: &Bus, events: u64, rate: u64, payload: &Bytes) -> anyhow::Result<()> {
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = Utc::now();
    for i in 0..events {
        let intended = start + chrono::Duration::from_std(interval.mul_f64(i as f64))?;
        while Utc::now() < intended {
            tokio::task::yield_now().await;
        }
        bus.publish(event(payload).with_time(intended)).await?;
    }
    Ok(())
}

/// The `q` quantile of sorted nanosecond samples, in microseconds.
fn percentile_us(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    // Truncation is intended: the index of the sample at or below the quantile.
    let index = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index] as f64 / 1000.0
}

/// A `kB` field of /proc/self/status (VmRSS, VmHWM) as a number of kB.
fn read_status_kb(field: &str) -> anyhow::Result<f64> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("failed to read /proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .with_context(|| format!("no {field} in /proc/self/status"))?;
    line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .with_context(|| format!("unreadable {field} line {line:?}"))
}

fn print_text(r: &Report) {
    println!(
        "pulse bench bus: {} events, {} subscriber(s), {} idle, {}-byte payloads, {} mode (batch {}, {} thread(s){})",
        r.events,
        r.subscribers,
        r.idle_subscriptions,
        r.payload_bytes,
        r.mode,
        r.batch,
        r.threads,
        r.rate.map(|rate| format!(", {rate} events/s offered")).unwrap_or_default()
    );
    println!(
        "  events/s       {:>14.0}  (publish → handled by every subscriber)",
        r.events_per_s
    );
    println!("  deliveries/s   {:>14.0}", r.deliveries_per_s);
    println!(
        "  latency (µs)   p10 {:.1}  p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  ({} samples, publish → handler start)",
        r.p10_us, r.p50_us, r.p90_us, r.p99_us, r.p999_us, r.latency_samples
    );
    println!(
        "  memory (MB)    peak RSS {:.1}  RSS after subscribing {:.1}",
        r.peak_rss_mb, r.rss_after_subscribe_mb
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_sample_at_the_quantile() {
        let samples: Vec<u64> = (1..=1000).map(|n| n * 1000).collect();
        assert_eq!(percentile_us(&samples, 0.5), 500.0);
        assert_eq!(percentile_us(&samples, 0.99), 990.0);
        assert_eq!(percentile_us(&samples, 0.999), 999.0);
        assert_eq!(percentile_us(&[], 0.5), 0.0);
    }

    #[test]
    fn status_fields_are_read() {
        assert!(read_status_kb("VmHWM:").unwrap() > 0.0);
        assert!(read_status_kb("NoSuchField:").is_err());
    }

    #[test]
    fn a_small_run_counts_every_event() {
        let args = BusArgs {
            events: 2000,
            subscribers: 3,
            payload_bytes: 16,
            rate: None,
            batch: 64,
            idle_subscriptions: 5,
            capacity: 128,
            threads: 1,
            json: true,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let report = runtime.block_on(measure(&args)).unwrap();
        assert!(report.events_per_s > 0.0);
        assert_eq!(report.latency_samples, 3 * 2000 / 64);
    }
}
