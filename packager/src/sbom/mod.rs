//! S4: the packages an image holds, as SPDX 2.3 or CycloneDX 1.5 JSON.

use anyhow::Result;
use clap::Args;

#[derive(Debug, Args)]
pub struct SbomArgs {}

pub fn command(_a: SbomArgs) -> Result<()> {
    Ok(())
}
