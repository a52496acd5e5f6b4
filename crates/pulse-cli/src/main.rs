//! `pulse`: the command-line entry point. It parses arguments and wires configuration to
//! the components; the work itself lives in the library crates.

mod aggregate;
mod bench;
mod config;
mod generate;
mod log_cmd;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

// The bus frees events on another thread than the one that allocated them; mimalloc
// handles that without the arena lock glibc's malloc takes (measured in bench/results/bus.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Pulse: a lightweight, durable event bus and an incremental health-data aggregation engine.
#[derive(Parser)]
#[command(name = "pulse", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Aggregate health readings into windowed statistics (count, avg, min, max, stddev, p50/p95/p99).
    Aggregate(aggregate::AggregateArgs),
    /// Generate synthetic data for demos and benchmarks.
    #[command(subcommand)]
    Gen(generate::GenCommand),
    /// Inspect a durable event log offline: stats, tail, replay, dead letters.
    #[command(subcommand)]
    Log(log_cmd::LogCommand),
    /// Run the HTTP server (CloudEvents API, streams, webhooks, jobs, metrics).
    Serve(serve::ServeArgs),
    /// Measure Pulse on this machine.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Aggregate(args) => aggregate::run(args),
        Command::Gen(command) => generate::run(command),
        Command::Log(command) => log_cmd::run(command),
        Command::Bench(command) => bench::run(command),
        // It reports its own errors, through its log (JSON under --log-format json).
        Command::Serve(args) => return serve::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
