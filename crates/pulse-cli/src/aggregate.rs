//! `pulse aggregate`: windowed statistics of health readings, from a file, a SQLite table
//! or a PostgreSQL table to a file or SQLite table, optionally incremental (`--state`).
//!
//! This module only wires arguments to [`pulse_batch::run`]; it adds the progress bar
//! (on a terminal only) and the one-line summary. pulse-batch links no database driver:
//! SQLite tables and state stores are opened by pulse-sqlite ([`pulse_sqlite::batch`]),
//! PostgreSQL inputs are wired in [`postgres`].

mod postgres;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use pulse_batch::Input;
use pulse_batch::Output;
use pulse_batch::Progress;
use pulse_batch::RejectReason;
use pulse_batch::WindowSet;
use pulse_batch::{Job, Summary};

/// Arguments of `pulse aggregate`.
#[derive(clap::Args)]
pub(crate) struct AggregateArgs {
    /// Readings: a .csv or .jsonl file, sqlite:PATH?table=NAME, or
    /// postgres://USER@HOST:PORT/DB?table=NAME[&schema=NAME].
    ///
    /// A table needs the columns user_id, metric, value, recorded_at and optionally unit;
    /// in PostgreSQL also an increasing integer id (e.g. bigserial), which incremental
    /// runs resume after. PostgreSQL: postgresql:// works too, the schema defaults to
    /// public, other query parameters (e.g. connect_timeout=10) go to the driver; the
    /// table is read over a read-only session that creates nothing in the database (no
    /// Pulse tables: the checkpoint lives in --state).
    #[arg(long, env = "PULSE_AGGREGATE_INPUT", verbatim_doc_comment)]
    input: String,
    /// Comma-separated tumbling windows, e.g. 5m,1h,1d (1d is a calendar day in --tz).
    #[arg(long, env = "PULSE_AGGREGATE_WINDOW")]
    window: String,
    /// Aggregates: a .jsonl or .csv file, or sqlite:PATH (merged by key with what it holds).
    #[arg(long, env = "PULSE_AGGREGATE_OUTPUT")]
    output: String,
    /// IANA time zone that calendar days (1d) follow.
    #[arg(long, default_value = "UTC", env = "PULSE_AGGREGATE_TZ")]
    tz: String,
    /// Incremental state, sqlite:PATH: later runs read only new input and merge it in.
    #[arg(long, env = "PULSE_AGGREGATE_STATE")]
    state: Option<String>,
    /// Write every rejected reading here, one JSON object per line.
    #[arg(long)]
    rejects: Option<PathBuf>,
    /// Recompute from scratch, discarding stored state and checkpoints.
    #[arg(long)]
    full: bool,
    /// Worker threads for file inputs (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
}

/// An input as given: PostgreSQL is connected only once every argument checked out.
enum InputSpec {
    Ready(Input),
    Postgres(postgres::PostgresInput),
}

impl InputSpec {
    fn parse(spec: &str) -> Result<Self, pulse_batch::BatchError> {
        if postgres::is_postgres(spec) {
            postgres::PostgresInput::parse(spec).map(InputSpec::Postgres)
        } else {
            Input::parse(spec).map(InputSpec::Ready)
        }
    }

    fn open(self) -> Result<Input, pulse_batch::BatchError> {
        match self {
            InputSpec::Ready(input) => Ok(input),
            InputSpec::Postgres(postgres) => postgres.open(),
        }
    }
}

fn job(args: &AggregateArgs) -> anyhow::Result<Job> {
    let input = InputSpec::parse(&args.input)?;
    let output = Output::parse(&args.output)?;
    let windows = WindowSet::parse(&args.window, &args.tz)?;
    let state = match &args.state {
        Some(state) => Some(
            state
                .strip_prefix("sqlite:")
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .with_context(|| format!("--state {state:?}: expected sqlite:PATH"))?,
        ),
        None => None,
    };
    if args.threads == Some(0) {
        anyhow::bail!("--threads must be at least 1");
    }
    let mut job = Job::new(input.open()?, windows, output)
        .with_databases(Arc::new(pulse_sqlite::batch::Sqlite));
    job.state = state;
    job.rejects = args.rejects.clone();
    job.full = args.full;
    if let Some(threads) = args.threads {
        job.threads = threads;
    }
    Ok(job)
}

/// Draws a progress bar on stderr while `done` is false.
fn spawn_bar(progress: Arc<Progress>, done: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let bar = indicatif::ProgressBar::new(progress.total_bytes().max(1));
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {percent:>3}% {msg} eta {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let started = std::time::Instant::now();
        while !done.load(Ordering::Relaxed) {
            bar.set_length(progress.total_bytes().max(1));
            bar.set_position(progress.bytes());
            let rate = progress.rows() as f64 / started.elapsed().as_secs_f64().max(1e-3);
            bar.set_message(format!("{} rows, {:.0} rows/s", progress.rows(), rate));
            std::thread::sleep(Duration::from_millis(100));
        }
        bar.finish_and_clear();
    })
}

fn summary_line(summary: &Summary) -> String {
    let reasons: Vec<String> = RejectReason::ALL
        .iter()
        .filter(|r| summary.counts.rejected(**r) > 0)
        .map(|r| format!("{} {}", r.code(), summary.counts.rejected(*r)))
        .collect();
    let detail = if reasons.is_empty() {
        String::new()
    } else {
        format!(" ({})", reasons.join(", "))
    };
    format!(
        "read {} rows, rejected {}{detail}, wrote {} windows ({} updated) in {:.2} s",
        summary.counts.rows,
        summary.counts.rejected_total(),
        summary.windows_written,
        summary.keys_updated,
        summary.seconds
    )
}

pub(crate) fn run(args: AggregateArgs) -> anyhow::Result<()> {
    let job = job(&args)?;
    let progress = Arc::new(Progress::new());
    let done = Arc::new(AtomicBool::new(false));
    let bar = std::io::stderr()
        .is_terminal()
        .then(|| spawn_bar(Arc::clone(&progress), Arc::clone(&done)));
    let result = pulse_batch::run(&job, &progress);
    done.store(true, Ordering::Relaxed);
    if let Some(bar) = bar {
        let _ = bar.join();
    }
    let summary = result?;
    println!("{}", summary_line(&summary));
    Ok(())
}
