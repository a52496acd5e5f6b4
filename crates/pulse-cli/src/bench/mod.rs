//! `pulse bench`: end-to-end measurements printed as text or one JSON object.

mod bus;
mod log;

use clap::Subcommand;

/// What to measure.
#[derive(Subcommand)]
pub(crate) enum BenchCommand {
    /// The in-process bus: publish → handler throughput and latency.
    Bus(bus::BusArgs),
    /// The durable log: persistent append throughput and publish → durable latency.
    Log(log::LogArgs),
}

pub(crate) fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Bus(args) => bus::run(args),
        BenchCommand::Log(args) => log::run(args),
    }
}
