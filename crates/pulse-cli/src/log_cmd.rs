//! Not built yet.

/// Commands.
#[derive(clap::Subcommand)]
pub(crate) enum LogCommand {
    /// Not built yet.
    Todo,
}

pub(crate) fn run(_command: LogCommand) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
