//! Not built yet.

/// Arguments.
#[derive(clap::Args)]
pub(crate) struct BusArgs {}

pub(crate) fn run(_args: BusArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
