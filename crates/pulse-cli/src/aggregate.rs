//! Not built yet.

/// Arguments.
#[derive(clap::Args)]
pub(crate) struct AggregateArgs {}

pub(crate) fn run(_args: AggregateArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
