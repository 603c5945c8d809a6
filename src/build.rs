//! `imagesmith build`: runs the pipeline.

use crate::cli::BuildArgs;

pub fn run(args: &BuildArgs, quiet: bool) -> anyhow::Result<()> {
    let _ = (args, quiet);
    anyhow::bail!("not yet")
}
