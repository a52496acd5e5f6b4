//! Not built yet.

/// Commands.
#[derive(clap::Subcommand)]
pub(crate) enum GenCommand {
    /// Not built yet.
    Todo,
}

pub(crate) fn run(_command: GenCommand) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
