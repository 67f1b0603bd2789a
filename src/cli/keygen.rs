//! `ticket-audit keygen`: write a checkpoint signing key (mode 0600) and print its verifier key.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::BoxError;

#[derive(Debug, Clone, Args)]
pub struct KeygenArgs {
    /// The key's name: the log's origin (by default, the CHECKPOINT_ORIGIN variable).
    #[arg(long)]
    pub name: Option<String>,
    /// Where to write the key (an existing file is never replaced).
    #[arg(long, default_value = "checkpoint.key")]
    pub out: PathBuf,
}

pub async fn run(args: KeygenArgs) -> Result<ExitCode, BoxError> {
    let name = args.name.or_else(|| std::env::var("CHECKPOINT_ORIGIN").ok());
    crate::log_commands::keygen(name.as_deref(), &args.out)?;
    Ok(ExitCode::SUCCESS)
}
