//! `pulse bench log`: durable append throughput and publish → durable latency on the
//! SQLite log, and replay speed.
//!
//! Publishers are tasks that each keep `--in-flight` appends waiting, as many clients
//! of a server would: that concurrency is what group commit turns into large
//! transactions. Latency is measured from the moment an event was due to be published
//! (with `--rate`, the paced schedule; otherwise the call) until `append` returned, so a
//! stalled writer shows up in the figures instead of slowing the offered load.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use pulse_core::{Event, EventLog, ReadQuery};
use pulse_sqlite::{FsyncPolicy, SqliteLog, SqliteOptions};
use serde::Serialize;

/// Arguments of `pulse bench log`.
#[derive(clap::Args)]
pub(crate) struct LogArgs {
    /// Events to append (0: only open and replay an existing log given by --dir).
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Concurrent publisher tasks.
    #[arg(long, default_value_t = 4)]
    publishers: usize,
    /// Appends each publisher keeps waiting at once.
    #[arg(long, default_value_t = 256)]
    in_flight: usize,
    /// Events per append call.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Payload size of each event.
    #[arg(long, default_value_t = 256)]
    payload_bytes: usize,
    /// Offered load in events/s over all publishers (default: as fast as possible).
    #[arg(long)]
    rate: Option<u64>,
    /// fsync policy: always, never, or an interval in milliseconds such as 100ms.
    #[arg(long, default_value = "always")]
    fsync: String,
    /// Data directory (default: a fresh temporary directory, removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Also measure replaying the whole log.
    #[arg(long)]
    replay: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Report {
    events: u64,
    publishers: usize,
    in_flight: usize,
    batch: usize,
    payload_bytes: usize,
    fsync: String,
    offered_rate: Option<u64>,
    seconds: f64,
    events_per_s: f64,
    p50_us: u64,
    p99_us: u64,
    p999_us: u64,
    open_ms: f64,
    replay_events: Option<u64>,
    replay_events_per_s: Option<f64>,
    peak_rss_mb: f64,
}

pub(crate) fn run(args: LogArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.publishers > 0 && args.in_flight > 0 && args.batch > 0,
        "--publishers, --in-flight and --batch must be at least 1"
    );
    let fsync = parse_fsync(&args.fsync)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let report = runtime.block_on(measure(&args, fsync))?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "appended {} events ({} publishers x {} in flight, batch {}, {} B payload, fsync {}) in {:.2} s: {:.0} events/s",
            report.events, report.publishers, report.in_flight, report.batch, report.payload_bytes, report.fsync, report.seconds, report.events_per_s
        );
        println!(
            "publish -> durable latency: p50 {} us, p99 {} us, p99.9 {} us",
            report.p50_us, report.p99_us, report.p999_us
        );
        if let (Some(n), Some(rate)) = (report.replay_events, report.replay_events_per_s) {
            println!(
                "opened in {:.1} ms; replayed {n} events: {rate:.0} events/s",
                report.open_ms
            );
        }
        println!("peak RSS {:.1} MB", report.peak_rss_mb);
    }
    Ok(())
}

fn parse_fsync(text: &str) -> anyhow::Result<FsyncPolicy> {
    Ok(match text {
        "always" => FsyncPolicy::Always,
        "never" => FsyncPolicy::Never,
        other => {
            let ms = other
                .strip_suffix("ms")
                .and_then(|n| n.parse::<u64>().ok())
                .with_context(|| {
                    format!(
                        "--fsync must be always, never or an interval like 100ms, got {other:?}"
                    )
                })?;
            FsyncPolicy::Interval(Duration::from_millis(ms))
        }
    })
}

async fn measure(args: &LogArgs, fsync: FsyncPolicy) -> anyhow::Result<Report> {
    let temp;
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => {
            temp = tempfile_dir()?;
            temp.0.clone()
        }
    };
    let options = SqliteOptions::default().with_fsync(fsync);
    let opened = Instant::now();
    let log = SqliteLog::open_with(&dir, options)
        .await
        .with_context(|| format!("cannot open the log in {}", dir.display()))?;
    let open_ms = opened.elapsed().as_secs_f64() * 1e3;

    let (seconds, mut latencies) = if args.events > 0 {
        append_phase(&log, args).await?
    } else {
        (0.0, Vec::new())
    };
    latencies.sort_unstable();
    let quantile = |q: f64| -> u64 {
        if latencies.is_empty() {
            return 0;
        }
        let index = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[index]
    };
    let (p50_us, p99_us, p999_us) = (quantile(0.5), quantile(0.99), quantile(0.999));
    drop(latencies);

    let (replay_events, replay_events_per_s) = if args.replay {
        let started = Instant::now();
        let mut count = 0u64;
        let mut slices = std::pin::pin!(log.replay(ReadQuery::after(0, 10_000), None).await?);
        while let Some(slice) = slices.next().await {
            count += slice?.len() as u64;
        }
        (
            Some(count),
            Some(count as f64 / started.elapsed().as_secs_f64()),
        )
    } else {
        (None, None)
    };
    log.close().await?;
    Ok(Report {
        events: args.events,
        publishers: args.publishers,
        in_flight: args.in_flight,
        batch: args.batch,
        payload_bytes: args.payload_bytes,
        fsync: args.fsync.clone(),
        offered_rate: args.rate,
        seconds,
        events_per_s: if seconds > 0.0 {
            args.events as f64 / seconds
        } else {
            0.0
        },
        p50_us,
        p99_us,
        p999_us,
        open_ms,
        replay_events,
        replay_events_per_s,
        peak_rss_mb: peak_rss_mb(),
    })
}

/// Appends `args.events` events; returns the seconds taken and each event's latency in µs.
async fn append_phase(log: &SqliteLog, args: &LogArgs) -> anyhow::Result<(f64, Vec<u64>)> {
    let payload = bytes_payload(args.payload_bytes);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers = args.publishers * args.in_flight;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let (log, next, payload) = (log.clone(), next.clone(), payload.clone());
        let (total, batch, rate) = (args.events, args.batch as u64, args.rate);
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let first = next.fetch_add(batch, Ordering::Relaxed);
                if first >= total {
                    break;
                }
                let count = batch.min(total - first);
                let due = match rate {
                    Some(rate) => {
                        let due = started + Duration::from_secs_f64(first as f64 / rate as f64);
                        tokio::time::sleep_until(due.into()).await;
                        due
                    }
                    None => Instant::now(),
                };
                let events = (first..first + count)
                    .map(|i| {
                        Event::new("bench.log.event")
                            .with_subject(format!("user-{}", i % 1000))
                            .with_data("application/octet-stream", payload.clone())
                    })
                    .collect();
                log.append(events).await?;
                let micros = due.elapsed().as_micros() as u64;
                latencies.extend(std::iter::repeat_n(micros, count as usize));
            }
            Ok::<_, pulse_core::LogError>(latencies)
        });
    }
    let mut all = Vec::with_capacity(args.events as usize);
    while let Some(result) = tasks.join_next().await {
        all.extend(result.context("a publisher panicked")??);
    }
    Ok((started.elapsed().as_secs_f64(), all))
}

fn bytes_payload(size: usize) -> bytes::Bytes {
    (0..size)
        .map(|i| b'a' + (i % 26) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// A temporary directory removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempfile_dir() -> anyhow::Result<TempDir> {
    let dir = std::env::temp_dir().join(format!("pulse-bench-log-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(TempDir(dir))
}

/// The process's peak resident set size (VmHWM), in MB.
pub(crate) fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}
