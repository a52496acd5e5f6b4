//! Not built yet.

/// Arguments.
#[derive(clap::Args)]
pub(crate) struct LogArgs {}

pub(crate) fn run(_args: LogArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
