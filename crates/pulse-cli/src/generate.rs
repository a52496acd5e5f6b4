//! `pulse gen`: synthetic data for demos and benchmarks.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::Context;
use chrono::NaiveDate;
use pulse_batch::synth::{generate, GenConfig};
use pulse_batch::time::days_from_civil;
use pulse_batch::FileFormat;

/// What to generate.
#[derive(clap::Subcommand)]
pub(crate) enum GenCommand {
    /// Realistic synthetic health readings (CSV or JSONL by the output's extension).
    Readings(ReadingsArgs),
}

/// Arguments of `pulse gen readings`.
#[derive(clap::Args)]
pub(crate) struct ReadingsArgs {
    /// Number of users.
    #[arg(long)]
    users: u32,
    /// Number of days.
    #[arg(long)]
    days: u32,
    /// The file to write: .csv or .jsonl.
    #[arg(long)]
    output: PathBuf,
    /// Random seed; the same seed gives the same file.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// First day (YYYY-MM-DD, UTC).
    #[arg(long, default_value = "2025-01-06")]
    start: NaiveDate,
}

fn readings(args: ReadingsArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.users > 0, "--users must be at least 1");
    anyhow::ensure!(args.days > 0, "--days must be at least 1");
    let name = args.output.to_string_lossy().to_ascii_lowercase();
    let format = if name.ends_with(".csv") {
        FileFormat::Csv
    } else if name.ends_with(".jsonl") || name.ends_with(".ndjson") {
        FileFormat::Jsonl
    } else {
        anyhow::bail!(
            "--output {}: expected a .csv or .jsonl file",
            args.output.display()
        );
    };
    use chrono::Datelike;
    let start = &args.start;
    let cfg = GenConfig {
        users: args.users,
        days: args.days,
        seed: args.seed,
        start_day: days_from_civil(i64::from(start.year()), start.month(), start.day()),
        format,
    };
    let file = File::create(&args.output)
        .with_context(|| format!("cannot create {}", args.output.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let rows = generate(&cfg, &mut out)
        .and_then(|rows| out.flush().map(|()| rows))
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    println!("wrote {rows} readings to {}", args.output.display());
    Ok(())
}

pub(crate) fn run(command: GenCommand) -> anyhow::Result<()> {
    match command {
        GenCommand::Readings(args) => readings(args),
    }
}
